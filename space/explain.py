"""Where a GReFEL model looked, and which class anchors a face sits next to: the explanation view of the Space.

This file lives in the Space folder so the Space needs nothing but the model's remote code from the Hub: it imports
numpy, PIL and torch only, and reads the model through its documented outputs (`attentions`, `hidden_states`,
`anchor_distances`, `logits`), never through its internals.

Two saliency maps are offered:

* ``"attention"``: the class-token row of the last fusion-ViT attention map, averaged over heads. The fusion ViT sees
  ``3 * g * g`` tokens, one ``g x g`` grid per scale, every grid covering the whole face, so the three grids are
  averaged into one ``g x g`` map and upsampled to the face crop.
* ``"gradcam"``: Grad-CAM (Selvaraju et al., 2017, arXiv 1610.02391: channel weights are the spatially averaged
  gradients of the class score, the map is the ReLU of the weighted channel sum) on the three cross-attention output
  maps of the trunk, each upsampled to the crop and averaged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

METHODS = ("attention", "gradcam")

# An approximation of matplotlib's "inferno" colour map by five stops (dark = ignored, bright = looked at), so the
# Space does not need matplotlib for one colour ramp.
_RAMP_POSITIONS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
_RAMP_COLOURS = np.array(
    [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float32
)
# In `GReFELModel`'s hidden states the three cross-attention output maps follow the three image maps.
_CROSS_ATTENTION_MAPS = slice(3, 6)


@dataclass
class AnchorMatch:
    """One class anchor near a face's embedding."""

    label: str
    anchor: int
    distance: float


@dataclass
class Explanation:
    """What the explanation view shows for one face crop.

    Attributes:
        heatmap: `(H, W)` float array in [0, 1] at the crop's size; 1 is where the model looked most.
        overlay: the crop with the heatmap blended over it.
        label: the predicted expression.
        scores: the predicted distribution, label -> probability.
        anchors: the nearest class anchors, closest first.
        method: "attention" or "gradcam".
    """

    heatmap: np.ndarray
    overlay: PIL.Image.Image
    label: str
    scores: dict[str, float]
    anchors: list[AnchorMatch] = field(default_factory=list)
    method: str = "attention"


def normalise_map(values: np.ndarray) -> np.ndarray:
    """Rescale to [0, 1] by min and max; a constant map (nothing stands out) becomes all zeros."""
    values = np.asarray(values, dtype=np.float32)
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-12:
        return np.zeros_like(values)
    return (values - low) / (high - low)


def class_token_attention(attentions: Sequence[torch.Tensor], token_grid_size: int) -> np.ndarray:
    """Class-token attention of the last fusion block as `(B, g, g)` maps, each normalised to [0, 1].

    Args:
        attentions: `outputs.attentions`, one `(B, heads, 1 + 3*g*g, 1 + 3*g*g)` tensor per fusion block.
        token_grid_size: g, `config.token_grid_size`.
    """
    if not attentions:
        raise ValueError("attentions is empty: call the model with output_attentions=True to explain by attention.")
    last = attentions[-1].detach().float()
    g = token_grid_size
    if last.ndim != 4 or last.shape[-1] != 1 + 3 * g * g:
        raise ValueError(
            f"attentions[-1] must be (batch, heads, {1 + 3 * g * g}, {1 + 3 * g * g}) for token_grid_size={g}, "
            f"got {tuple(last.shape)}; pass config.token_grid_size of the model that produced it."
        )
    row = last[:, :, 0, 1:].mean(dim=1)  # (B, 3*g*g): what the class token attends to, averaged over heads
    grids = row.view(-1, 3, g, g).mean(dim=1)  # (B, g, g): the three scales' grids cover the same face
    return np.stack([normalise_map(grid) for grid in grids.cpu().numpy()])


def grad_cam(model: torch.nn.Module, pixel_values: torch.Tensor, target: int | None = None) -> np.ndarray:
    """Grad-CAM of class `target` (default: the predicted class) on the trunk's three cross-attention maps.

    Args:
        model: a `GReFELForImageClassification` in eval mode.
        pixel_values: `(1, 3, S, S)`, as the image processor makes them.
        target: class id to explain.

    Returns:
        `(S, S)` float array in [0, 1].
    """
    if pixel_values.ndim != 4 or pixel_values.shape[0] != 1:
        raise ValueError(f"grad_cam explains one image: pixel_values must be (1, 3, S, S), got {tuple(pixel_values.shape)}.")
    with torch.enable_grad():
        outputs = model(pixel_values, output_hidden_states=True, return_dict=True)
        maps = [m for m in outputs.hidden_states[_CROSS_ATTENTION_MAPS] if m.ndim == 4]
        if len(maps) != 3:
            raise ValueError(
                "grad_cam expects the model's hidden_states to hold three (B, C, H, W) cross-attention maps after the "
                "three image maps, as GReFELModel returns them; this model's hidden states are laid out differently."
            )
        class_id = int(outputs.logits[0].argmax()) if target is None else int(target)
        gradients = torch.autograd.grad(outputs.logits[0, class_id], maps)
    size = pixel_values.shape[-2:]
    cams = []
    for feature_map, gradient in zip(maps, gradients):
        weights = gradient.mean(dim=(2, 3), keepdim=True)  # (1, C, 1, 1)
        cam = F.relu((weights * feature_map.detach()).sum(dim=1, keepdim=True))  # (1, 1, h, w)
        cam = F.interpolate(cam, size=size, mode="bilinear", align_corners=False)[0, 0]
        cams.append(normalise_map(cam.cpu().numpy()))
    return normalise_map(np.mean(cams, axis=0))


def nearest_anchors(
    anchor_distances: torch.Tensor, id2label: Mapping[int, str], top_k: int = 5
) -> list[AnchorMatch]:
    """The `top_k` class anchors closest to one embedding.

    Args:
        anchor_distances: `(C, K)` distances of one face's embedding to every anchor (one row of
            `outputs.anchor_distances`).
        id2label: `config.id2label`.
        top_k: how many anchors to list.
    """
    distances = anchor_distances.detach().float().cpu()
    if distances.ndim != 2:
        raise ValueError(f"anchor_distances must be (num_labels, num_anchors) for one face, got {tuple(distances.shape)}.")
    num_anchors = distances.shape[1]
    order = distances.flatten().argsort()[: max(int(top_k), 1)]
    return [
        AnchorMatch(label=id2label[int(i) // num_anchors], anchor=int(i) % num_anchors, distance=float(distances.flatten()[i]))
        for i in order
    ]


def colourise(heatmap: np.ndarray) -> np.ndarray:
    """`(H, W)` values in [0, 1] -> `(H, W, 3)` uint8 colours of the ramp."""
    values = np.clip(np.asarray(heatmap, dtype=np.float32), 0.0, 1.0)
    channels = [np.interp(values, _RAMP_POSITIONS, _RAMP_COLOURS[:, c]) for c in range(3)]
    return np.stack(channels, axis=-1).round().astype(np.uint8)


def overlay_heatmap(image: PIL.Image.Image, heatmap: np.ndarray, alpha: float = 0.5) -> PIL.Image.Image:
    """Blend the colourised heatmap (resized to the image) over an RGB copy of `image`."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
    base = image.convert("RGB")
    heat = PIL.Image.fromarray((normalise_map(heatmap) * 255).astype(np.uint8)).resize(base.size, PIL.Image.BILINEAR)
    colours = PIL.Image.fromarray(colourise(np.asarray(heat, dtype=np.float32) / 255.0))
    return PIL.Image.blend(base, colours, alpha)


def explain_face(
    model: torch.nn.Module,
    processor,
    face: PIL.Image.Image,
    method: str = "attention",
    top_k: int = 5,
    display_size: int = 224,
) -> Explanation:
    """Explain the model's prediction for one face crop.

    Args:
        model: a `GReFELForImageClassification` (eval mode).
        processor: its image processor (`AutoImageProcessor.from_pretrained(..., trust_remote_code=True)`).
        face: the face crop, as the pipeline classified it.
        method: "attention" (fusion-ViT class-token attention) or "gradcam".
        top_k: how many nearest anchors to list.
        display_size: side of the square overlay image.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
    face = face.convert("RGB")
    device = next(model.parameters()).device
    pixel_values = processor(images=face, return_tensors="pt")["pixel_values"].to(device)
    with torch.no_grad():
        outputs = model(pixel_values, output_attentions=True, return_dict=True)
    probs = outputs.logits[0].softmax(dim=-1).cpu()
    id2label = model.config.id2label
    if method == "attention":
        heatmap = class_token_attention(outputs.attentions, model.config.token_grid_size)[0]
    else:
        heatmap = grad_cam(model, pixel_values, target=int(probs.argmax()))
    shown = face.resize((display_size, display_size), PIL.Image.BILINEAR)
    return Explanation(
        heatmap=heatmap,
        overlay=overlay_heatmap(shown, heatmap),
        label=id2label[int(probs.argmax())],
        scores={id2label[i]: float(p) for i, p in enumerate(probs.tolist())},
        anchors=nearest_anchors(outputs.anchor_distances[0], id2label, top_k=top_k),
        method=method,
    )


__all__ = [
    "METHODS",
    "AnchorMatch",
    "Explanation",
    "class_token_attention",
    "colourise",
    "explain_face",
    "grad_cam",
    "nearest_anchors",
    "normalise_map",
    "overlay_heatmap",
]
