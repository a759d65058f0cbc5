"""FER2013 (`fer2013.csv`: 48x48 pixel strings, an ``emotion`` id and a ``Usage`` split per row)."""

from __future__ import annotations

import os
from pathlib import Path

from datasets import DatasetDict

from modeling_grefel.configuration_grefel import EXPRESSIONS

from .common import (
    LoadReport,
    _check_num_classes,
    _column,
    _parse_int,
    _parse_pixels,
    _png_bytes,
    _read_csv,
    _require_file,
    _split_of_usage,
    _SplitBuilder,
)

FER2013_LABELS = {0: "anger", 1: "disgust", 2: "fear", 3: "happiness", 4: "sadness", 5: "surprise", 6: "neutral"}
"""FER2013 ``emotion`` ids (fer2013.csv: 0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral)."""


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


__all__ = [
    "FER2013_LABELS",
    "load_fer2013",
]
