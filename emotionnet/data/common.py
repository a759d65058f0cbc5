"""What every dataset loader shares: the canonical label names and their synonyms, the `LoadReport`, split
assembly (with a carved validation split where a source has none) and the CSV/list reading helpers."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, List, Value

from modeling_grefel.configuration_grefel import EXPRESSIONS

NAMED_SOURCES = ("ferplus", "rafdb", "fer2013", "imagefolder", "synthetic")
"""Names `load_fer_dataset` treats as built-in sources; any other name is a `load_from_disk` folder or a Hub id."""

LABEL_SYNONYMS = {
    "neutral": "neutral", "neutrality": "neutral", "calm": "neutral", "normal": "neutral",
    "happiness": "happiness", "happy": "happiness", "joy": "happiness", "smile": "happiness", "smiling": "happiness",
    "surprise": "surprise", "surprised": "surprise", "suprise": "surprise", "surprising": "surprise",
    "sadness": "sadness", "sad": "sadness", "sorrow": "sadness", "unhappy": "sadness",
    "anger": "anger", "angry": "anger", "mad": "anger", "rage": "anger",
    "disgust": "disgust", "disgusted": "disgust", "disgusting": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "scared": "fear",
    "contempt": "contempt", "contemptuous": "contempt",
}  # fmt: skip
"""Label names found in the wild (lower case, ``-``/``_`` read as spaces) -> canonical expression name. ``suprise``
is a misspelling that some public FER folders carry."""

SPLIT_SYNONYMS = {
    "train": "train", "training": "train",
    "validation": "validation", "valid": "validation", "val": "validation", "dev": "validation",
    "publictest": "validation",
    "test": "test", "testing": "test", "privatetest": "test",
}  # fmt: skip
"""Split names of folders, Hub datasets and the FER2013 ``Usage`` column -> our split names."""

DROP_CONTEMPT = "contempt (7-class output)"
DROP_NOT_EXPRESSION = "unknown/NF majority or label"

FER2013_IMAGE_SIDE = 48
FER2013_NUM_PIXELS = FER2013_IMAGE_SIDE * FER2013_IMAGE_SIDE

# Label column names accepted in the seed FERPlus and RAF-DB CSVs, compared after `_normalise_name`.
_LABEL_COLUMN_NAMES = ("label", "emotion", "expression", "class", "target")


@dataclass
class LoadReport:
    """What a loader read and what it left out.

    Attributes:
        source: The dataset's name (``"ferplus"``, ``"rafdb"``, ``"fer2013"``, ``"imagefolder"``,
            ``"synthetic-faces"``, or the Hub id / `load_from_disk` path given).
        layout: Which file layout was read, in words (e.g. ``"official fer2013.csv + fer2013new.csv"``).
        num_classes: 7 or 8.
        split_sizes: Examples per split of the returned `DatasetDict`.
        dropped: Per split, per reason (the ``DROP_*`` constants), how many source rows were left out.
        notes: Other facts worth a line in a log (a carved validation split, an 8-class set without contempt, ...).
        synthetic: Whether the data are the generated synthetic-faces set.
    """

    source: str
    layout: str
    num_classes: int
    split_sizes: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, Counter] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    synthetic: bool = False

    @property
    def label_names(self) -> tuple[str, ...]:
        """The canonical class names of the ``label`` column, in id order."""
        return tuple(EXPRESSIONS[: self.num_classes])

    def count_drop(self, split: str, reason: str, count: int = 1) -> None:
        """Record ``count`` rows of ``split`` left out for ``reason``."""
        self.dropped.setdefault(split, Counter())[reason] += count

    def summary(self) -> str:
        """One line for logs and ``info.description``."""
        sizes = ", ".join(f"{split} {size}" for split, size in self.split_sizes.items())
        text = f"{self.source} ({self.layout}), {self.num_classes} classes [{', '.join(self.label_names)}]: {sizes}"
        drops = [
            f"{split}: " + ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items()))
            for split, counts in self.dropped.items()
            if sum(counts.values())
        ]
        text += "; dropped " + "; ".join(drops) if drops else "; nothing dropped"
        if self.notes:
            text += "; " + "; ".join(self.notes)
        return text + "."


# --------------------------------------------------------------------------------------------------------------
# Label mapping helpers


def _normalise_name(name: str) -> str:
    return " ".join(str(name).strip().lower().replace("_", " ").replace("-", " ").split())


def canonical_expression(name: str) -> str | None:
    """The canonical expression a label name stands for (``"Happy"`` -> ``"happiness"``), or None if unknown."""
    key = _normalise_name(name)
    return LABEL_SYNONYMS.get(key) or LABEL_SYNONYMS.get(key.replace(" ", ""))


def _check_num_classes(num_classes: int | None) -> None:
    if num_classes is not None and num_classes not in (7, 8):
        raise ValueError(
            f"num_classes={num_classes!r}: the canonical expression sets have 7 (no contempt) or 8 classes; "
            "pass 7, 8 or None for the source's own default."
        )


def _features(num_classes: int, with_soft_label: bool) -> Features:
    columns: dict[str, Any] = {"image": Image(), "label": ClassLabel(names=list(EXPRESSIONS[:num_classes]))}
    if with_soft_label:
        columns["soft_label"] = List(Value("float32"))
    return Features(columns)


def _png_bytes(pixels: np.ndarray) -> dict[str, Any]:
    buffer = io.BytesIO()
    PIL.Image.fromarray(pixels).save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


# --------------------------------------------------------------------------------------------------------------
# Split assembly shared by all loaders


class _SplitBuilder:
    """Collects (image, label[, soft label]) rows per split, dropping contempt for 7-class output."""

    def __init__(self, report: LoadReport, with_soft_label: bool):
        self.report = report
        self.with_soft_label = with_soft_label
        self.rows: dict[str, dict[str, list]] = {}

    def add(self, split: str, image: Any, label: int, soft_label: Sequence[float] | None = None) -> None:
        """Add one row with a canonical 8-class ``label`` id and, for FERPlus, an 8-class vote distribution."""
        rows = self.rows.setdefault(split, {"image": [], "label": [], "soft_label": []})
        if label >= self.report.num_classes:
            self.report.count_drop(split, DROP_CONTEMPT)
            return
        rows["image"].append(image)
        rows["label"].append(label)
        if self.with_soft_label:
            votes = np.asarray(soft_label, dtype=np.float64)[: self.report.num_classes]
            rows["soft_label"].append((votes / votes.sum()).astype(np.float32).tolist())

    def build(self, source_files: dict[str, Path | str], validation_fraction: float, seed: int) -> DatasetDict:
        """The `DatasetDict`, with a validation split carved from train when the source has none."""
        features = _features(self.report.num_classes, self.with_soft_label)
        splits = {}
        for split, rows in self.rows.items():
            if not rows["label"]:
                dropped = sum(self.report.dropped.get(split, Counter()).values())
                raise ValueError(
                    f"{source_files.get(split, source_files.get('train'))}: the {split} split has no usable "
                    f"examples (expected at least one; {dropped} rows were dropped); check the file and num_classes."
                )
            columns = {name: values for name, values in rows.items() if name != "soft_label" or self.with_soft_label}
            splits[split] = Dataset.from_dict(columns, features=features)
        if "train" not in splits:
            raise ValueError(
                f"{source_files.get('train', next(iter(source_files.values()), '?'))}: the source has no train "
                "split; provide training rows (FER2013 Usage 'Training', a train list, or a train/ folder)."
            )
        return _finish(DatasetDict(splits), self.report, validation_fraction, seed)


def _carve_validation(train: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Split ``train`` into (train, validation), per class, the same way for the same seed.

    Not `Dataset.train_test_split(stratify_by_column="label")` (datasets 5.2.0, measured): it raises ValueError for a
    class with a single example ("The least populated class ... has only 1 member") and when the validation size is
    below the number of classes (4 examples of 2 classes at fraction 0.1), and it can leave a small class out of
    validation (20 + 20 + 2 examples at 0.1: none of the 2). Here a single example stays in train and every class
    with two or more gives at least one, so small and long-tailed sets still get a validation split with every class.
    """
    labels = np.asarray(train["label"])
    rng = np.random.default_rng(seed)
    validation_indices = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rng.shuffle(members)
        # Every class with two or more examples gives at least one, so validation sees every class it can.
        take = min(len(members) - 1, max(1, round(fraction * len(members)))) if len(members) > 1 else 0
        validation_indices.extend(members[:take].tolist())
    if not validation_indices:
        raise ValueError(
            f"train split of {len(train)} examples is too small to carve a validation split from "
            f"(validation_fraction={fraction}); provide a validation split or more training examples."
        )
    keep = np.ones(len(labels), dtype=bool)
    keep[validation_indices] = False
    train_indices = np.flatnonzero(keep).tolist()
    return (
        train.select(train_indices, keep_in_memory=True),
        train.select(sorted(validation_indices), keep_in_memory=True),
    )


def with_validation_split(dataset: DatasetDict, fraction: float = 0.1, seed: int = 0) -> DatasetDict:
    """``dataset`` itself if it has a validation split, else a copy whose validation split is carved from train:
    ``round(fraction * n)`` examples of each class with n >= 2 (at least one), chosen by ``seed``."""
    if "validation" in dataset:
        return dataset
    if "train" not in dataset or len(dataset["train"]) == 0:
        raise ValueError(
            f"dataset with splits {sorted(dataset)}: expected a non-empty train split to carve validation from; "
            "provide training examples."
        )
    if not 0 < fraction < 1:
        raise ValueError(f"validation_fraction={fraction!r}: expected a fraction strictly between 0 and 1, e.g. 0.1.")
    train, validation = _carve_validation(dataset["train"], fraction, seed)
    return DatasetDict({**dataset, "train": train, "validation": validation})


def _finish(dataset: DatasetDict, report: LoadReport, validation_fraction: float, seed: int) -> DatasetDict:
    if "validation" not in dataset:
        dataset = with_validation_split(dataset, validation_fraction, seed)
        report.notes.append(f"validation carved from train ({validation_fraction:.0%} per class, seed {seed})")
    ordered = DatasetDict({split: dataset[split] for split in ("train", "validation", "test") if split in dataset})
    report.split_sizes = {split: len(ds) for split, ds in ordered.items()}
    if report.num_classes == 8 and "contempt" not in _present_labels(ordered["train"]):
        report.notes.append("8-class label set but no contempt examples in train")
    for ds in ordered.values():
        ds.info.description = report.summary()
    return ordered


def _present_labels(dataset: Dataset) -> set[str]:
    names = dataset.features["label"].names
    return {names[i] for i in set(dataset["label"])}


# --------------------------------------------------------------------------------------------------------------
# CSV / list reading


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: expected {what} here, but no such file exists; check data_dir.")
    return path


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: expected {what} here, but no such directory exists; check data_dir.")
    return path


def _read_csv(path: Path) -> tuple[dict[str, int], Iterator[tuple[int, list[str]]]]:
    """Header map (normalised name -> column index) and an iterator of (line number, fields) of the data rows."""
    handle = open(path, newline="", encoding="utf-8-sig")  # noqa: SIM115 - closed when the generator ends
    reader = csv.reader(handle)
    try:
        header = next(reader)
    except StopIteration:
        handle.close()
        raise ValueError(f"{path}, line 1: expected a header row, but the file is empty; check the file.") from None
    columns = {_normalise_name(name): index for index, name in enumerate(header)}

    def rows() -> Iterator[tuple[int, list[str]]]:
        with handle:
            for fields in reader:
                if not any(value.strip() for value in fields):
                    continue
                if len(fields) != len(header):
                    raise ValueError(
                        f"{path}, line {reader.line_num}: expected {len(header)} comma-separated fields like the "
                        f"header ({', '.join(header)}), got {len(fields)}; fix or remove this row."
                    )
                yield reader.line_num, fields

    return columns, rows()


def _column(columns: dict[str, int], path: Path, name: str) -> int:
    if _normalise_name(name) not in columns:
        raise ValueError(
            f"{path}, line 1: expected a column named {name!r} in the header, found {sorted(columns)}; "
            "check that this is the right file."
        )
    return columns[_normalise_name(name)]


def _parse_pixels(text: str, path: Path, line: int) -> np.ndarray:
    try:
        values = np.fromstring(text, dtype=np.int32, sep=" ")
    except ValueError:
        values = None
    if values is None or values.size != FER2013_NUM_PIXELS or values.min() < 0 or values.max() > 255:
        count = "non-numeric values" if values is None else f"{values.size} values in [{values.min(initial=0)}, " \
            f"{values.max(initial=0)}]"
        raise ValueError(
            f"{path}, line {line}: expected {FER2013_NUM_PIXELS} space-separated grey values 0-255 "
            f"({FER2013_IMAGE_SIDE}x{FER2013_IMAGE_SIDE}) in 'pixels', got {count}; fix or remove this row."
        )
    return values.astype(np.uint8).reshape(FER2013_IMAGE_SIDE, FER2013_IMAGE_SIDE)


def _split_of_usage(value: str, path: Path, line: int) -> str:
    split = SPLIT_SYNONYMS.get(_normalise_name(value).replace(" ", ""))
    if split is None:
        raise ValueError(
            f"{path}, line {line}: expected Usage Training, PublicTest or PrivateTest, got {value!r}; "
            "fix the row or remove it."
        )
    return split


def _parse_int(value: str, path: Path, line: int, what: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise ValueError(f"{path}, line {line}: expected {what}, got {value!r}; fix or remove this row.") from None


def _resolve_image(name: str, roots: Sequence[Path], path: Path, line: int) -> str:
    for root in roots:
        candidate = root / name.strip()
        if candidate.is_file():
            return str(candidate.resolve())
    raise ValueError(
        f"{path}, line {line}: expected the image {name.strip()!r} under {' or '.join(str(r) for r in roots)}, "
        "but it is not there; copy the images or fix the name."
    )


def _map_names(names: Sequence[str], where: str) -> dict[str, str]:
    """Every name -> canonical expression, or a ValueError listing every name that cannot be mapped."""
    mapping = {name: canonical_expression(name) for name in names}
    unknown = sorted(name for name, canonical in mapping.items() if canonical is None)
    if unknown:
        raise ValueError(
            f"{where}: cannot map the label names {unknown} onto the expressions {list(EXPRESSIONS)}; rename them "
            f"to one of those (accepted synonyms: {sorted(LABEL_SYNONYMS)}) or remove them."
        )
    return mapping  # type: ignore[return-value]

__all__ = [
    "DROP_CONTEMPT",
    "DROP_NOT_EXPRESSION",
    "FER2013_IMAGE_SIDE",
    "FER2013_NUM_PIXELS",
    "LABEL_SYNONYMS",
    "NAMED_SOURCES",
    "SPLIT_SYNONYMS",
    "LoadReport",
    "canonical_expression",
    "with_validation_split",
]
