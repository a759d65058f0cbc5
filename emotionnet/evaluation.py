"""Evaluation of GReFEL models: metrics computed through `evaluate`, confusion-matrix figures, an eval loop.

The metrics live in our own `evaluate` modules under `emotionnet/metrics/`, which compute through
`sklearn.metrics` (the calibration error excepted: its module says why), and are loaded by absolute
path, so nothing is fetched from the Hub (`evaluate.load("accuracy")` would be) and evaluation works
with `HF_HUB_OFFLINE=1` on a machine without network.

Typical use in a training script:

    metrics = evaluate_model(model, eval_dataloader, accelerator)      # eval_accuracy, eval_corrected_ece, ...
    RunFolder(output_dir).write_confusion_matrix(metrics["eval_confusion_matrix"], label_names, title="...")

(`emotionnet.run_folder.RunFolder` names the files and calls `save_confusion_matrix`.)
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    import evaluate
    from accelerate import Accelerator

METRICS_DIR = Path(__file__).resolve().parent / "metrics"
"""Folder holding one sub-folder per local `evaluate` metric module (`<name>/<name>.py`)."""

METRIC_MODULE_NAMES = ("fer_classification", "expected_calibration_error")
"""The local metric modules `load_metric_modules` loads, by folder name under `METRICS_DIR`."""

ECE_BINS = 15
"""Number of equal-width confidence bins of the reported expected calibration error."""


@functools.cache
def load_metric_modules() -> dict[str, evaluate.EvaluationModule]:
    """Load the local `evaluate` metric modules once per process, keyed by module name.

    Each module is loaded from its absolute folder path, which `evaluate` resolves locally without
    contacting the Hub. The modules keep their inputs in memory (no cache files, no file locks shared
    between ranks): every rank computes on the already gathered arrays.

    Returns:
        `{"fer_classification": ..., "expected_calibration_error": ...}`.
    """
    import evaluate

    modules = {}
    for name in METRIC_MODULE_NAMES:
        script = METRICS_DIR / name / f"{name}.py"
        if not script.is_file():
            raise FileNotFoundError(
                f"emotionnet/evaluation.py: the metric module {script} is missing; reinstall emotionnet so its "
                f"package data `metrics/*/*.py` is included."
            )
        modules[name] = evaluate.load(str(script.parent), keep_in_memory=True)
    return modules


def compute_classification_metrics(
    probs: np.ndarray, references: np.ndarray, label_names: Sequence[str], prefix: str = ""
) -> dict[str, Any]:
    """Compute the classification and calibration metrics of predicted class distributions.

    Args:
        probs: `(N, C)` predicted probabilities (rows sum to 1); the prediction is the argmax of each row.
        references: `(N,)` true class ids in `[0, C)`.
        label_names: the `C` class names, in class-id order.
        prefix: prepended to every key, e.g. `"eval_"` or `"eval_corrected_"`.

    Returns:
        A flat dict with the keys (each prefixed) `accuracy`, `balanced_accuracy`, `macro_f1`, `ece`
        (floats), `per_class_recall` (`{name: float | None}`, None for a class absent from `references`)
        and `confusion_matrix` (`C` lists of `C` ints, rows = true class, columns = predicted class).
        Balanced accuracy averages recall over the classes present in `references`; macro-F1 averages F1
        over the classes present in `references` or in the predictions (scikit-learn's definitions).
    """
    probs = np.asarray(probs, dtype=np.float64)
    references = np.asarray(references)
    num_labels = len(label_names)
    if probs.ndim != 2 or probs.shape[1] != num_labels:
        raise ValueError(
            f"compute_classification_metrics: `probs` must have shape (N, {num_labels}) to match the "
            f"{num_labels} label_names but has shape {probs.shape}."
        )
    if references.shape != (probs.shape[0],):
        raise ValueError(
            f"compute_classification_metrics: `references` must have shape ({probs.shape[0]},), one class id per "
            f"row of `probs`, but has shape {references.shape}; for probability-distribution labels pass their argmax."
        )
    if probs.shape[0] == 0:
        raise ValueError("compute_classification_metrics: got no samples; evaluate on at least one sample.")
    if not np.isfinite(probs).all():
        raise ValueError(
            "compute_classification_metrics: `probs` contains NaN or infinite values; the model diverged or was "
            "fed unnormalised inputs, so there is nothing meaningful to score."
        )
    if not np.issubdtype(references.dtype, np.integer):
        raise ValueError(
            f"compute_classification_metrics: `references` must be integer class ids but has dtype "
            f"{references.dtype}; pass class ids (for probability-distribution labels, their argmax)."
        )

    modules = load_metric_modules()
    classification = modules["fer_classification"].compute(
        predictions=probs.argmax(axis=1), references=references, num_labels=num_labels
    )
    calibration = modules["expected_calibration_error"].compute(
        predictions=probs, references=references, n_bins=ECE_BINS
    )
    metrics = {
        "accuracy": classification["accuracy"],
        "balanced_accuracy": classification["balanced_accuracy"],
        "macro_f1": classification["macro_f1"],
        "ece": calibration["expected_calibration_error"],
        "per_class_recall": dict(zip(label_names, classification["per_class_recall"], strict=True)),
        "confusion_matrix": classification["confusion_matrix"],
    }
    return {f"{prefix}{key}": value for key, value in metrics.items()}


def save_confusion_matrix(
    matrix: Sequence[Sequence[int]] | np.ndarray,
    label_names: Sequence[str],
    path_png: str | Path,
    path_json: str | Path,
    title: str = "Confusion matrix",
) -> None:
    """Write a confusion matrix as a figure and as JSON.

    The figure colours each cell by its share of the row (the recall view, readable when classes are
    imbalanced) and writes the raw count in it. The JSON is `{"labels": [...], "matrix": [[...]]}` with
    rows = true class and columns = predicted class. Parent folders are created.

    Args:
        matrix: `(C, C)` counts, rows = true class, columns = predicted class.
        label_names: the `C` class names, in class-id order.
        path_png: where to write the PNG figure.
        path_json: where to write the JSON.
        title: the figure title.
    """
    counts = np.asarray(matrix)
    num_labels = len(label_names)
    if counts.shape != (num_labels, num_labels):
        raise ValueError(
            f"save_confusion_matrix: `matrix` must have shape ({num_labels}, {num_labels}) to match the "
            f"{num_labels} label_names but has shape {counts.shape}."
        )
    # Not `sklearn.metrics.ConfusionMatrixDisplay`: its `plot` (scikit-learn 1.9) colours the cells and writes
    # their text from the same matrix, so it cannot colour by row share while printing counts, and it
    # imports pyplot. Agg through the object API: no display needed, pyplot's global state is left alone.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    row_sums = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, row_sums, out=np.zeros(counts.shape), where=row_sums > 0)

    side = 1.6 + 0.75 * num_labels
    figure = Figure(figsize=(side + 1.2, side), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, label="fraction of the true class")
    axes.set(
        xticks=range(num_labels),
        yticks=range(num_labels),
        xlabel="predicted",
        ylabel="true",
        title=title,
    )
    axes.set_xticklabels(label_names, rotation=45, ha="right")
    axes.set_yticklabels(label_names)
    for row in range(num_labels):
        for col in range(num_labels):
            # Dark cells get white text so the count stays legible.
            colour = "white" if shares[row, col] > 0.5 else "black"
            axes.text(col, row, str(int(counts[row, col])), ha="center", va="center", color=colour, fontsize=9)

    path_png, path_json = Path(path_png), Path(path_json)
    path_png.parent.mkdir(parents=True, exist_ok=True)
    path_json.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path_png, dpi=120)
    payload = {"labels": list(label_names), "matrix": counts.astype(int).tolist()}
    path_json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def _label_names_of(model: torch.nn.Module) -> list[str]:
    """The class names of `model.config.id2label`, in class-id order."""
    config = getattr(model, "config", None)
    id2label = getattr(config, "id2label", None)
    if not id2label:
        raise ValueError(
            "evaluate_model: the model has no `config.id2label` to name its classes; pass label_names=[...]."
        )
    return [id2label[index] for index in sorted(id2label, key=int)]


def evaluate_model(
    model: torch.nn.Module,
    dataloader: Iterable[dict[str, torch.Tensor]],
    accelerator: Accelerator | None = None,
    *,
    label_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Run a GReFEL classifier over a dataloader and compute its metrics.

    The model runs in eval mode under `torch.no_grad()` (its previous mode is restored afterwards). With
    an `accelerator`, the dataloader is expected to come from `accelerator.prepare`, and predictions,
    labels and per-sample losses are gathered with `accelerator.gather_for_metrics`, so every rank
    returns the metrics of the whole dataset and the samples repeated to pad the last batch are dropped.

    Args:
        model: a `GReFELForImageClassification` (possibly wrapped by `accelerator.prepare`), or any module
            whose output has `primary_probs`, `corrected_probs` `(B, C)` and `loss`.
        dataloader: yields dicts with `"pixel_values"` `(B, 3, H, W)` and `"labels"`, either class ids
            `(B,)` or probability distributions `(B, C)` (FERPlus votes; their argmax is the reference), and
            optionally `"skipped"`, the `(image, reason)` pairs of the batch's unreadable images
            (`emotionnet.training.EvalCollator`).
        accelerator: the run's `accelerate.Accelerator`, or None for a single process.
        label_names: the class names in class-id order; defaults to the model's `config.id2label`.

    Returns:
        The metrics of `compute_classification_metrics` for the primary prediction (prefix `"eval_"`) and
        for the geometry-corrected prediction (prefix `"eval_corrected_"`), plus `"eval_samples"` (the
        number of samples scored), `"eval_skipped_images"` and `"eval_skipped"` (the unreadable images, as
        `{"image", "reason"}` dicts, each once) and `"eval_loss"` when the model returns a loss. `eval_loss` is the
        mean of the batch losses weighted by batch size: the exact per-sample mean for a mean-reduced loss,
        except that under DDP the last, padded batch's loss also averages over its repeated samples.
    """
    unwrapped = accelerator.unwrap_model(model) if accelerator is not None else model
    names = list(label_names) if label_names is not None else _label_names_of(unwrapped)
    device = accelerator.device if accelerator is not None else next(model.parameters()).device
    show_progress = accelerator is None or accelerator.is_local_main_process

    from tqdm.auto import tqdm

    primary, corrected, labels, losses, skipped = [], [], [], [], []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for step, batch in enumerate(tqdm(dataloader, desc="Evaluating", disable=not show_progress)):
                if "pixel_values" not in batch or "labels" not in batch:
                    raise ValueError(
                        f"evaluate_model: batch {step} must be a dict with 'pixel_values' and 'labels' but has "
                        f"keys {sorted(batch)}; give the dataloader a collate_fn that returns both."
                    )
                skipped.extend(batch.get("skipped", ()))
                pixel_values = batch["pixel_values"].to(device)
                batch_labels = batch["labels"].to(device)
                outputs = model(pixel_values=pixel_values, labels=batch_labels)
                if outputs.primary_probs is None or outputs.corrected_probs is None:
                    raise ValueError(
                        "evaluate_model: the model output must carry `primary_probs` and `corrected_probs` "
                        "(B, C) in eval mode; pass a GReFELForImageClassification."
                    )
                batch_primary = outputs.primary_probs.float()
                batch_corrected = outputs.corrected_probs.float()
                batch_loss = None
                if outputs.loss is not None:
                    # One copy of the batch loss per sample, so gathering drops the padded duplicates'
                    # share and the mean is weighted by batch size.
                    batch_loss = outputs.loss.detach().float().reshape(1).expand(pixel_values.shape[0])
                if accelerator is not None:
                    batch_primary, batch_corrected, batch_labels = accelerator.gather_for_metrics(
                        (batch_primary, batch_corrected, batch_labels)
                    )
                    if batch_loss is not None:
                        batch_loss = accelerator.gather_for_metrics(batch_loss.contiguous())
                primary.append(batch_primary.cpu())
                corrected.append(batch_corrected.cpu())
                labels.append(batch_labels.cpu())
                if batch_loss is not None:
                    losses.append(batch_loss.cpu())
    finally:
        model.train(was_training)

    if accelerator is not None and accelerator.num_processes > 1:
        from accelerate.utils import gather_object

        skipped = [entry for part in gather_object([skipped]) for entry in part]
    # Each unreadable image once: the last batch of a DDP run repeats samples to fill every process.
    skipped = list(dict.fromkeys((str(key), reason) for key, reason in skipped))
    if not labels:
        raise ValueError("evaluate_model: the dataloader yielded no batches; evaluate on at least one sample.")
    all_labels = torch.cat(labels)
    if all_labels.shape[0] == 0 and skipped:
        from .data import describe_skipped

        raise ValueError(f"evaluate_model: no image could be read ({describe_skipped(skipped)}); nothing to score.")
    # Distribution labels (B, C) are scored against their most voted class.
    references = (all_labels.argmax(dim=-1) if all_labels.ndim == 2 else all_labels).long().numpy()

    metrics: dict[str, Any] = {
        "eval_samples": int(references.shape[0]),
        "eval_skipped_images": len(skipped),
        "eval_skipped": [{"image": key, "reason": reason} for key, reason in skipped],
    }
    if losses:
        metrics["eval_loss"] = float(torch.cat(losses).mean())
    metrics.update(compute_classification_metrics(torch.cat(primary).numpy(), references, names, prefix="eval_"))
    metrics.update(
        compute_classification_metrics(torch.cat(corrected).numpy(), references, names, prefix="eval_corrected_")
    )
    return metrics


__all__ = [
    "ECE_BINS",
    "METRICS_DIR",
    "METRIC_MODULE_NAMES",
    "compute_classification_metrics",
    "evaluate_model",
    "load_metric_modules",
    "save_confusion_matrix",
]
