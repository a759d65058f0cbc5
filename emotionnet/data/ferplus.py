"""FERPlus: the official `fer2013.csv` + `fer2013new.csv` vote table, or the seed's image folders with CSV labels."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from datasets import DatasetDict

from modeling_grefel.configuration_grefel import EXPRESSIONS

from .common import (
    _LABEL_COLUMN_NAMES,
    DROP_NOT_EXPRESSION,
    LoadReport,
    _check_num_classes,
    _column,
    _normalise_name,
    _parse_pixels,
    _png_bytes,
    _read_csv,
    _require_dir,
    _require_file,
    _resolve_image,
    _split_of_usage,
    _SplitBuilder,
    canonical_expression,
)

FERPLUS_VOTE_COLUMNS = (
    "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF",
)  # fmt: skip
"""fer2013new.csv vote columns in file order. The first eight are the canonical order, so FERPlus index i is
canonical id i; ``unknown`` (8) and ``NF`` (not a face, 9) are not expressions."""

NOT_EXPRESSION_LABELS = ("unknown", "nf", "not face", "notface", "not a face")
"""FERPlus labels that name no expression: rows carrying them are dropped and counted, never mapped."""

DROP_NO_VOTES = "no emotion votes"
DROP_NO_IMAGE_NAME = "no image name in fer2013new.csv"

# Image column names accepted in the seed FERPlus CSVs, compared after `_normalise_name`.
_IMAGE_COLUMN_NAMES = ("image", "image path", "image name", "path", "file", "filename", "file name", "img", "name")


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


__all__ = [
    "DROP_NO_IMAGE_NAME",
    "DROP_NO_VOTES",
    "NOT_EXPRESSION_LABELS",
    "FERPLUS_VOTE_COLUMNS",
    "ferplus_votes_to_label",
    "load_ferplus",
]
