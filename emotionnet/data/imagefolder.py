"""Image folders: ``<split>/<label name>/<image>``, label names mapped onto the canonical expressions.

Why not `datasets`' own ``imagefolder`` builder (STYLE.md rule 12): run on the layouts this loader accepts
(``load_dataset("imagefolder", data_dir=...)``, datasets 5.2.0, offline; its label rule is
``os.path.basename(os.path.dirname(file))`` in packaged_modules/folder_based_builder/folder_based_builder.py), it
(1) labels an image by its innermost folder, so ``happy/session1/0.png`` becomes class ``session1``, not happiness;
(2) knows no FER2013 split names, so ``Training/``, ``PublicTest/`` and ``PrivateTest/`` were merged silently into one
train split; (3) takes its columns from a ``metadata.csv`` when one is present and then drops the folder labels.
Each of these would train on wrong labels or leak test images into training without an error, so the folders are
listed here (a few lines of ``rglob``); decoding stays lazy either way, and an unreadable image is skipped and
counted when a batch is decoded (`SafeImageLoader`), as for every other source.
"""

from __future__ import annotations

import os
from pathlib import Path

from datasets import DatasetDict

from modeling_grefel.configuration_grefel import EXPRESSIONS

from .common import (
    SPLIT_SYNONYMS,
    LoadReport,
    _check_num_classes,
    _map_names,
    _normalise_name,
    _require_dir,
    _SplitBuilder,
)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
"""File endings `load_imagefolder` treats as images (case-insensitive); other files are ignored."""


def load_imagefolder(
    data_dir: str | os.PathLike,
    num_classes: int | None = None,
    validation_fraction: float = 0.1,
    seed: int = 0,
) -> tuple[DatasetDict, LoadReport]:
    """Images in class-name sub-folders: ``data_dir/<class>/**/<image>``, or with split folders first,
    ``data_dir/<split>/<class>/**/<image>`` (split names: train/training, validation/valid/val/dev, test/testing).

    Class folder names are mapped by `LABEL_SYNONYMS` (``happy`` -> happiness, ``angry`` -> anger, ...); a
    ValueError lists every folder name that cannot be mapped. Files whose ending is not in `IMAGE_EXTENSIONS` are
    ignored. Default: 8 classes if a contempt folder exists, else 7.
    """
    _check_num_classes(num_classes)
    directory = _require_dir(Path(data_dir), "an image folder with one sub-folder per class")
    subdirs = sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subdirs:
        raise ValueError(f"{directory}: expected one sub-folder per class (or per split), found none; add them.")
    split_names = {p: SPLIT_SYNONYMS.get(_normalise_name(p.name)) for p in subdirs}
    if any(split_names.values()):
        others = [p.name for p, split in split_names.items() if split is None]
        if others:
            raise ValueError(
                f"{directory}: expected only split folders (train, validation, test) once one exists, also found "
                f"{others}; move class folders into a split folder."
            )
        split_dirs = {split: path for path, split in split_names.items()}
    else:
        split_dirs = {"train": directory}
    class_dirs = {
        split: sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        for split, root in split_dirs.items()
    }
    mapping = _map_names(sorted({p.name for dirs in class_dirs.values() for p in dirs}), str(directory))
    has_contempt = "contempt" in mapping.values()
    report = LoadReport(source="imagefolder", layout="class sub-folders", num_classes=num_classes or (8 if has_contempt else 7))
    builder = _SplitBuilder(report, with_soft_label=False)
    for split, dirs in class_dirs.items():
        builder.rows.setdefault(split, {"image": [], "label": [], "soft_label": []})
        for class_dir in dirs:
            label = EXPRESSIONS.index(mapping[class_dir.name])
            for image in sorted(class_dir.rglob("*")):
                if image.is_file() and image.suffix.lower() in IMAGE_EXTENSIONS:
                    builder.add(split, str(image.resolve()), label)
    return builder.build({split: path for split, path in split_dirs.items()}, validation_fraction, seed), report


__all__ = [
    "IMAGE_EXTENSIONS",
    "load_imagefolder",
]
