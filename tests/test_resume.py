"""Resuming scripts/train.py: an interrupted run ends exactly as the uninterrupted one, a finished run is left alone,
nothing in a checkpoint folder is unpickled beyond tensors and numbers, and SIGTERM / Ctrl-C stop a run with a
checkpoint to resume from.

The runs train the tiny preset on a small image folder (48 train / 16 validation images of 8x8 pixels, 3 steps per
epoch, 2 epochs), which loads in a fraction of the synthetic set's generation time.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
import torch

from emotionnet.run_folder import CONFUSION_MATRIX, HISTORY, RESULTS
from emotionnet.training import (
    STOP_SIGNALS,
    CheckpointError,
    StopRequest,
    check_checkpoint_files,
    list_checkpoints,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from tests.fixtures_data import write_imagefolder
from tests.load_script import load_script
from tests.test_training import ROOT, TRAIN, results_of, run

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
    for name in (HISTORY, "model.safetensors", "best/model.safetensors", CONFUSION_MATRIX):
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
    assert not (tmp_path / RESULTS).exists()
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
    for name in (RESULTS, "model.safetensors", HISTORY, CONFUSION_MATRIX):
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
    (planted / RESULTS).unlink()
    checkpoint = list_checkpoints(planted)[-1]
    marker = tmp_path / "marker"
    torch.save(MarkerWriter(marker), checkpoint / "custom_checkpoint_0.pkl")
    result = run(small(image_dir, planted, "--resume_from_checkpoint", "latest"), check=False)
    assert result.returncode != 0
    assert str(checkpoint / "custom_checkpoint_0.pkl") in result.stderr and "weights_only=True" in result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------- checkpoint rotation
@pytest.fixture(scope="module")
def accelerator():
    from accelerate import Accelerator

    return Accelerator(cpu=True)


def save_at(accelerator, output_dir: Path, name: str, step: int, keep: int | None) -> Path:
    """A checkpoint of the RNG states only (nothing prepared), recorded as taken after `step` optimizer steps."""
    return save_checkpoint(accelerator, output_dir, name, {"completed_steps": step, "epoch": 0}, keep)


def names(output_dir: Path) -> list[str]:
    return [path.name for path in list_checkpoints(output_dir)]


def test_rotation_keeps_the_newest_by_training_step_across_step_and_epoch_names(accelerator, tmp_path):
    # Accelerate's total_limit orders by the last number in the name, and deleted epoch_3 (step 300) here.
    save_at(accelerator, tmp_path, "step_250", 250, keep=2)
    save_at(accelerator, tmp_path, "epoch_3", 300, keep=2)
    save_at(accelerator, tmp_path, "step_350", 350, keep=2)
    assert names(tmp_path) == ["epoch_3", "step_350"]
    assert resolve_checkpoint(tmp_path, "latest").name == "step_350"


def test_rotation_never_deletes_the_checkpoint_just_written(accelerator, tmp_path):
    # A run resumed from step_100 writes step_150 beside the abandoned step_300.
    for name, step in (("step_100", 100), ("step_300", 300), ("step_150", 150)):
        save_at(accelerator, tmp_path, name, step, keep=1)
    assert names(tmp_path) == ["step_150"]


def test_rotation_after_resuming_from_an_older_checkpoint_drops_the_abandoned_later_ones_first(accelerator, tmp_path):
    # Ordered by step alone, rotation would delete step_100 and keep step_300, and `latest` would then resume the
    # abandoned run instead of the one that wrote step_150.
    for name, step in (("step_100", 100), ("step_300", 300)):
        save_at(accelerator, tmp_path, name, step, keep=None)
    save_at(accelerator, tmp_path, "step_150", 150, keep=2)
    assert names(tmp_path) == ["step_100", "step_150"]
    assert resolve_checkpoint(tmp_path, "latest").name == "step_150"


def test_without_a_limit_every_checkpoint_stays(accelerator, tmp_path):
    for step in (1, 2, 3, 4):
        save_at(accelerator, tmp_path, f"step_{step}", step, keep=None)
    assert names(tmp_path) == ["step_1", "step_2", "step_3", "step_4"]


def test_a_crash_while_saving_leaves_the_kept_checkpoints_and_no_half_checkpoint(accelerator, tmp_path, monkeypatch):
    save_at(accelerator, tmp_path, "step_1", 1, keep=2)
    save_at(accelerator, tmp_path, "step_2", 2, keep=2)

    def crash(output_dir: str) -> None:
        Path(output_dir).mkdir()
        (Path(output_dir) / "model.safetensors").write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(accelerator, "save_state", crash)
    with pytest.raises(OSError, match="disk full"):
        save_at(accelerator, tmp_path, "step_3", 3, keep=2)
    # Rotation runs only after the rename, so both complete checkpoints are still there and `latest` is one of them.
    assert names(tmp_path) == ["step_1", "step_2"]
    assert resolve_checkpoint(tmp_path, "latest").name == "step_2"
    monkeypatch.undo()
    save_at(accelerator, tmp_path, "step_3", 3, keep=2)  # the leftover partial folder is cleared, not reused
    assert names(tmp_path) == ["step_2", "step_3"] and not list((tmp_path / "checkpoints").glob(".*"))
    assert not (tmp_path / "checkpoints" / "step_3" / "model.safetensors").exists()


def test_a_keep_below_one_is_refused(accelerator, tmp_path):
    with pytest.raises(ValueError, match="`keep` must be None"):
        save_at(accelerator, tmp_path, "step_1", 1, keep=0)


def test_checkpoints_total_limit_zero_keeps_all_and_a_negative_one_is_refused(capsys):
    train = load_script(TRAIN)
    assert train.parse_args(["--checkpoints_total_limit", "0"]).checkpoints_total_limit == 0
    with pytest.raises(SystemExit):
        train.parse_args(["--checkpoints_total_limit", "-1"])
    assert "--checkpoints_total_limit must be 0 (keep all) or more, got -1" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- stopping on a signal
def test_a_stop_signal_is_recorded_and_the_handlers_restored_afterwards():
    """The handler only records the signal (the loop checks it between steps); a forwarded repeat changes nothing,
    and a second Ctrl-C gets the default action, which ends the process at once."""
    before = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    one_process = SimpleNamespace(num_processes=1)
    with StopRequest(announce=False) as stop:
        assert stop.agreed_signal(one_process) is None
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signal == signal.SIGTERM and stop.agreed_signal(one_process) == signal.SIGTERM
        assert signal.getsignal(signal.SIGINT) == signal.SIG_DFL
    assert {sig: signal.getsignal(sig) for sig in STOP_SIGNALS} == before


def stoppable(image_dir: Path, output_dir: Path, *extra: str) -> list[str]:
    """48 steps of 2 images, a checkpoint every 2 steps, a DataLoader worker (Ctrl-C reaches it too)."""
    return small(image_dir, output_dir, "--batch_size", "2", "--num_workers", "1", *extra)


@pytest.fixture(scope="module")
def straight_small_batches(image_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("straight_small_batches")
    run(stoppable(image_dir, out))
    return out


def start(args: list[str], launcher: list[str] | None = None, threads: str | None = None) -> subprocess.Popen:
    """scripts/train.py in a session of its own, as a shell starts a job (its process group is its launcher's), by
    default on the threads `run` gives (a bit-exact comparison needs the same float reductions)."""
    threads = threads or os.environ.get("OMP_NUM_THREADS", "2")
    env = {**os.environ, "OMP_NUM_THREADS": threads, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.Popen((launcher or [sys.executable]) + [TRAIN, *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f"the run ended before {path} appeared:\n{process.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, f"no {path} after {timeout} s"
        time.sleep(0.02)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_signal_to_the_process_group_checkpoints_and_the_resumed_run_ends_as_the_uninterrupted_one(
        image_dir, straight_small_batches, tmp_path, sig):
    """`kill -TERM -- -PGID` or Ctrl-C during training, once it has written a checkpoint: the step under way
    finishes, a checkpoint of it is written, the run exits with 128 + the signal's number and says how to resume,
    and resuming ends bit for bit as the uninterrupted run. The signal reaches the DataLoader worker too, which used
    to end it and fail the next batch."""
    process = start(stoppable(image_dir, tmp_path))
    wait_for(tmp_path / "checkpoints" / "step_2", process)
    os.killpg(process.pid, sig)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 128 + sig, stderr[-3000:]
    assert "Traceback" not in stderr and f"{sig.name} received: stopping after the current optimizer step" in stderr
    stopped = re.search(rf"Stopped after step (\d+) of 48 on {sig.name}, with checkpoint (\S+);", stdout)
    assert stopped, stdout
    step, checkpoint = int(stopped[1]), Path(stopped[2])
    assert 2 <= step < 48 and checkpoint.name == f"step_{step}" and checkpoint == list_checkpoints(tmp_path)[-1]
    assert json.loads((checkpoint / "trainer_state.json").read_text())["completed_steps"] == step
    assert not (tmp_path / RESULTS).exists()
    run(stoppable(image_dir, tmp_path, "--resume_from_checkpoint", "latest"))
    assert_same_outputs(tmp_path, straight_small_batches)


@pytest.mark.slow
def test_under_ddp_a_signal_to_one_rank_stops_every_rank_at_the_same_step(image_dir, tmp_path):
    """Only rank 1 gets SIGTERM; rank 0 learns of it through the per-step gather, so both checkpoint the same step
    and exit, instead of rank 0 waiting forever in the next all-reduce. The checkpoint resumes to the end."""
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    launcher = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no"]
    args = small(image_dir, tmp_path, "--batch_size", "2", "--cpu")  # 2 x 2 images a step: 24 steps
    process = start(args, launcher=launcher, threads="1")
    wait_for(tmp_path / "checkpoints" / "step_2", process)
    ranks = {int(child.environ()["RANK"]): child for child in psutil.Process(process.pid).children()}
    ranks[1].send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode != 0  # the launcher reports its workers' exit status 143
    stopped = re.search(r"Stopped after step (\d+) of 24 on SIGTERM, with checkpoint (\S+);", stdout)
    assert stopped, stdout + stderr[-3000:]
    step = int(stopped[1])
    assert json.loads((Path(stopped[2]) / "trainer_state.json").read_text())["completed_steps"] == step < 24
    assert not (tmp_path / RESULTS).exists()
    run(args + ["--resume_from_checkpoint", "latest"], threads=1, launcher=launcher)
    assert results_of(tmp_path)["global_step"] == 24
