"""GReFEL: the POSTER++ image/landmark trunk with geometry-aware anchors and reliability balancing.

Facts about the trunk's layout (IR-50 stages, MobileFaceNet taps, window cross-attention, token embedding, fusion ViT
with SE gate) come from the official POSTER++ code (Talented-Q/POSTER_V2, models/*.py); the head follows the ARBEx /
GReFEL papers as summarised in GREFEL_SPEC.md. The module names of the two backbones keep the official names so that
weight conversion is a plain prefix table (see `emotionnet.convert`).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .attention_grefel import (
    GReFELCrossAttentionBlock,
    GReFELFusionBlock,
    GReFELFusionViT,
    GReFELWindowCrossAttention,
    relative_position_index,
)
from .backbones_grefel import GReFELIRBackbone, GReFELMobileFaceNet
from .configuration_grefel import GReFELConfig
from .inference_grefel import (
    INFERENCE_PATHS,
    MIN_TOP1_AGREEMENT,
    _int8_linear_layers,
    _swap_modules,
    _time_forward,
    calibration_pixel_values,
    has_native_bf16,
)
from .loss_grefel import GReFELLoss, distribution_confidence


# ----------------------------------------------------------------------------------------------- outputs
@dataclass
class GReFELModelOutput(ModelOutput):
    """
    Output of [`GReFELModel`].

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, 1 + num_tokens, hidden_size)`):
            Tokens after the fusion ViT's final LayerNorm (class token first).
        embeddings (`torch.FloatTensor` of shape `(batch_size, hidden_size)`):
            The SE-gated class token of the fusion ViT (or the token mean or maximum, `embedding_pooling`): the
            embedding `e` the anchors live beside.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned with `output_hidden_states=True`):
            The image features of the three scales `(batch_size, hidden_sizes[i], side_i, side_i)`, the
            cross-attention outputs in the same shapes, then the token sequence before and after each fusion
            block `(batch_size, 1 + num_tokens, hidden_size)`.
        attentions (`tuple(torch.FloatTensor)`, *optional*, returned with `output_attentions=True`):
            Attention probabilities of each fusion block, `(batch_size, fusion_num_heads, 1 + num_tokens,
            1 + num_tokens)`.
    """

    last_hidden_state: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class GReFELHeadOutput(ModelOutput):
    """
    Output of [`GReFELAnchorHead`]: the distributions and geometry the classifier's output and loss are built from.
    Fields as in [`GReFELImageClassifierOutput`].
    """

    primary_probs: torch.FloatTensor | None = None
    geometric_probs: torch.FloatTensor | None = None
    attentive_probs: torch.FloatTensor | None = None
    corrected_probs: torch.FloatTensor | None = None
    confidences: torch.FloatTensor | None = None
    anchor_distances: torch.FloatTensor | None = None


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
            # Branches that each preserve the variance double it at every residual block, in eval mode where nothing
            # renormalises: at the paper size (4 and 6 blocks) the landmark taps reached an RMS of ~50, and the window
            # cross-attention's softmax over those queries was near one-hot (entropy 0.1 of the uniform's) with
            # random landmark weights. One block per stage (the tiny preset) keeps gain 1.
            module.weight.mul_(getattr(module, "residual_branch_gain", 1.0))
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
            init.copy_(module.relative_position_index, relative_position_index(module.window).reshape(-1))
        elif isinstance(module, GReFELCrossAttentionBlock):
            init.constant_(module.gamma1, self.config.layer_scale_init_value)
            init.constant_(module.gamma2, self.config.layer_scale_init_value)
        elif isinstance(module, GReFELFusionBlock) and module.gamma1 is not None:
            init.constant_(module.gamma1, self.config.fusion_layer_scale_init_value)
            init.constant_(module.gamma2, self.config.fusion_layer_scale_init_value)
        elif isinstance(module, GReFELFusionViT):
            init.trunc_normal_(module.cls_token, std=std)
            init.trunc_normal_(module.pos_embed, std=std)
        elif isinstance(module, GReFELAnchorHead):
            init.normal_(module.anchors, std=self.config.anchor_init_std)
        elif isinstance(module, GReFELForImageClassification):
            init.zeros_(module.trust)


# ----------------------------------------------------------------------------------------------- trunk
def resize_to_backbones(pixel_values: torch.Tensor, config: GReFELConfig) -> torch.Tensor:
    """The input resized to the backbones' `backbone_image_size`, with `backbone_interpolation`."""
    size, mode = config.backbone_image_size, config.backbone_interpolation
    align = {} if mode in ("nearest", "area") else {"align_corners": False}
    return F.interpolate(pixel_values, size=(size, size), mode=mode, **align)


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
        self.use_channels_last_kernels()

    def train(self, mode: bool = True):
        super().train(mode)
        # `from_pretrained` ends with `eval()`: the kernels it loaded take the trunk's layout here.
        self.use_channels_last_kernels()
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

    @staticmethod
    def backbone_layout(x: torch.Tensor) -> torch.Tensor:
        """The backbones' input in channels-last memory on the CPU, where oneDNN's convolutions run faster on it (the
        layout then carries through both backbones): GReFEL-tiny's CPU training step took ~0.87x the time, torch 2.13,
        one thread (issue 9). Same values; other devices keep their layout."""
        return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cpu" else x

    def use_channels_last_kernels(self) -> None:
        """Keep the convolution kernels in channels-last memory, the layout `backbone_layout` gives their inputs on the
        CPU. With channels-first kernels oneDNN reorders a kernel on every call: at the paper size and batch 1, 29
        kernel copies a forward (the 28 stage-3 3x3 kernels and the 768-wide token embedding's). Same values; one of the
        lean eager forward's changes, whose gain the benchmark measures together (README, "Inference paths"), not
        alone. `save_pretrained` writes contiguous tensors as before."""
        if any(not p.is_contiguous(memory_format=torch.channels_last) for p in self.parameters() if p.ndim == 4):
            self.to(memory_format=torch.channels_last)

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        output_last_hidden_state: bool = True,
    ) -> GReFELModelOutput | tuple:
        """`output_last_hidden_state=False` (the classifier's call) returns `last_hidden_state=None`, and with the class
        token as the embedding the last fusion block then updates that token alone: the same embeddings, less work."""
        config = self.config
        output_hidden_states = output_hidden_states if output_hidden_states is not None else config.output_hidden_states
        output_attentions = output_attentions if output_attentions is not None else config.output_attentions
        return_dict = return_dict if return_dict is not None else config.return_dict
        if pixel_values.ndim != 4 or pixel_values.shape[1] != config.num_channels:
            raise ValueError(
                f"pixel_values must be (batch, {config.num_channels}, height, width), got {tuple(pixel_values.shape)}; "
                "prepare images with GReFELImageProcessor."
            )
        # Processors return fp32; a model cast to bf16 or fp16 takes it as transformers vision models do.
        pixel_values = pixel_values.to(self.dtype)
        x = self.backbone_layout(resize_to_backbones(pixel_values, config))

        image_maps = [conv(m) for conv, m in zip(self.downsample, self.ir_back(x))]  # (B, C_i, side_i, side_i)
        queries = self.landmark_features(x) or (None, None, None)
        fused = [block(m, q) for block, m, q in zip(self.cross_attention, image_maps, queries)]

        tokens = torch.cat(
            [self.embed_q(fused[0]).flatten(2), self.embed_k(fused[1]).flatten(2), self.embed_v(fused[2]).flatten(2)],
            dim=2,
        ).transpose(1, 2)  # (B, 3*g*g, hidden)
        hidden_states = [*image_maps, *fused] if output_hidden_states else None
        attentions = [] if output_attentions else None
        embeddings, last_hidden_state = self.fusion(tokens, hidden_states, attentions, output_last_hidden_state)

        hidden_states = tuple(hidden_states) if hidden_states is not None else None
        attentions = tuple(attentions) if attentions is not None else None
        if not return_dict:
            return tuple(v for v in (last_hidden_state, embeddings, hidden_states, attentions) if v is not None)
        return GReFELModelOutput(
            last_hidden_state=last_hidden_state, embeddings=embeddings, hidden_states=hidden_states, attentions=attentions
        )


# ----------------------------------------------------------------------------------------------- head
def mlp_classifier(in_features: int, hidden_sizes, num_labels: int, batch_norm: bool, dropout: float) -> nn.Sequential:
    """The primary head: per hidden width Linear-ReLU-BatchNorm-Dropout, in ARBEx's order with the BatchNorm after the
    ReLU (takihasan/ARBEx, arbex/models/head.py), then the classifier; no hidden width: the classifier alone."""
    layers, width = [], in_features
    for hidden in hidden_sizes:
        norm = [nn.BatchNorm1d(hidden)] if batch_norm else []
        layers += [nn.Linear(width, hidden), nn.ReLU(), *norm, nn.Dropout(dropout)]
        width = hidden
    layers.append(nn.Linear(width, num_labels))
    return nn.Sequential(*layers)


class GReFELAnchorHead(nn.Module):
    """Primary MLP, geometry-aware class anchors, batch attentive correction and reliability balancing."""

    def __init__(self, config: GReFELConfig):
        super().__init__()
        num_labels, dim = config.num_labels, config.hidden_size
        self.primary = mlp_classifier(dim, config.head_hidden_sizes, num_labels, config.head_batch_norm,
                                      config.head_dropout)
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

    def forward(self, embeddings: torch.Tensor, trust: torch.Tensor | float) -> GReFELHeadOutput:
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
        return GReFELHeadOutput(
            primary_probs=primary,
            geometric_probs=geometric,
            attentive_probs=attentive,
            corrected_probs=corrected,
            confidences=torch.stack([conf_p, conf_g, conf_a], dim=-1),
            anchor_distances=distances,
        )


class GReFELForImageClassification(GReFELPreTrainedModel):
    """GReFEL trunk + reliability-balanced anchor head. `softmax(outputs.logits)` is the predicted distribution."""

    def __init__(self, config: GReFELConfig):
        super().__init__(config)
        self.grefel = GReFELModel(config)
        self.grefel_head = GReFELAnchorHead(config)
        self.criterion = GReFELLoss(config)
        # The trust t of the reliability schedule, set from the training step by `set_trust`. A non-persistent buffer:
        # it follows the model's device, DDP broadcasts it with the other buffers, and the checkpoint need not hold
        # it (the step does).
        self.trust = nn.Buffer(torch.zeros(()), persistent=False)
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
            trust = 0.0
        elif schedule == "full":
            trust = 1.0
        else:
            trust = min(max(step / max(total_steps, 1), 0.0), 1.0)
        self.trust.fill_(trust)
        return trust

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
                return_dict=True, output_last_hidden_state=False,
            )
        # The head (anchors, distances, confidences) and the loss run in the head parameters' dtype: fp32 under the
        # bf16 autocast inference path and under an outer autocast too (accelerate's --mixed_precision bf16 wraps the
        # whole forward; bf16 softmaxes summed to 0.9985-1.001, which the ECE metric rightly refuses), the model's
        # dtype when the whole model was cast.
        with torch.autocast(pixel_values.device.type, enabled=False):
            embeddings = trunk.embeddings.to(self.grefel_head.anchors.dtype)
            head = self.grefel_head(embeddings, self.trust)
            use_primary = not self.training and self.config.inference_correction == "primary"
            predicted = head.primary_probs if use_primary else head.corrected_probs
            logits = predicted.clamp_min(1e-12).log()

            losses = {}
            if labels is not None:
                losses = self.criterion(
                    corrected_probs=head.corrected_probs,
                    primary_confidence=head.confidences[:, 0],
                    anchor_distances=head.anchor_distances,
                    anchors=self.grefel_head.anchors,
                    labels=labels,
                    trust=self.trust,
                )
        output = GReFELImageClassifierOutput(
            loss=losses.get("loss"),
            logits=logits,
            primary_probs=head.primary_probs,
            geometric_probs=head.geometric_probs,
            attentive_probs=head.attentive_probs,
            corrected_probs=head.corrected_probs,
            confidences=head.confidences,
            embeddings=embeddings,
            anchor_distances=head.anchor_distances,
            classification_loss=losses.get("classification_loss"),
            anchor_loss=losses.get("anchor_loss"),
            center_loss=losses.get("center_loss"),
            hidden_states=trunk.hidden_states,
            attentions=trunk.attentions,
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
    "GReFELHeadOutput",
    "GReFELWindowCrossAttention",
    "GReFELAnchorHead",
    "INFERENCE_PATHS",
    "has_native_bf16",
    "calibration_pixel_values",
]
