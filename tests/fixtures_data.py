"""Builders of tiny datasets in the real file formats of FER2013, FERPlus, RAF-DB and image folders.

Everything is written into a test's tmp_path; nothing binary is committed. Images are a few pixels of one colour,
which is all a loader needs to see.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path

from PIL import Image

FERPLUS_HEADER = ["Usage", "Image name", "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                  "contempt", "unknown", "NF"]  # fmt: skip


def write_image(path: Path, value: int = 128, size: int = 8) -> Path:
    """A small single-colour image; the format follows the file ending."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), (value, 255 - value, value // 2)).save(path)
    return path


def write_truncated_jpeg(path: Path) -> Path:
    """A JPEG cut short after its headers: PIL opens it and fails while decoding."""
    full = path.with_name("full_" + path.name)
    Image.effect_noise((64, 64), 60).convert("RGB").save(full, quality=95)
    path.write_bytes(full.read_bytes()[:400])
    full.unlink()
    return path


def pixels_text(value: int, count: int = 48 * 48) -> str:
    """A FER2013 ``pixels`` field: ``count`` grey values, all ``value``."""
    return " ".join([str(value)] * count)


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_fer2013(folder: Path, rows: Sequence[tuple[int, str]], pixels: dict[int, str] | None = None) -> Path:
    """``fer2013.csv`` with (emotion, Usage) rows; ``pixels`` overrides the pixel text of some row indices."""
    pixels = pixels or {}
    return write_csv(
        folder / "fer2013.csv",
        ["emotion", "pixels", "Usage"],
        [(emotion, pixels.get(i, pixels_text(10 * i % 256)), usage) for i, (emotion, usage) in enumerate(rows)],
    )


def write_ferplus_official(folder: Path, rows: Sequence[tuple[str, str, Sequence[int]]]) -> Path:
    """Row-aligned ``fer2013.csv`` and ``fer2013new.csv`` from (Usage, Image name, 10 votes) rows."""
    write_fer2013(folder, [(0, usage) for usage, _, _ in rows])
    write_csv(folder / "fer2013new.csv", FERPLUS_HEADER, [(usage, name, *votes) for usage, name, votes in rows])
    return folder


def write_ferplus_seed(folder: Path, splits: dict[str, tuple[Sequence[str], Sequence[Sequence]]]) -> Path:
    """The seed layout: ``images/`` plus ``<split>_ferplus.csv`` files from (header, rows); the first column of a
    row names an image, which is created under ``images/``."""
    for split, (header, rows) in splits.items():
        for row in rows:
            write_image(folder / "images" / row[0])
        write_csv(folder / f"{split}_ferplus.csv", header, rows)
    return folder


def write_list(path: Path, lines: Sequence[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path


def write_rafdb_seed(folder: Path, lists: dict[str, Sequence[tuple[str, str]]]) -> Path:
    """The seed layout: ``images/<name>`` and ``<split>_list.txt`` with ``name label`` lines."""
    for split, entries in lists.items():
        for name, _ in entries:
            write_image(folder / "images" / name)
        write_list(folder / f"{split}_list.txt", [f"{name} {label}" for name, label in entries])
    return folder


def write_rafdb_official(folder: Path, entries: Sequence[tuple[str, int]]) -> Path:
    """The official ``basic/`` layout under ``folder``: the partition list and ``Image/aligned/*_aligned.jpg``."""
    basic = folder / "basic"
    for name, _ in entries:
        stem, suffix = name.rsplit(".", 1)
        write_image(basic / "Image" / "aligned" / f"{stem}_aligned.{suffix}")
    write_list(basic / "EmoLabel" / "list_patition_label.txt", [f"{name} {label}" for name, label in entries])
    return basic


def write_imagefolder(folder: Path, classes: dict[str, int], split: str | None = None) -> Path:
    """``count`` PNGs in each ``[split/]<class>/`` folder."""
    root = folder / split if split else folder
    for class_name, count in classes.items():
        for i in range(count):
            write_image(root / class_name / f"{i}.png", value=20 * i)
    return folder


__all__ = [
    "FERPLUS_HEADER",
    "pixels_text",
    "write_csv",
    "write_fer2013",
    "write_ferplus_official",
    "write_ferplus_seed",
    "write_image",
    "write_imagefolder",
    "write_list",
    "write_rafdb_official",
    "write_rafdb_seed",
    "write_truncated_jpeg",
]
