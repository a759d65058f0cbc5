"""RunFolder: the file names of a run's output folder, atomic JSON writes, reads with a sentence for a bad file."""

from __future__ import annotations

import json

import pytest

from emotionnet import run_folder
from emotionnet.run_folder import RESULTS, TRAINING_CONFIG, RunFolder


def test_the_file_names_are_those_the_readme_documents():
    names = {name: getattr(run_folder, name) for name in ("RESULTS", "TRAINING_CONFIG", "HISTORY",
                                                           "CONFUSION_MATRIX", "CONFUSION_MATRIX_IMAGE",
                                                           "SKIPPED_IMAGES", "EVAL_RESULTS")}
    assert names == {
        "RESULTS": "all_results.json",
        "TRAINING_CONFIG": "training_config.json",
        "HISTORY": "training_history.json",
        "CONFUSION_MATRIX": "confusion_matrix.json",
        "CONFUSION_MATRIX_IMAGE": "confusion_matrix.png",
        "SKIPPED_IMAGES": "skipped_images.json",
        "EVAL_RESULTS": "eval_results.json",
    }


def test_write_then_read_round_trips_and_leaves_no_temporary_file(tmp_path):
    folder = RunFolder(tmp_path / "run")
    path = folder.write(TRAINING_CONFIG, {"lr": 0.001, "dataset": "synthetic"})
    assert path == tmp_path / "run" / TRAINING_CONFIG
    assert folder.read(TRAINING_CONFIG) == {"lr": 0.001, "dataset": "synthetic"}
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [TRAINING_CONFIG]


def test_a_run_is_finished_once_its_results_are_written(tmp_path):
    folder = RunFolder(tmp_path)
    assert not folder.is_finished()
    folder.write(RESULTS, {"eval_accuracy": 0.5})
    assert folder.is_finished()


def test_an_absent_file_reads_as_none_unless_required(tmp_path):
    folder = RunFolder(tmp_path)
    assert folder.read(RESULTS) is None
    with pytest.raises(FileNotFoundError, match="all_results.json does not exist; expected the file a training run"):
        folder.read(RESULTS, required=True)


def test_broken_json_names_the_file_and_line(tmp_path):
    (tmp_path / RESULTS).write_text('{\n  "eval_accuracy": \n')
    with pytest.raises(ValueError, match=r"all_results.json line 3: not valid JSON"):
        RunFolder(tmp_path).read(RESULTS)


def test_the_confusion_matrix_is_written_as_json_and_figure(tmp_path):
    folder = RunFolder(tmp_path)
    folder.write_confusion_matrix([[2, 1], [0, 3]], ["neutral", "happiness"], title="test")
    assert json.loads((folder / run_folder.CONFUSION_MATRIX).read_text()) == {
        "labels": ["neutral", "happiness"], "matrix": [[2, 1], [0, 3]]}
    assert (folder / run_folder.CONFUSION_MATRIX_IMAGE).stat().st_size > 0
