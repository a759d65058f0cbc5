"""State dicts laid out exactly like the official weight files, built from a GReFEL model's state dict.

The name mapping here is written out independently of `emotionnet.convert` (from the official code:
Talented-Q/POSTER_V2 models/ir50.py, mobilefacenet.py, PosterV2_7cls.py, vit_model.py, and face.evoLVe's IR-50 with
stages of 3, 4, 14, 3 units), so a wrong table in the converter cannot be mirrored by the same mistake here.
The official modules GReFEL lacks are added with their official shapes.
"""

from __future__ import annotations

import re

import torch
from torch import nn

# Unit index of the first unit of each face.evoLVe IR-50 stage (stages of 3, 4, 14, 3 units).
EVOLVE_STAGE_START = {1: 0, 2: 3, 3: 7, 4: 21}
# Official key counts, counted from the official modules (tensors incl. BatchNorm buffers):
# input_layer 7; 24 units x 13 (BN 5, conv, PReLU, conv, BN 5); 3 projection shortcuts x 6; output_layer 12.
EVOLVE_IR50_KEYS = 7 + 24 * 13 + 3 * 6 + 12


def randomised(state: dict[str, torch.Tensor], seed: int = 0) -> dict[str, torch.Tensor]:
    """Same names, shapes and dtypes, distinct random values (so a swapped tensor cannot go unnoticed)."""
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in state.items():
        if value.is_floating_point():
            out[key] = torch.randn(value.shape, generator=generator, dtype=value.dtype)
        else:
            out[key] = torch.randint(0, 1000, value.shape, generator=generator, dtype=value.dtype)
    return out


def _state_of(module: nn.Module, prefix: str, seed: int) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in randomised(module.state_dict(), seed).items()}


def _ir_unit(in_c: int, out_c: int, stride: int) -> nn.Module:
    """An official bottleneck_IR unit (models/ir50.py): same names as GReFEL's unit, built here for stage 4."""
    unit = nn.Module()
    if in_c != out_c:
        unit.shortcut_layer = nn.Sequential(nn.Conv2d(in_c, out_c, 1, stride, bias=False), nn.BatchNorm2d(out_c))
    unit.res_layer = nn.Sequential(
        nn.BatchNorm2d(in_c), nn.Conv2d(in_c, out_c, 3, 1, 1, bias=False), nn.PReLU(out_c),
        nn.Conv2d(out_c, out_c, 3, stride, 1, bias=False), nn.BatchNorm2d(out_c),
    )
    return unit


def _ir_output_layer() -> nn.Module:
    """Official IR-50 output_layer: BatchNorm2d(512), Dropout, Flatten, Linear(512*7*7, 512), BatchNorm1d(512)."""
    return nn.Sequential(nn.BatchNorm2d(512), nn.Dropout(), nn.Flatten(), nn.Linear(512 * 7 * 7, 512), nn.BatchNorm1d(512))


def _select(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def official_ir50(grefel_state: dict[str, torch.Tensor], layout: str, seed: int = 1) -> dict[str, torch.Tensor]:
    """An `ir50.pth` state dict: layout 'evolve' (body.0..23, all four stages) or 'poster' (body1/body2/body3)."""
    ours = _select(grefel_state, "grefel.ir_back.")
    out: dict[str, torch.Tensor] = {}
    for key, value in ours.items():
        match = re.match(r"body([123])\.(\d+)\.(.*)", key)
        if layout == "evolve" and match:
            stage, unit, rest = int(match.group(1)), int(match.group(2)), match.group(3)
            out[f"body.{EVOLVE_STAGE_START[stage] + unit}.{rest}"] = value
        else:
            out[key] = value
    if layout == "evolve":
        for i, (in_c, stride) in enumerate([(256, 2), (512, 1), (512, 1)]):
            out.update(_state_of(_ir_unit(in_c, 512, stride), f"body.{EVOLVE_STAGE_START[4] + i}.", seed + i))
    out.update(_state_of(_ir_output_layer(), "output_layer.", seed + 10))
    return out


def official_mobilefacenet(grefel_state: dict[str, torch.Tensor], module_prefix: bool = False) -> dict:
    """A `mobilefacenet_model_best.pth.tar` checkpoint: {'state_dict', 'epoch'}; DataParallel prefix optional."""
    state = _select(grefel_state, "grefel.face_landback.")
    if module_prefix:
        state = {"module." + k: v for k, v in state.items()}
    return {"epoch": 30, "state_dict": state}


def official_relative_position_index(window: int) -> torch.Tensor:
    """Swin's index of the relative offset (dy, dx) of two window cells into the ((2w-1)^2)-row bias table."""
    cell = torch.arange(window * window)
    y, x = cell // window, cell % window
    dy = y[:, None] - y[None, :] + window - 1
    dx = x[:, None] - x[None, :] + window - 1
    return dy * (2 * window - 1) + dx


_POSTER_RENAMES = [  # (GReFEL pattern, official replacement), applied with re.sub to the first that matches
    (r"^grefel\.(face_landback|ir_back|last_face_conv)\.", r"\1."),
    (r"^grefel\.embed_q\.", "embed_q."),
    (r"^grefel\.embed_k\.", "embed_k.0."),
    (r"^grefel\.embed_v\.", "embed_v.proj."),
    (r"^grefel\.fusion\.", "VIT."),
]


def _poster_name(key: str) -> str:
    match = re.match(r"grefel\.downsample\.(\d)\.(.*)", key)
    if match:
        return f"conv{int(match.group(1)) + 1}.{match.group(2)}"
    match = re.match(r"grefel\.cross_attention\.(\d)\.(.*)", key)
    if match:
        i, rest = int(match.group(1)) + 1, match.group(2)
        for ours, official in (
            ("norm_image.", f"window{i}.norm."),
            ("attention.kv.", f"attn{i}.qkv."),
            ("attention.proj.", f"attn{i}.proj."),
            ("attention.relative_position_bias_table", f"attn{i}.relative_position_bias_table"),
            ("gamma1", f"ffn{i}.gamma1"),
            ("gamma2", f"ffn{i}.gamma2"),
            ("norm_mlp.", f"ffn{i}.norm."),
            ("mlp.", f"ffn{i}.mlp."),
        ):
            if rest.startswith(ours):
                return official + rest[len(ours):]
        raise KeyError(key)
    for pattern, replacement in _POSTER_RENAMES:
        if re.match(pattern, key):
            return re.sub(pattern, replacement, key)
    raise KeyError(key)


def official_poster_state_dict(
    grefel_state: dict[str, torch.Tensor], num_classes: int = 7, windows=(28, 14, 7), fusion_depth: int = 2,
    seed: int = 2,
) -> dict[str, torch.Tensor]:
    """`model.state_dict()` of POSTER++'s `pyramid_trans_expr2` (before DataParallel's `module.` prefix)."""
    out = {_poster_name(k): v for k, v in grefel_state.items() if k.startswith("grefel.")}
    for i, window in enumerate(windows, start=1):
        out[f"attn{i}.relative_position_index"] = official_relative_position_index(window)
    extras = {
        "ir_back.output_layer.": _ir_output_layer(),
        "VIT.head.linear.": nn.Linear(768, num_classes),
        "VIT.patch_embed.proj.": nn.Conv2d(256, 768, 1),
        "VIT.CON1.": nn.Conv2d(256, 768, 1, bias=False),
        "VIT.IRLinear1.": nn.Linear(1024, 768),
        "VIT.IRLinear2.": nn.Linear(768, 512),
        # eca_block(channel=128): kernel int(|(log2(128) + 1) / 2|) = 4, made odd -> 5.
        "VIT.eca_block.conv.": nn.Conv1d(1, 1, 5, padding=2, bias=False),
    }
    for n in range(fusion_depth):
        extras[f"VIT.blocks.{n}.conv."] = nn.Conv1d(148, 148, 1)  # in_c=147 tokens + class token
    for j, (prefix, module) in enumerate(extras.items()):
        out.update(_state_of(module, prefix, seed + j))
    return out


def official_poster_checkpoint(grefel_state: dict[str, torch.Tensor], num_classes: int = 7) -> dict:
    """What POSTER++'s main.py saves: a DataParallel state dict plus training state (tensors and plain types)."""
    state = {"module." + k: v for k, v in official_poster_state_dict(grefel_state, num_classes).items()}
    optimizer = {"state": {}, "param_groups": [{"lr": 3.5e-5, "momentum": 0.9, "params": [0, 1, 2]}]}
    return {"epoch": 200, "state_dict": state, "best_acc": torch.tensor(92.21), "optimizer": optimizer}


__all__ = [
    "EVOLVE_IR50_KEYS",
    "randomised",
    "official_ir50",
    "official_mobilefacenet",
    "official_relative_position_index",
    "official_poster_state_dict",
    "official_poster_checkpoint",
]
