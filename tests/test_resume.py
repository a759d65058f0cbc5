"""Resuming scripts/train.py: an interrupted run ends exactly as the uninterrupted one, a finished run is left alone,
and nothing in a checkpoint folder is unpickled beyond tensors and numbers.

The runs train the tiny preset on a small image folder (48 train / 16 validation images of 8x8 pixels, 3 steps per
epoch, 2 epochs), which loads in a fraction of the synthetic set's generation time.
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch

from emotionnet.training import CheckpointError, check_checkpoint_files, list_checkpoints, load_checkpoint
from tests.fixtures_data import write_imagefolder
from tests.test_training import results_of, run

CLASSES = ("happy", "angry", "sad", "surprised", "fearful", "disgusted", "neutral", "contempt")


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    write_imagefolder(folder, dict.fromkeys(CLASSES, 6), split="train")
    write_imagefolder(folder, dict.fromkeys(CLASSES, 2), split="val")
    return folder


def small(image_dir: Path, output_dir: Path, *extra: str) -> list[str]:
    return ["--dataset", "imagefolder", "--data_dir", str(image_dir), "--model_config", "tiny", "--batch_size", "16",
            "--num_epochs", "2", "--checkpointing_steps", "2", "--num_workers", "0", "--report_to", "none",
            "--output_dir", str(output_dir), *extra]


@pytest.fixture(scope="module")
def straight(image_dir, tmp_path_factory) -> Path:
    """The uninterrupted run: 6 steps, checkpoints at steps 2, 4 and 6."""
    out = tmp_path_factory.mktemp("straight")
    run(small(image_dir, out))
    return out


def files_of(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


def assert_same_outputs(resumed: Path, straight: Path) -> None:
    """Identical history, final weights and `best/` weights (bit for bit: every micro-batch replays its seed)."""
    for name in ("training_history.json", "model.safetensors", "best/model.safetensors", "confusion_matrix.json"):
        assert (resumed / name).read_bytes() == (straight / name).read_bytes(), name
    mine, theirs = results_of(resumed), results_of(straight)
    for key in ("eval_accuracy", "eval_macro_f1", "eval_corrected_accuracy", "eval_samples", "best_epoch",
                "global_step", "epochs"):
        assert mine[key] == theirs[key], key


@pytest.mark.parametrize("stop_after", [2, 3, 5], ids=["mid-epoch-1", "end-of-epoch-1", "mid-epoch-2"])
def test_resumed_run_ends_as_the_uninterrupted_one(image_dir, straight, tmp_path, stop_after):
    """At the end of epoch 1 (step 3) the checkpoint precedes that epoch's evaluation and `best/` save, which the
    resumed run must do before training epoch 2 (they used to be skipped)."""
    run(small(image_dir, tmp_path, "--stop_after_steps", str(stop_after)))
    assert not (tmp_path / "all_results.json").exists()
    state = json.loads((tmp_path / "checkpoints" / f"step_{stop_after}" / "trainer_state.json").read_text())
    assert state["completed_steps"] == stop_after and state["epoch"] == (1 if stop_after > 3 else 0)
    run(small(image_dir, tmp_path, "--resume_from_checkpoint", "latest"))
    assert_same_outputs(tmp_path, straight)


def test_resuming_a_finished_run_says_so_and_changes_nothing(image_dir, straight, tmp_path):
    finished = tmp_path / "run"
    shutil.copytree(straight, finished)
    before = files_of(finished)
    result = run(small(image_dir, finished, "--resume_from_checkpoint", "latest"))
    assert "already finished" in result.stdout and "nothing was changed" in result.stdout
    assert files_of(finished) == before


def test_resume_after_an_interrupted_final_save_writes_every_output(image_dir, straight, tmp_path):
    """all_results.json is written last, so a kill during the final save leaves none; resuming finishes the run."""
    interrupted = tmp_path / "run"
    shutil.copytree(straight, interrupted)
    for name in ("all_results.json", "model.safetensors", "training_history.json", "confusion_matrix.json"):
        (interrupted / name).unlink()
    run(small(image_dir, interrupted, "--resume_from_checkpoint", "latest"))
    assert_same_outputs(interrupted, straight)


def test_checkpoints_hold_no_full_pickle(straight):
    """The scheduler and trainer state are JSON; accelerate's remaining files load with weights_only=True."""
    checkpoint = list_checkpoints(straight)[-1]
    assert not list(checkpoint.glob("custom_checkpoint_*"))
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["scheduler"]["last_epoch"] == state["completed_steps"] == 6
    check_checkpoint_files(checkpoint)


class MarkerWriter:
    """Unpickling this creates `path`: the stand-in for a planted pickle that runs a command."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


@pytest.mark.parametrize("name", ["custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin"])
@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_planted_pickle_is_refused_by_name_and_never_run(straight, tmp_path, name, writer):
    checkpoint = tmp_path / "step_6"
    shutil.copytree(list_checkpoints(straight)[-1], checkpoint)
    marker = tmp_path / "marker"
    with open(checkpoint / name, "wb") as handle:
        (torch.save if writer == "torch.save" else pickle.dump)(MarkerWriter(marker), handle)
    with pytest.raises(CheckpointError, match=re.escape(str(checkpoint / name))):
        check_checkpoint_files(checkpoint)
    assert not marker.exists()


def test_a_checkpoint_of_the_pickled_scheduler_layout_is_refused_with_what_to_do(straight, tmp_path):
    """Checkpoints written before the scheduler state moved to trainer_state.json kept it in custom_checkpoint_0.pkl."""
    checkpoint = tmp_path / "step_6"
    shutil.copytree(list_checkpoints(straight)[-1], checkpoint)
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    del state["scheduler"]
    (checkpoint / "trainer_state.json").write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match="older scripts/train.py.*start the run again"):
        load_checkpoint(None, checkpoint, None)  # refused before the accelerator or scheduler is touched


def test_training_refuses_to_resume_from_a_checkpoint_with_a_planted_pickle(image_dir, straight, tmp_path):
    planted = tmp_path / "run"
    shutil.copytree(straight, planted)
    (planted / "all_results.json").unlink()
    checkpoint = list_checkpoints(planted)[-1]
    marker = tmp_path / "marker"
    torch.save(MarkerWriter(marker), checkpoint / "custom_checkpoint_0.pkl")
    result = run(small(image_dir, planted, "--resume_from_checkpoint", "latest"), check=False)
    assert result.returncode != 0
    assert str(checkpoint / "custom_checkpoint_0.pkl") in result.stderr and "weights_only=True" in result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists()
