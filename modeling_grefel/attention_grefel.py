"""Window-based cross-attention between landmark and image features at three scales, and the fusion ViT.

Layouts (window cross-attention with a relative-position bias, token embedding, fusion blocks with an SE gate) follow
the official POSTER++ code (Talented-Q/POSTER_V2, models/PosterV2_7cls.py); the head and loss are in
`modeling_grefel.py` and `loss_grefel.py`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_grefel import GReFELConfig


# ----------------------------------------------------------------------------------------------- small layers
def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop the residual branch of whole samples, rescaling the kept ones."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class GReFELDropPath(nn.Module):
    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.rate, self.training)


class GReFELMlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


# ----------------------------------------------------------------------------------------------- cross-attention
def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * H/w * W/w, w*w, C)."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def window_reverse(windows: torch.Tensor, window: int, height: int, width: int) -> torch.Tensor:
    """(B * H/w * W/w, w*w, C) -> (B, H, W, C); the inverse of `window_partition`."""
    c = windows.shape[-1]
    x = windows.view(-1, height // window, width // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, height, width, c)


def relative_position_index(window: int, device=None) -> torch.Tensor:
    """(w*w, w*w) index into a ((2w-1)^2)-row bias table, as in Swin/GCViT window attention."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)  # (N, N, 2), each in [0, 2w-2]
    return (rel[..., 0] * (2 * window - 1) + rel[..., 1]).to(device)


class GReFELWindowCrossAttention(nn.Module):
    """Landmark queries attend to image keys/values inside each window, with a learned relative-position bias."""

    def __init__(self, dim: int, num_heads: int, window: int):
        super().__init__()
        self.num_heads, self.window = num_heads, window
        self.scale = (dim // num_heads) ** -0.5
        self.kv = nn.Linear(dim, 2 * dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        self.proj = nn.Linear(dim, dim)
        # Non-persistent, so the state-dict keys (and the official-weight conversion) are unchanged. transformers 5
        # builds the model on the meta device in `from_pretrained` and leaves non-persistent buffers empty for
        # `_init_weights` to fill, which recomputes it there (as its Swin does, models/swin/modeling_swin.py).
        self.relative_position_index = nn.Buffer(relative_position_index(window).reshape(-1), persistent=False)

    def relative_position_bias(self, n: int) -> torch.Tensor:
        """(1, heads, N, N) additive bias gathered from the table.

        Gathered along the transposed table with `index_select`, which writes the (heads, N*N) result contiguously:
        at the 28x28 window (N = 784) this took 0.8 ms where advanced indexing and a permute took 5.6 ms. A 4-D
        contiguous mask is also what lets `scaled_dot_product_attention` take its fused CPU kernel; a 3-D or strided
        one sends it to the unfused path (2.6 ms against 5.7 ms at that window; torch 2.13, one thread)."""
        table = self.relative_position_bias_table.t()  # (heads, (2w-1)^2)
        return table.index_select(1, self.relative_position_index).view(1, self.num_heads, n, n)

    def forward(
        self, image: torch.Tensor, query: torch.Tensor, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """image, query: (B_w, N, C) windows; returns the output (B_w, N, C) and, with `need_weights`, the attention
        probabilities (B_w, heads, N, N)."""
        bw, n, c = image.shape
        heads = self.num_heads
        k, v = self.kv(image).view(bw, n, 2, heads, c // heads).permute(2, 0, 3, 1, 4)  # 2 x (B_w, h, N, C/h)
        q = query.view(bw, n, heads, c // heads).transpose(1, 2)  # (B_w, h, N, C/h)
        bias = self.relative_position_bias(n).to(q.dtype)
        # torch.export (the ONNX exporter) records the fused kernel's (B_w, N, h, C/h) output layout, then decomposes
        # it into explicit attention whose output is laid out otherwise, and the reshape below fails; explicit
        # attention is what the exported graph computes either way.
        if need_weights or torch.compiler.is_exporting():
            attn = ((q * self.scale) @ k.transpose(-2, -1) + bias).softmax(dim=-1)  # (B_w, h, N, N)
            out = attn @ v
            attn = attn if need_weights else None
        else:
            # The fused kernel never materialises the (B_w, h, N, N) probabilities.
            attn, out = None, F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(bw, n, c)), attn


class GReFELCrossAttentionBlock(nn.Module):
    """x = LN(image) + DropPath(g1 * attn); x = x + DropPath(g2 * MLP(LN(x))), windows partitioned and reversed."""

    def __init__(self, config: GReFELConfig, scale: int):
        super().__init__()
        dim = config.hidden_sizes[scale]
        self.window = config.window_sizes[scale]
        self.norm_image = nn.LayerNorm(dim)
        self.attention = GReFELWindowCrossAttention(dim, config.num_attention_heads[scale], self.window)
        self.gamma1 = nn.Parameter(torch.full((dim,), config.layer_scale_init_value))
        self.gamma2 = nn.Parameter(torch.full((dim,), config.layer_scale_init_value))
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = GReFELMlp(dim, int(dim * config.mlp_ratio))
        self.drop_path = GReFELDropPath(config.drop_path_rates[scale])

    def forward(self, image: torch.Tensor, query: torch.Tensor | None) -> torch.Tensor:
        """image: (B, C, H, W); query: (B, C, H, W) landmark features, or None for self-attention."""
        b, c, h, w = image.shape
        shortcut = self.norm_image(image.permute(0, 2, 3, 1))  # (B, H, W, C)
        query = shortcut if query is None else query.permute(0, 2, 3, 1)
        out, _ = self.attention(window_partition(shortcut, self.window), window_partition(query, self.window))
        x = shortcut + self.drop_path(self.gamma1 * window_reverse(out, self.window, h, w))
        x = x + self.drop_path(self.gamma2 * self.mlp(self.norm_mlp(x)))
        return x.permute(0, 3, 1, 2)  # (B, C, H, W)


# ----------------------------------------------------------------------------------------------- fusion ViT
class GReFELSelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self, x: torch.Tensor, need_weights: bool = False, num_queries: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (B, N, C); returns (B, Q, C) for the first Q = `num_queries` tokens (all N by default) and, with
        `need_weights`, the attention probabilities (B, h, Q, N)."""
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)  # (B, h, N, C/h)
        if num_queries is not None:
            q, n = q[:, :, :num_queries], num_queries
        if need_weights:
            attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)  # (B, h, N, N)
            out = attn @ v
        else:
            attn, out = None, F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(b, n, c)), attn


class GReFELFusionBlock(nn.Module):
    def __init__(self, config: GReFELConfig, drop_path_rate: float):
        super().__init__()
        dim = config.hidden_size
        self.norm1 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.attn = GReFELSelfAttention(dim, config.fusion_num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.mlp = GReFELMlp(dim, int(dim * config.fusion_mlp_ratio))
        self.drop_path = GReFELDropPath(drop_path_rate)
        scale = config.fusion_layer_scale_init_value
        self.gamma1 = nn.Parameter(torch.full((dim,), float(scale))) if scale is not None else None
        self.gamma2 = nn.Parameter(torch.full((dim,), float(scale))) if scale is not None else None

    def forward(
        self, x: torch.Tensor, need_weights: bool = False, num_queries: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (B, N, D) -> (B, Q, D), the first Q = `num_queries` tokens updated (all N by default): every token
        is a key and value, and each output token depends on no other token's query or MLP."""
        out, attn = self.attn(self.norm1(x), need_weights, num_queries)
        x = x[:, : out.shape[1]] + self.drop_path(out if self.gamma1 is None else self.gamma1 * out)
        out = self.mlp(self.norm2(x))
        return x + self.drop_path(out if self.gamma2 is None else self.gamma2 * out), attn


class GReFELSEGate(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.linear1 = nn.Linear(dim, dim)
        self.linear2 = nn.Linear(dim, dim)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The per-channel factors in (0, 1) that `forward` multiplies x by."""
        return torch.sigmoid(self.linear2(F.relu(self.linear1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class GReFELFusionViT(nn.Module):
    def __init__(self, config: GReFELConfig):
        super().__init__()
        dim = config.hidden_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, config.num_tokens + 1, dim))
        rates = torch.linspace(0, config.fusion_drop_path_rate, config.fusion_depth).tolist()
        self.blocks = nn.ModuleList([GReFELFusionBlock(config, rate) for rate in rates])
        self.norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.se_block = GReFELSEGate(dim)
        self.pooling = config.embedding_pooling

    def forward(self, tokens: torch.Tensor, hidden_states: list | None, attentions: list | None,
                all_tokens: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """tokens: (B, N, D) -> the embedding (B, D) and the normed tokens (B, 1 + N, D).

        With `all_tokens=False` (nothing asked for but the embedding) and class-token pooling, the last block updates
        the class token alone and the tokens come back None: the same embedding without the last block's MLP and
        projections for the other tokens (1.9 of the paper-size forward's 17.2 GFLOP, issue 11).
        """
        x = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1) + self.pos_embed
        if hidden_states is not None:
            hidden_states.append(x)
        cls_only = not all_tokens and self.pooling == "cls" and hidden_states is None and attentions is None
        for i, block in enumerate(self.blocks):
            last = i == len(self.blocks) - 1
            x, attn = block(x, need_weights=attentions is not None, num_queries=1 if cls_only and last else None)
            if hidden_states is not None:
                hidden_states.append(x)
            if attentions is not None:
                attentions.append(attn)
        if self.pooling == "max":
            # Pooled before the final LayerNorm, which then normalises the pooled vector: normalising every token
            # first left the per-channel maxima of GReFEL-tiny's 147 tokens at 112 px nearly the same for every image.
            return self.se_block(self.norm(x[:, 1:].amax(dim=1))), self.norm(x) if all_tokens else None
        x = self.norm(x)
        pooled = x[:, 1:].mean(dim=1) if self.pooling == "mean" else x[:, 0]  # (B, 1 + N, D) -> (B, D)
        return self.se_block(pooled), None if cls_only else x
