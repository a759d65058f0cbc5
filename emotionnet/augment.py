"""The seed's training augmentation, applied to a whole batch at once on the batch's device.

The CPU only decodes and resizes to the model's image size, exactly as evaluation does; the random shift, rotation,
shear, perspective and flip are folded into one sampling grid per image and applied with a single `grid_sample` call,
then colour jitter and normalisation run as tensor arithmetic. torchvision is not needed.

Seed recipe (GREFEL_SPEC.md): resize 256, random crop 224, rotation +-30 deg, colour jitter 0.4, shear +-15 deg,
random perspective 0.3 (with p=0.5, torchvision's default), horizontal flip. The crop is taken as a shift of the same
range (+-16 px of 256, `translate=1/16` of the side) at the evaluation scale, the way POSTER++ and DAN train (resize
to 224, `RandomCrop(224, padding=32)`; evaluation resizes to 224): a crop from a larger resize shows faces 14% larger
in training than in evaluation, which cost the tiny network 9 points of accuracy on its own training images
(README, "Learning").

Why not `kornia.augmentation` (STYLE.md rule 12): the recipe written with kornia 0.9.0's transforms
(benchmarks/augment_kornia.py: RandomHorizontalFlip, RandomAffine with reflection padding, RandomPerspective with
area-preserving corners, ColorJitter in this order, Normalize) was measured against this module with
`OMP_NUM_THREADS=1 python benchmarks/augment_kornia.py --repeats 50` (torch 2.13.0 CPU, one thread of a shared AMD EPYC,
2026-12-02, two runs, images/s ours vs kornia): seed recipe 934 vs 709 and 869 vs 687 at 32 x 3 x 64 x 64, 350 vs 256
and 287 vs 216 at 16 x 3 x 112 x 112 (kornia 0.73-0.79x); light recipe 969 vs 1103 and 874 vs 858 at 64 px, 328 vs 395
and 281 vs 311 at 112 px (0.98-1.20x). Besides being slower on the seed recipe, kornia cannot keep it: RandomPerspective
has no padding_mode, so 2.2% of the pixels of an augmented white batch come out black, and the affine and perspective
steps interpolate the batch twice where the single grid here interpolates once. One path for every recipe, so ours.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 0-255 or float 0-1 images -> float32 0-1."""
    if images.dtype == torch.uint8:
        return images.float() / 255.0
    return images.float()


class BatchAugment(nn.Module):
    """Random shift + rotation + shear + perspective + flip in one grid, then colour jitter, then normalisation.

    Input: (B, 3, H, W) uint8 (0-255) or float (0-1) images, decoded at `input_size` (= `image_size`); output: float
    (B, 3, image_size, image_size), normalised with mean/std. The geometric transforms keep the scale: a face is as
    large as the evaluation resize shows it. Pixels shifted or rotated in from outside the image are mirrored from
    inside it, not black as torchvision's padded crop makes them: on the synthetic default black borders cost 17 points
    of validation accuracy (seed 0, 0.76 against 0.93).
    With `enabled=False` (or in eval mode) it only resizes and normalises.
    Randomness comes from the global torch RNG of the batch's device, so `torch.manual_seed` makes it reproducible.
    """

    def __init__(self, image_size: int = 224, *, translate: float = 1 / 16, rotation: float = 30.0,
                 shear: float = 15.0, perspective: float = 0.3, perspective_p: float = 0.5, jitter: float = 0.4,
                 hflip: float = 0.5, mean=IMAGENET_MEAN, std=IMAGENET_STD, enabled: bool = True):
        super().__init__()
        if not 0.0 <= translate < 0.5:
            raise ValueError(f"translate must be a fraction of the side in [0, 0.5), got {translate}.")
        self.image_size = self.input_size = image_size
        self.translate = translate
        self.rotation, self.shear, self.jitter, self.hflip = rotation, shear, jitter, hflip
        self.perspective, self.perspective_p = perspective, perspective_p
        self.enabled = enabled
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_processor(cls, processor, **magnitudes) -> BatchAugment:
        """The augmentation that trains at `processor`'s geometry: its (square) size, mean and std.

        `magnitudes` are the other keyword arguments, e.g. one of `emotionnet.training.AUGMENTATIONS`.
        """
        height, width = processor.size["height"], processor.size["width"]
        if height != width:
            raise ValueError(f"BatchAugment needs a square processor size, got {height}x{width}.")
        return cls(image_size=height, mean=tuple(processor.image_mean), std=tuple(processor.image_std), **magnitudes)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std

    def plain(self, images: torch.Tensor) -> torch.Tensor:
        """Resize to image_size and normalise: no randomness."""
        images = to_unit_float(images)
        if images.shape[-1] != self.image_size or images.shape[-2] != self.image_size:
            images = F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear",
                                   align_corners=False, antialias=True)
        return self.normalize(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"BatchAugment expects (batch, 3, height, width) images, got {tuple(images.shape)}.")
        if not self.enabled or not self.training:
            return self.plain(images)
        images = to_unit_float(images)
        grid = self.sampling_grid(images.shape[0], images.device)
        out = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        return self.normalize(self.color_jitter(out))

    def sampling_grid(self, batch: int, device) -> torch.Tensor:
        """(B, S, S, 2) input coordinates ([-1, 1] is the whole input) for each output pixel of every image."""
        size = self.image_size
        lin = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size * 2 - 1
        y, x = torch.meshgrid(lin, lin, indexing="ij")
        points = torch.stack([x, y, torch.ones_like(x)], dim=-1).view(1, -1, 3).expand(batch, -1, -1)  # (B, S*S, 3)

        # Perspective: a random homography moving each corner by up to `perspective` of the half-side.
        homography = torch.eye(3, device=device).repeat(batch, 1, 1)
        apply = torch.rand(batch, device=device) < self.perspective_p
        if self.perspective > 0 and bool(apply.any()):
            corners = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], device=device)
            moved = corners + (torch.rand(batch, 4, 2, device=device) * 2 - 1) * self.perspective
            fitted = homography_from_corners(corners.expand(batch, -1, -1), moved)
            homography = torch.where(apply[:, None, None], fitted, homography)
        warped = points @ homography.transpose(1, 2)
        warped = warped[..., :2] / warped[..., 2:].clamp_min(1e-6)  # (B, S*S, 2)

        # Rotation, shear and flip about the centre, then the shift (grid coordinates span 2 per side).
        angle = (torch.rand(batch, device=device) * 2 - 1) * math.radians(self.rotation)
        shear = (torch.rand(batch, device=device) * 2 - 1) * math.radians(self.shear)
        flip = torch.where(torch.rand(batch, device=device) < self.hflip, -1.0, 1.0)
        cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(shear)
        # (B, 2, 2): rotation @ x-shear @ flip
        linear = torch.stack([torch.stack([cos, cos * tan - sin], -1), torch.stack([sin, sin * tan + cos], -1)], 1)
        linear = linear * torch.stack([flip, torch.ones_like(flip)], -1)[:, None, :]
        offset = (torch.rand(batch, 2, device=device) * 2 - 1) * (2 * self.translate)
        coords = warped @ linear.transpose(1, 2) + offset[:, None, :]
        return coords.view(batch, size, size, 2)

    def color_jitter(self, images: torch.Tensor) -> torch.Tensor:
        """Brightness, contrast and saturation factors drawn from [1 - jitter, 1 + jitter] per image."""
        if self.jitter <= 0:
            return images
        b = images.shape[0]
        factors = 1 + (torch.rand(b, 3, 1, 1, 1, device=images.device) * 2 - 1) * self.jitter
        images = (images * factors[:, 0]).clamp(0, 1)
        grey = (0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]).unsqueeze(1)  # (B, 1, H, W)
        images = ((images - grey.mean(dim=(2, 3), keepdim=True)) * factors[:, 1] + grey.mean(dim=(2, 3), keepdim=True))
        images = images.clamp(0, 1)
        grey = (0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]).unsqueeze(1)
        return ((images - grey) * factors[:, 2] + grey).clamp(0, 1)


def homography_from_corners(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, 4, 2) point pairs -> (B, 3, 3) homographies H with H @ [source, 1] ~ [target, 1] (direct linear transform)."""
    b = source.shape[0]
    x, y = source[..., 0], source[..., 1]
    u, v = target[..., 0], target[..., 1]
    zeros, ones = torch.zeros_like(x), torch.ones_like(x)
    rows_u = torch.stack([x, y, ones, zeros, zeros, zeros, -u * x, -u * y], dim=-1)
    rows_v = torch.stack([zeros, zeros, zeros, x, y, ones, -v * x, -v * y], dim=-1)
    a = torch.cat([rows_u, rows_v], dim=1)  # (B, 8, 8)
    rhs = torch.cat([u, v], dim=1).unsqueeze(-1)  # (B, 8, 1)
    h = torch.linalg.solve(a, rhs).squeeze(-1)
    return torch.cat([h, torch.ones(b, 1, device=h.device)], dim=1).view(b, 3, 3)


__all__ = ["BatchAugment", "IMAGENET_MEAN", "IMAGENET_STD", "homography_from_corners",
           "to_unit_float"]
