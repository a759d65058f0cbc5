"""Convert official IR-50, MobileFaceNet and POSTER++ weights into a GReFEL model folder.

    python scripts/convert_weights.py --ir50 pretrain/ir50.pth \
        --mobilefacenet pretrain/mobilefacenet_model_best.pth.tar --num_labels 7 --output_dir converted/grefel-ms1m
    python scripts/convert_weights.py --poster_checkpoint rafdb_best.pth --num_labels 7 --output_dir converted/rafdb

Every key of every file is accounted for: renamed by an explicit table, dropped by an explicit table that says why,
or reported as an error. Key names and shapes come from the official code (Talented-Q/POSTER_V2: models/ir50.py,
mobilefacenet.py, PosterV2_7cls.py, PosterV2_8cls.py, vit_model.py, main.py) and face.evoLVe's IR-50 (four stages of
3, 4, 14, 3 units). Files are read with `torch.load(weights_only=True)` only: nothing in them is executed.
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from modeling_grefel import GReFELConfig, GReFELForImageClassification, GReFELImageProcessor
from modeling_grefel.attention_grefel import relative_position_index

# face.evoLVe's IR-50 (get_blocks(50)): units per stage; POSTER++ keeps the first three stages as body1..body3.
IR50_STAGE_UNITS = (3, 4, 14, 3)
MOBILEFACENET_MODULES = (
    "conv1", "conv2_dw", "conv_23", "conv_3", "conv_34", "conv_4", "conv_45", "conv_5", "conv_6_sep", "output_layer",
)
# The trunk's children that a source can fill; each is loaded with strict=True on its own.
TRUNK_COMPONENTS = (
    "ir_back", "face_landback", "last_face_conv", "downsample", "cross_attention", "embed_q", "embed_k", "embed_v",
    "fusion",
)
REPORT_NAME = "conversion_report.json"
_MAX_LISTED = 50

_IR50_OUTPUT_LAYER_REASON = (
    "IR-50 face-recognition embedding head (BatchNorm2d, Linear 512*7*7->512, BatchNorm1d); POSTER++ and GReFEL use "
    "only the stage-1..3 feature maps"
)
_IR50_STAGE4_REASON = "IR-50 stage 4 (512 channels); POSTER++ and GReFEL stop after stage 3"
_HEAD_REASON = (
    "POSTER++ has no class anchors, reliability balancing or primary MLP head; the GReFEL head is freshly initialised "
    "and must be trained (fine-tune the converted model on your dataset)"
)


class ConversionError(ValueError):
    """A weight file that cannot be converted; the message names the file and the keys at fault.

    `missing`, `unexpected` and `mismatched` hold the offending source key names (official names where known).
    """

    def __init__(self, message: str, missing=(), unexpected=(), mismatched=()):
        super().__init__(message)
        self.missing, self.unexpected, self.mismatched = list(missing), list(unexpected), list(mismatched)


@dataclass
class MappedWeights:
    """One source file's tensors under GReFEL names, with what was dropped and why."""

    source: str
    path: str
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # GReFEL key -> tensor
    origin: dict[str, str] = field(default_factory=dict)  # GReFEL key -> official key
    dropped: dict[str, list[str]] = field(default_factory=dict)  # reason -> official keys
    unknown: list[str] = field(default_factory=list)  # official keys no table knows
    layout: str = ""
    module_prefix_stripped: bool = False
    ignored_entries: list[str] = field(default_factory=list)  # non-weight entries of the checkpoint dict
    renames: list[tuple[str, str]] = field(default_factory=list)  # the table used, to name missing keys

    def official_name(self, key: str) -> str | None:
        """The name the file should have used for GReFEL key `key` (the rename table read backwards)."""
        return _rename(key, [(target, source) for source, target in self.renames])

    def drop(self, key: str, reason: str) -> None:
        self.dropped.setdefault(reason, []).append(key)


# ----------------------------------------------------------------------------------------------- reading files
def read_checkpoint(path: str | Path, source: str) -> tuple[dict[str, torch.Tensor], bool, list[str]]:
    """Read a checkpoint with `weights_only=True`; return (state dict without `module.`, prefix stripped?, extras).

    Accepts a plain state dict or a dict holding one under 'state_dict' (the other entries, such as 'epoch' or
    'optimizer', are returned by name so the report can list them).
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"--{source} {path}: no such file; pass the path of the downloaded checkpoint.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch names the classes a weights-only load refused; anything else means the bytes are not a checkpoint.
        found = re.findall(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if not found:
            detail = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(exc))
            raise ConversionError(
                f"--{source} {path} is not a readable PyTorch checkpoint "
                f"({detail.group(1) if detail else str(exc).splitlines()[0]}); "
                "pass the .pth/.pth.tar file saved with torch.save."
            ) from None
        raise ConversionError(
            f"--{source} {path} holds pickled Python objects (it needs {', '.join(found)}), and this converter "
            "only reads tensors (torch.load(weights_only=True)) so that no code from the file runs; in an "
            "environment you trust, "
            "re-save its weights alone with `torch.save(torch.load(path, weights_only=False)['state_dict'], "
            "'weights.pth')` and convert that file."
        ) from None
    except Exception as exc:  # torch raises KeyError/RuntimeError/EOFError on files that are not checkpoints
        raise ConversionError(
            f"--{source} {path} is not a readable PyTorch checkpoint ({exc!r}); pass the .pth/.pth.tar file saved "
            "with torch.save."
        ) from None

    extras: list[str] = []
    if isinstance(obj, Mapping) and "state_dict" in obj:
        extras = sorted(str(k) for k in obj if k != "state_dict")
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConversionError(
            f"--{source} {path}: expected a state dict (names -> tensors) or a dict with one under 'state_dict', "
            f"got {type(obj).__name__}; pass the checkpoint saved by the official code."
        )
    keys = list(obj)
    # DataParallel checkpoints prefix every key with `module.`; a file with and without it mixes two models.
    prefixed = [k for k in keys if k.startswith("module.")]
    if prefixed and len(prefixed) != len(keys):
        plain = [k for k in keys if not k.startswith("module.")]
        raise ConversionError(
            f"--{source} {path}: {len(prefixed)} keys carry the DataParallel 'module.' prefix and {len(plain)} do "
            f"not (for example {plain[:3]}); expected all or none, so the file is not one model's state dict."
        )
    stripped = bool(prefixed)
    state = {(k[len("module."):] if stripped else k): v for k, v in obj.items()}
    return state, stripped, extras


def _rename(key: str, table: list[tuple[str, str]]) -> str | None:
    """Apply the first matching rule: a source ending in '.' renames a prefix, any other renames one exact key."""
    for source, target in table:
        if source.endswith(".") and key.startswith(source):
            return target + key[len(source):]
        if key == source:
            return target
    return None


def _match(key: str, table: list[tuple[str, str]]) -> str | None:
    for source, reason in table:
        if (source.endswith(".") and key.startswith(source)) or key == source:
            return reason
    return None


def _apply_tables(
    weights: MappedWeights, state: dict[str, torch.Tensor], renames: list[tuple[str, str]],
    drops: list[tuple[str, str]],
) -> MappedWeights:
    weights.renames = renames
    for key, value in state.items():
        reason = _match(key, drops)
        if reason is not None:
            weights.drop(key, reason)
            continue
        target = _rename(key, renames)
        if target is None:
            weights.unknown.append(key)
            continue
        weights.tensors[target] = value
        weights.origin[target] = key
    return weights


# ----------------------------------------------------------------------------------------------- rename tables
def _check_paper_trunk(config: GReFELConfig) -> None:
    if tuple(config.ir_stage_units) != IR50_STAGE_UNITS[:3] or not config.use_landmark_backbone:
        raise ConversionError(
            f"weight conversion needs the paper-size trunk (IR-50 stages {IR50_STAGE_UNITS[:3]} and MobileFaceNet), "
            f"got ir_stage_units={tuple(config.ir_stage_units)}, use_landmark_backbone={config.use_landmark_backbone};"
            " use GReFELConfig.paper()."
        )


def ir50_tables(layout: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(renames, drops) for an IR-50 file; `layout` is 'evolve' (body.N) or 'poster' (body1/body2/body3).

    Targets are GReFEL names under `grefel.ir_back.`.
    """
    prefix = "grefel.ir_back."
    renames = [("input_layer.", prefix + "input_layer.")]
    drops = [("output_layer.", _IR50_OUTPUT_LAYER_REASON)]
    if layout == "evolve":
        unit = 0
        for stage, units in enumerate(IR50_STAGE_UNITS):
            for j in range(units):
                if stage < 3:
                    renames.append((f"body.{unit}.", f"{prefix}body{stage + 1}.{j}."))
                else:
                    drops.append((f"body.{unit}.", _IR50_STAGE4_REASON))
                unit += 1
    elif layout == "poster":
        renames += [(f"body{s}.", f"{prefix}body{s}.") for s in (1, 2, 3)]
    else:
        raise ValueError(f"layout must be 'evolve' or 'poster', got {layout!r}.")
    return renames, drops


def mobilefacenet_tables() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(renames, drops) for MobileFaceNet: the official module names are kept, under `grefel.face_landback.`.

    The GDC head (`output_layer`: conv_6_dw.conv/bn, linear, bn; its conv_6_flatten has no parameters) is kept too,
    unused by GReFEL, so the file loads strictly.
    """
    return [(f"{name}.", f"grefel.face_landback.{name}.") for name in MOBILEFACENET_MODULES], []


def poster_tables(config: GReFELConfig) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(renames, drops) for a whole POSTER++ `pyramid_trans_expr2` state dict (after removing `module.`)."""
    renames = [(f"face_landback.{name}.", f"grefel.face_landback.{name}.") for name in MOBILEFACENET_MODULES]
    renames += [("ir_back.input_layer.", "grefel.ir_back.input_layer.")]
    renames += [(f"ir_back.body{s}.", f"grefel.ir_back.body{s}.") for s in (1, 2, 3)]
    renames.append(("last_face_conv.", "grefel.last_face_conv."))
    for scale in range(3):
        i, block = scale + 1, f"grefel.cross_attention.{scale}."
        renames += [
            (f"conv{i}.", f"grefel.downsample.{scale}."),
            (f"window{i}.norm.", block + "norm_image."),
            (f"attn{i}.qkv.", block + "attention.kv."),  # POSTER++'s "qkv" holds keys and values only (2*dim)
            (f"attn{i}.proj.", block + "attention.proj."),
            (f"attn{i}.relative_position_bias_table", block + "attention.relative_position_bias_table"),
            (f"ffn{i}.gamma1", block + "gamma1"),
            (f"ffn{i}.gamma2", block + "gamma2"),
            (f"ffn{i}.norm.", block + "norm_mlp."),
            (f"ffn{i}.mlp.fc1.", block + "mlp.fc1."),
            (f"ffn{i}.mlp.fc2.", block + "mlp.fc2."),
        ]
    renames += [
        ("embed_q.0.", "grefel.embed_q.0."),
        ("embed_q.1.", "grefel.embed_q.1."),
        ("embed_k.0.", "grefel.embed_k."),
        ("embed_v.proj.", "grefel.embed_v."),  # a 1x1-conv PatchEmbed whose norm is Identity
        ("VIT.cls_token", "grefel.fusion.cls_token"),
        ("VIT.pos_embed", "grefel.fusion.pos_embed"),
        ("VIT.norm.", "grefel.fusion.norm."),
        ("VIT.se_block.linear1.", "grefel.fusion.se_block.linear1."),
        ("VIT.se_block.linear2.", "grefel.fusion.se_block.linear2."),
    ]
    for n in range(config.fusion_depth):
        for part in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"):
            renames.append((f"VIT.blocks.{n}.{part}.", f"grefel.fusion.blocks.{n}.{part}."))

    unused = "built by POSTER++ but never used in its forward pass"
    drops = [
        ("ir_back.output_layer.", _IR50_OUTPUT_LAYER_REASON),
        ("VIT.head.", "POSTER++ linear classifier; GReFEL classifies with its own anchor head (freshly initialised)"),
        ("VIT.patch_embed.", f"{unused} (tokens come from embed_q/embed_k/embed_v)"),
        ("VIT.CON1.", unused),
        ("VIT.IRLinear1.", unused),
        ("VIT.IRLinear2.", unused),
        ("VIT.eca_block.", unused),
        ("VIT.dist_token", "DeiT distillation token, off in POSTER++ (distilled=False)"),
        ("VIT.head_dist.", "DeiT distillation head, off in POSTER++ (distilled=False)"),
    ]
    drops += [(f"VIT.blocks.{n}.conv.", f"{unused} (Conv1d over tokens in Block)") for n in range(config.fusion_depth)]
    return renames, drops


# ----------------------------------------------------------------------------------------------- per-file mapping
def map_ir50(state: dict[str, torch.Tensor], path: str = "<ir50>") -> MappedWeights:
    """Map an IR-50 state dict in either circulating layout onto `grefel.ir_back.*`."""
    evolve = any(k.startswith("body.") for k in state)
    poster = any(re.match(r"body[123]\.", k) for k in state)
    if evolve == poster:
        found = "both" if evolve else "neither"
        raise ConversionError(
            f"--ir50 {path}: expected IR-50 units named body.N (face.evoLVe) or body1/body2/body3.N (POSTER++), "
            f"found {found}; pass the MS-Celeb-1M IR-50 checkpoint (ir50.pth)."
        )
    layout = "evolve" if evolve else "poster"
    weights = MappedWeights("ir50", path, layout="face.evoLVe body.N" if evolve else "POSTER++ body1/body2/body3")
    return _apply_tables(weights, state, *ir50_tables(layout))


def map_mobilefacenet(state: dict[str, torch.Tensor], path: str = "<mobilefacenet>") -> MappedWeights:
    """Map a MobileFaceNet (GDC, 136 landmark outputs) state dict onto `grefel.face_landback.*`."""
    weights = MappedWeights("mobilefacenet", path, layout="MobileFaceNet (GDC head)")
    return _apply_tables(weights, state, *mobilefacenet_tables())


def map_poster(state: dict[str, torch.Tensor], config: GReFELConfig, path: str = "<poster_checkpoint>") -> MappedWeights:
    """Map a whole POSTER++ state dict onto the GReFEL trunk.

    The window attention's `relative_position_index` buffers are recomputed by GReFEL, so each is checked against
    `relative_position_index(window)` and dropped; a different one means the checkpoint used other window sizes.
    """
    weights = MappedWeights("poster_checkpoint", path, layout="POSTER++ pyramid_trans_expr2")
    rest = {}
    for key, value in state.items():
        match = re.fullmatch(r"attn([123])\.relative_position_index", key)
        if match is None:
            rest[key] = value
            continue
        window = config.window_sizes[int(match.group(1)) - 1]
        expected = relative_position_index(window)
        if tuple(value.shape) != tuple(expected.shape) or not torch.equal(value.long(), expected):
            raise ConversionError(
                f"--poster_checkpoint {path}: {key} does not match a {window}x{window} window "
                f"(shape {tuple(value.shape)}, expected {tuple(expected.shape)}); the checkpoint was trained with "
                f"other window sizes than {config.window_sizes}, which this converter does not support.",
                mismatched=[key],
            )
        weights.drop(key, "computed buffer of the window attention, checked equal to GReFEL's own and recomputed")
    return _apply_tables(weights, rest, *poster_tables(config))


# ----------------------------------------------------------------------------------------------- loading
def _listed(title: str, items: list[str]) -> str:
    shown = "\n".join(f"  {item}" for item in items[:_MAX_LISTED])
    more = f"\n  ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
    return f"\n{title} ({len(items)}):\n{shown}{more}"


def check_mapped(model: GReFELForImageClassification, weights: MappedWeights, components: tuple[str, ...]) -> list[str]:
    """Check `weights` against `components` of `model.grefel` without loading; return the keys to fill with 0.

    Raises `ConversionError` listing every missing, unexpected (unknown to the tables, or renamed to a name the
    model lacks) and mis-shaped key. A missing BatchNorm `num_batches_tracked` counter (files saved before
    PyTorch 0.4.1) is not an error: the counter does not affect the network, so it is filled with 0 and reported.
    """
    expected = {
        f"grefel.{c}.{k}": v for c in components for k, v in model.grefel.get_submodule(c).state_dict().items()
    }
    unexpected = list(weights.unknown) + [weights.origin[k] for k in weights.tensors if k not in expected]
    mismatched = [
        f"{weights.origin[k]}: file {tuple(v.shape)}, model {k} {tuple(expected[k].shape)}"
        for k, v in weights.tensors.items()
        if k in expected and v.shape != expected[k].shape
    ]
    absent = [k for k in expected if k not in weights.tensors]
    filled = [k for k in absent if k.endswith(".num_batches_tracked")]
    missing = [k for k in absent if k not in filled]
    if missing or unexpected or mismatched:
        message = (
            f"--{weights.source} {weights.path} ({weights.layout}) does not fit GReFEL's {', '.join(components)}: "
            "pass the right file for this option."
        )
        named = [f"{k} (file key {weights.official_name(k)})" if weights.official_name(k) else k for k in missing]
        message += _listed("missing", named) if missing else ""
        message += _listed("unexpected", unexpected) if unexpected else ""
        message += _listed("wrong shape", mismatched) if mismatched else ""
        raise ConversionError(message, missing=missing, unexpected=unexpected, mismatched=mismatched)
    return filled


def load_mapped(model: GReFELForImageClassification, weights: MappedWeights, components: tuple[str, ...]) -> dict:
    """`check_mapped`, then load each of `components` of `model.grefel` with `strict=True`; return the counts."""
    filled = check_mapped(model, weights, components)
    counts = {}
    for component in components:
        head = f"grefel.{component}."
        state = {k[len(head):]: v for k, v in weights.tensors.items() if k.startswith(head)}
        state.update({k[len(head):]: torch.tensor(0, dtype=torch.long) for k in filled if k.startswith(head)})
        model.grefel.get_submodule(component).load_state_dict(state, strict=True)
        counts[component] = {
            "source": weights.source,
            "tensors": len(state),
            "elements": int(sum(v.numel() for v in state.values())),
        }
    return {"components": counts, "filled_num_batches_tracked": filled}


def _source_report(weights: MappedWeights) -> dict:
    return {
        "path": weights.path,
        "layout": weights.layout,
        "module_prefix_stripped": weights.module_prefix_stripped,
        "ignored_entries": weights.ignored_entries,
        "renamed_tensors": len(weights.tensors),
        "dropped": [{"reason": r, "count": len(keys), "keys": keys} for r, keys in weights.dropped.items()],
    }


def build_converted_model(
    *,
    ir50: str | Path | None = None,
    mobilefacenet: str | Path | None = None,
    poster_checkpoint: str | Path | None = None,
    num_labels: int = 7,
    seed: int = 0,
) -> tuple[GReFELForImageClassification, dict]:
    """A paper-size `GReFELForImageClassification` with the given official weights loaded, and the report.

    A POSTER++ checkpoint fills the whole trunk; `ir50` / `mobilefacenet`, when also given, then replace its IR-50
    / landmark backbone. Without one, both `ir50` and `mobilefacenet` are required. Every file is read and checked
    before anything is loaded. The GReFEL head (and, without a POSTER++ checkpoint, the trunk between the
    backbones and the embedding) keep their fresh initialisation, seeded by `seed`.
    """
    if num_labels not in (7, 8):
        raise ConversionError(f"--num_labels must be 7 or 8 (the canonical expression sets), got {num_labels}.")
    if poster_checkpoint is None and (ir50 is None or mobilefacenet is None):
        raise ConversionError(
            "pass --poster_checkpoint (a whole POSTER++ checkpoint), or both --ir50 and --mobilefacenet; "
            f"got ir50={ir50}, mobilefacenet={mobilefacenet}."
        )
    config = GReFELConfig.paper(num_labels=num_labels)
    _check_paper_trunk(config)

    plan: list[tuple[MappedWeights, tuple[str, ...]]] = []
    if poster_checkpoint is not None:
        state, stripped, extras = read_checkpoint(poster_checkpoint, "poster_checkpoint")
        weights = map_poster(state, config, str(poster_checkpoint))
        weights.module_prefix_stripped, weights.ignored_entries = stripped, extras
        plan.append((weights, TRUNK_COMPONENTS))
    for path, source, mapper, component in (
        (ir50, "ir50", map_ir50, "ir_back"),
        (mobilefacenet, "mobilefacenet", map_mobilefacenet, "face_landback"),
    ):
        if path is None:
            continue
        state, stripped, extras = read_checkpoint(path, source)
        weights = mapper(state, str(path))
        weights.module_prefix_stripped, weights.ignored_entries = stripped, extras
        if plan:  # the POSTER++ checkpoint's copy of this backbone is replaced by the separate file
            poster = plan[0][0]
            replaced = [k for k in poster.tensors if k.startswith(f"grefel.{component}.")]
            for key in replaced:
                poster.drop(poster.origin.pop(key), f"replaced by --{source} {path}")
                del poster.tensors[key]
            plan[0] = (poster, tuple(c for c in plan[0][1] if c != component))
        plan.append((weights, (component,)))

    torch.manual_seed(seed)
    model = GReFELForImageClassification(config).eval()
    # Check every file before loading any, so a bad second file leaves no half-converted model behind.
    for weights, parts in plan:
        check_mapped(model, weights, parts)
    components: dict = {}
    filled: list[str] = []
    for weights, parts in plan:
        result = load_mapped(model, weights, parts)
        components.update(result["components"])
        filled += result["filled_num_batches_tracked"]

    fresh = {"grefel_head": _HEAD_REASON}
    for component in TRUNK_COMPONENTS:
        if component not in components:
            fresh[f"grefel.{component}"] = "only a POSTER++ checkpoint holds it: freshly initialised, train it"
    report = {
        "model": "GReFELForImageClassification",
        "config": "GReFELConfig.paper",
        "num_labels": num_labels,
        "labels": [config.id2label[i] for i in range(num_labels)],
        "seed": seed,
        "sources": {w.source: _source_report(w) for w, _ in plan},
        "components": components,
        "loaded_tensors": sum(c["tensors"] for c in components.values()),
        "filled_num_batches_tracked": filled,
        "freshly_initialised": fresh,
    }
    return model, report


def convert_weights(
    *,
    output_dir: str | Path,
    ir50: str | Path | None = None,
    mobilefacenet: str | Path | None = None,
    poster_checkpoint: str | Path | None = None,
    num_labels: int = 7,
    seed: int = 0,
) -> dict:
    """Convert the official files and write a model folder loadable with `trust_remote_code=True`.

    Writes `save_pretrained` of the model, a `GReFELImageProcessor` at 224x224 and `conversion_report.json`
    into `output_dir`; returns the report.
    """
    model, report = build_converted_model(
        ir50=ir50, mobilefacenet=mobilefacenet, poster_checkpoint=poster_checkpoint, num_labels=num_labels, seed=seed
    )
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    GReFELImageProcessor.from_config(model.config).save_pretrained(output_dir)
    report["output_dir"] = str(output_dir)
    (output_dir / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n")
    return report


def summarize(report: dict) -> str:
    """A few lines for the terminal: what was loaded from where, what was dropped, what is fresh."""
    lines = [f"Converted into {report.get('output_dir', '(not saved)')} ({report['num_labels']} labels):"]
    for name, counts in report["components"].items():
        lines.append(f"  {name:<16} {counts['tensors']:>4} tensors  from --{counts['source']}")
    for source, info in report["sources"].items():
        for group in info["dropped"]:
            lines.append(f"  dropped {group['count']:>4} keys of --{source}: {group['reason']}")
    for name, reason in report["freshly_initialised"].items():
        lines.append(f"  fresh   {name}: {reason}")
    return "\n".join(lines)


__all__ = [
    "ConversionError",
    "MappedWeights",
    "IR50_STAGE_UNITS",
    "MOBILEFACENET_MODULES",
    "TRUNK_COMPONENTS",
    "REPORT_NAME",
    "read_checkpoint",
    "check_mapped",
    "ir50_tables",
    "mobilefacenet_tables",
    "poster_tables",
    "map_ir50",
    "map_mobilefacenet",
    "map_poster",
    "load_mapped",
    "build_converted_model",
    "convert_weights",
    "summarize",
]
