"""Expected calibration error (ECE) of predicted class distributions, as a local `evaluate` metric module.

Load it by path, never by name (a bare name makes `evaluate` go to the Hub):

    import evaluate
    metric = evaluate.load("/abs/path/to/emotionnet/metrics/expected_calibration_error")
    metric.compute(predictions=[[0.9, 0.1], [0.4, 0.6]], references=[0, 0])

`evaluate` copies this file alone into its module cache before importing it, so it must stay
self-contained: it imports nothing from the `emotionnet` package.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """\
Expected calibration error with equal-width confidence bins (Guo et al., 2017, "On Calibration of Modern
Neural Networks", section 2). The confidence of a sample is its largest predicted probability and its
prediction is that class. Samples are grouped into `n_bins` bins ((m-1)/M, m/M] by confidence, and

    ECE = sum over bins B of |B| / N * |accuracy(B) - mean confidence(B)|.

0 means the confidences match the observed accuracies; the maximum is 1.
"""

_INPUTS_DESCRIPTION = """\
Args:
    predictions (`list[list[float]]`): one probability vector per sample, shape (N, C), rows summing to 1.
        Pass probabilities (softmax outputs), not logits.
    references (`list[int]`): true class ids in [0, C).
    n_bins (`int`, default 15): number of equal-width confidence bins over [0, 1].
Returns:
    expected_calibration_error (`float`): the ECE in [0, 1].
Examples:
    >>> metric.compute(predictions=[[1.0, 0.0], [0.0, 1.0]], references=[0, 1])
    {'expected_calibration_error': 0.0}
"""

_CITATION = """\
@inproceedings{guo2017calibration,
  title={On Calibration of Modern Neural Networks},
  author={Guo, Chuan and Pleiss, Geoff and Sun, Yu and Weinberger, Kilian Q.},
  booktitle={International Conference on Machine Learning},
  year={2017}
}
"""

# Tolerance on the row sums: float32 softmax outputs drift by ~1e-6, logits miss by far more.
_ROW_SUM_TOLERANCE = 1e-3


class ExpectedCalibrationError(evaluate.Metric):
    """Expected calibration error over the top-1 confidence, with equal-width bins."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Value("int64"),
                }
            ),
            reference_urls=["https://arxiv.org/abs/1706.04599"],
        )

    def _compute(self, predictions: list, references: list, n_bins: int = 15) -> dict:
        if int(n_bins) < 1:
            raise ValueError(f"expected_calibration_error: `n_bins` must be a positive int but got {n_bins!r}.")
        probs = np.asarray(predictions, dtype=np.float64)
        references = np.asarray(references, dtype=np.int64)
        if probs.ndim != 2 or probs.shape[0] == 0:
            raise ValueError(
                f"expected_calibration_error: `predictions` must be a non-empty (N, C) list of probability "
                f"vectors of one length C but has shape {probs.shape}."
            )
        num_classes = probs.shape[1]
        if references.min() < 0 or references.max() >= num_classes:
            raise ValueError(
                f"expected_calibration_error: `references` must hold class ids in [0, {num_classes}) but ranges "
                f"over [{references.min()}, {references.max()}]."
            )
        row_sums = probs.sum(axis=1)
        if probs.min() < 0 or np.abs(row_sums - 1.0).max() > _ROW_SUM_TOLERANCE:
            raise ValueError(
                f"expected_calibration_error: every row of `predictions` must be a probability vector (>= 0, "
                f"summing to 1) but row sums range over [{row_sums.min():.4g}, {row_sums.max():.4g}]; apply softmax "
                f"to logits first."
            )

        # No library function is used: scikit-learn has no multi-class ECE, and
        # `sklearn.calibration.calibration_curve` (1.9) accepts binary labels only and returns the per-bin
        # accuracy and confidence of the non-empty bins without their sizes, so the |B| / N weights cannot be
        # recovered from it; no other dependency of the package computes ECE (torchmetrics, which does, is not
        # one). Top-label ECE is that binary curve for (correct, confidence), so the bins are built here
        # exactly as `calibration_curve(strategy="uniform")` builds them (tests/test_metrics.py compares them).
        confidences = probs.max(axis=1)  # (N,)
        correct = (probs.argmax(axis=1) == references).astype(np.float64)  # (N,)
        edges = np.linspace(0.0, 1.0, int(n_bins) + 1)
        # Searching the inner edges (side="left") puts a confidence equal to an edge into the bin that edge
        # closes: the right-closed bins ((m-1)/M, m/M] of Guo et al., a confidence of 0 in the first bin.
        bin_ids = np.searchsorted(edges[1:-1], confidences)  # (N,) in [0, n_bins)

        confidence_sums = np.bincount(bin_ids, weights=confidences, minlength=int(n_bins))
        correct_sums = np.bincount(bin_ids, weights=correct, minlength=int(n_bins))
        # |sum(correct) - sum(confidence)| / N equals |B|/N * |acc(B) - conf(B)|, and empty bins add 0.
        ece = np.abs(correct_sums - confidence_sums).sum() / probs.shape[0]
        return {"expected_calibration_error": float(ece)}


__all__ = ["ExpectedCalibrationError"]
