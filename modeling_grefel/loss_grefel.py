"""The GReFEL training objective: L = w_cls * L_cls + w_a * L_a + w_c * L_c (seed: all weights 1.0)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_grefel import GReFELConfig


def distribution_confidence(probs: torch.Tensor) -> torch.Tensor:
    """c(x) = 1 - H(x) / log C for distributions over the last axis: 1 for one-hot, 0 for uniform."""
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(dim=-1)
    return 1.0 - entropy / math.log(probs.shape[-1])


def target_distribution(labels: torch.Tensor, num_labels: int) -> torch.Tensor:
    """Class ids (B,) or per-sample distributions (B, C) -> float distributions (B, C)."""
    if labels.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8):
        if labels.ndim != 1:
            raise ValueError(f"class-id labels must have shape (batch,), got {tuple(labels.shape)}.")
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_labels):
            raise ValueError(
                f"labels must be class ids in [0, {num_labels - 1}], got values from {int(labels.min())} to "
                f"{int(labels.max())}; map dataset labels onto the model's id2label first."
            )
        return F.one_hot(labels.long(), num_labels).float()
    if labels.ndim != 2 or labels.shape[1] != num_labels:
        raise ValueError(
            f"soft labels must have shape (batch, {num_labels}), got {tuple(labels.shape)}."
        )
    return labels.float() / labels.float().sum(dim=1, keepdim=True).clamp_min(1e-12)


class GReFELLoss(nn.Module):
    """
    Classification, anchor and center losses of GReFEL, weighted from the config; returns the parts for logging.

    - L_cls: cross-entropy (NLL of log p_hat) of the corrected distribution against the label-smoothed target. Labels
      are class ids or per-sample distributions (FERPlus votes); imbalance is met by sampling (`--class_balanced`).
    - L_a: keeps class anchors apart. ARBEx's -(1 / (K^2 sqrt D)) * sum ||vec(A_i) - vec(A_m)||^2 is unbounded below,
      so each pair's normalised squared distance is hinged at `anchor_margin`:
      L_a = mean over class pairs of relu(margin - ||vec(A_i) - vec(A_m)||^2 / (K^2 sqrt D)), which lies in
      [0, margin] and is 0 once every pair is at least the margin apart.
    - L_c: pulls e to the nearest anchor of its class: mean over the batch of c_p * min_j d_(y,j) / sqrt(D), with
      c_p detached (a weight, not a path by which the model could lower its confidence to lower the loss) and, for
      soft labels, the class minimum averaged under the target distribution.
    With `ramp_auxiliary_losses`, L_a and L_c are scaled by the trust t as in ARBEx.
    """

    def __init__(self, config: GReFELConfig):
        super().__init__()
        self.config = config

    def classification_loss(self, corrected_probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        num_labels = target.shape[1]
        smoothing = self.config.label_smoothing
        smoothed = target * (1.0 - smoothing) + smoothing / num_labels
        return -(smoothed * corrected_probs.clamp_min(1e-12).log()).sum(dim=1).mean()

    def anchor_loss(self, anchors: torch.Tensor) -> torch.Tensor:
        num_labels, num_anchors, dim = anchors.shape
        flat = anchors.reshape(num_labels, num_anchors * dim)
        squared = (flat[:, None, :] - flat[None, :, :]).pow(2).sum(-1) / (num_anchors**2 * math.sqrt(dim))  # (C, C)
        pairs = torch.triu_indices(num_labels, num_labels, offset=1, device=anchors.device)
        return F.relu(self.config.anchor_margin - squared[pairs[0], pairs[1]]).mean()

    def center_loss(self, anchor_distances: torch.Tensor, target: torch.Tensor, primary_confidence: torch.Tensor):
        nearest = anchor_distances.min(dim=-1).values  # (B, C): distance to the nearest anchor of each class
        per_sample = (target * nearest).sum(dim=1) / math.sqrt(self.config.hidden_size)
        return (primary_confidence.detach() * per_sample).mean()

    def forward(
        self,
        corrected_probs: torch.Tensor,
        primary_confidence: torch.Tensor,
        anchor_distances: torch.Tensor,
        anchors: torch.Tensor,
        labels: torch.Tensor,
        trust: torch.Tensor | float = 1.0,
    ) -> dict[str, torch.Tensor]:
        target = target_distribution(labels.to(corrected_probs.device), corrected_probs.shape[1])
        cls = self.classification_loss(corrected_probs, target)
        anchor = self.anchor_loss(anchors)
        center = self.center_loss(anchor_distances, target, primary_confidence)
        ramp = trust if self.config.ramp_auxiliary_losses else 1.0
        total = (
            self.config.classification_loss_weight * cls
            + ramp * self.config.anchor_loss_weight * anchor
            + ramp * self.config.center_loss_weight * center
        )
        return {"loss": total, "classification_loss": cls, "anchor_loss": anchor, "center_loss": center}


__all__ = ["GReFELLoss", "distribution_confidence", "target_distribution"]
