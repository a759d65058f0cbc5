"""Any `datasets` dataset: a `save_to_disk` folder or whatever `datasets.load_dataset` opens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Image

from modeling_grefel.configuration_grefel import EXPRESSIONS

from .common import (
    DROP_CONTEMPT,
    NAMED_SOURCES,
    SPLIT_SYNONYMS,
    LoadReport,
    _check_num_classes,
    _finish,
    _map_names,
    _normalise_name,
)


def _load_generic(name: str, data_dir: str | None) -> tuple[DatasetDict, str]:
    import datasets

    path = Path(name)
    if path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file()):
        loaded = datasets.load_from_disk(str(path))
        layout = "load_from_disk folder"
    else:
        try:
            loaded = datasets.load_dataset(name, data_dir=data_dir)
        except Exception as err:  # load_dataset raises many types (offline, not found, bad config)
            raise ValueError(
                f"dataset {name!r}: expected one of {list(NAMED_SOURCES)}, a load_from_disk folder, or a dataset "
                f"datasets.load_dataset can open, but loading failed ({type(err).__name__}: {err}); check the name "
                "and your network or cache."
            ) from err
        layout = "datasets.load_dataset"
    if isinstance(loaded, Dataset):
        loaded = DatasetDict({"train": loaded})
    return loaded, layout


def load_hub_dataset(
    name: str,
    data_dir: str | None = None,
    num_classes: int | None = None,
    image_column: str = "image",
    label_column: str = "label",
    validation_fraction: float = 0.1,
    seed: int = 0,
) -> tuple[DatasetDict, LoadReport]:
    """Any `datasets` dataset: a `save_to_disk` folder (read by `load_from_disk`) or whatever
    `datasets.load_dataset(name, data_dir=data_dir)` opens (a Hub id, a local folder through the imagefolder builder).

    Splits are renamed by `SPLIT_SYNONYMS` (``val`` -> validation, ...) and others are dropped with a note. Only
    ``image_column`` (renamed ``image``, cast to `Image()`) and ``label_column`` (renamed ``label``) are kept. Labels
    must be named: `ClassLabel` names or string values, mapped by `LABEL_SYNONYMS`, with a ValueError listing every
    name that cannot be mapped; bare integers are refused because their order is unknown. Default: 8 classes if a
    contempt label exists, else 7.
    """
    _check_num_classes(num_classes)
    loaded, layout = _load_generic(name, data_dir)
    splits: dict[str, Dataset] = {}
    notes = []
    for split_name, ds in loaded.items():
        split = SPLIT_SYNONYMS.get(_normalise_name(split_name).replace(" ", ""))
        if split is None or split in splits:
            notes.append(f"split {split_name!r} ignored")
            continue
        for column, argument in ((image_column, "image_column"), (label_column, "label_column")):
            if column not in ds.column_names:
                raise ValueError(
                    f"dataset {name!r}, split {split_name!r}: expected a column {column!r} ({argument}), found "
                    f"{ds.column_names}; pass --{argument} with the right name."
                )
        splits[split] = ds.select_columns([image_column, label_column])
    if not splits:
        raise ValueError(
            f"dataset {name!r}: expected a split named train, validation or test, found {list(loaded)}; rename them."
        )
    raw_labels: dict[str, list[str]] = {}
    for split, ds in splits.items():
        feature = ds.features[label_column]
        values = list(ds[label_column])
        if isinstance(feature, ClassLabel):
            raw_labels[split] = [feature.names[v] for v in values]
        elif all(isinstance(v, str) for v in values):
            raw_labels[split] = values
        else:
            raise ValueError(
                f"dataset {name!r}, split {split!r}: expected the label column {label_column!r} to be a ClassLabel or "
                f"strings, got {feature}; integer ids have no known order, so cast the column to "
                "ClassLabel(names=[...]) first."
            )
    # ClassLabel names count even when unused: a name that cannot be mapped is a mistake in the label set.
    all_names = {v for values in raw_labels.values() for v in values}
    for ds in splits.values():
        if isinstance(ds.features[label_column], ClassLabel):
            all_names |= set(ds.features[label_column].names)
    mapping = _map_names(sorted(all_names), f"dataset {name!r}, column {label_column!r}")
    report = LoadReport(
        source=name, layout=layout, num_classes=num_classes or (8 if "contempt" in mapping.values() else 7)
    )
    report.notes.extend(notes)
    label_feature = ClassLabel(names=list(EXPRESSIONS[: report.num_classes]))
    result = {}
    for split, ds in splits.items():
        ids = np.asarray([EXPRESSIONS.index(mapping[v]) for v in raw_labels[split]], dtype=np.int64)
        keep = np.flatnonzero(ids < report.num_classes)
        if len(keep) < len(ids):
            report.count_drop(split, DROP_CONTEMPT, len(ids) - len(keep))
        ds = ds.remove_columns(label_column)
        ds = ds.rename_column(image_column, "image") if image_column != "image" else ds
        ds = ds.add_column("label", ids.tolist(), feature=label_feature)
        if not isinstance(ds.features["image"], Image):
            ds = ds.cast_column("image", Image())
        if len(keep) == 0:
            raise ValueError(
                f"dataset {name!r}: the {split} split has no usable examples (expected at least one; "
                f"{len(ids)} dropped); check the split and num_classes."
            )
        result[split] = ds.select(keep.tolist(), keep_in_memory=True) if len(keep) < len(ids) else ds
    if "train" not in result:
        raise ValueError(f"dataset {name!r}: expected a train split, found {list(result)}; provide one.")
    return _finish(DatasetDict(result), report, validation_fraction, seed), report


__all__ = [
    "load_hub_dataset",
]
