"""GReFEL's eager forward as it was before the lean one (issue 11), kept as the yardstick for parity and speed.

The official POSTER++ code is not available offline here, so the benchmark's speed ratios are taken against this
forward, and the parity tests check that the lean forward computes the same numbers. What differs: explicit
softmax attention (the (B, h, N, N) probabilities materialised, in window cross-attention and in the fusion ViT),
the relative-position index rebuilt on every call, every token through the last fusion block (the classifier
reads the class token alone), the IR unit's 1x1 max-pool shortcut run as a pooling kernel, and
the backbones fed channels-first maps on the CPU, with channels-first kernels (a model takes them when it is built, or
put in train or eval mode, inside the block).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from modeling_grefel.attention_grefel import (
    GReFELFusionViT,
    GReFELSelfAttention,
    GReFELWindowCrossAttention,
    relative_position_index,
)
from modeling_grefel.backbones_grefel import GReFELIRUnit
from modeling_grefel.modeling_grefel import GReFELModel


def window_attention(self, image, query, need_weights=False):
    bw, n, c = image.shape
    heads = self.num_heads
    k, v = self.kv(image).view(bw, n, 2, heads, c // heads).permute(2, 0, 3, 1, 4)  # 2 x (B_w, h, N, C/h)
    q = query.view(bw, n, heads, c // heads).transpose(1, 2) * self.scale  # (B_w, h, N, C/h)
    index = relative_position_index(self.window, device=image.device)
    bias = self.relative_position_bias_table[index.reshape(-1)].view(n, n, heads).permute(2, 0, 1)
    attn = (q @ k.transpose(-2, -1) + bias).softmax(dim=-1)  # (B_w, h, N, N)
    return self.proj((attn @ v).transpose(1, 2).reshape(bw, n, c)), attn


def self_attention(self, x, need_weights=False, num_queries=None):  # every query: num_queries stays None
    b, n, c = x.shape
    q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)  # (B, h, N, C/h)
    attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)  # (B, h, N, N)
    return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c)), attn


_lean_fusion_vit = GReFELFusionViT.forward


def fusion_vit(self, tokens, hidden_states, attentions, all_tokens=True):
    return _lean_fusion_vit(self, tokens, hidden_states, attentions, all_tokens=True)


def ir_unit(self, x):
    return self.res_layer(x) + self.shortcut_layer(x)


def backbone_layout(x):
    return x


def channels_first_kernels(self):
    if any(not p.is_contiguous() for p in self.parameters() if p.ndim == 4):
        self.to(memory_format=torch.contiguous_format)


# (class, method name) -> the previous implementation
PREVIOUS_METHODS = {
    (GReFELWindowCrossAttention, "forward"): window_attention,
    (GReFELSelfAttention, "forward"): self_attention,
    (GReFELFusionViT, "forward"): fusion_vit,
    (GReFELIRUnit, "forward"): ir_unit,
    (GReFELModel, "backbone_layout"): staticmethod(backbone_layout),
    (GReFELModel, "use_channels_last_kernels"): channels_first_kernels,
}


@contextlib.contextmanager
def previous_eager_forward() -> Iterator[None]:
    """Inside the block every GReFEL model runs the previous eager forward; the lean one is restored after."""
    saved = {(cls, name): cls.__dict__[name] for cls, name in PREVIOUS_METHODS}
    try:
        for (cls, name), method in PREVIOUS_METHODS.items():
            setattr(cls, name, method)
        yield
    finally:
        for (cls, name), method in saved.items():
            setattr(cls, name, method)


__all__ = ["PREVIOUS_METHODS", "previous_eager_forward"]
