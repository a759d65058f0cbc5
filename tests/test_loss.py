"""GReFELLoss: each part against hand-computed values, bounds, class weights, soft labels, ramp."""

import math

import pytest
import torch

from modeling_grefel import GReFELConfig, GReFELLoss
from modeling_grefel.loss_grefel import distribution_confidence


def make_loss(**kwargs) -> GReFELLoss:
    return GReFELLoss(GReFELConfig.tiny(**kwargs))


def test_confidence_is_one_for_one_hot_and_zero_for_uniform():
    probs = torch.tensor([[1.0, 0, 0, 0], [0.25, 0.25, 0.25, 0.25]])
    torch.testing.assert_close(distribution_confidence(probs), torch.tensor([1.0, 0.0]))


def test_classification_loss_is_smoothed_cross_entropy():
    loss = make_loss(label_smoothing=0.1)
    probs = torch.tensor([[0.7, 0.1, 0.1, 0.1, 0, 0, 0, 0]]).clamp_min(1e-12)
    target = torch.nn.functional.one_hot(torch.tensor([0]), 8).float()
    smoothed = target * 0.9 + 0.1 / 8
    expected = -(smoothed * probs.log()).sum()
    torch.testing.assert_close(loss.classification_loss(probs, target), expected)



def test_anchor_loss_is_bounded_and_vanishes_when_anchors_are_apart():
    loss = make_loss(anchor_margin=1.0)
    config = loss.config
    c, k, d = config.num_labels, config.num_anchors, config.hidden_size
    collapsed = torch.zeros(c, k, d)
    assert loss.anchor_loss(collapsed).item() == pytest.approx(1.0)  # the upper bound: the margin
    far = torch.arange(c, dtype=torch.float32)[:, None, None].expand(c, k, d) * 100.0
    assert loss.anchor_loss(far).item() == 0.0
    # Hand-computed: two classes one apart in every coordinate of every anchor.
    two = GReFELLoss(GReFELConfig.tiny(id2label={0: "a", 1: "b"}, label2id={"a": 0, "b": 1}, anchor_margin=5.0))
    anchors = torch.zeros(2, k, d)
    anchors[1] += 1.0
    normalised = k * d / (k**2 * math.sqrt(d))
    assert two.anchor_loss(anchors).item() == pytest.approx(5.0 - normalised, rel=1e-5)


def test_center_loss_uses_the_nearest_anchor_of_the_true_class():
    loss = make_loss()
    d = loss.config.hidden_size
    distances = torch.tensor([[[3.0, 1.0, 2.0, 5.0]] + [[9.0] * 4] * 7])  # (1, 8, 4)
    target = torch.nn.functional.one_hot(torch.tensor([0]), 8).float()
    confidence = torch.tensor([0.5])
    assert loss.center_loss(distances, target, confidence).item() == pytest.approx(0.5 * 1.0 / math.sqrt(d))


def test_ramp_scales_auxiliary_losses_with_trust():
    loss = make_loss(ramp_auxiliary_losses=True)
    config = loss.config
    args = dict(
        corrected_probs=torch.full((2, 8), 1 / 8),
        primary_confidence=torch.ones(2),
        anchor_distances=torch.ones(2, 8, config.num_anchors),
        anchors=torch.zeros(8, config.num_anchors, config.hidden_size),
        labels=torch.tensor([0, 1]),
    )
    at_start = loss(**args, trust=0.0)
    torch.testing.assert_close(at_start["loss"], at_start["classification_loss"])
    at_end = loss(**args, trust=1.0)
    torch.testing.assert_close(
        at_end["loss"], at_end["classification_loss"] + at_end["anchor_loss"] + at_end["center_loss"]
    )


def test_soft_labels_must_match_the_label_count():
    loss = make_loss()
    with pytest.raises(ValueError, match=r"soft labels must have shape \(batch, 8\)"):
        loss(torch.full((2, 8), 1 / 8), torch.ones(2), torch.ones(2, 8, 4), torch.zeros(8, 4, 96), torch.ones(2, 7))
