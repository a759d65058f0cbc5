"""Class-balanced sampling for the RAF-DB / FER2013 recipes (the seed: "500 images per class" per epoch)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Sampler


class ClassBalancedSampler(Sampler[int]):
    """Each epoch draws `samples_per_class` indices of every class (with replacement for smaller classes), shuffled.

    The order depends only on (seed, epoch), never on the global RNG, so every DDP process draws the same order
    (accelerate then shards it) and a resumed run sees the same batches. Call `set_epoch` at each epoch start
    (accelerate's prepared dataloader forwards its `set_epoch` here).
    """

    def __init__(self, labels: Sequence[int], samples_per_class: int | None = None, seed: int = 0):
        labels = torch.as_tensor(list(labels), dtype=torch.long)
        if labels.numel() == 0:
            raise ValueError("ClassBalancedSampler: the dataset has no labels; check the train split is not empty.")
        self.by_class = [torch.nonzero(labels == c).flatten() for c in torch.unique(labels).tolist()]
        largest = max(len(indices) for indices in self.by_class)
        self.samples_per_class = samples_per_class or largest
        if self.samples_per_class < 1:
            raise ValueError(f"samples_per_class must be positive, got {samples_per_class}.")
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.samples_per_class * len(self.by_class)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        drawn = []
        for indices in self.by_class:
            if len(indices) >= self.samples_per_class:
                picks = torch.randperm(len(indices), generator=generator)[: self.samples_per_class]
            else:
                picks = torch.randint(len(indices), (self.samples_per_class,), generator=generator)
            drawn.append(indices[picks])
        order = torch.cat(drawn)[torch.randperm(len(self), generator=generator)]
        return iter(order.tolist())


__all__ = ["ClassBalancedSampler"]
