"""GReFEL through ONNX Runtime: export to ONNX (logits, dynamic batch), a CPU session, and static int8 quantisation.

    from emotionnet.onnx_export import export_onnx, quantize_int8, onnx_session, OnnxImageClassifier
    export_onnx(model, "out/model.onnx")
    quantize_int8("out/model.onnx", "out/model_int8.onnx", synthetic_calibration_pixel_values(processor, 64))
    logits = OnnxImageClassifier(onnx_session("out/model_int8.onnx"))(pixel_values).logits

`scripts/export_onnx.py` is the command line; `scripts/benchmark.py --sections inference` times the `onnx_fp32` and
`onnx_int8` paths beside eager. onnxruntime, onnx and onnxscript come with the `onnx` extra
(`pip install 'emotionnet[onnx]'`) and are imported only where used.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers.modeling_outputs import ImageClassifierOutput

from modeling_grefel.inference_grefel import cpu_flags

INSTALL_HINT = "pip install 'emotionnet[onnx]'"
MODEL_FILE = "model.onnx"
INT8_MODEL_FILE = "model_int8.onnx"
INPUT_NAME, OUTPUT_NAME = "pixel_values", "logits"

# Calibration, measured with ORT 1.32 on one thread on the tiny preset fitted for 60 Adam steps to synthetic faces, int8
# against eager fp32 on 256 other faces (top-1 agreement / relative logit error / largest probability error):
#   MinMax, 16 faces 0.984 / 0.055 / 0.10;  64 faces 0.980 / 0.051 / 0.073;  256 faces 0.984 / 0.053 / 0.047;
#   Percentile (99.999) and Entropy, 64 faces: 0.984 / 0.050 / 0.069 and 0.980 / 0.051 / 0.073.
# No method is better beyond one face in 256, so the simplest, MinMax; more faces only shrink the worst probability
# error, and calibration time grows with them (2 s for 64, 5 s for 256 here; ~linear in the forward cost), so 64.
CALIBRATION_METHOD = "MinMax"
CALIBRATION_IMAGES = 64
# Only the operators that carry the multiply-adds run in int8. The elementwise ones (Add, Mul, Softmax, the log of the
# head) stay fp32: they cost little, and a QDQ pair around each would add rounding without saving time.
QUANTIZED_OPERATORS = ("Conv", "MatMul", "Gemm")
# The int8 twins: every multiply-add operator (`all`, model_int8.onnx), or the convolutions alone (`conv`,
# model_int8_conv.onnx; attention, the fusion ViT and the head stay fp32). Paper size, random weights, ORT 1.32, one
# thread, 256 varied inputs (2026-12-02): `all` 103 ms at batch 1 with top-1 agreement 0.984, `conv` 189 ms at 0.992,
# fp32 287 ms; leaving out only the Gemm head (0.988) or the last 8 MatMul/Gemm nodes (0.984) kept less.
INT8_TWINS = {
    "all": {"operators": QUANTIZED_OPERATORS, "file": INT8_MODEL_FILE, "path": "onnx_int8"},
    "conv": {"operators": ("Conv",), "file": "model_int8_conv.onnx", "path": "onnx_int8_conv"},
}  # `path`: the name of the twin in export_for_onnx_runtime's result and scripts/benchmark.py


def require_onnxruntime():
    """Import onnxruntime, or say which extra installs it."""
    try:
        import onnxruntime
    except ImportError:
        raise ImportError(f"The ONNX Runtime path needs onnxruntime, which is not installed: {INSTALL_HINT}.") from None
    return onnxruntime


class _LogitsOnly(nn.Module):
    """The classifier with a plain tensor output, so the ONNX graph has one output, `logits`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values, return_dict=True).logits  # (B, num_labels)


def export_onnx(model: nn.Module, path: str | Path, *, opset_version: int | None = None) -> Path:
    """Write `model` (a `GReFELForImageClassification`, in eval mode) to `path` as ONNX with a dynamic batch axis.

    The graph takes `pixel_values` (batch, channels, image_size, image_size) as the model's image processor returns
    them and gives `logits` (batch, num_labels), the log of the probabilities the model predicts in eval mode.
    Returns `path`.
    """
    for package in ("onnx", "onnxscript"):  # torch.onnx's exporter translates through both
        try:
            __import__(package)
        except ImportError:
            raise ImportError(f"export_onnx needs {package}, which is not installed: {INSTALL_HINT}.") from None
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "image_size"):
        raise TypeError(f"export_onnx expects a GReFELForImageClassification; got {type(model).__name__}.")
    if getattr(model, "inference_path", "eager") != "eager":
        raise ValueError(f"model runs the {model.inference_path!r} inference path; export a freshly loaded model "
                         "(fp32 eager): ONNX Runtime has its own int8 path, quantize_int8.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    device = next(model.parameters()).device
    # Batch 2, not 1: torch.export specialises a dimension of size 1 to a constant, and the batch must stay free.
    example = torch.zeros(2, config.num_channels, config.image_size, config.image_size, device=device)
    was_training = model.training
    wrapper = _LogitsOnly(model).eval()  # a new module starts in training mode; export the eval forward
    try:
        torch.onnx.export(
            wrapper, (example,), str(path), dynamo=True, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_shapes={INPUT_NAME: {0: torch.export.Dim("batch")}}, opset_version=opset_version,
            external_data=False, verbose=False,
        )
    finally:
        model.train(was_training)
    return path


def onnx_session(path: str | Path, threads: int | None = None):
    """An ONNX Runtime CPU session on the model at `path`, with `threads` intra-op threads (torch's by default).

    Torch's thread count, so that eager and ONNX Runtime are compared on the same cores (OMP_NUM_THREADS sets both).
    """
    ort = require_onnxruntime()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No ONNX model at {path}; write one with scripts/export_onnx.py --output_dir "
                                f"{path.parent}.")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1  # the graph is one chain: parallel branches would only compete for the cores
    # Idle pool threads sleep instead of spinning for the next run, ONNX Runtime's default (session config key
    # session.intra_op.allow_spinning, onnxruntime.ai/docs/performance/tune-performance/threading.html): the process
    # shares its cores with torch (image processing, face detection, eager models). With spinning, eager torch timed
    # in turn with a session on a 2-core machine took ~1.6 s for a tiny-preset image instead of ~40 ms.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own Fail / InvalidProtobuf / InvalidGraph classes
        raise ValueError(f"ONNX Runtime could not load {path} ({type(err).__name__}: {str(err)[:300]}); export it "
                         "again with scripts/export_onnx.py.") from None


class OnnxImageClassifier:
    """Calls an ONNX Runtime session like the model: `classifier(pixel_values).logits` is a CPU tensor."""

    def __init__(self, session):
        self.session = session

    def __call__(self, pixel_values: torch.Tensor | np.ndarray) -> ImageClassifierOutput:
        if isinstance(pixel_values, torch.Tensor):
            pixel_values = pixel_values.detach().cpu().numpy()
        logits = self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(pixel_values, dtype=np.float32)})
        return ImageClassifierOutput(logits=torch.from_numpy(logits[0]))


def synthetic_calibration_pixel_values(processor, count: int = CALIBRATION_IMAGES, seed: int = 1) -> torch.Tensor:
    """`count` synthetic faces (8 expressions, shuffled) through the model's own `processor`: (count, C, S, S)."""
    from emotionnet.synthetic import make_synthetic_faces

    if count < 1:
        raise ValueError(f"count (calibration images) must be at least 1, got {count}.")
    faces = make_synthetic_faces(num_per_class=math.ceil(count / 8), image_size=96, seed=seed)["train"]
    images = [faces[i]["image"].convert("RGB") for i in range(count)]  # the split comes shuffled
    return processor(images, return_tensors="pt")["pixel_values"]


def quantize_int8(fp32_path: str | Path, int8_path: str | Path, calibration_pixel_values: torch.Tensor,
                  *, batch_size: int = 8, method: str = CALIBRATION_METHOD, operators: str = "all") -> Path:
    """Statically quantise the ONNX model at `fp32_path` to int8 (QDQ, per-channel weights) and write `int8_path`.

    `operators`: which operators run in int8, a key of `INT8_TWINS` (`"all"` multiply-add operators, or `"conv"`).

    Activation ranges come from `calibration_pixel_values` (processed images, e.g.
    `synthetic_calibration_pixel_values`), run through the fp32 graph `batch_size` at a time. Returns `int8_path`.
    """
    require_onnxruntime()
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    if not fp32_path.is_file():
        raise FileNotFoundError(f"No ONNX model to quantise at {fp32_path}; write it with export_onnx first.")
    if calibration_pixel_values.ndim != 4 or len(calibration_pixel_values) == 0:
        raise ValueError("calibration_pixel_values must be a non-empty (batch, channels, height, width) tensor, got "
                         f"shape {tuple(calibration_pixel_values.shape)}.")
    if operators not in INT8_TWINS:
        raise ValueError(f"operators must be one of {sorted(INT8_TWINS)}, got {operators!r}.")
    if not hasattr(CalibrationMethod, method):
        raise ValueError(f"method must be one of {[m.name for m in CalibrationMethod]}, got {method!r}.")
    batches = [calibration_pixel_values[i : i + batch_size].numpy().astype(np.float32)
               for i in range(0, len(calibration_pixel_values), batch_size)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(batches)

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    int8_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        # Shape inference and graph optimisation (BatchNorm folded into the convolutions) before quantisation, as
        # onnxruntime's quantisation guide asks (onnxruntime.ai/docs/performance/model-optimizations/quantization.html).
        prepared = Path(scratch) / "prepared.onnx"
        # onnxruntime 1.32's symbolic shape inference has no rule for ReduceMax (the `max` read-out of the fusion
        # tokens; its table in onnxruntime/tools/symbolic_shape_infer.py lists ReduceSum, ReduceMean, ReduceProd) and
        # fails on the node after it; ONNX's own shape inference, which still runs, knows it.
        graph = onnx.load(str(fp32_path), load_external_data=False).graph
        reduce_max = any(node.op_type == "ReduceMax" for node in graph.node)
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=reduce_max)
        quantize_static(
            str(prepared), str(int8_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
            # A CPU with VNNI: uint8 activations, int8 weights, full range; without VNNI the docstring of
            # onnxruntime 1.32's quantize_static advises reduce_range=True against saturation.
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=not _has_vnni(),
            op_types_to_quantize=list(INT8_TWINS[operators]["operators"]), calibrate_method=getattr(CalibrationMethod, method),
        )
    return int8_path


def _has_vnni() -> bool:
    """Whether this x86 CPU has the 8-bit dot-product instruction (AVX512-VNNI or AVX-VNNI); True off x86 (no
    `flags` line), where no 7-bit weight range is needed either."""
    flags = cpu_flags()
    if flags is None:  # not Linux: assume a recent CPU
        return True
    return "avx512_vnni" in flags or "avx_vnni" in flags or not flags


@torch.no_grad()
def compare_with_eager(model: nn.Module, classifier, pixel_values: torch.Tensor, chunk: int = 64) -> dict:
    """How closely `classifier` (e.g. an `OnnxImageClassifier`) follows eager fp32 `model` on `pixel_values`.

    `top1_agreement`: the share of images whose top-1 class is the same. `max_prob_error`: the largest absolute
    difference of a predicted probability. `relative_logit_error`: the RMS difference of the row-centred logits
    over their RMS spread across the images; a classifier that ignored its input would score at least 1.
    """
    eager, other = [], []
    for first in range(0, len(pixel_values), chunk):
        batch = pixel_values[first : first + chunk]
        eager.append(model(pixel_values=batch).logits.float().cpu())
        other.append(classifier(batch).logits.float().cpu())
    eager, other = torch.cat(eager), torch.cat(other)  # (N, num_labels)

    def centred(logits):  # log-probabilities are defined up to a constant per row
        return logits - logits.mean(-1, keepdim=True)

    spread = (centred(eager) - centred(eager).mean(0)).pow(2).mean().sqrt()
    return {
        "images": len(eager),
        "top1_agreement": (eager.argmax(-1) == other.argmax(-1)).float().mean().item(),
        "max_prob_error": (eager.softmax(-1) - other.softmax(-1)).abs().max().item(),
        "relative_logit_error": ((centred(other) - centred(eager)).pow(2).mean().sqrt() / spread).item(),
    }


def export_for_onnx_runtime(model: nn.Module, processor, output_dir: str | Path, *, int8: bool | list[str] = False,
                            calibration_images: int = CALIBRATION_IMAGES) -> dict:
    """Write `output_dir/model.onnx` and, with `int8` (True: `["all"]`, or a list of `INT8_TWINS` keys), its int8
    twins calibrated on synthetic faces through `processor`; return the paths (`onnx_fp32` and each twin's `path`
    name) and the seconds each step took."""
    output_dir = Path(output_dir)
    variants = ["all"] if int8 is True else list(int8 or [])
    start = time.perf_counter()
    written = {"onnx_fp32": export_onnx(model, output_dir / MODEL_FILE)}
    seconds = {"export_s": time.perf_counter() - start}
    if variants:
        start = time.perf_counter()
        calibration = synthetic_calibration_pixel_values(processor, calibration_images)
        for variant in variants:
            twin = INT8_TWINS[variant]
            written[twin["path"]] = quantize_int8(written["onnx_fp32"], output_dir / twin["file"], calibration,
                                                  operators=variant)
        seconds["quantize_s"] = time.perf_counter() - start
    return {"paths": written, **seconds}


__all__ = [
    "INSTALL_HINT",
    "MODEL_FILE",
    "INT8_MODEL_FILE",
    "CALIBRATION_IMAGES",
    "INT8_TWINS",
    "require_onnxruntime",
    "export_onnx",
    "onnx_session",
    "OnnxImageClassifier",
    "synthetic_calibration_pixel_values",
    "quantize_int8",
    "compare_with_eager",
    "export_for_onnx_runtime",
]
