"""Robust decoding for training and evaluation: one unreadable file costs one sample, never the run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from datasets import Dataset, DatasetDict, Image

from modeling_grefel.image_input_grefel import ImageInputError, read_rgb_image


def with_raw_images(dataset: Dataset | DatasetDict) -> Dataset | DatasetDict:
    """The dataset with image decoding off, so examples carry ``{"bytes", "path"}`` dicts for `SafeImageLoader`.

    With decoding on, `datasets` decodes while indexing, and one truncated file raises inside the data loader.
    """
    return dataset.cast_column("image", Image(decode=False))


class SafeImageLoader:
    """Decodes an example's image to an RGB `PIL.Image`, or returns None and records why.

    Takes an example dict (its ``image_column`` entry is decoded, its optional ``__key__`` names it) or an image
    itself: anything `modeling_grefel.image_input_grefel.read_image` reads (a file path, raw bytes, a `datasets`
    ``{"bytes", "path"}`` dict, a `PIL.Image`, an array or tensor), read exactly as the image processor, the pipeline
    and the Space read it (EXIF orientation applied, 16-bit scaled, transparency on white, files above
    ``MAX_PIXELS`` refused). Unreadable, truncated, missing or non-image inputs are recorded in `skipped` as
    ``(key, reason)``, the reason being the reader's sentence, the key the given one, else the image's path, else its
    running number. Each data loader worker holds its own copy, so
    totals across workers come from what `collate_images` returns per batch. Truncated files are refused only while
    ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` is False (PIL's default; this class leaves that global alone).
    """

    def __init__(self, image_column: str = "image") -> None:
        self.image_column = image_column
        self.skipped: list[tuple[str | int, str]] = []
        self.num_seen = 0

    def __call__(self, item: Any, key: str | int | None = None) -> PIL.Image.Image | None:
        """The RGB image of ``item`` (an example or an image), or None, recorded in `skipped`."""
        if isinstance(item, dict) and self.image_column in item:
            key = key if key is not None else item.get("__key__")
            item = item[self.image_column]
        self.num_seen += 1
        path = item.get("path") if isinstance(item, dict) else item if isinstance(item, str | Path) else None
        key = key if key is not None else str(path) if path else self.num_seen - 1
        try:
            return read_rgb_image(item)
        except ImageInputError as err:
            self.skipped.append((key, str(err)))
        except Exception as err:  # a decoder failing in a way the reader does not foresee costs one sample, not the run
            self.skipped.append((key, f"{type(err).__name__}: {err}"))
        return None

def collate_images(
    examples: Sequence[dict[str, Any]],
    loader: SafeImageLoader,
    image_size: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, list[tuple[str | int, str]]]:
    """Decode, resize and stack a batch, dropping the examples the loader cannot read.

    Each example needs ``image`` and ``label``; ``soft_label`` is used when every kept example has one, and an
    optional ``__key__`` names the example in the skip list. Images are resized straight to ``image_size`` squares
    with PIL bilinear resampling (cheap, on CPU); normalisation is left to the model side.

    Returns:
        ``(pixels, labels, soft_labels, skipped)``: uint8 ``(B, 3, S, S)``, int64 ``(B,)``, float32 ``(B, C)`` or
        None, and this batch's ``(key, reason)`` entries for the dropped examples (``len(skipped)`` is their number;
        B counts the rest). The entries travel with the batch because a worker's loader is not the main process's.
    """
    before = len(loader.skipped)
    pixels, labels, soft_labels = [], [], []
    for example in examples:
        image = loader(example)
        if image is None:
            continue
        resized = image.resize((image_size, image_size), PIL.Image.Resampling.BILINEAR)
        pixels.append(np.asarray(resized, dtype=np.uint8))
        labels.append(int(example["label"]))
        if example.get("soft_label") is not None:
            soft_labels.append(example["soft_label"])
    skipped = loader.skipped[before:]
    if not pixels:
        return torch.empty(0, 3, image_size, image_size, dtype=torch.uint8), torch.empty(0, dtype=torch.long), None, skipped
    batch = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).contiguous()  # (B, S, S, 3) -> (B, 3, S, S)
    soft = torch.tensor(soft_labels, dtype=torch.float32) if len(soft_labels) == len(labels) else None
    return batch, torch.tensor(labels, dtype=torch.long), soft, skipped


def describe_skipped(skipped: Sequence[tuple[str | int, str]], limit: int = 3, reasons: bool = True) -> str:
    """``"2 images: a.jpg (OSError: ...), b.jpg (...)"``: the count, the first `limit` by name, then how many more."""
    named = ", ".join(f"{key} ({reason})" if reasons else str(key) for key, reason in skipped[:limit])
    more = f", and {len(skipped) - limit} more" if len(skipped) > limit else ""
    return f"{len(skipped)} image{'s' if len(skipped) != 1 else ''}: {named}{more}"


def require_readable_image(dataset: Sequence[dict[str, Any]], what: str, image_column: str = "image") -> None:
    """Raise a `ValueError` unless some image of `dataset` (a `with_raw_images` split) decodes.

    Stops at the first readable image, so a sound dataset costs one decode; only a dataset with nothing readable is
    read to the end, to name what failed. Run before training, so such a set fails in seconds, not after an epoch.
    """
    loader = SafeImageLoader(image_column)
    for example in dataset:
        if loader(example) is not None:
            return
    if not loader.num_seen:
        raise ValueError(f"{what} is empty; check the dataset and --max_train_samples / --max_eval_samples.")
    raise ValueError(
        f"{what}: none of its images can be read ({describe_skipped(loader.skipped)}); check that the files exist "
        "and are images, or the --image_column."
    )


__all__ = [
    "SafeImageLoader",
    "collate_images",
    "describe_skipped",
    "require_readable_image",
    "with_raw_images",
]
