"""RAF-DB basic: the official `EmoLabel/list_patition_label.txt` layout, or the seed's train/test lists."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from datasets import DatasetDict

from modeling_grefel.configuration_grefel import EXPRESSIONS

from .common import (
    _LABEL_COLUMN_NAMES,
    LoadReport,
    _check_num_classes,
    _normalise_name,
    _require_dir,
    _require_file,
    _resolve_image,
    _SplitBuilder,
    canonical_expression,
)

RAFDB_LABELS = {1: "surprise", 2: "fear", 3: "disgust", 4: "happiness", 5: "sadness", 6: "anger", 7: "neutral"}
"""RAF-DB basic ids (EmoLabel/list_patition_label.txt: 1 surprise, ..., 7 neutral)."""


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


__all__ = [
    "RAFDB_LABELS",
    "load_rafdb",
]
