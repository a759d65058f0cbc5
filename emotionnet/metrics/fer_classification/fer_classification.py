"""Classification metrics for facial expression recognition, as a local `evaluate` metric module.

Load it by path, never by name (a bare name makes `evaluate` go to the Hub):

    import evaluate
    metric = evaluate.load("/abs/path/to/emotionnet/metrics/fer_classification")
    metric.compute(predictions=[0, 1, 1], references=[0, 1, 2], num_labels=8)

`evaluate` copies this file alone into its module cache before importing it, so it must stay
self-contained: it imports nothing from the `emotionnet` package.
"""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

_DESCRIPTION = """\
Accuracy, balanced accuracy, macro-F1, per-class recall and the confusion matrix of single-label
predictions over a fixed set of `num_labels` classes, each computed by `sklearn.metrics`. The confusion
matrix's rows are the true classes and its columns the predicted classes; all `num_labels` classes are
present in it even when a class never occurs.

Averaging is scikit-learn's, so numbers compare with published results:
- balanced accuracy is the mean recall over the classes present in the references
  (`sklearn.metrics.balanced_accuracy_score`);
- macro-F1 is the mean F1 over the classes present in the references or the predictions
  (`sklearn.metrics.f1_score(average="macro")` with its default labels). A class that is predicted but
  never true, or true but never predicted, counts with F1 = 0; a class seen in neither is left out,
  since it carries no evidence either way.
"""

_INPUTS_DESCRIPTION = """\
Args:
    predictions (`list[int]`): predicted class ids in [0, num_labels).
    references (`list[int]`): true class ids in [0, num_labels).
    num_labels (`int`): the number of classes of the model; fixes the confusion matrix size.
Returns:
    accuracy (`float`): fraction of predictions equal to the reference.
    balanced_accuracy (`float`): mean per-class recall over the classes present in the references.
    macro_f1 (`float`): mean per-class F1 over the classes present in the references or predictions.
    per_class_recall (`list[float | None]`): recall of each class id; None for a class with no reference.
    confusion_matrix (`list[list[int]]`): counts, shape (num_labels, num_labels), rows = true, cols = predicted.
Examples:
    >>> metric.compute(predictions=[0, 0, 1], references=[0, 1, 1], num_labels=3)["accuracy"]
    0.6666666666666666
"""

_CITATION = """\
@article{brodersen2010balanced,
  title={The balanced accuracy and its posterior distribution},
  author={Brodersen, Kay H. and Ong, Cheng Soon and Stephan, Klaas E. and Buhmann, Joachim M.},
  journal={20th International Conference on Pattern Recognition},
  year={2010}
}
"""


def _check_class_ids(name: str, ids: np.ndarray, num_labels: int) -> None:
    """Raise a ValueError naming `name` if `ids` holds anything outside [0, num_labels)."""
    if ids.size and (ids.min() < 0 or ids.max() >= num_labels):
        raise ValueError(
            f"fer_classification: `{name}` must hold class ids in [0, {num_labels}) but ranges over "
            f"[{ids.min()}, {ids.max()}]; pass class ids (argmax of the probabilities), not other values."
        )


class FerClassification(evaluate.Metric):
    """Accuracy, balanced accuracy, macro-F1, per-class recall and confusion matrix in one call."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
            # Every feature is a scalar Value, so `_compute` can receive numpy arrays directly.
            format="numpy",
            reference_urls=["https://scikit-learn.org/stable/modules/model_evaluation.html#balanced-accuracy-score"],
        )

    def _compute(self, predictions: np.ndarray, references: np.ndarray, num_labels: int | None = None) -> dict:
        if num_labels is None or int(num_labels) < 1:
            raise ValueError(
                f"fer_classification: `num_labels` must be a positive int (the model's class count) but got "
                f"{num_labels!r}; pass num_labels=len(label_names) to compute()."
            )
        num_labels = int(num_labels)
        predictions = np.asarray(predictions, dtype=np.int64)
        references = np.asarray(references, dtype=np.int64)
        if predictions.size == 0:
            raise ValueError("fer_classification: got no predictions; evaluate on at least one sample.")
        _check_class_ids("predictions", predictions, num_labels)
        _check_class_ids("references", references, num_labels)

        labels = np.arange(num_labels)
        # Row = true class, column = predicted class; `labels` keeps a row and column for every class.
        matrix = confusion_matrix(references, predictions, labels=labels)
        support = matrix.sum(axis=1)  # (C,) samples whose true class is c
        # zero_division only fills the classes with no reference, which are reported as None below.
        recall = recall_score(references, predictions, labels=labels, average=None, zero_division=0.0)
        # Balanced accuracy is the macro recall over the classes present in the references, which is how
        # `balanced_accuracy_score` computes it (scikit-learn 1.9 `_classification.py`). It is called through
        # `recall_score` because `balanced_accuracy_score` warns on predicted-only classes (part of the
        # definition here) and, via an unlabelled `confusion_matrix`, on inputs holding a single class.
        balanced_accuracy = recall_score(references, predictions, labels=np.unique(references), average="macro")
        return {
            "accuracy": float(accuracy_score(references, predictions)),
            "balanced_accuracy": float(balanced_accuracy),
            # Default labels: the classes in the references or the predictions. A class true but never
            # predicted, or predicted but never true, has F1 = 2TP / (2TP + FP + FN) = 0 with no 0/0, so
            # zero_division never changes the value; it only silences the warning.
            "macro_f1": float(f1_score(references, predictions, average="macro", zero_division=0.0)),
            "per_class_recall": [float(r) if n else None for r, n in zip(recall, support, strict=True)],
            "confusion_matrix": matrix.astype(int).tolist(),
        }


__all__ = ["FerClassification"]
