"""GReFEL: the POSTER++ image/landmark trunk with geometry-aware anchors and reliability balancing.

Facts about the trunk's layout (IR-50 stages, MobileFaceNet taps, window cross-attention, token embedding, fusion ViT
with SE gate) come from the official POSTER++ code (Talented-Q/POSTER_V2, models/*.py); the head follows the ARBEx /
GReFEL papers as summarised in GREFEL_SPEC.md. The module names of the two backbones keep the official names so that
weight conversion is a plain prefix table (see `emotionnet.convert`).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_grefel import GReFELConfig
from .loss_grefel import GReFELLoss, distribution_confidence


# ----------------------------------------------------------------------------------------------- outputs
@dataclass
class GReFELModelOutput(ModelOutput):
    """
    Output of [`GReFELModel`].

    Args:
        embeddings (`torch.FloatTensor` of shape `(batch_size, hidden_size)`):
            The SE-gated class token of the fusion ViT: the embedding `e` the anchors live beside.
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, 1 + num_tokens, hidden_size)`):
            Tokens after the fusion ViT's final LayerNorm (class token first).
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned with `output_hidden_states=True`):
            The image features of the three scales `(batch_size, hidden_sizes[i], side_i, side_i)`, the
            cross-attention outputs in the same shapes, then the token sequence before and after each fusion
            block `(batch_size, 1 + num_tokens, hidden_size)`.
        attentions (`tuple(torch.FloatTensor)`, *optional*, returned with `output_attentions=True`):
            Attention probabilities of each fusion block, `(batch_size, fusion_num_heads, 1 + num_tokens,
            1 + num_tokens)`.
    """

    embeddings: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class GReFELImageClassifierOutput(ModelOutput):
    """
    Output of [`GReFELForImageClassification`]. `softmax(logits)` is the distribution the model predicts with.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` are given):
            Weighted sum of `classification_loss`, `anchor_loss` and `center_loss`.
        logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
            Log of the predicted distribution: the trust-mixed corrected distribution in training; outside
            training the primary or the geometry-corrected one, as `config.inference_correction` says.
        primary_probs (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
            Softmax of the primary MLP head (p).
        geometric_probs (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
            Geometric label distribution from the class anchors (l_g).
        attentive_probs (`torch.FloatTensor` of shape `(batch_size, num_labels)`, *optional*):
            Batch attentive correction (l_a); only in training, where the batch is a sample of the data.
        corrected_probs (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
            In training the trust-mixed distribution p_hat the loss sees; outside training the geometry-corrected
            distribution c_p * p + (1 - c_p) * l_g.
        confidences (`torch.FloatTensor` of shape `(batch_size, 3)`):
            Confidences 1 - H/log(C) of the primary, geometric and attentive distributions (the last is 0
            outside training).
        embeddings (`torch.FloatTensor` of shape `(batch_size, hidden_size)`):
            The embedding e.
        anchor_distances (`torch.FloatTensor` of shape `(batch_size, num_labels, num_anchors)`):
            Euclidean distance of e to every class anchor.
        classification_loss, anchor_loss, center_loss (`torch.FloatTensor` of shape `()`, *optional*):
            The unweighted loss parts, for logging.
        hidden_states, attentions: as in [`GReFELModelOutput`].
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    primary_probs: torch.FloatTensor | None = None
    geometric_probs: torch.FloatTensor | None = None
    attentive_probs: torch.FloatTensor | None = None
    corrected_probs: torch.FloatTensor | None = None
    confidences: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None
    anchor_distances: torch.FloatTensor | None = None
    classification_loss: torch.FloatTensor | None = None
    anchor_loss: torch.FloatTensor | None = None
    center_loss: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


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


# ----------------------------------------------------------------------------------------------- IR backbone
class GReFELIRUnit(nn.Module):
    """ArcFace "improved residual" unit: BN-Conv3x3-PReLU-Conv3x3(stride)-BN plus a (pooled or projected) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        if in_channels == out_channels:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False),
            nn.PReLU(out_channels),
            nn.Conv2d(out_channels, out_channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.shortcut_layer, nn.MaxPool2d):
            # A 1x1 max-pool is a strided subsample; slicing skips the pooling kernel and its index tensor (4.6% of
            # the paper-size forward under torch.profiler on this machine's CPU).
            stride = self.shortcut_layer.stride
            return self.res_layer(x) + x[:, :, ::stride, ::stride]
        return self.res_layer(x) + self.shortcut_layer(x)


class GReFELIRBackbone(nn.Module):
    """The first three stages of an IR-N network: (B, 3, S, S) -> maps at S/2, S/4, S/8."""

    def __init__(self, config: GReFELConfig):
        super().__init__()
        widths = config.hidden_sizes
        self.input_layer = nn.Sequential(
            nn.Conv2d(config.num_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.PReLU(widths[0])
        )
        in_channels = widths[0]
        stages = []
        for width, units in zip(widths, config.ir_stage_units):
            # Every stage opens with a stride-2 unit (also the first: 112 -> 56), as in get_blocks of ArcFace IR.
            stage = [GReFELIRUnit(in_channels, width, 2)] + [GReFELIRUnit(width, width, 1) for _ in range(units - 1)]
            stages.append(nn.Sequential(*stage))
            in_channels = width
        self.body1, self.body2, self.body3 = stages

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x1 = self.body1(self.input_layer(x))
        x2 = self.body2(x1)
        return x1, x2, self.body3(x2)


# ----------------------------------------------------------------------------------------------- MobileFaceNet
class GReFELConvBlock(nn.Module):
    def __init__(self, in_c: int, out_c: int, kernel: int = 1, stride: int = 1, padding: int = 0, groups: int = 1,
                 activation: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(in_c, out_c, kernel, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_c)
        self.prelu = nn.PReLU(out_c) if activation else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return self.prelu(x) if self.prelu is not None else x


class GReFELDepthWise(nn.Module):
    """Inverted bottleneck of MobileFaceNet: 1x1 expand to `groups` channels, depth-wise 3x3, linear 1x1 project."""

    def __init__(self, in_c: int, out_c: int, groups: int, stride: int, residual: bool = False):
        super().__init__()
        self.conv = GReFELConvBlock(in_c, groups)
        self.conv_dw = GReFELConvBlock(groups, groups, 3, stride, 1, groups=groups)
        self.project = GReFELConvBlock(groups, out_c, activation=False)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.conv_dw(self.conv(x)))
        return x + out if self.residual else out


class GReFELResidual(nn.Module):
    def __init__(self, channels: int, num_blocks: int, groups: int):
        super().__init__()
        self.model = nn.Sequential(
            *[GReFELDepthWise(channels, channels, groups, stride=1, residual=True) for _ in range(num_blocks)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class GReFELLandmarkHead(nn.Module):
    """MobileFaceNet's GDC landmark head (68 points). Unused by GReFEL, kept so official weights load strictly."""

    def __init__(self, channels: int, side: int, num_outputs: int):
        super().__init__()
        self.conv_6_dw = GReFELConvBlock(channels, channels, side, groups=channels, activation=False)
        self.linear = nn.Linear(channels, num_outputs, bias=False)
        self.bn = nn.BatchNorm1d(num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.linear(self.conv_6_dw(x).flatten(1)))


class GReFELMobileFaceNet(nn.Module):
    """MobileFaceNet landmark network; returns its three taps (64@28, 128@14, 512@7 at 112x112 input)."""

    def __init__(self, config: GReFELConfig):
        super().__init__()
        c3, c4, c6 = config.landmark_hidden_sizes
        b3, b4, b5 = config.landmark_num_blocks
        # Expansion widths (`groups`) follow the official network: 2x the channels, 4x before the last stage.
        self.conv1 = GReFELConvBlock(config.num_channels, c3, 3, 2, 1)
        self.conv2_dw = GReFELConvBlock(c3, c3, 3, 1, 1, groups=c3)
        self.conv_23 = GReFELDepthWise(c3, c3, groups=2 * c3, stride=2)
        self.conv_3 = GReFELResidual(c3, b3, groups=2 * c3)
        self.conv_34 = GReFELDepthWise(c3, c4, groups=2 * c4, stride=2)
        self.conv_4 = GReFELResidual(c4, b4, groups=2 * c4)
        self.conv_45 = GReFELDepthWise(c4, c4, groups=4 * c4, stride=2)
        self.conv_5 = GReFELResidual(c4, b5, groups=2 * c4)
        self.conv_6_sep = GReFELConvBlock(c4, c6)
        self.output_layer = GReFELLandmarkHead(c6, config.feature_map_sizes[2], config.num_landmark_outputs)
        for block in self.modules():
            if isinstance(block, GReFELConvBlock):  # read by GReFELPreTrainedModel._init_weights
                block.conv.variance_preserving_init = "relu" if block.prelu is not None else "linear"

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        tap1 = self.conv_3(self.conv_23(self.conv2_dw(self.conv1(x))))
        tap2 = self.conv_4(self.conv_34(tap1))
        tap3 = self.conv_6_sep(self.conv_5(self.conv_45(tap2)))
        return tap1, tap2, tap3


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
        # The (N, N) index is computed on first use and kept per device. Not a buffer: transformers 5 builds the model
        # on the meta device in `from_pretrained` and leaves non-persistent buffers as `torch.empty_like` for
        # `_init_weights` to fill (modeling_utils, `_move_missing_keys_from_meta_to_device`); an attribute also keeps
        # the state-dict keys, and so the official-weight conversion, unchanged.
        self._index_cache: torch.Tensor | None = None

    def relative_position_bias(self, n: int) -> torch.Tensor:
        """(heads, N, N) additive bias gathered from the table."""
        table = self.relative_position_bias_table
        if self._index_cache is None or self._index_cache.device != table.device:
            self._index_cache = relative_position_index(self.window, device=table.device).reshape(-1)
        return table[self._index_cache].view(n, n, self.num_heads).permute(2, 0, 1)

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
        if need_weights:
            attn = ((q * self.scale) @ k.transpose(-2, -1) + bias).softmax(dim=-1)  # (B_w, h, N, N)
            out = attn @ v
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

    def forward(self, x: torch.Tensor, need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)  # (B, h, N, C/h)
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

    def forward(self, x: torch.Tensor, need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        out, attn = self.attn(self.norm1(x), need_weights)
        x = x + self.drop_path(out)
        return x + self.drop_path(self.mlp(self.norm2(x))), attn


class GReFELSEGate(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.linear1 = nn.Linear(dim, dim)
        self.linear2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.linear2(F.relu(self.linear1(x))))


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

    def forward(self, tokens: torch.Tensor, hidden_states: list | None, attentions: list | None):
        x = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1) + self.pos_embed
        if hidden_states is not None:
            hidden_states.append(x)
        for block in self.blocks:
            x, attn = block(x, need_weights=attentions is not None)
            if hidden_states is not None:
                hidden_states.append(x)
            if attentions is not None:
                attentions.append(attn)
        x = self.norm(x)
        pooled = x[:, 1:].mean(dim=1) if self.pooling == "mean" else x[:, 0]  # (B, 1 + N, D) -> (B, D)
        return self.se_block(pooled), x


# ----------------------------------------------------------------------------------------------- pretrained base
class GReFELPreTrainedModel(PreTrainedModel):
    config_class = GReFELConfig
    base_model_prefix = "grefel"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = False
    _no_split_modules = ["GReFELFusionBlock", "GReFELCrossAttentionBlock"]

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, also naming the trunk in `auto_map`.

        transformers writes `auto_map` only for the class being saved; the trunk loads from the same weights through
        `AutoModel` (the `grefel.` prefix is stripped), so it is named too, as is the facial-expression pipeline.
        """
        if getattr(self, "_auto_class", None) is not None:
            auto_map = dict(getattr(self.config, "auto_map", None) or {})
            auto_map.setdefault("AutoModel", "modeling_grefel.GReFELModel")
            self.config.auto_map = auto_map
            # pipeline("facial-expression-recognition", model=folder, trust_remote_code=True) then finds its class.
            # Set before saving, so that save_pretrained(push_to_hub=True), which uploads inside, carries it too; the
            # pipeline's files come with this module, which transformers copies with its relative imports.
            from .pipeline_grefel import add_pipeline_to_config

            add_pipeline_to_config(self.config)
        return super().save_pretrained(save_directory, *args, **kwargs)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module):
        std = self.config.initializer_range
        if isinstance(module, nn.Conv2d) and getattr(module, "variance_preserving_init", None):
            # The frozen landmark network always runs in eval mode, where its BatchNorms (mean 0, variance 1)
            # normalise nothing: with random weights only a variance-preserving init (Kaiming fan-in, which counts a
            # depth-wise filter's 9 inputs) keeps its taps at unit scale, instead of shrinking ~10x per block into
            # input-independent queries.
            init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity=module.variance_preserving_init)
        elif isinstance(module, (nn.Linear, nn.Conv2d)):
            # PyTorch's own default: uniform, scaled by 1 / sqrt(fan-in). At the paper's width (768) that is ViT's
            # usual std 0.02; at the tiny preset's widths (16-96) a fixed 0.02 starved every attention and MLP branch
            # and roughly halved how far the synthetic default got in 300 steps (0.36 vs 0.61, one seed). Every
            # trainable convolution feeds a normalisation, so its scale only sets the effective step size: Kaiming
            # fan-out kernels, 2.4x larger, cut the effective step of these scale-invariant weights ~6x.
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                bound = 1 / math.sqrt(module.weight[0].numel())
                init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                init.zeros_(module.running_mean)
                init.ones_(module.running_var)
                init.zeros_(module.num_batches_tracked)
        elif isinstance(module, nn.PReLU):
            # ReLU at the start. The IR residual stream has no activation of its own, so with PyTorch's 0.25 slope the
            # backbone starts nearly linear, and its pooled features are little more than the image's mean colour.
            init.zeros_(module.weight)
        elif isinstance(module, GReFELWindowCrossAttention):
            init.trunc_normal_(module.relative_position_bias_table, std=0.02)
        elif isinstance(module, GReFELCrossAttentionBlock):
            init.constant_(module.gamma1, self.config.layer_scale_init_value)
            init.constant_(module.gamma2, self.config.layer_scale_init_value)
        elif isinstance(module, GReFELFusionViT):
            init.trunc_normal_(module.cls_token, std=std)
            init.trunc_normal_(module.pos_embed, std=std)
        elif isinstance(module, GReFELAnchorHead):
            init.normal_(module.anchors, std=self.config.anchor_init_std)


# ----------------------------------------------------------------------------------------------- inference paths
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
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    except OSError:  # not Linux: no cheap way to tell, so no bf16
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


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


# ----------------------------------------------------------------------------------------------- trunk
class GReFELModel(GReFELPreTrainedModel):
    """The GReFEL trunk: image -> 768-d embedding e (the class token of the fusion ViT, SE-gated)."""

    # Loading the trunk from a classifier's folder leaves the head's weights aside, as intended.
    _keys_to_ignore_on_load_unexpected = [r"^grefel_head\."]

    def __init__(self, config: GReFELConfig):
        super().__init__(config)
        dims, hidden = config.hidden_sizes, config.hidden_size
        self.ir_back = GReFELIRBackbone(config)
        self.face_landback = GReFELMobileFaceNet(config) if config.use_landmark_backbone else None
        if self.face_landback is not None and config.freeze_landmark_backbone:
            self.face_landback.requires_grad_(False)
        # The landmark tap of the last scale (512 ch) is brought to the image width of that scale.
        self.last_face_conv = (
            nn.Conv2d(config.landmark_hidden_sizes[2], dims[2], 3, padding=1) if config.use_landmark_backbone else None
        )
        self.downsample = nn.ModuleList([nn.Conv2d(d, d, 3, stride=2, padding=1) for d in dims])
        self.cross_attention = nn.ModuleList([GReFELCrossAttentionBlock(config, s) for s in range(3)])
        # Token embedding: every scale ends on the coarsest grid (7x7 at the paper size).
        self.embed_q = nn.Sequential(nn.Conv2d(dims[0], hidden, 3, 2, 1), nn.Conv2d(hidden, hidden, 3, 2, 1))
        self.embed_k = nn.Conv2d(dims[1], hidden, 3, 2, 1)
        self.embed_v = nn.Conv2d(dims[2], hidden, 1)
        self.fusion = GReFELFusionViT(config)
        self.post_init()

    def train(self, mode: bool = True):
        super().train(mode)
        # A frozen landmark network keeps its BatchNorm statistics: it always runs in eval mode. Its parameters are
        # frozen again here too: `from_pretrained` replaces them with fresh (trainable) tensors, then calls `eval()`.
        if self.face_landback is not None and self.config.freeze_landmark_backbone:
            self.face_landback.eval()
            self.face_landback.requires_grad_(False)
        return self

    def landmark_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        if self.face_landback is None:
            return None
        if self.config.freeze_landmark_backbone:
            with torch.no_grad():
                taps = self.face_landback(x)
        else:
            taps = self.face_landback(x)
        return taps[0], taps[1], self.last_face_conv(taps[2])

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
    ) -> GReFELModelOutput | tuple:
        config = self.config
        output_hidden_states = output_hidden_states if output_hidden_states is not None else config.output_hidden_states
        output_attentions = output_attentions if output_attentions is not None else config.output_attentions
        return_dict = return_dict if return_dict is not None else config.return_dict
        if pixel_values.ndim != 4 or pixel_values.shape[1] != config.num_channels:
            raise ValueError(
                f"pixel_values must be (batch, {config.num_channels}, height, width), got {tuple(pixel_values.shape)}; "
                "prepare images with GReFELImageProcessor."
            )
        size = config.backbone_image_size
        interpolation = config.backbone_interpolation
        align = {} if interpolation in ("nearest", "area") else {"align_corners": False}
        x = F.interpolate(pixel_values, size=(size, size), mode=interpolation, **align)

        image_maps = [conv(m) for conv, m in zip(self.downsample, self.ir_back(x))]  # (B, C_i, side_i, side_i)
        queries = self.landmark_features(x) or (None, None, None)
        fused = [block(m, q) for block, m, q in zip(self.cross_attention, image_maps, queries)]

        tokens = torch.cat(
            [self.embed_q(fused[0]).flatten(2), self.embed_k(fused[1]).flatten(2), self.embed_v(fused[2]).flatten(2)],
            dim=2,
        ).transpose(1, 2)  # (B, 3*g*g, hidden)
        hidden_states = [*image_maps, *fused] if output_hidden_states else None
        attentions = [] if output_attentions else None
        embeddings, last_hidden_state = self.fusion(tokens, hidden_states, attentions)

        hidden_states = tuple(hidden_states) if hidden_states is not None else None
        attentions = tuple(attentions) if attentions is not None else None
        if not return_dict:
            return tuple(v for v in (embeddings, last_hidden_state, hidden_states, attentions) if v is not None)
        return GReFELModelOutput(
            embeddings=embeddings, last_hidden_state=last_hidden_state, hidden_states=hidden_states, attentions=attentions
        )


# ----------------------------------------------------------------------------------------------- head
class GReFELAnchorHead(nn.Module):
    """Primary MLP, geometry-aware class anchors, batch attentive correction and reliability balancing."""

    def __init__(self, config: GReFELConfig):
        super().__init__()
        num_labels, dim = config.num_labels, config.hidden_size
        layers, width = [], dim
        for hidden in config.head_hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(config.head_dropout)]
            width = hidden
        layers.append(nn.Linear(width, num_labels))
        self.primary = nn.Sequential(*layers)
        self.anchors = nn.Parameter(torch.zeros(num_labels, config.num_anchors, dim))
        self.query = nn.Linear(dim, num_labels)
        self.key = nn.Linear(dim, num_labels)
        self.value = nn.Linear(dim, num_labels)
        self.temperature = config.anchor_temperature

    def anchor_distances(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, C, K) Euclidean distances; the epsilon keeps the gradient finite at zero distance."""
        diff = embeddings[:, None, None, :] - self.anchors[None]
        return diff.pow(2).sum(-1).add(1e-12).sqrt()

    def attentive_distribution(self, embeddings: torch.Tensor) -> torch.Tensor:
        """One-head attention across the samples of the batch: (B, D) -> (B, C)."""
        q, k, v = self.query(embeddings), self.key(embeddings), self.value(embeddings)
        attn = (q @ k.transpose(0, 1) / math.sqrt(q.shape[-1])).softmax(dim=-1)  # (B, B)
        return (attn @ v).softmax(dim=-1)

    def forward(self, embeddings: torch.Tensor, trust: float) -> dict[str, torch.Tensor]:
        primary = self.primary(embeddings).softmax(dim=-1)
        distances = self.anchor_distances(embeddings)
        b, c, k = distances.shape
        geometric = (-distances.view(b, c * k) / self.temperature).softmax(dim=-1).view(b, c, k).sum(-1)
        conf_p, conf_g = distribution_confidence(primary), distribution_confidence(geometric)
        if self.training:
            attentive = self.attentive_distribution(embeddings)
            conf_a = distribution_confidence(attentive)
            combined = (conf_g[:, None] * geometric + conf_a[:, None] * attentive) / (conf_g + conf_a + 1e-8)[:, None]
        else:
            attentive, conf_a, combined = None, torch.zeros_like(conf_p), geometric
        balanced = conf_p[:, None] * primary + (1 - conf_p[:, None]) * combined
        corrected = (1 - trust) * primary + trust * balanced if self.training else balanced
        return {
            "primary_probs": primary,
            "geometric_probs": geometric,
            "attentive_probs": attentive,
            "corrected_probs": corrected,
            "confidences": torch.stack([conf_p, conf_g, conf_a], dim=-1),
            "anchor_distances": distances,
        }


class GReFELForImageClassification(GReFELPreTrainedModel):
    """GReFEL trunk + reliability-balanced anchor head. `softmax(outputs.logits)` is the predicted distribution."""

    def __init__(self, config: GReFELConfig):
        super().__init__(config)
        self.grefel = GReFELModel(config)
        self.grefel_head = GReFELAnchorHead(config)
        self.criterion = GReFELLoss(config)
        # The trust t of the reliability schedule; a plain attribute, set by the training loop through `set_trust`.
        self.trust = 0.0
        # Set by `optimize_for_inference`; bf16 autocast applies to the trunk in eval mode only.
        self.inference_path = "eager"
        self.inference_report: dict | None = None
        self._autocast_dtype: torch.dtype | None = None
        self.post_init()

    def optimize_for_inference(
        self, path: str = "auto", pixel_values: torch.Tensor | None = None
    ) -> GReFELForImageClassification:
        """Put the model in eval mode and switch its trunk to a faster inference path. Returns the model.

        Args:
            path (`str`, *optional*, defaults to `"auto"`): one of
                - `"eager"`: fp32 as built (fused attention kernels; nothing else changes);
                - `"bf16"`: the trunk under bf16 autocast, the head in fp32. Only where the device has native bf16
                  (`has_native_bf16`), else a `ValueError`;
                - `"int8"`: the trunk's `nn.Linear` layers run dynamically quantised int8 twins where no gradient is
                  needed (`GReFELInt8Linear`; CPU only; convolutions stay fp32; `save_pretrained` saves fp32 as before);
                - `"compile"`: the trunk through `torch.compile` (needs a C++ compiler on the CPU; the first calls
                  compile, for minutes at the paper size). Never chosen by `"auto"` for that reason;
                - `"auto"`: times eager and each other path this device allows on a calibration batch, and keeps the
                  fastest whose top-1 predictions agree with eager fp32 on at least 99% of it (so all of the default
                  8). What it measured is left in `model.inference_report`.
            pixel_values (`torch.Tensor` of shape `(batch_size, num_channels, height, width)`, *optional*):
                the calibration batch for `"auto"`; a fixed batch of 8 smooth random images when `None`. Processed
                faces make the agreement check closer to real use.

        Example:

        ```python
        >>> model = GReFELForImageClassification.from_pretrained(folder).optimize_for_inference("auto")
        >>> model.inference_path, model.inference_report["paths"]["eager"]["seconds"]
        ('bf16', 0.52)
        ```
        """
        if path not in INFERENCE_PATHS:
            raise ValueError(f"path must be one of {', '.join(INFERENCE_PATHS)}; got {path!r}.")
        if self.inference_path != "eager":
            raise ValueError(f"This model already runs the {self.inference_path!r} path; load it again to change it.")
        self.eval()
        device = self.grefel_head.anchors.device
        if path == "auto":
            path, trunk = self._measure_inference_paths(pixel_values, device)
            self._apply_inference_path(path, trunk)
            return self
        if path == "bf16" and not has_native_bf16(device):
            raise ValueError(
                f"path='bf16' needs native bf16, and {device} has neither AVX512-BF16 nor AMX nor is a bf16 GPU: "
                "emulated bf16 is slower than fp32. Use path='auto' or 'eager'."
            )
        if path == "int8" and device.type != "cpu":
            raise ValueError(f"path='int8' (dynamic quantisation) runs on the CPU only; the model is on {device}.")
        self._apply_inference_path(path)
        return self

    def _apply_inference_path(self, path: str, int8: dict[str, nn.Module] | None = None) -> None:
        if path == "bf16":
            self._autocast_dtype = torch.bfloat16
        elif path == "int8":
            _swap_modules(self.grefel, int8 if int8 is not None else _int8_linear_layers(self.grefel))
        elif path == "compile":
            self.grefel.compile()
        self.inference_path = path

    def _measure_inference_paths(
        self, pixel_values: torch.Tensor | None, device: torch.device
    ) -> tuple[str, dict[str, nn.Module] | None]:
        """Time every path `auto` may take on the calibration batch; return the one to use (and its int8 layers)."""
        if pixel_values is None:
            pixel_values = calibration_pixel_values(self.config)
        pixel_values = pixel_values.to(device)
        candidates, int8 = {"eager": None}, None
        if has_native_bf16(device):
            candidates["bf16"] = torch.bfloat16
        if device.type == "cpu":
            candidates["int8"] = None
            int8 = _int8_linear_layers(self.grefel)
        report, predictions = {}, {}
        for name, dtype in candidates.items():
            self._autocast_dtype = dtype
            fp32 = _swap_modules(self.grefel, int8) if name == "int8" else None
            try:
                seconds, predictions[name] = _time_forward(self, pixel_values)
            finally:
                self._autocast_dtype = None
                if fp32 is not None:
                    _swap_modules(self.grefel, fp32)
            agreement = (predictions[name] == predictions["eager"]).float().mean().item()
            report[name] = {"seconds": seconds, "top1_agreement": agreement}
        eligible = [name for name, entry in report.items() if entry["top1_agreement"] >= MIN_TOP1_AGREEMENT]
        # Another path must beat eager by 5%: less is within the noise of one timed call on a shared machine.
        best = min(eligible, key=lambda name: report[name]["seconds"] * (1.0 if name == "eager" else 1.05))
        self.inference_report = {"chosen": best, "batch": len(pixel_values), "paths": report}
        return best, int8 if best == "int8" else None

    def set_trust(self, step: int, total_steps: int) -> float:
        """Advance the trust schedule to `step` of `total_steps` training steps and return t."""
        schedule = self.config.trust_schedule
        if schedule == "none":
            self.trust = 0.0
        elif schedule == "full":
            self.trust = 1.0
        else:
            self.trust = min(max(step / max(total_steps, 1), 0.0), 1.0)
        return self.trust

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
    ) -> GReFELImageClassifierOutput | tuple:
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        autocast = (
            torch.autocast(pixel_values.device.type, dtype=self._autocast_dtype)
            if self._autocast_dtype is not None and not self.training else contextlib.nullcontext()
        )
        with autocast:
            trunk = self.grefel(
                pixel_values, output_hidden_states=output_hidden_states, output_attentions=output_attentions,
                return_dict=True,
            )
        embeddings = trunk.embeddings.float()  # the head (anchors, distances, confidences) always runs in fp32
        parts = self.grefel_head(embeddings, self.trust)
        use_primary = not self.training and self.config.inference_correction == "primary"
        predicted = parts["primary_probs"] if use_primary else parts["corrected_probs"]
        logits = predicted.clamp_min(1e-12).log()

        losses = {}
        if labels is not None:
            losses = self.criterion(
                corrected_probs=parts["corrected_probs"],
                primary_confidence=parts["confidences"][:, 0],
                anchor_distances=parts["anchor_distances"],
                anchors=self.grefel_head.anchors,
                labels=labels,
                trust=self.trust,
            )
        output = GReFELImageClassifierOutput(
            loss=losses.get("loss"),
            logits=logits,
            embeddings=embeddings,
            classification_loss=losses.get("classification_loss"),
            anchor_loss=losses.get("anchor_loss"),
            center_loss=losses.get("center_loss"),
            hidden_states=trunk.hidden_states,
            attentions=trunk.attentions,
            **parts,
        )
        return output if return_dict else output.to_tuple()


# save_pretrained then writes auto_map entries and copies this folder's code next to the weights (remote code).
GReFELModel.register_for_auto_class("AutoModel")
GReFELForImageClassification.register_for_auto_class("AutoModelForImageClassification")

__all__ = [
    "GReFELPreTrainedModel",
    "GReFELModel",
    "GReFELForImageClassification",
    "GReFELModelOutput",
    "GReFELImageClassifierOutput",
    "GReFELWindowCrossAttention",
    "GReFELAnchorHead",
    "window_partition",
    "window_reverse",
    "INFERENCE_PATHS",
    "has_native_bf16",
    "calibration_pixel_values",
]
