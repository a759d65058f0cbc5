"""Facial-expression datasets as `datasets.DatasetDict`s in one canonical label order, and robust batch decoding.

Every loader returns splits named ``train``, ``validation`` and (where the source has one) ``test`` with the columns

- ``image``: a `datasets.Image()` feature. File-based sources store absolute file paths, so images are decoded
  lazily; pixel-CSV sources (FER2013, official FERPlus) store PNG bytes.
- ``label``: a `datasets.ClassLabel` whose names are ``EXPRESSIONS[:num_classes]`` (``neutral, happiness, surprise,
  sadness, anger, disgust, fear[, contempt]``), the order of `GReFELConfig.id2label`.
- ``soft_label`` (FERPlus only): the annotators' vote distribution over the same classes (floats summing to 1).

Each source's own label ids or names are converted by an explicit table below (`FER2013_LABELS`, `RAFDB_LABELS`,
`FERPLUS_VOTE_COLUMNS`, `LABEL_SYNONYMS`), never by position. For 7-class output, contempt samples are dropped and
counted. What was dropped, and why, comes back in a `LoadReport`:

    dataset = load_fer_dataset("ferplus", "/data/FERPlus")                 # DatasetDict only
    dataset, report = load_fer_dataset_with_report("rafdb", "/data/RAF-DB/basic")
    print(report.summary())         # "rafdb (official basic/ layout), 7 classes: train 11043, ... dropped: ..."

The report is also written into every split's ``info.description``, so it travels with ``save_to_disk``.

Training decodes images itself, so that one unreadable file costs one sample and not the run:

    dataset = with_raw_images(dataset)                 # examples give {"bytes", "path"} dicts, not PIL images
    loader = SafeImageLoader()
    collate = functools.partial(collate_images, loader=loader, image_size=112)
    pixels, labels, soft_labels, skipped = collate([dataset["train"][i] for i in range(8)])  # skipped: (key, reason)
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, List, Value

from modeling_grefel.configuration_grefel import EXPRESSIONS
from modeling_grefel.image_input_grefel import ImageInputError, read_rgb_image

NAMED_SOURCES = ("ferplus", "rafdb", "fer2013", "imagefolder", "synthetic")
"""Names `load_fer_dataset` treats as built-in sources; any other name is a `load_from_disk` folder or a Hub id."""

FER2013_LABELS = {0: "anger", 1: "disgust", 2: "fear", 3: "happiness", 4: "sadness", 5: "surprise", 6: "neutral"}
"""FER2013 ``emotion`` ids (fer2013.csv: 0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral)."""

RAFDB_LABELS = {1: "surprise", 2: "fear", 3: "disgust", 4: "happiness", 5: "sadness", 6: "anger", 7: "neutral"}
"""RAF-DB basic ids (EmoLabel/list_patition_label.txt: 1 surprise, ..., 7 neutral)."""

FERPLUS_VOTE_COLUMNS = (
    "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF",
)  # fmt: skip
"""fer2013new.csv vote columns in file order. The first eight are the canonical order, so FERPlus index i is
canonical id i; ``unknown`` (8) and ``NF`` (not a face, 9) are not expressions."""

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

NOT_EXPRESSION_LABELS = ("unknown", "nf", "not face", "notface", "not a face")
"""FERPlus labels that name no expression: rows carrying them are dropped and counted, never mapped."""

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
"""File endings `load_imagefolder` treats as images (case-insensitive); other files are ignored."""

SPLIT_SYNONYMS = {
    "train": "train", "training": "train",
    "validation": "validation", "valid": "validation", "val": "validation", "dev": "validation",
    "publictest": "validation",
    "test": "test", "testing": "test", "privatetest": "test",
}  # fmt: skip
"""Split names of folders, Hub datasets and the FER2013 ``Usage`` column -> our split names."""

DROP_CONTEMPT = "contempt (7-class output)"
DROP_NOT_EXPRESSION = "unknown/NF majority or label"
DROP_NO_VOTES = "no emotion votes"
DROP_NO_IMAGE_NAME = "no image name in fer2013new.csv"

FER2013_IMAGE_SIDE = 48
FER2013_NUM_PIXELS = FER2013_IMAGE_SIDE * FER2013_IMAGE_SIDE

# Column names accepted in the seed FERPlus CSVs, compared after `_normalise_name`.
_IMAGE_COLUMN_NAMES = ("image", "image path", "image name", "path", "file", "filename", "file name", "img", "name")
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

    def total_dropped(self, reason: str | None = None) -> int:
        """Rows left out over all splits, for one reason or for all."""
        return sum(n for counts in self.dropped.values() for r, n in counts.items() if reason is None or r == reason)

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
    """Split ``train`` into (train, validation), per class, the same way for the same seed."""
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


# --------------------------------------------------------------------------------------------------------------
# FER2013


def load_fer2013(
    data_dir: str | os.PathLike,
    num_classes: int | None = None,
    validation_fraction: float = 0.1,
    seed: int = 0,
) -> tuple[DatasetDict, LoadReport]:
    """FER2013 from Kaggle's ``fer2013.csv``.

    ``data_dir`` is the folder holding ``fer2013.csv`` or the CSV itself. Columns ``emotion`` (0 angry, 1 disgust,
    2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral, mapped by `FER2013_LABELS`), ``pixels`` (2304 space-separated grey
    values) and ``Usage`` (Training / PublicTest / PrivateTest -> train / validation / test; without the column every
    row is train). Column names are matched case-insensitively with spaces stripped, which also reads the
    ``icml_face_data.csv`` variant (`` Usage``, `` pixels``). Images are 48x48 grey PNGs. Default: 7 classes.
    """
    _check_num_classes(num_classes)
    path = Path(data_dir)
    path = path / "fer2013.csv" if path.is_dir() else path
    _require_file(path, "FER2013's fer2013.csv (columns emotion, pixels, Usage)")
    report = LoadReport(source="fer2013", layout="fer2013.csv", num_classes=num_classes or 7)
    builder = _SplitBuilder(report, with_soft_label=False)
    columns, rows = _read_csv(path)
    emotion_col, pixels_col = _column(columns, path, "emotion"), _column(columns, path, "pixels")
    usage_col = columns.get("usage")
    for line, fields in rows:
        emotion = _parse_int(fields[emotion_col], path, line, "an emotion id 0-6")
        if emotion not in FER2013_LABELS:
            raise ValueError(
                f"{path}, line {line}: expected an emotion id 0-6 (0 angry ... 6 neutral), got {emotion}; "
                "fix or remove this row."
            )
        split = "train" if usage_col is None else _split_of_usage(fields[usage_col], path, line)
        label = EXPRESSIONS.index(FER2013_LABELS[emotion])
        builder.add(split, _png_bytes(_parse_pixels(fields[pixels_col], path, line)), label)
    return builder.build({"train": path}, validation_fraction, seed), report


# --------------------------------------------------------------------------------------------------------------
# FERPlus


def ferplus_votes_to_label(votes: Sequence[float]) -> tuple[int | None, str | None]:
    """Majority label of one FERPlus vote row (10 counts in `FERPLUS_VOTE_COLUMNS` order).

    Returns ``(canonical id, None)``, or ``(None, reason)`` when the row is dropped: more unknown+NF votes than
    expression votes (`DROP_NOT_EXPRESSION`), or no votes at all (`DROP_NO_VOTES`); a tie between unknown+NF and
    the expressions keeps the row. A tie between expressions goes to the one first in canonical order; the vote
    distribution keeps the ambiguity.
    """
    emotion_votes = np.asarray(votes[:8], dtype=np.float64)
    other_votes = float(votes[8]) + float(votes[9]) if len(votes) > 8 else 0.0
    if other_votes > emotion_votes.sum():
        return None, DROP_NOT_EXPRESSION
    if emotion_votes.sum() <= 0:
        return None, DROP_NO_VOTES
    return int(np.argmax(emotion_votes)), None


def _parse_votes(fields: Sequence[str], path: Path, line: int) -> list[float]:
    try:
        votes = [float(value) if value.strip() else 0.0 for value in fields]
    except ValueError:
        votes = None
    if votes is None or any(not math.isfinite(v) or v < 0 for v in votes):
        raise ValueError(
            f"{path}, line {line}: expected non-negative vote counts in {', '.join(FERPLUS_VOTE_COLUMNS)}, "
            f"got {list(fields)}; fix or remove this row."
        )
    return votes


def _load_ferplus_official(directory: Path, report: LoadReport) -> tuple[_SplitBuilder, Path]:
    votes_path = _require_file(directory / "fer2013new.csv", "FERPlus's fer2013new.csv")
    pixels_path = _require_file(
        directory / "fer2013.csv", "FER2013's fer2013.csv next to fer2013new.csv (FERPlus holds only the votes)"
    )
    report.layout = "official fer2013.csv + fer2013new.csv"
    builder = _SplitBuilder(report, with_soft_label=True)
    vote_columns, vote_rows = _read_csv(votes_path)
    vote_index = [_column(vote_columns, votes_path, name) for name in FERPLUS_VOTE_COLUMNS]
    name_col = _column(vote_columns, votes_path, "Image name")
    vote_usage_col = _column(vote_columns, votes_path, "Usage")
    pixel_columns, pixel_rows = _read_csv(pixels_path)
    pixels_col, usage_col = _column(pixel_columns, pixels_path, "pixels"), _column(pixel_columns, pixels_path, "Usage")
    # fer2013new.csv row i holds the votes for fer2013.csv row i: the files are read in lockstep.
    for (line, fields), pixel_row in zip(vote_rows, pixel_rows, strict=False):
        pixel_line, pixel_fields = pixel_row
        split = _split_of_usage(pixel_fields[usage_col], pixels_path, pixel_line)
        if _split_of_usage(fields[vote_usage_col], votes_path, line) != split:
            raise ValueError(
                f"{votes_path}, line {line}: expected Usage {pixel_fields[usage_col]!r} as on {pixels_path}, line "
                f"{pixel_line}, got {fields[vote_usage_col]!r}; the two files are not row-aligned, use the "
                "original fer2013.csv."
            )
        if not fields[name_col].strip():
            report.count_drop(split, DROP_NO_IMAGE_NAME)
            continue
        votes = _parse_votes([fields[i] for i in vote_index], votes_path, line)
        label, reason = ferplus_votes_to_label(votes)
        if label is None:
            report.count_drop(split, reason)
            continue
        builder.add(split, _png_bytes(_parse_pixels(pixel_fields[pixels_col], pixels_path, pixel_line)), label, votes)
    leftover_votes, leftover_pixels = next(vote_rows, None), next(pixel_rows, None)
    if leftover_votes is not None or leftover_pixels is not None:
        longer, (line, _) = (votes_path, leftover_votes) if leftover_votes else (pixels_path, leftover_pixels)
        raise ValueError(
            f"{longer}, line {line}: expected fer2013.csv and fer2013new.csv to have the same number of rows, but "
            "this file has more; use the original, row-aligned files."
        )
    return builder, votes_path


def _load_ferplus_seed(directory: Path, report: LoadReport) -> tuple[_SplitBuilder, dict[str, Path]]:
    image_dir = _require_dir(directory / "images", "the FERPlus image folder images/")
    report.layout = "seed images/ + train_ferplus.csv / val_ferplus.csv"
    builder = _SplitBuilder(report, with_soft_label=True)
    files = {
        "train": _require_file(directory / "train_ferplus.csv", "train_ferplus.csv"),
        "validation": _require_file(directory / "val_ferplus.csv", "val_ferplus.csv"),
    }
    if (directory / "test_ferplus.csv").is_file():
        files["test"] = directory / "test_ferplus.csv"
    for split, path in files.items():
        columns, rows = _read_csv(path)
        image_col = next((columns[name] for name in _IMAGE_COLUMN_NAMES if name in columns), None)
        if image_col is None:
            raise ValueError(
                f"{path}, line 1: expected an image-path column named one of {list(_IMAGE_COLUMN_NAMES)}, found "
                f"{sorted(columns)}; add a header row naming the columns."
            )
        vote_index = [columns.get(_normalise_name(name)) for name in FERPLUS_VOTE_COLUMNS]
        label_col = next((columns[name] for name in _LABEL_COLUMN_NAMES if name in columns), None)
        if any(index is None for index in vote_index[:8]) and label_col is None:
            raise ValueError(
                f"{path}, line 1: expected a label column (one of {list(_LABEL_COLUMN_NAMES)}) or the FERPlus vote "
                f"columns {list(FERPLUS_VOTE_COLUMNS)}, found {sorted(columns)}; add one of them to the header."
            )
        use_votes = all(index is not None for index in vote_index[:8])
        builder.rows.setdefault(split, {"image": [], "label": [], "soft_label": []})
        for line, fields in rows:
            if use_votes:
                votes = _parse_votes(["" if i is None else fields[i] for i in vote_index], path, line)
                label, reason = ferplus_votes_to_label(votes)
            else:
                label, reason = _ferplus_label(fields[label_col], path, line)
                votes = np.eye(8)[label].tolist() if label is not None else None
            image = _resolve_image(fields[image_col], (image_dir, directory), path, line)
            if label is None:
                report.count_drop(split, reason)
                continue
            builder.add(split, image, label, votes)
    return builder, files


def _ferplus_label(value: str, path: Path, line: int) -> tuple[int | None, str | None]:
    text = value.strip()
    if text.isdigit() and int(text) < len(FERPLUS_VOTE_COLUMNS):
        index = int(text)
        return (index, None) if index < 8 else (None, DROP_NOT_EXPRESSION)
    if _normalise_name(text) in NOT_EXPRESSION_LABELS:
        return None, DROP_NOT_EXPRESSION
    name = canonical_expression(text)
    if name is None:
        raise ValueError(
            f"{path}, line {line}: expected a FERPlus index 0-9 or an expression name ({', '.join(EXPRESSIONS)}), "
            f"got {value!r}; fix the label."
        )
    return EXPRESSIONS.index(name), None


def load_ferplus(
    data_dir: str | os.PathLike,
    num_classes: int | None = None,
    validation_fraction: float = 0.1,
    seed: int = 0,
) -> tuple[DatasetDict, LoadReport]:
    """FERPlus with majority labels and vote distributions (``soft_label``). Default: 8 classes.

    Two layouts, chosen by which files ``data_dir`` holds:

    - Official: ``fer2013.csv`` (pixels, Usage) and ``fer2013new.csv`` (Usage, Image name, then vote counts for
      neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF), row-aligned.
      Training / PublicTest / PrivateTest -> train / validation / test. Rows with an empty ``Image name`` (removed
      by FERPlus), without expression votes, or with more unknown+NF votes than expression votes are dropped and
      counted (see `ferplus_votes_to_label`).
    - Seed: ``images/<file>``, ``train_ferplus.csv``, ``val_ferplus.csv`` and optionally ``test_ferplus.csv``, each
      with a header row. Accepted columns (case-insensitive, ``_``/``-`` read as spaces): an image path, named one of
      ``image, image_path, image_name, path, file, filename, file_name, img, name``, relative to ``images/`` or to
      ``data_dir``; then either the eight expression vote columns (``neutral`` ... ``contempt``, with ``unknown``
      and ``NF`` optional), which give the majority label and the distribution, or a label column named one of
      ``label, emotion, expression, class, target`` holding a FERPlus index (0-7 = canonical order, 8 unknown and
      9 NF are dropped) or an expression name (synonyms allowed), whose soft label is one-hot. Vote columns win
      when both are present.

    ``soft_label`` is the raw vote share of each class (for 7 classes, renormalised without contempt).
    """
    _check_num_classes(num_classes)
    directory = _require_dir(Path(data_dir), "a FERPlus folder")
    report = LoadReport(source="ferplus", layout="", num_classes=num_classes or 8)
    if (directory / "fer2013new.csv").is_file():
        builder, votes_path = _load_ferplus_official(directory, report)
        files: dict[str, Path | str] = {"train": votes_path}
    elif (directory / "train_ferplus.csv").is_file():
        builder, seed_files = _load_ferplus_seed(directory, report)
        files = dict(seed_files)
    else:
        raise FileNotFoundError(
            f"{directory}: expected FERPlus files, either fer2013.csv + fer2013new.csv (official) or images/ + "
            "train_ferplus.csv + val_ferplus.csv (seed layout), found neither; point data_dir at the folder holding them."
        )
    return builder.build(files, validation_fraction, seed), report


# --------------------------------------------------------------------------------------------------------------
# RAF-DB


def _read_list(path: Path) -> Iterator[tuple[int, str, str]]:
    """(line number, image name, label text) of a whitespace-separated "name label" list; '#' lines are comments."""
    with open(path, encoding="utf-8-sig") as handle:
        for line_number, line in enumerate(handle, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            parts = text.split()
            if len(parts) != 2:
                raise ValueError(
                    f"{path}, line {line_number}: expected 'image_name label' (two fields), got {text!r}; "
                    "fix or remove this line."
                )
            if line_number == 1 and _normalise_name(parts[1]) in _LABEL_COLUMN_NAMES:
                continue  # a header row such as "name label"
            yield line_number, parts[0], parts[1]


def _rafdb_label(value: str, path: Path, line: int) -> int:
    if value.lstrip("-").isdigit():
        if int(value) not in RAFDB_LABELS:
            raise ValueError(
                f"{path}, line {line}: expected a RAF-DB label id 1-7 (1 surprise, 2 fear, 3 disgust, 4 happiness, "
                f"5 sadness, 6 anger, 7 neutral), got {value}; if your list is 0-based or uses another order, write "
                "expression names instead of ids."
            )
        return EXPRESSIONS.index(RAFDB_LABELS[int(value)])
    name = canonical_expression(value)
    if name is None:
        raise ValueError(
            f"{path}, line {line}: expected a RAF-DB label id 1-7 or an expression name ({', '.join(EXPRESSIONS)}), "
            f"got {value!r}; fix the label."
        )
    return EXPRESSIONS.index(name)


def load_rafdb(
    data_dir: str | os.PathLike,
    num_classes: int | None = None,
    validation_fraction: float = 0.1,
    seed: int = 0,
) -> tuple[DatasetDict, LoadReport]:
    """RAF-DB (basic). Default: 7 classes. Two layouts, chosen by which files ``data_dir`` holds:

    - Official ``basic/`` (``data_dir`` is ``basic/`` or its parent): ``EmoLabel/list_patition_label.txt`` with
      lines ``train_00001.jpg 5`` / ``test_0001.jpg 1`` and images ``Image/aligned/train_00001_aligned.jpg``.
      ``train_*`` -> train, ``test_*`` -> test; validation is carved from train.
    - Seed: ``images/<name>``, ``train_list.txt``, ``val_list.txt`` and optionally ``test_list.txt``, lines
      ``name label``. Labels are RAF-DB ids 1-7 as in the official file (`RAFDB_LABELS`); a line may instead name
      the expression (``happy``, ``anger``, ...), which is how a list in another id order says so. A first line
      ``name label`` is read as a header, and ``#`` lines as comments.
    """
    _check_num_classes(num_classes)
    directory = _require_dir(Path(data_dir), "a RAF-DB folder")
    report = LoadReport(source="rafdb", layout="", num_classes=num_classes or 7)
    builder = _SplitBuilder(report, with_soft_label=False)
    basic = directory / "basic" if (directory / "basic" / "EmoLabel").is_dir() else directory
    partition = basic / "EmoLabel" / "list_patition_label.txt"
    if partition.is_file():
        report.layout = "official basic/ layout"
        image_dir = _require_dir(basic / "Image" / "aligned", "RAF-DB's aligned images Image/aligned/")
        files: dict[str, Path | str] = {"train": partition, "test": partition}
        for line, name, value in _read_list(partition):
            split = "train" if name.startswith("train") else "test" if name.startswith("test") else None
            if split is None:
                raise ValueError(
                    f"{partition}, line {line}: expected an image name starting with 'train' or 'test', got "
                    f"{name!r}; fix or remove this line."
                )
            aligned = f"{Path(name).stem}_aligned{Path(name).suffix}"
            builder.add(split, _resolve_image(aligned, (image_dir,), partition, line), _rafdb_label(value, partition, line))
    elif (directory / "train_list.txt").is_file():
        report.layout = "seed images/ + train_list.txt / val_list.txt"
        image_dir = _require_dir(directory / "images", "the RAF-DB image folder images/")
        files = {
            "train": directory / "train_list.txt",
            "validation": _require_file(directory / "val_list.txt", "val_list.txt"),
        }
        if (directory / "test_list.txt").is_file():
            files["test"] = directory / "test_list.txt"
        for split, path in files.items():
            builder.rows.setdefault(split, {"image": [], "label": [], "soft_label": []})
            for line, name, value in _read_list(Path(path)):
                label = _rafdb_label(value, Path(path), line)
                builder.add(split, _resolve_image(name, (image_dir, directory), Path(path), line), label)
    else:
        raise FileNotFoundError(
            f"{directory}: expected RAF-DB files, either EmoLabel/list_patition_label.txt + Image/aligned/ (official "
            "basic/ layout) or images/ + train_list.txt + val_list.txt (seed layout), found neither; point data_dir "
            "at the folder holding them."
        )
    return builder.build(files, validation_fraction, seed), report


# --------------------------------------------------------------------------------------------------------------
# Image folders


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


# --------------------------------------------------------------------------------------------------------------
# Hub / load_from_disk datasets


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


# --------------------------------------------------------------------------------------------------------------
# Entry point


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
        from .synthetic import make_synthetic_faces

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


# --------------------------------------------------------------------------------------------------------------
# Robust decoding for training


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

    def summary(self) -> str:
        """``"skipped 2 of 64 images: a.jpg (OSError: ...); ..."``, for the end-of-training log."""
        if not self.skipped:
            return f"skipped 0 of {self.num_seen} images."
        details = "; ".join(f"{key} ({reason})" for key, reason in self.skipped)
        return f"skipped {len(self.skipped)} of {self.num_seen} images: {details}."


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
    "NAMED_SOURCES",
    "DROP_CONTEMPT",
    "DROP_NOT_EXPRESSION",
    "DROP_NO_IMAGE_NAME",
    "DROP_NO_VOTES",
    "FER2013_LABELS",
    "FERPLUS_VOTE_COLUMNS",
    "IMAGE_EXTENSIONS",
    "LABEL_SYNONYMS",
    "LoadReport",
    "RAFDB_LABELS",
    "SPLIT_SYNONYMS",
    "SafeImageLoader",
    "canonical_expression",
    "collate_images",
    "describe_skipped",
    "ferplus_votes_to_label",
    "load_fer2013",
    "load_fer_dataset",
    "load_fer_dataset_with_report",
    "load_ferplus",
    "load_hub_dataset",
    "load_imagefolder",
    "load_rafdb",
    "require_readable_image",
    "with_raw_images",
    "with_validation_split",
]
