"""One entry point for every FER data source, and robust image decoding for training.

`load_fer_dataset(name, ...)` returns a `datasets.DatasetDict` with "train" and "validation" (and "test" where the
source has one), an `image` column and a `label` column whose `ClassLabel` names are the canonical expression order
(`modeling_grefel.EXPRESSIONS`, 7 or 8 classes); FERPlus also has `soft_label` (vote distributions). The per-format
readers live in `emotionnet.loaders`; this module dispatches, carves a validation split where a source has none, and
keeps the training loop alive when an image cannot be read.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile, UnidentifiedImageError

logger = logging.getLogger(__name__)
NAMED_SOURCES = ("ferplus", "rafdb", "fer2013", "imagefolder", "synthetic")


def load_fer_dataset(name: str, data_dir: str | None = None, num_classes: int | None = None,
                     image_column: str = "image", label_column: str = "label", validation_fraction: float = 0.1,
                     seed: int = 0):
    """Load a FER dataset by name (`ferplus`, `rafdb`, `fer2013`, `imagefolder`, `synthetic`), Hub id or
    `load_from_disk` path, with canonical labels and a validation split."""
    if name == "synthetic":
        from .synthetic import make_synthetic_faces

        return make_synthetic_faces(num_classes=num_classes or 8, seed=seed)
    from . import loaders

    if name in ("ferplus", "rafdb", "fer2013", "imagefolder") and not data_dir:
        raise ValueError(f"dataset {name!r} needs data_dir (--data_dir): the folder holding its files.")
    if name == "ferplus":
        data, report = loaders.load_ferplus(data_dir, num_classes=num_classes or 8)
    elif name == "rafdb":
        data, report = loaders.load_rafdb(data_dir, num_classes=num_classes or 7)
    elif name == "fer2013":
        data, report = loaders.load_fer2013(data_dir, num_classes=num_classes or 7)
    elif name == "imagefolder":
        data, report = loaders.load_image_folder(data_dir, num_classes=num_classes)
    else:
        data, report = loaders.load_hub_or_disk(name, image_column=image_column, label_column=label_column,
                                                num_classes=num_classes)
    logger.info(report.summary())
    return with_validation_split(data, validation_fraction, seed)


def with_validation_split(data, fraction: float, seed: int):
    """Carve a deterministic, stratified validation split from train when the source has none."""
    from datasets import DatasetDict

    if "validation" in data:
        return data
    if "train" not in data or len(data["train"]) == 0:
        raise ValueError(f"the dataset has no (or an empty) train split; splits found: {sorted(data)}.")
    if not 0 < fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {fraction}.")
    parts = data["train"].train_test_split(test_size=fraction, seed=seed, stratify_by_column="label")
    return DatasetDict({**data, "train": parts["train"], "validation": parts["test"]})


class SafeImageLoader:
    """Turns an example's image (PIL image, path, or datasets' {"bytes", "path"} dict) into an RGB PIL image.

    An unreadable or truncated image returns None and is recorded in `skipped` as (where, reason), so one bad file
    costs one sample, not a training run.
    """

    def __init__(self, image_column: str = "image"):
        self.image_column = image_column
        self.skipped: list[tuple[str, str]] = []

    def __call__(self, example: dict) -> Image.Image | None:
        value = example[self.image_column]
        where = self.describe(value)
        try:
            image = self.open(value)
            image.load()  # decode now: a truncated file fails here, not inside the model's batch
            return image.convert("RGB")
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as error:
            self.skipped.append((where, f"{type(error).__name__}: {error}"))
            logger.warning("skipping unreadable image %s (%s)", where, error)
            return None

    @staticmethod
    def open(value) -> Image.Image:
        if isinstance(value, Image.Image):
            return value
        if isinstance(value, (str, Path)):
            return Image.open(value)
        if isinstance(value, dict):
            if value.get("bytes"):
                return Image.open(io.BytesIO(value["bytes"]))
            if value.get("path"):
                return Image.open(value["path"])
        raise ValueError(f"expected a PIL image, a path or a {{'bytes', 'path'}} dict, got {type(value).__name__}")

    @staticmethod
    def describe(value) -> str:
        if isinstance(value, (str, Path)):
            return str(value)
        if isinstance(value, dict) and value.get("path"):
            return str(value["path"])
        return getattr(value, "filename", "") or "<in-memory image>"

    def summary(self) -> str:
        if not self.skipped:
            return "no unreadable images"
        shown = "; ".join(f"{where} ({reason})" for where, reason in self.skipped[:5])
        more = f" and {len(self.skipped) - 5} more" if len(self.skipped) > 5 else ""
        return f"{len(self.skipped)} unreadable image(s) skipped: {shown}{more}"


def collate_images(examples: list[dict], loader: SafeImageLoader, size: int):
    """Decode, convert to RGB and resize a list of examples to (B, 3, size, size) uint8, skipping unreadable ones.

    Returns (images, labels (B,) long, soft labels (B, C) float or None, the skipped entries of this batch).
    """
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error to skip, not a half-grey image
    before = len(loader.skipped)
    arrays, labels, soft = [], [], []
    for example in examples:
        image = loader(example)
        if image is None:
            continue
        arrays.append(np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8))
        labels.append(int(example["label"]))
        if "soft_label" in example:
            soft.append(example["soft_label"])
    if arrays:
        images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    else:
        images = torch.zeros(0, 3, size, size, dtype=torch.uint8)
    soft_labels = torch.tensor(soft, dtype=torch.float32) if soft and len(soft) == len(labels) else None
    return images, torch.tensor(labels, dtype=torch.long), soft_labels, loader.skipped[before:]


__all__ = ["NAMED_SOURCES", "SafeImageLoader", "collate_images", "load_fer_dataset", "with_validation_split"]
