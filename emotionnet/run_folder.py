"""The output folder of a training or evaluation run: the names of the files it holds, written and read here only.

A training run (`scripts/train.py`) writes, beside the model, processor and remote code:

- `training_config.json`: every argument of the run and the exact command;
- `training_history.json`: the per-epoch metrics;
- `confusion_matrix.json` / `confusion_matrix.png`: the validation confusion matrix;
- `skipped_images.json`: the unreadable images, when there were any;
- `all_results.json`: the final metrics, written last, so its presence marks the run as finished.

An evaluation (`scripts/evaluate_model.py`) writes `eval_results.json`, the confusion matrix and
`skipped_images.json` to its own folder. The model card, the Hub upload and resuming read them back through
`RunFolder`.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS = "all_results.json"
TRAINING_CONFIG = "training_config.json"
HISTORY = "training_history.json"
CONFUSION_MATRIX = "confusion_matrix.json"
CONFUSION_MATRIX_IMAGE = "confusion_matrix.png"
SKIPPED_IMAGES = "skipped_images.json"
EVAL_RESULTS = "eval_results.json"


def write_json_atomic(path: str | Path, payload: Any) -> None:
    """Write JSON to a temporary file beside `path` and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        json.dump(payload, handle, indent=2, sort_keys=True, default=str)
        handle.write("\n")
    os.replace(handle.name, path)


class RunFolder:
    """One run's output folder. `folder / name` is the path of one of its files (the constants above)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def read(self, name: str, *, required: bool = False) -> Any:
        """The parsed JSON file `name`, or None when it is absent and not `required`."""
        path = self.path / name
        if not path.is_file():
            if required:
                raise FileNotFoundError(f"{path} does not exist; expected the file a training run writes there.")
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{path} line {err.lineno}: not valid JSON ({err.msg}); rewrite it or re-run the step that writes it."
            ) from err

    def write(self, name: str, payload: Any) -> Path:
        """Write `payload` as the JSON file `name`, atomically; returns its path."""
        write_json_atomic(self.path / name, payload)
        return self.path / name

    def write_confusion_matrix(self, matrix: Sequence[Sequence[int]], label_names: Sequence[str], title: str) -> None:
        """`confusion_matrix.png` and `confusion_matrix.json` (see `emotionnet.evaluation.save_confusion_matrix`)."""
        from .evaluation import save_confusion_matrix

        save_confusion_matrix(matrix, label_names, self.path / CONFUSION_MATRIX_IMAGE, self.path / CONFUSION_MATRIX,
                              title=title)

    def is_finished(self) -> bool:
        """Whether a training run completed here: `all_results.json` is written last."""
        return (self.path / RESULTS).is_file()


__all__ = [
    "CONFUSION_MATRIX",
    "CONFUSION_MATRIX_IMAGE",
    "EVAL_RESULTS",
    "HISTORY",
    "RESULTS",
    "SKIPPED_IMAGES",
    "TRAINING_CONFIG",
    "RunFolder",
    "write_json_atomic",
]
