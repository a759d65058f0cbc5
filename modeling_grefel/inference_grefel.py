"""Inference paths of GReFEL (`GReFELForImageClassification.optimize_for_inference`): native-bf16 detection, the
dynamically quantised int8 linear layers, the calibration batch `auto` compares paths on, and the timing helper."""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_grefel import GReFELConfig

INFERENCE_PATHS = ("auto", "eager", "bf16", "int8", "compile")
# `auto` takes a faster path only when its predictions agree this often with eager fp32 on the calibration batch.
MIN_TOP1_AGREEMENT = 0.99


def has_native_bf16(device: str | torch.device = "cpu") -> bool:
    """Whether `device` multiplies bf16 in hardware: a CUDA GPU that supports it, or a CPU with AVX512-BF16 or AMX.

    Elsewhere PyTorch emulates bf16 on the CPU (a matrix product ran ~300x slower than fp32 on an AVX2-only EPYC,
    issue 11), so bf16 is never chosen there.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type != "cpu":
        return False
    flags = cpu_flags()  # not Linux (None): no cheap way to tell, so no bf16
    return flags is not None and ("avx512_bf16" in flags or "amx_bf16" in flags)


def cpu_flags() -> list[str] | None:
    """The CPU feature flags of /proc/cpuinfo (empty where it has no `flags` line, e.g. ARM); None off Linux."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    except OSError:
        return None


def calibration_pixel_values(config: GReFELConfig, batch: int = 8, seed: int = 0) -> torch.Tensor:
    """A fixed batch of smooth random images (8x8 colour fields, upsampled), in the processor's value range."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, config.num_channels, 8, 8, generator=generator) * 4 - 2  # (B, C, 8, 8) in [-2, 2)
    size = (config.image_size, config.image_size)
    return F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)  # (B, C, S, S)


class GReFELInt8Linear(nn.Linear):
    """An `nn.Linear` that, where no gradient is needed, multiplies with a dynamically quantised int8 twin.

    The fp32 weight and bias stay its parameters (same state-dict keys, so saving and Grad-CAM work as before); under
    autograd or in training it is a plain Linear. The twin is packed once, so it does not follow later weight changes.
    """

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> GReFELInt8Linear:
        import warnings

        new = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
        new.weight, new.bias = linear.weight, linear.bias
        with warnings.catch_warnings():
            # torch.ao.quantization is deprecated in favour of torchao, which is no dependency of this folder.
            warnings.simplefilter("ignore")
            twin = torch.ao.quantization.quantize_dynamic(nn.Sequential(linear), {nn.Linear}, dtype=torch.qint8)[0]
        new.__dict__["int8"] = twin  # not a submodule: neither in the state dict nor moved by `.to()`
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or torch.is_grad_enabled():
            return super().forward(x)
        return self.int8(x)


def _swap_modules(module: nn.Module, replacements: dict[str, nn.Module]) -> dict[str, nn.Module]:
    """Put each `replacements[name]` at `name` inside `module`; return the modules it replaced, by the same names."""
    replaced = {}
    for name, new in replacements.items():
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name)
        replaced[name] = getattr(parent, child)
        setattr(parent, child, new)
    return replaced


def _int8_linear_layers(module: nn.Module) -> dict[str, GReFELInt8Linear]:
    """An int8 twin of every `nn.Linear` in `module`, by name."""
    return {name: GReFELInt8Linear.from_linear(linear) for name, linear in module.named_modules()
            if type(linear) is nn.Linear}


@torch.no_grad()
def _time_forward(model: nn.Module, pixel_values: torch.Tensor, repeats: int = 1) -> tuple[float, torch.Tensor]:
    """Best of `repeats` timed forwards after a warm-up call (seconds), and the top-1 predictions."""
    top1 = model(pixel_values).logits.argmax(-1).cpu()
    best = math.inf
    for _ in range(repeats):
        if pixel_values.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        model(pixel_values)
        if pixel_values.device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, top1
