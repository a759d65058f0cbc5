"""The entry point: `load_fer_dataset` picks the loader of a named source (or the synthetic set, or a Hub /
`load_from_disk` dataset) and returns the `DatasetDict`, optionally with its `LoadReport`."""

from __future__ import annotations

from datasets import DatasetDict

from .common import (
    LoadReport,
    _check_num_classes,
    _normalise_name,
)
from .fer2013 import load_fer2013
from .ferplus import load_ferplus
from .hub_dataset import load_hub_dataset
from .imagefolder import load_imagefolder
from .rafdb import load_rafdb


def load_fer_dataset_with_report(
    name: str,
    data_dir: str | None = None,
    num_classes: int | None = None,
    image_column: str = "image",
    label_column: str = "label",
    validation_fraction: float = 0.1,
    seed: int = 0,
) -> tuple[DatasetDict, LoadReport]:
    """`load_fer_dataset`, also returning the `LoadReport` (what was read, dropped and carved)."""
    _check_num_classes(num_classes)
    if not 0 < validation_fraction < 1:
        raise ValueError(
            f"validation_fraction={validation_fraction!r}: expected a fraction strictly between 0 and 1, e.g. 0.1."
        )
    key = _normalise_name(name).replace(" ", "")
    if key in ("synthetic", "syntheticfaces"):
        from ..synthetic import make_synthetic_faces

        dataset = make_synthetic_faces(num_classes=num_classes or 8, seed=seed)
        report = LoadReport(source="synthetic-faces", layout="generated", num_classes=num_classes or 8, synthetic=True)
        report.split_sizes = {split: len(ds) for split, ds in dataset.items()}
        return dataset, report
    loaders = {"ferplus": load_ferplus, "fer+": load_ferplus, "rafdb": load_rafdb, "fer2013": load_fer2013,
               "imagefolder": load_imagefolder}  # fmt: skip
    if key in loaders:
        if data_dir is None:
            raise ValueError(f"dataset {name!r} needs data_dir, the folder holding its files; pass --data_dir.")
        return loaders[key](data_dir, num_classes=num_classes, validation_fraction=validation_fraction, seed=seed)
    return load_hub_dataset(
        name, data_dir, num_classes, image_column, label_column, validation_fraction=validation_fraction, seed=seed
    )


def load_fer_dataset(
    name: str,
    data_dir: str | None = None,
    num_classes: int | None = None,
    image_column: str = "image",
    label_column: str = "label",
    validation_fraction: float = 0.1,
    seed: int = 0,
) -> DatasetDict:
    """A facial-expression dataset as a `DatasetDict` in the canonical label order.

    Args:
        name: ``"ferplus"``, ``"rafdb"``, ``"fer2013"``, ``"imagefolder"`` (see `load_ferplus`, `load_rafdb`,
            `load_fer2013`, `load_imagefolder` for the file layouts), ``"synthetic"`` (the generated
            synthetic-faces set, `make_synthetic_faces` defaults), or else a `save_to_disk` folder or a
            `datasets.load_dataset` name (`load_hub_dataset`).
        data_dir: The source's folder (built-in sources); passed to `load_dataset` otherwise.
        num_classes: 7 (contempt dropped and counted) or 8; None takes the source's default.
        image_column, label_column: Column names of a Hub / `load_from_disk` dataset.
        validation_fraction: Share of each class carved from train when the source has no validation split.
        seed: Seed of that carving (and of the synthetic set).

    Returns:
        ``train``, ``validation`` and, where the source has one, ``test`` splits with ``image``, ``label`` and, for
        FERPlus, ``soft_label``. Use `load_fer_dataset_with_report` to get the `LoadReport` too; its summary is in
        every split's ``info.description``.
    """
    return load_fer_dataset_with_report(
        name, data_dir, num_classes, image_column, label_column, validation_fraction, seed
    )[0]


__all__ = [
    "load_fer_dataset",
    "load_fer_dataset_with_report",
]
