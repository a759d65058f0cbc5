"""Measure GReFEL's size and speed on this machine; every figure in README.md comes from here.

    python scripts/benchmark.py                       # all sections, results in benchmarks/results.json
    python scripts/benchmark.py --sections size train --device cuda

Sections:
  size      parameters and FLOPs (torch.utils.flop_counter, 2 FLOPs per multiply-add) of the paper-size network at
            1x3x224x224, beside the POSTER++ figures of GREFEL_SPEC.md.
  train     training throughput (images/s) of the tiny and paper-size configs: augmentation on the device, forward,
            backward and an Adam step, median of timed steps after warm-up; on a CUDA GPU also the paper size under
            bf16 autocast at the largest batch that fits (doubling from 8 up to 1024).
  allocator the tiny training step on the CPU with glibc's default allocation thresholds and with
            `emotionnet.training.keep_freed_memory` (which scripts/train.py applies there), each in its own fresh
            process, alternated --allocator_rounds times; the ratio of the medians.
  latency   latency of the face pipeline (detection + classification; eager and `auto`) for the tiny and paper-size
            models on the 512x512 example photo and a 640x480 frame with one face, and of the detector alone.
  inference the inference paths (`optimize_for_inference`, and ONNX Runtime fp32 and static int8, every multiply-add
            operator or the convolutions only, where onnxruntime is installed: emotionnet/onnx_export.py) of the tiny and paper-size models at batches 1, 16 (and
            64 for tiny): images/s, latency p50/p90, peak RSS (of the benchmark's process, and of a fresh process
            serving that path alone), achieved GFLOP/s and top-1 agreement with eager fp32 on
            256+ varied inputs (synthetic faces and crops of the bundled example photos); beside them the machine's
            fp32/bf16/int8 matrix-product rates, training-step throughput, and the data pipeline alone (decode +
            augment). Ratios are against `previous_eager`, the eager forward before issue 11, measured in the same
            run: the official POSTER++ code is not available offline.

    python scripts/benchmark.py --sections inference --output benchmarks/inference.json
    python scripts/benchmark.py --sections allocator --output benchmarks/allocator.json
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from emotionnet.onnx_export import INT8_TWINS
from emotionnet.timing import interleaved_median_seconds
from modeling_grefel import GReFELConfig, GReFELForImageClassification

ROOT = Path(__file__).resolve().parents[1]

# POSTER++ figures quoted in GREFEL_SPEC.md: thop (MACs, hooked modules only) and torch.utils.flop_counter on the
# official code (its modules include the frozen landmark network and some modules its forward never uses).
POSTER_THOP = {"params_m": 43.7, "gmacs": 8.4}
POSTER_FLOP_COUNTER = {"params_m_all_modules": 58.3, "gflops": 17.2}
EXAMPLES = ROOT / "space" / "examples"


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@contextlib.contextmanager
def counted_flops():
    """`torch.utils.flop_counter.FlopCounterMode` with attention computed explicitly inside it.

    The counter does not count the fused CPU kernel that `scaled_dot_product_attention` takes (torch 2.13): it missed
    0.31 of the paper-size trunk's 17.18 GFLOP. The explicit product (QK^T, bias, softmax, AV) is the same arithmetic,
    which the counter does see; outside this context nothing changes.
    """
    from unittest import mock

    from torch.utils.flop_counter import FlopCounterMode

    def explicit(q, k, v, attn_mask=None, scale=None):
        scores = (q * scale) @ k.transpose(-2, -1)
        return (scores if attn_mask is None else scores + attn_mask).softmax(dim=-1) @ v

    with mock.patch.object(torch.nn.functional, "scaled_dot_product_attention", explicit), torch.no_grad(), \
            FlopCounterMode(display=False) as counter:
        yield counter


def size_section(device: str) -> dict:
    model = GReFELForImageClassification(GReFELConfig.paper(num_labels=7)).eval().to(device)
    trunk = model.grefel
    with counted_flops() as counter:
        trunk(torch.randn(1, 3, 224, 224, device=device))
    trunk_flops = counter.get_total_flops()
    with counted_flops() as counter:
        model(torch.randn(1, 3, 224, 224, device=device))
    result = {
        "trunk_params_m": count(trunk) / 1e6,
        "landmark_backbone_params_m": count(trunk.face_landback) / 1e6,
        "landmark_head_unused_params_m": count(trunk.face_landback.output_layer) / 1e6,
        "grefel_head_params_m": count(model.grefel_head) / 1e6,
        "total_params_m": count(model) / 1e6,
        "trainable_params_m": sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6,
        "trunk_gflops": trunk_flops / 1e9,
        "total_gflops": counter.get_total_flops() / 1e9,
        "poster_pp_thop": POSTER_THOP,
        "poster_pp_flop_counter": POSTER_FLOP_COUNTER,
    }
    result["trunk_params_vs_poster_thop"] = result["trunk_params_m"] / POSTER_THOP["params_m"]
    result["trunk_flops_vs_poster_flop_counter"] = result["trunk_gflops"] / POSTER_FLOP_COUNTER["gflops"]
    return result


def train_throughput(preset: str, batch_size: int, device: str, steps: int, warmup: int,
                     precision: str = "fp32") -> dict:
    """Median training step (augmentation, forward, backward, Adam); `precision="bf16"`: forward and loss under bf16
    autocast, as `train.py --mixed_precision bf16` runs them (weights, gradients and Adam stay fp32)."""
    from emotionnet.augment import BatchAugment

    torch.manual_seed(0)
    config = getattr(GReFELConfig, preset)(num_labels=8)
    model = GReFELForImageClassification(config).train().to(device)
    model.set_trust(1, 2)
    augment = BatchAugment(image_size=config.image_size).to(device)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    side = augment.input_size
    images = torch.randint(0, 256, (batch_size, 3, side, side), dtype=torch.uint8, device=device)
    labels = torch.randint(0, 8, (batch_size,), device=device)
    times = []
    for step in range(warmup + steps):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model(pixel_values=augment(images), labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if device == "cuda":
            torch.cuda.synchronize()
        if step >= warmup:
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {"preset": preset, "batch_size": batch_size, "image_size": config.image_size, "steps": steps,
            "precision": precision, "median_step_s": median, "images_per_s": batch_size / median}


def largest_fitting_batch(fits, start: int, limit: int) -> int:
    """The largest batch in start, 2*start, 4*start, ... (at most `limit`) for which `fits(batch)` runs without
    running out of accelerator memory; 0 if not even `start` fits."""
    best, batch = 0, start
    while batch <= limit:
        try:
            fits(batch)
        except torch.OutOfMemoryError:
            break
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        best, batch = batch, batch * 2
    return best


def largest_batch_training(preset: str, device: str, steps: int, start: int = 8, limit: int = 1024) -> dict:
    """bf16 training throughput at the largest power-of-two multiple of `start` whose training step fits on the GPU
    (issue 11: full-size training on a GPU is what researchers pay for)."""
    batch = largest_fitting_batch(lambda b: train_throughput(preset, b, device, steps=1, warmup=0, precision="bf16"),
                                  start, limit)
    if batch == 0:
        return {"preset": preset, "precision": "bf16", "largest_batch": 0, "note": f"batch {start} does not fit"}
    return {**train_throughput(preset, batch, device, steps, warmup=1, precision="bf16"), "largest_batch": batch,
            "batch_limit": limit}


def latency_section(device: str, repeats: int, presets=("tiny", "paper")) -> dict:
    """Median ms per call of the face pipeline (detection + classification, eager fp32 and the `auto` path the Space
    uses) on the 512x512 example photo and on a 640x480 webcam-sized frame holding the same face, and of the face
    detector alone on that frame (issue 11: <= 40 ms a frame, tiny preset, for a 25 fps webcam stream)."""
    from PIL import Image

    from modeling_grefel import GReFELImageProcessor
    from modeling_grefel.face_detection_grefel import FaceDetector
    from modeling_grefel.pipeline_grefel import FacialExpressionPipeline

    photo = Image.open(EXAMPLES / "astronaut.jpg").convert("RGB")  # the Space's public-domain example photo
    frame = Image.new("RGB", (640, 480), (96, 96, 96))
    frame.paste(photo.crop((0, 0, 512, 480)), (64, 0))  # the top 480 rows hold the face

    def median_ms(call, *args, **kwargs) -> float:
        return 1000 * interleaved_median_seconds({"call": lambda: call(*args, **kwargs)}, repeats)["call"]

    detector, video = FaceDetector(), FaceDetector.for_video()
    results = {"threads": torch.get_num_threads(), "frame_size": list(frame.size), "photo_size": list(photo.size),
               "detector_frame_ms": median_ms(detector.detect, frame),
               "video_detector_frame_ms": median_ms(video.detect, frame)}
    for preset in presets:
        config = getattr(GReFELConfig, preset)()
        processor = GReFELImageProcessor.from_config(config)
        for path in ("eager", "auto"):
            model = GReFELForImageClassification(config).eval().to(device)
            pipe = FacialExpressionPipeline(model=model, image_processor=processor, device=device, inference_path=path)
            results[f"{preset}_{path}"] = {
                "chosen_path": model.inference_path,
                "photo_ms": median_ms(pipe, photo),
                "frame_ms": median_ms(pipe, frame),
                "frame_faces": len(pipe(frame)["faces"]),
                # The Space's webcam stream searches with FaceDetector.for_video().
                "frame_video_detector_ms": median_ms(pipe, frame, detector=video),
                "frame_video_detector_faces": len(pipe(frame, detector=video)["faces"]),
            }
    return results


# ----------------------------------------------------------------------------------------------- inference
def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    except OSError:
        return platform.processor()


def gemm_rates(device: str, n: int = 1024, seconds: float = 0.5) -> dict:
    """GFLOP/s of one n x n x n matrix product in fp32, bf16 and int8 (int8 -> int32, `torch._int_mm`)."""

    def rate(a, b, product):
        product(a, b)
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            product(a, b)
            calls += 1
        if device == "cuda":
            torch.cuda.synchronize()
        return 2 * n**3 * calls / (time.perf_counter() - start) / 1e9

    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    rates = {"fp32": rate(a, b, torch.matmul), "bf16": rate(a.bfloat16(), b.bfloat16(), torch.matmul)}
    try:
        q = torch.randint(-128, 128, (n, n), dtype=torch.int8, device=device)
        rates["int8"] = rate(q, q, torch._int_mm)
    except RuntimeError:  # no int8 matrix-product kernel on this device
        rates["int8"] = None
    return {"matrix_side": n, "gflops": rates}


class PeakRSS:
    """Samples the process's resident memory every 5 ms while active; `peak_mb` is the largest sample."""

    def __enter__(self):
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        import resource

        page = resource.getpagesize()
        while not self._stop.is_set():
            with open("/proc/self/statm") as statm:
                self.peak = max(self.peak, int(statm.read().split()[1]) * page)
            self._stop.wait(0.005)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        return self.peak / 2**20


def varied_inputs(config, count: int) -> torch.Tensor:
    """`count` processed images: synthetic faces, plus flipped and shifted crops of the bundled example photos."""
    import random

    from PIL import Image, ImageOps

    from emotionnet.synthetic import make_synthetic_faces
    from modeling_grefel import GReFELImageProcessor

    photos = [Image.open(path).convert("RGB") for path in sorted(EXAMPLES.glob("*.jpg"))]
    rng = random.Random(0)
    crops = []
    for _ in range(count // 4):
        photo = rng.choice(photos)
        side = rng.randint(min(photo.size) // 4, min(photo.size))
        left, top = rng.randint(0, photo.width - side), rng.randint(0, photo.height - side)
        crop = photo.crop((left, top, left + side, top + side))
        crops.append(ImageOps.mirror(crop) if rng.random() < 0.5 else crop)
    faces = make_synthetic_faces(num_per_class=-(-(count - len(crops)) // 8), image_size=96, seed=0)["train"]
    images = [faces[i]["image"].convert("RGB") for i in range(count - len(crops))] + crops
    processor = GReFELImageProcessor.from_config(config)
    return processor(images, return_tensors="pt")["pixel_values"]  # (count, 3, S, S)


def build_path_model(config, path: str, device: str, state: dict | None = None, onnx_file: str | None = None):
    """`config`'s model on inference `path` (random weights, or `state`); the ONNX Runtime paths serve `onnx_file`."""
    if path.startswith("onnx_"):
        from emotionnet.onnx_export import OnnxImageClassifier, onnx_session

        return OnnxImageClassifier(onnx_session(onnx_file))
    from emotionnet.previous_eager import previous_eager_forward

    with previous_eager_forward() if path == "previous_eager" else contextlib.nullcontext():
        model = GReFELForImageClassification(config).eval().to(device)  # the previous one keeps channels-first kernels
    if state is not None:
        model.load_state_dict(state)
    return model if path in ("previous_eager", "eager") else model.optimize_for_inference(path)


def high_water_rss_mb() -> float:
    """This process's peak resident memory (VmHWM), in MB. Not getrusage's ru_maxrss: that survives exec, so a child
    started from the benchmark's multi-GB process would report the parent's peak (seen: 2.1 GB against 0.9 GB)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024  # kB


def rss_probe(preset: str, path: str, batches: list[int], device: str, onnx_file: str | None) -> dict:
    """In this (fresh) process: build `preset` on `path`, run two forwards of each batch in ascending order, and
    report the peak RSS after each batch (memory a smaller batch freed is reused by the next one)."""
    from emotionnet.previous_eager import previous_eager_forward

    torch.manual_seed(0)
    config = getattr(GReFELConfig, preset)(num_labels=7)
    model = build_path_model(config, path, device, onnx_file=onnx_file)
    peaks = {}
    for batch in sorted(batches):
        x = torch.randn(batch, config.num_channels, config.image_size, config.image_size, device=device)
        with torch.no_grad(), previous_eager_forward() if path == "previous_eager" else contextlib.nullcontext():
            model(x)
            model(x)
        peaks[batch] = high_water_rss_mb()
    return {"preset": preset, "path": path, "peak_rss_mb": peaks}


def peak_rss_alone(preset: str, path: str, batches: list[int], device: str, onnx_file: str | None = None) -> dict:
    """{batch: peak RSS (MB)} of a fresh Python process that imports torch, builds the model on `path` and runs the
    batches: what serving that path alone costs, where the benchmark's own process holds several models at once."""
    command = [sys.executable, str(Path(__file__).resolve()), "--rss_probe", preset, path,
               ",".join(map(str, batches)), "--device", device] + (["--rss_probe_onnx", onnx_file] if onnx_file else [])
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"peak-RSS probe {' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return {int(batch): mb for batch, mb in json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mb"].items()}


def allocator_probe(keep: bool, batch_size: int, steps: int) -> dict:
    """In this (fresh) process: the tiny training step on the CPU, with `keep_freed_memory` applied first or not; its
    median wall time, and per step the process's user and system CPU seconds and minor page faults."""
    import resource

    from emotionnet.training import keep_freed_memory

    kept = keep_freed_memory() if keep else False
    train_throughput("tiny", batch_size, "cpu", steps=1, warmup=2)  # the heap grows to its working size
    before = resource.getrusage(resource.RUSAGE_SELF)
    row = train_throughput("tiny", batch_size, "cpu", steps, warmup=0)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {"keep_freed_memory": kept, **row, "user_s_per_step": (after.ru_utime - before.ru_utime) / steps,
            "system_s_per_step": (after.ru_stime - before.ru_stime) / steps,
            "page_faults_per_step": (after.ru_minflt - before.ru_minflt) / steps}


ALLOCATOR_FIGURES = ("median_step_s", "user_s_per_step", "system_s_per_step", "page_faults_per_step")


def allocator_section(batch_size: int, steps: int, rounds: int) -> dict:
    """The tiny training step with glibc's default allocation thresholds and with `keep_freed_memory` (what
    `scripts/train.py` applies on a CPU), each in a fresh process, the two alternated `rounds` times: the heap a process
    has built up decides the cost, so the two settings cannot share one. Per setting, the median over its processes of
    each of `ALLOCATOR_FIGURES`; compare wall times only as a ratio."""
    runs: dict[str, list[dict]] = {"default": [], "keep_freed_memory": []}
    for _ in range(rounds):
        for name in runs:
            command = [sys.executable, str(Path(__file__).resolve()), "--allocator_probe",
                       "on" if name == "keep_freed_memory" else "off", "--tiny_batch_size", str(batch_size),
                       "--steps", str(steps)]
            done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
            if done.returncode != 0:
                raise RuntimeError(f"allocator probe {' '.join(command)} failed:\n{done.stderr[-3000:]}")
            runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    result = {"preset": "tiny", "batch_size": batch_size, "steps": steps, "rounds": rounds, "cpu": cpu_name(),
              "threads": torch.get_num_threads(), "applied": all(run["keep_freed_memory"]
                                                                 for run in runs["keep_freed_memory"])}
    for figure in ALLOCATOR_FIGURES:
        result[figure] = {name: statistics.median(run[figure] for run in values) for name, values in runs.items()}
    result["per_process_step_s"] = {name: [run["median_step_s"] for run in values] for name, values in runs.items()}
    result["keep_freed_memory_vs_default"] = result["median_step_s"]["keep_freed_memory"] / \
        result["median_step_s"]["default"]
    return result


@torch.no_grad()
def predictions(model, inputs: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    return torch.cat([model(inputs[i : i + chunk]).logits.argmax(-1) for i in range(0, len(inputs), chunk)])


def first_batch(inputs: torch.Tensor, batch: int, device: str) -> torch.Tensor:
    """The first `batch` inputs, repeated when there are fewer."""
    return inputs.repeat(-(-batch // len(inputs)), 1, 1, 1)[:batch].to(device)


@torch.no_grad()
def time_batches(model, inputs: torch.Tensor, batch: int, repeats: int, device: str) -> dict:
    x = first_batch(inputs, batch, device)
    model(x)  # warm-up
    times = []
    with PeakRSS() as rss:
        for _ in range(repeats):
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(x)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    times.sort()
    p50, p90 = statistics.median(times), times[min(len(times) - 1, round(0.9 * (len(times) - 1)))]
    return {"images_per_s": batch / p50, "latency_ms_p50": 1000 * p50, "latency_ms_p90": 1000 * p90,
            "peak_rss_mb": rss.peak_mb}


def forward_gflops(model, config, device: str) -> float:
    """GFLOP per image of the eager forward (torch.utils.flop_counter, 2 FLOPs per multiply-add)."""
    with counted_flops() as counter:
        model(torch.randn(1, 3, config.image_size, config.image_size, device=device))
    return counter.get_total_flops() / 1e9


def inference_rows(preset: str, batches: list[int], repeats: int, count: int, device: str, paths: list[str],
                   interleaved_repeats: int, isolated_rss: bool = True) -> tuple:
    """One row per (path, batch) for `preset`, plus what `auto` chose and measured."""
    from emotionnet.previous_eager import previous_eager_forward
    from modeling_grefel.inference_grefel import has_native_bf16

    torch.manual_seed(0)
    config = getattr(GReFELConfig, preset)(num_labels=7)
    fresh = GReFELForImageClassification(config).eval().to(device)
    state = fresh.state_dict()
    inputs = varied_inputs(config, count)
    gflop = forward_gflops(fresh, config, device)
    with previous_eager_forward():  # every fusion token through the last block: more work for the same logits
        previous_gflop = forward_gflops(fresh, config, device)
    reference = predictions(fresh, inputs.to(device))
    scratch, onnx = tempfile.TemporaryDirectory(), {}

    def build(path):
        if path.startswith("onnx_") and not onnx:  # one export (and int8 calibration) serves every ONNX Runtime path
            from emotionnet.onnx_export import export_for_onnx_runtime
            from modeling_grefel import GReFELImageProcessor

            variants = [variant for variant, twin in INT8_TWINS.items() if twin["path"] in paths]
            onnx.update(export_for_onnx_runtime(fresh, GReFELImageProcessor.from_config(config), scratch.name,
                                                int8=variants))
        return build_path_model(config, path, device, state, onnx_file=onnx_file(path))

    def onnx_file(path):
        return str(onnx["paths"][path]) if path.startswith("onnx_") else None

    rows, auto, agreements, kept = [], None, {"eager": (1.0, count)}, {}
    for path in paths:
        if path == "bf16" and not has_native_bf16(device):
            continue  # emulated bf16: never a path here
        model = build(path)
        if path == "auto":
            auto = model.inference_report
        context = previous_eager_forward() if path == "previous_eager" else contextlib.nullcontext()
        with context:
            if path in agreements or path == "auto" and model.inference_path in agreements:
                # The reference is eager fp32 itself; auto runs one of the paths already checked, on the same weights.
                checked = agreements[path if path != "auto" else model.inference_path]
            else:
                # The previous forward equals eager within 1e-5 (tests/test_inference_paths.py): 64 inputs suffice.
                subset = inputs[:64] if path == "previous_eager" else inputs
                agreement = (predictions(model, subset.to(device)) == reference[: len(subset)]).float().mean().item()
                checked = agreements[path] = (agreement, len(subset))
            alone = peak_rss_alone(preset, path, batches, device, onnx_file(path)) if isolated_rss else {}
            for batch in batches:
                row = {"preset": preset, "path": path, "batch": batch,
                       **time_batches(model, inputs, batch, repeats, device), "top1_agreement": checked[0],
                       "agreement_inputs": checked[1]}
                if alone:
                    row["peak_rss_mb_alone"] = alone[batch]
                row["achieved_gflops"] = row["images_per_s"] * (previous_gflop if path == "previous_eager" else gflop)
                if path == "auto":
                    row["auto_chose"] = model.inference_path
                rows.append(row)
                print(json.dumps(row), flush=True)
        if path in ("previous_eager", "eager", "auto") or path.startswith("onnx_"):
            kept[path] = model  # the previous eager model of its own: it keeps channels-first kernels
        del model
    interleaved = interleaved_ratios(preset, kept, inputs, batches, interleaved_repeats, device)
    scratch.cleanup()
    onnx_seconds = {name: seconds for name, seconds in onnx.items() if name != "paths"}
    return rows, {"preset": preset, "forward_gflop_per_image": gflop, "previous_eager_forward_gflop_per_image":
                  previous_gflop, "inputs": count, "auto": auto,
                  "interleaved": interleaved, **({"onnx": onnx_seconds} if onnx else {})}


@torch.no_grad()
def interleaved_ratios(preset: str, models: dict, inputs: torch.Tensor, batches: list[int], repeats: int,
                       device: str) -> list[dict]:
    """previous eager, eager, auto (and the ONNX Runtime paths) timed in turn, call after call, so that load from other
    processes on a shared machine falls on all alike; the rows above time one path after another and drift with it."""
    from emotionnet.previous_eager import previous_eager_forward

    rows = []
    for batch in batches:
        x = first_batch(inputs, batch, device)
        def forward(name, model, x=x):
            with previous_eager_forward() if name == "previous_eager" else contextlib.nullcontext():
                model(x)

        medians = interleaved_median_seconds(
            {name: functools.partial(forward, name, model) for name, model in models.items()}, repeats,
            torch.cuda.synchronize if device == "cuda" else None)
        previous = medians["previous_eager"]
        for name, median in medians.items():
            rows.append({"preset": preset, "path": name, "batch": batch, "images_per_s": batch / median,
                         "ratio_vs_previous_eager": previous / median, "ratio_vs_eager": medians["eager"] / median,
                         "calls": repeats})
        print(json.dumps(rows[-len(medians):]), flush=True)
    return rows


def train_step_comparison(preset: str, batch_size: int, device: str, steps: int) -> dict:
    """Training-step throughput of the lean forward in fp32 and (where bf16 is native) under bf16 autocast, and of the
    previous eager forward in fp32, same run."""
    from emotionnet.previous_eager import previous_eager_forward
    from modeling_grefel.inference_grefel import has_native_bf16

    lean = train_throughput(preset, batch_size, device, steps, warmup=1)
    with previous_eager_forward():
        previous = train_throughput(preset, batch_size, device, steps, warmup=1)
    row = {"preset": preset, "batch_size": batch_size, "images_per_s": lean["images_per_s"],
           "previous_eager_images_per_s": previous["images_per_s"],
           "ratio_vs_previous_eager": lean["images_per_s"] / previous["images_per_s"]}
    if has_native_bf16(device):
        bf16 = train_throughput(preset, batch_size, device, steps, warmup=1, precision="bf16")
        row.update(bf16_images_per_s=bf16["images_per_s"],
                   bf16_ratio_vs_previous_eager=bf16["images_per_s"] / previous["images_per_s"])
    print(json.dumps(row), flush=True)
    return row


def data_pipeline(image_size: int, source_side: int, count: int, device: str) -> dict:
    """Decode (the training collator: the shared image reader, resize to the input size) + BatchAugment, one core."""
    from emotionnet.augment import BatchAugment
    from emotionnet.data import SafeImageLoader, collate_images
    from emotionnet.synthetic import make_synthetic_faces

    faces = make_synthetic_faces(num_per_class=-(-count // 8), image_size=source_side, seed=1)["train"]
    examples = []
    for i in range(count):
        image = faces[i]["image"].convert("L" if source_side <= 48 else "RGB")  # FER2013 is grey, RAF-DB colour
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        examples.append({"image": {"bytes": buffer.getvalue(), "path": None}, "label": faces[i]["label"]})
    loader, augment = SafeImageLoader(), BatchAugment(image_size=image_size).to(device)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.perf_counter()
        images, _, _, _ = collate_images(examples, loader, augment.input_size)
        decoded = time.perf_counter()
        for first in range(0, len(images), 32):
            augment(images[first : first + 32].to(device))
        end = time.perf_counter()
    finally:
        torch.set_num_threads(threads)
    return {"source": f"{source_side}x{source_side} JPEG", "image_size": image_size, "images": count,
            "decode_images_per_s_per_core": count / (decoded - start),
            "augment_images_per_s_per_core": count / (end - decoded),
            "decode_and_augment_images_per_s_per_core": count / (end - start)}


def inference_section(args) -> dict:
    compile_path = args.compile or "compile" in (args.inference_paths or [])
    paths = ["previous_eager", "eager", "bf16", "int8", "auto"] + (["compile"] if compile_path else [])
    if args.device != "cpu":
        print(f"Skipping the ONNX Runtime paths: they run on its CPU provider; --device is {args.device}.")
    else:
        from emotionnet.onnx_export import require_onnxruntime

        try:
            require_onnxruntime()
            paths += ["onnx_fp32"] + [twin["path"] for twin in INT8_TWINS.values()]
        except ImportError as err:
            print(f"Skipping the ONNX Runtime paths: {err}", flush=True)
    if args.inference_paths:  # the two eager paths stay: every ratio is taken against them
        paths = [path for path in paths if path in ("previous_eager", "eager") or path in args.inference_paths]
    rows, details = [], []
    batches_of = {"tiny": [1, 16, 64], "paper": args.paper_batches}
    for preset in args.inference_presets:
        batches = batches_of[preset]
        preset_rows, detail = inference_rows(preset, batches, args.inference_repeats, args.agreement_inputs,
                                             args.device, paths, args.interleaved_repeats, not args.no_isolated_rss)
        rows += preset_rows
        details.append(detail)
    previous = {(r["preset"], r["batch"]): r["images_per_s"] for r in rows if r["path"] == "previous_eager"}
    for row in rows:
        row["ratio_vs_previous_eager"] = row["images_per_s"] / previous[(row["preset"], row["batch"])]
    tiny = GReFELConfig.tiny()
    return {
        "inference": rows,
        "inference_details": details,
        "gemm": gemm_rates(args.device),
        "train_step": [
            train_step_comparison(preset, 32 if preset == "tiny" else args.train_batch, args.device,
                                  args.steps if preset == "tiny" else max(2, args.steps // 2))
            for preset in args.inference_presets
        ],
        "data_pipeline": [data_pipeline(GReFELConfig.paper().image_size, 100, args.agreement_inputs, "cpu"),
                          data_pipeline(tiny.image_size, 48, args.agreement_inputs, "cpu")],
        "reference": "previous_eager: GReFEL's eager forward before issue 11 (emotionnet/previous_eager.py); the "
                     "official POSTER++ code is not available offline, so no ratio against it is measured here.",
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", nargs="+", default=["size", "train", "latency"],
                        choices=["size", "train", "allocator", "latency", "inference"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=5, help="Timed training steps per config.")
    parser.add_argument("--tiny_batch_size", type=int, default=32)
    parser.add_argument("--paper_batch_size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5, help="Timed pipeline calls per model.")
    parser.add_argument("--inference_repeats", type=int, default=5, help="Timed forwards per inference row.")
    parser.add_argument("--interleaved_repeats", type=int, default=4,
                        help="Calls per path in the interleaved previous-eager / eager / auto comparison.")
    parser.add_argument("--agreement_inputs", type=int, default=256, help="Inputs the top-1 agreement is taken on.")
    parser.add_argument("--paper_batches", type=int, nargs="+", default=[1, 16],
                        help="Paper-size inference batches (64 needs several GB and minutes per path on a CPU).")
    parser.add_argument("--train_batch", type=int, default=16, help="Paper-size batch of the inference section's "
                        "training-step comparison.")
    parser.add_argument("--latency_presets", nargs="+", default=["tiny", "paper"], choices=["tiny", "paper"])
    parser.add_argument("--inference_presets", nargs="+", default=["tiny", "paper"], choices=["tiny", "paper"])
    parser.add_argument("--compile", action="store_true", help="Also time the torch.compile path (minutes).")
    parser.add_argument("--inference_paths", nargs="+", default=None,
                        choices=["bf16", "int8", "auto", "compile", "onnx_fp32"] + [t["path"] for t in INT8_TWINS.values()],
                        help="Time only these paths beside previous_eager and eager (default: all that apply).")
    parser.add_argument("--no_isolated_rss", action="store_true",
                        help="Skip the fresh process per inference row that measures each path's peak RSS alone.")
    parser.add_argument("--output", default="benchmarks/results.json")
    parser.add_argument("--allocator_rounds", type=int, default=5,
                        help="Fresh processes per allocator setting (the allocator section alternates them).")
    parser.add_argument("--allocator_probe", choices=("on", "off"), help=argparse.SUPPRESS)
    parser.add_argument("--rss_probe", nargs=3, metavar=("PRESET", "PATH", "BATCHES"), help=argparse.SUPPRESS)
    parser.add_argument("--rss_probe_onnx", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.allocator_probe:  # a child process of allocator_section
        report = allocator_probe(args.allocator_probe == "on", args.tiny_batch_size, args.steps)
        print(json.dumps(report))
        return report
    if args.rss_probe:  # the child process of peak_rss_alone
        preset, path, batches = args.rss_probe
        report = rss_probe(preset, path, [int(b) for b in batches.split(",")], args.device, args.rss_probe_onnx)
        print(json.dumps(report))
        return report

    results = {"machine": {"platform": platform.platform(), "python": platform.python_version(),
                           "torch": torch.__version__, "device": args.device, "threads": torch.get_num_threads(),
                           "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None}}
    if "size" in args.sections:
        results["size"] = size_section(args.device)
    if "train" in args.sections:
        results["train"] = [
            train_throughput("tiny", args.tiny_batch_size, args.device, args.steps, warmup=2),
            train_throughput("paper", args.paper_batch_size, args.device, args.steps, warmup=1),
        ]
        if args.device == "cuda":  # on a CPU an allocation past memory kills the process instead of raising
            results["train"].append(largest_batch_training("paper", args.device, args.steps))
    if "allocator" in args.sections:
        results["allocator"] = allocator_section(args.tiny_batch_size, max(args.steps, 30), args.allocator_rounds)
    if "latency" in args.sections:
        results["latency"] = latency_section(args.device, args.repeats, args.latency_presets)
    if "inference" in args.sections:
        from modeling_grefel.inference_grefel import has_native_bf16

        results["machine"].update(cpu=cpu_name(), native_bf16=has_native_bf16(args.device))
        results.update(inference_section(args))
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
