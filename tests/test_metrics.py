"""Metrics through our local `evaluate` modules, the confusion-matrix files, and the evaluation loop.

Expected values are worked out by hand in the comments next to them, not by the code under test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from emotionnet.evaluation import (
    METRICS_DIR,
    compute_classification_metrics,
    evaluate_model,
    load_metric_modules,
    save_confusion_matrix,
)

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["neutral", "happiness", "surprise", "sadness"]

# The hand example: 8 samples, 4 classes; class 3 (sadness) is true once and never predicted.
REFERENCES = np.array([0, 0, 0, 1, 1, 2, 2, 3])
PREDICTIONS = np.array([0, 0, 1, 1, 1, 2, 0, 2])
# Confusion matrix (rows = true, cols = predicted):
#   true 0: predicted 0, 0, 1 -> [2, 1, 0, 0]
#   true 1: predicted 1, 1    -> [0, 2, 0, 0]
#   true 2: predicted 2, 0    -> [1, 0, 1, 0]
#   true 3: predicted 2       -> [0, 0, 1, 0]
HAND_MATRIX = [[2, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 1, 0]]
# Accuracy: diagonal 2 + 2 + 1 + 0 = 5 of 8.
HAND_ACCURACY = 5 / 8  # 0.625
# Recall = diagonal / row sum: 2/3, 2/2, 1/2, 0/1.
HAND_RECALL = {"neutral": 2 / 3, "happiness": 1.0, "surprise": 0.5, "sadness": 0.0}
# Balanced accuracy = mean recall = (2/3 + 1 + 1/2 + 0) / 4 = (13/6) / 4 = 13/24.
HAND_BALANCED_ACCURACY = 13 / 24  # 0.541666...
# F1 = 2 TP / (row sum + column sum); column sums are 3, 3, 2, 0:
#   class 0: 4 / (3 + 3) = 2/3; class 1: 4 / (2 + 3) = 4/5; class 2: 2 / (2 + 2) = 1/2; class 3: 0 / (1 + 0) = 0.
# Macro-F1 = (2/3 + 4/5 + 1/2 + 0) / 4 = (20/30 + 24/30 + 15/30) / 4 = 59/120.
HAND_MACRO_F1 = 59 / 120  # 0.491666...

# The ECE example: 4 samples, 3 classes, 15 bins of width 1/15 closed on the right.
ECE_PROBS = np.array(
    [
        [0.90, 0.05, 0.05],  # ref 0: correct, confidence 0.90 -> 0.90 * 15 = 13.5 -> bin (13/15, 14/15]
        [0.92, 0.05, 0.03],  # ref 1: wrong,   confidence 0.92 -> 13.8 -> the same bin
        [0.50, 0.30, 0.20],  # ref 1: wrong,   confidence 0.50 -> 7.5  -> bin (7/15, 8/15]
        [0.15, 0.20, 0.65],  # ref 2: correct, confidence 0.65 -> 9.75 -> bin (9/15, 10/15]
    ]
)
ECE_REFERENCES = np.array([0, 1, 1, 2])
# Bin (13/15, 14/15]: 2 samples, accuracy 1/2, mean confidence 0.91 -> 2/4 * |0.5 - 0.91| = 0.205
# Bin (7/15, 8/15]:   1 sample,  accuracy 0,   confidence 0.50     -> 1/4 * 0.50          = 0.125
# Bin (9/15, 10/15]:  1 sample,  accuracy 1,   confidence 0.65     -> 1/4 * 0.35          = 0.0875
# ECE = 0.205 + 0.125 + 0.0875 = 0.4175.
# (With 10 bins 0.90 and 0.92 would fall in different bins: 0.025 + 0.23 + 0.125 + 0.0875 = 0.4675.)
HAND_ECE = 0.4175


def one_hot_probs(predictions: np.ndarray, num_labels: int, confidence: float = 0.7) -> np.ndarray:
    """Probability rows whose argmax is `predictions`, the rest of the mass spread evenly."""
    probs = np.full((len(predictions), num_labels), (1.0 - confidence) / (num_labels - 1))
    probs[np.arange(len(predictions)), predictions] = confidence
    return probs


@pytest.fixture(scope="module")
def hand_metrics() -> dict:
    return compute_classification_metrics(one_hot_probs(PREDICTIONS, 4), REFERENCES, NAMES)


def test_accuracy_matches_hand_value(hand_metrics):
    assert hand_metrics["accuracy"] == pytest.approx(HAND_ACCURACY)


def test_balanced_accuracy_matches_hand_value(hand_metrics):
    assert hand_metrics["balanced_accuracy"] == pytest.approx(HAND_BALANCED_ACCURACY)


def test_macro_f1_matches_hand_value(hand_metrics):
    assert hand_metrics["macro_f1"] == pytest.approx(HAND_MACRO_F1)


def test_per_class_recall_is_keyed_by_name_and_zero_for_a_never_predicted_class(hand_metrics):
    assert list(hand_metrics["per_class_recall"]) == NAMES
    assert hand_metrics["per_class_recall"] == pytest.approx(HAND_RECALL)
    assert hand_metrics["per_class_recall"]["sadness"] == 0.0


def test_confusion_matrix_rows_are_true_and_columns_predicted(hand_metrics):
    assert hand_metrics["confusion_matrix"] == HAND_MATRIX


def test_class_absent_everywhere_keeps_its_row_and_column_but_leaves_the_averages_alone():
    # A fifth class, "anger", that is neither true nor predicted: the 4-class averages must not move.
    metrics = compute_classification_metrics(one_hot_probs(PREDICTIONS, 5), REFERENCES, [*NAMES, "anger"])
    assert metrics["confusion_matrix"] == [[*row, 0] for row in HAND_MATRIX] + [[0, 0, 0, 0, 0]]
    assert metrics["per_class_recall"]["anger"] is None
    assert metrics["balanced_accuracy"] == pytest.approx(HAND_BALANCED_ACCURACY)
    assert metrics["macro_f1"] == pytest.approx(HAND_MACRO_F1)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_metrics_agree_with_scikit_learn_on_random_data():
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score, recall_score

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(6), size=200)
    references = rng.integers(0, 5, size=200)  # class 5 is never true
    predictions = probs.argmax(axis=1)
    metrics = compute_classification_metrics(probs, references, [f"c{i}" for i in range(6)])
    assert metrics["accuracy"] == pytest.approx(accuracy_score(references, predictions))
    assert metrics["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(references, predictions))
    assert metrics["macro_f1"] == pytest.approx(f1_score(references, predictions, average="macro", zero_division=0))
    assert metrics["confusion_matrix"] == confusion_matrix(references, predictions, labels=range(6)).tolist()
    recall = recall_score(references, predictions, labels=range(5), average=None)
    assert list(metrics["per_class_recall"].values()) == pytest.approx([*recall, None])


def test_metrics_warn_about_nothing_for_one_class_or_predicted_only_classes():
    # A tiny validation split can hold a single class; a model can predict a class no reference has. Both
    # are covered by the documented averaging, so scikit-learn's warnings about them must not leak out.
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ones = np.array([1, 1])
        one_class = compute_classification_metrics(one_hot_probs(ones, 3), ones, ["a", "b", "c"])
        predicted_only = compute_classification_metrics(one_hot_probs(PREDICTIONS, 4), REFERENCES, NAMES)
    assert one_class["balanced_accuracy"] == 1.0 and one_class["per_class_recall"] == {"a": None, "b": 1.0, "c": None}
    assert predicted_only["balanced_accuracy"] == pytest.approx(HAND_BALANCED_ACCURACY)


def test_ece_bins_match_scikit_learn_calibration_curve():
    # Top-label ECE is the binary calibration curve of (correct, confidence) weighted by bin size. Every
    # confidence sits on a bin edge k/15, which pins down the bin an edge belongs to, and one value per bin
    # gives the bin sizes as the value counts.
    from sklearn.calibration import calibration_curve

    rng = np.random.default_rng(1)
    confidences = rng.integers(6, 16, size=300) / 15  # in [0.4, 1.0], so class 0 is always the argmax
    probs = np.stack([confidences, (1 - confidences) / 2, (1 - confidences) / 2], axis=1)
    references = rng.integers(0, 3, size=300)
    correct = (references == 0).astype(int)
    accuracy_per_bin, confidence_per_bin = calibration_curve(correct, confidences, n_bins=15)
    _, bin_sizes = np.unique(confidences, return_counts=True)
    expected = np.sum(bin_sizes / 300 * np.abs(accuracy_per_bin - confidence_per_bin))
    assert compute_classification_metrics(probs, references, ["a", "b", "c"])["ece"] == pytest.approx(expected)


def test_ece_matches_hand_value_with_15_bins():
    metrics = compute_classification_metrics(ECE_PROBS, ECE_REFERENCES, ["a", "b", "c"])
    assert metrics["ece"] == pytest.approx(HAND_ECE)


def test_ece_is_zero_for_confident_correct_predictions():
    metrics = compute_classification_metrics(np.eye(3), np.array([0, 1, 2]), ["a", "b", "c"])
    assert metrics["ece"] == pytest.approx(0.0)


def test_ece_module_rejects_logits():
    module = load_metric_modules()["expected_calibration_error"]
    with pytest.raises(ValueError, match="softmax"):
        module.compute(predictions=[[2.0, -1.0], [0.5, 0.1]], references=[0, 1])


def test_prefix_is_applied_to_every_key():
    metrics = compute_classification_metrics(ECE_PROBS, ECE_REFERENCES, ["a", "b", "c"], prefix="eval_corrected_")
    assert sorted(metrics) == [
        "eval_corrected_accuracy",
        "eval_corrected_balanced_accuracy",
        "eval_corrected_confusion_matrix",
        "eval_corrected_ece",
        "eval_corrected_macro_f1",
        "eval_corrected_per_class_recall",
    ]


def test_label_count_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        compute_classification_metrics(ECE_PROBS, ECE_REFERENCES, NAMES)


def test_out_of_range_reference_is_a_clear_error():
    with pytest.raises(ValueError, match=r"class ids in \[0, 3\)"):
        compute_classification_metrics(ECE_PROBS, np.array([0, 1, 1, 3]), ["a", "b", "c"])


def test_confusion_matrix_files_are_written_and_readable(tmp_path):
    from matplotlib.image import imread

    png, json_path = tmp_path / "figs" / "confusion_matrix.png", tmp_path / "confusion_matrix.json"
    save_confusion_matrix(HAND_MATRIX, NAMES, png, json_path, title="hand example")
    assert json.loads(json_path.read_text()) == {"labels": NAMES, "matrix": HAND_MATRIX}
    image = imread(png)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image.std() > 0.05  # not a blank canvas


def test_local_modules_load_in_a_fresh_offline_process_without_network(tmp_path):
    # A fresh module cache proves nothing is reused from an earlier run; every socket connection fails,
    # so loading by name from the Hub would raise instead of passing.
    script = textwrap.dedent(
        """
        import json, socket, sys

        def refuse(*args, **kwargs):
            raise OSError("network access attempted during metric loading")

        socket.socket.connect = refuse
        socket.create_connection = refuse
        sys.path.insert(0, sys.argv[1])
        import numpy as np
        from emotionnet.evaluation import compute_classification_metrics

        probs = np.array([[0.9, 0.05, 0.05], [0.92, 0.05, 0.03], [0.5, 0.3, 0.2], [0.15, 0.2, 0.65]])
        print(json.dumps(compute_classification_metrics(probs, np.array([0, 1, 1, 2]), ["a", "b", "c"])))
        """
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
        "OMP_NUM_THREADS": "1",
    }
    result = subprocess.run(
        [sys.executable, "-c", script, str(ROOT)], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert metrics["ece"] == pytest.approx(HAND_ECE)
    assert metrics["accuracy"] == pytest.approx(0.5)  # samples 1 and 4 of 4 are right
    assert (tmp_path / "modules" / "evaluate_modules" / "metrics" / "fer_classification").is_dir()


def test_metric_modules_ship_as_one_script_per_folder():
    # pyproject's package-data glob `metrics/*/*.py` must catch every module evaluate loads.
    assert sorted(p.relative_to(METRICS_DIR).as_posix() for p in METRICS_DIR.glob("*/*.py")) == [
        "expected_calibration_error/expected_calibration_error.py",
        "fer_classification/fer_classification.py",
    ]


class FakeGReFEL(torch.nn.Module):
    """Stands in for GReFELForImageClassification: sample i (encoded in pixel 0) gets fixed outputs.

    Primary probabilities follow the hand example, the corrected ones are always right, and the loss of a
    batch is the mean of a per-sample value, so the expected eval loss is a plain mean over samples.
    """

    def __init__(self, primary: np.ndarray, corrected: np.ndarray, sample_losses: np.ndarray):
        super().__init__()
        self.config = SimpleNamespace(id2label=dict(enumerate(NAMES)))
        self.register_buffer("primary", torch.tensor(primary, dtype=torch.float32))
        self.register_buffer("corrected", torch.tensor(corrected, dtype=torch.float32))
        self.register_buffer("sample_losses", torch.tensor(sample_losses, dtype=torch.float32))
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None) -> SimpleNamespace:
        index = pixel_values[:, 0, 0, 0].long()
        loss = (self.sample_losses[index] * self.scale).mean() if labels is not None else None
        return SimpleNamespace(loss=loss, primary_probs=self.primary[index], corrected_probs=self.corrected[index])


# Per-sample losses: their plain mean is 36/8 = 4.5; the mean of the batch means with batches of
# 3, 3, 2 would be ((0+1+2)/3 + (3+4+5)/3 + (6+15)/2) / 3 = (1 + 4 + 10.5) / 3 = 5.1666...
SAMPLE_LOSSES = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 15.0])


def fake_loader(labels: torch.Tensor, batch_size: int = 3) -> torch.utils.data.DataLoader:
    """Batches of dicts whose pixel 0 holds the sample index."""
    pixels = torch.zeros(len(labels), 3, 4, 4)
    pixels[:, 0, 0, 0] = torch.arange(len(labels), dtype=torch.float32)
    dataset = [{"pixel_values": pixels[i], "labels": labels[i]} for i in range(len(labels))]
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size)


@pytest.fixture
def fake_model() -> FakeGReFEL:
    return FakeGReFEL(one_hot_probs(PREDICTIONS, 4), one_hot_probs(REFERENCES, 4), SAMPLE_LOSSES)


def test_evaluate_model_scores_primary_and_corrected_predictions(fake_model):
    metrics = evaluate_model(fake_model, fake_loader(torch.tensor(REFERENCES)))
    assert metrics["eval_samples"] == 8
    assert metrics["eval_accuracy"] == pytest.approx(HAND_ACCURACY)
    assert metrics["eval_macro_f1"] == pytest.approx(HAND_MACRO_F1)
    assert metrics["eval_confusion_matrix"] == HAND_MATRIX
    assert metrics["eval_corrected_accuracy"] == pytest.approx(1.0)


def test_evaluate_model_loss_is_the_mean_over_samples(fake_model):
    metrics = evaluate_model(fake_model, fake_loader(torch.tensor(REFERENCES)))
    assert metrics["eval_loss"] == pytest.approx(4.5)


def test_evaluate_model_scores_distribution_labels_by_their_argmax(fake_model):
    votes = torch.tensor(one_hot_probs(REFERENCES, 4, confidence=0.4), dtype=torch.float32)
    metrics = evaluate_model(fake_model, fake_loader(votes))
    assert metrics["eval_confusion_matrix"] == HAND_MATRIX


def test_evaluate_model_restores_training_mode(fake_model):
    fake_model.train()
    evaluate_model(fake_model, fake_loader(torch.tensor(REFERENCES)))
    assert fake_model.training


def test_evaluate_model_with_an_accelerator_matches_the_plain_loop(fake_model):
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    model, loader = accelerator.prepare(fake_model, fake_loader(torch.tensor(REFERENCES)))
    metrics = evaluate_model(model, loader, accelerator)
    assert metrics == evaluate_model(fake_model, fake_loader(torch.tensor(REFERENCES)))


def with_skipped(loader, skipped_per_batch: list[list[tuple[str, str]]]) -> list[dict]:
    """The loader's batches, each carrying the unreadable images an EvalCollator would have reported."""
    return [{**batch, "skipped": skipped} for batch, skipped in zip(loader, skipped_per_batch, strict=True)]


def test_evaluate_model_reports_unreadable_images_once_beside_the_scored_count(fake_model):
    batches = with_skipped(fake_loader(torch.tensor(REFERENCES)),
                           [[("a.png", "OSError: broken")], [], [("b.png", "OSError: empty"), ("a.png", "OSError: broken")]])
    metrics = evaluate_model(fake_model, batches)
    assert metrics["eval_samples"] == 8 and metrics["eval_skipped_images"] == 2
    assert metrics["eval_skipped"] == [{"image": "a.png", "reason": "OSError: broken"},
                                       {"image": "b.png", "reason": "OSError: empty"}]


def test_evaluate_model_with_no_readable_image_names_the_files(fake_model):
    empty = {"pixel_values": torch.zeros(0, 3, 4, 4), "labels": torch.zeros(0, dtype=torch.long)}
    batches = [{**empty, "skipped": [("a.png", "OSError: broken"), ("b.png", "OSError: broken")]}]
    with pytest.raises(ValueError, match=r"no image could be read \(2 images: a.png \(OSError: broken\), b.png"):
        evaluate_model(fake_model, batches)


def test_evaluate_model_runs_a_tiny_grefel(tiny_model):
    torch.manual_seed(0)
    size = tiny_model.config.image_size
    labels = torch.tensor([0, 1, 2, 3, 4])
    dataset = [{"pixel_values": torch.randn(3, size, size), "labels": label} for label in labels]
    metrics = evaluate_model(tiny_model, torch.utils.data.DataLoader(dataset, batch_size=2))
    assert metrics["eval_samples"] == 5
    assert np.isfinite(metrics["eval_loss"])
    assert list(metrics["eval_per_class_recall"]) == list(tiny_model.config.id2label.values())
    assert np.array(metrics["eval_corrected_confusion_matrix"]).sum() == 5
    assert 0.0 <= metrics["eval_ece"] <= 1.0


DDP_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[2])
import torch
from accelerate import Accelerator
from test_metrics import NAMES, PREDICTIONS, REFERENCES, SAMPLE_LOSSES, FakeGReFEL, fake_loader, one_hot_probs
from emotionnet.evaluation import evaluate_model

accelerator = Accelerator(cpu=True)
model = FakeGReFEL(one_hot_probs(PREDICTIONS, 4), one_hot_probs(REFERENCES, 4), SAMPLE_LOSSES)
# 8 samples in batches of 3 over 2 ranks: the last round is padded with repeated samples.
model, loader = accelerator.prepare(model, fake_loader(torch.tensor(REFERENCES), batch_size=3))
metrics = evaluate_model(model, loader, accelerator)
print("RESULT", accelerator.process_index, json.dumps(metrics), flush=True)
"""


@pytest.mark.slow
def test_evaluate_model_under_two_process_ddp_drops_padding_duplicates(tmp_path):
    script = tmp_path / "ddp_eval.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    result = subprocess.run(
        [*command, str(script), str(ROOT), str(ROOT / "tests")],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = [line.split(" ", 2) for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert sorted(rank for _, rank, _ in results) == ["0", "1"]
    for _, _, payload in results:
        metrics = json.loads(payload)
        assert metrics["eval_samples"] == 8
        assert metrics["eval_confusion_matrix"] == HAND_MATRIX
