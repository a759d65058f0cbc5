"""ClassBalancedSampler: balanced, deterministic per (seed, epoch), changes with the epoch."""

from collections import Counter

import pytest

from emotionnet.sampling import ClassBalancedSampler

LABELS = [0] * 50 + [1] * 5 + [2] * 20


def test_every_class_drawn_equally():
    sampler = ClassBalancedSampler(LABELS, samples_per_class=10, seed=1)
    indices = list(sampler)
    assert len(indices) == len(sampler) == 30
    assert Counter(LABELS[i] for i in indices) == {0: 10, 1: 10, 2: 10}


def test_default_draws_the_largest_class_size():
    assert len(ClassBalancedSampler(LABELS)) == 150


def test_deterministic_and_epoch_dependent():
    a, b = ClassBalancedSampler(LABELS, 10, seed=1), ClassBalancedSampler(LABELS, 10, seed=1)
    assert list(a) == list(b)
    b.set_epoch(1)
    assert list(a) != list(b)


def test_empty_labels_are_refused():
    with pytest.raises(ValueError, match="train split"):
        ClassBalancedSampler([])
