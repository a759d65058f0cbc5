"""Does `kornia.augmentation` do BatchAugment's job as well? Speed on one thread, and whether it keeps the recipe.

    OMP_NUM_THREADS=1 python benchmarks/augment_kornia.py                 # ~1 min on one CPU core
    OMP_NUM_THREADS=1 python benchmarks/augment_kornia.py --repeats 50

kornia is not a dependency of EmotionNet (the measurement kept BatchAugment, see emotionnet/augment.py): install it for
this script with `pip install kornia`.

The kornia composition is the recipe written with kornia's own transforms (`emotionnet.training.AUGMENTATIONS`):
`RandomHorizontalFlip`, `RandomAffine` (rotation, x-shear, shift by `translate` of the side, no scale, reflection
padding), `RandomPerspective` with `sampling_method="area_preserving"` (each corner moved by up to `perspective` of the
half-side, inwards or outwards, as BatchAugment does), `ColorJitter` in BatchAugment's fixed order (brightness,
contrast, saturation), then `Normalize`. Both run on the same uint8 batch, interleaved, and the median time of
`--repeats` calls is reported as images per second, with kornia's speed as a fraction of BatchAugment's.

Besides speed it prints, for the seed recipe, the share of pixels that come out black (exactly 0 before
normalisation) when a white batch is augmented, and how many times the batch is interpolated (`grid_sample` calls):
BatchAugment mirrors the image into every border (see its docstring for what black borders cost) and folds the whole
geometry into one sampling grid.
"""

from __future__ import annotations

import argparse
import functools

import torch

from emotionnet.augment import IMAGENET_MEAN, IMAGENET_STD, BatchAugment
from emotionnet.timing import interleaved_median_seconds
from emotionnet.training import AUGMENTATIONS

SHAPES = ((32, 64), (16, 112))  # (batch, side): the tiny preset's and the paper's image sizes
RECIPES = ("seed", "light")


def kornia_augment(magnitudes: dict, translate: float = 1 / 16, normalise: bool = True):
    """The recipe `magnitudes` (one of AUGMENTATIONS) as a kornia `AugmentationSequential`."""
    import kornia.augmentation as K

    steps = [
        K.RandomHorizontalFlip(p=magnitudes["hflip"]),
        K.RandomAffine(degrees=magnitudes["rotation"], translate=(translate, translate), shear=magnitudes["shear"],
                       padding_mode="reflection", p=1.0),
    ]
    if magnitudes["perspective"] > 0:
        # kornia 0.9's RandomPerspective has no padding_mode: what it brings in from outside the image is black.
        steps.append(K.RandomPerspective(magnitudes["perspective"], p=0.5, sampling_method="area_preserving"))
    jitter = magnitudes["jitter"]
    steps.append(K.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter, order=(0, 1, 2), p=1.0))
    if normalise:
        steps.append(K.Normalize(mean=torch.tensor(IMAGENET_MEAN), std=torch.tensor(IMAGENET_STD)))
    return K.AugmentationSequential(*steps)


def black_share(function, side: int) -> float:
    """Share of the output pixels that are exactly 0 for a white input batch (borders filled with black)."""
    torch.manual_seed(0)
    out = function(torch.ones(64, 3, side, side))
    return float((out == 0).all(dim=1).float().mean())


def resamplings(function, side: int) -> int:
    """How many times `function` interpolates the batch (calls to `torch.nn.functional.grid_sample`)."""
    original, calls = torch.nn.functional.grid_sample, []

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    torch.nn.functional.grid_sample = counting
    try:
        torch.manual_seed(0)
        function(torch.rand(64, 3, side, side))  # 64 images: perspective (p=0.5) is then all but sure to be drawn
    finally:
        torch.nn.functional.grid_sample = original
    return len(calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import kornia

    print(f"torch {torch.__version__}, kornia {kornia.__version__}, 1 thread, median of {args.repeats} calls")
    print("| recipe | batch | ours (images/s) | kornia (images/s) | kornia / ours |")
    print("|---|---|---|---|---|")
    for recipe in RECIPES:
        magnitudes = AUGMENTATIONS[recipe]
        for batch, side in SHAPES:
            ours = BatchAugment(image_size=side, **magnitudes).train()
            theirs = kornia_augment(magnitudes)
            images = torch.randint(0, 256, (batch, 3, side, side), dtype=torch.uint8)
            # kornia takes 0-1 floats; BatchAugment converts the uint8 batch itself, inside its timing.
            seconds = interleaved_median_seconds(
                {"ours": functools.partial(ours, images), "kornia": functools.partial(theirs, images.float() / 255.0)},
                args.repeats)
            ours_s, theirs_s = seconds["ours"], seconds["kornia"]
            print(f"| {recipe} | {batch} x 3 x {side} x {side} | {batch / ours_s:.0f} | {batch / theirs_s:.0f} | "
                  f"{ours_s / theirs_s:.2f} |")
    unnormalised = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    ours = BatchAugment(image_size=64, **AUGMENTATIONS["seed"], **unnormalised).train()
    theirs = kornia_augment(AUGMENTATIONS["seed"], normalise=False)
    print(f"black border pixels, seed recipe, white 64 px batch: ours {black_share(ours, 64):.4f}, "
          f"kornia {black_share(theirs, 64):.4f}")
    print(f"interpolations per batch, seed recipe: ours {resamplings(ours, 64)}, kornia {resamplings(theirs, 64)}")


if __name__ == "__main__":
    main()
