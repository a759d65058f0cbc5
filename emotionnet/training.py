"""Reusable pieces of `scripts/train.py`: recipes, the model and its schedule, checkpoints, stopping on a signal,
batching, outputs."""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import re
import shutil
import signal
import threading
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from modeling_grefel import GReFELConfig, GReFELForImageClassification, GReFELImageProcessor

from .run_folder import write_json_atomic

# The seed's recipes (GREFEL_SPEC.md, "Recipes"). Flags given on the command line override them.
RECIPES: dict[str, dict] = {
    # The embedded default: the tiny network on generated synthetic faces, about three minutes on two CPU cores. The
    # plain-CNN reference of benchmarks/learning.py trains with the same lr, warm-up and schedule. A 120-step warm-up
    # (40 steps gave a worst seed of 0.925 and a lowest class recall of 0.70, 120 of the then 800 steps 0.966 and
    # 0.825); 16 epochs (640 steps): with the tiny preset's max read-out, seeds 0-4 reach 0.972-1.0 there (the plain
    # CNN 0.984-0.994), 0.991-1.0 in 20 epochs, which take a fifth longer (README, "Learning").
    # Trust 'none': the classification loss sees the primary distribution, while the anchors still learn through
    # the anchor and center losses and evaluation still reports the geometry-corrected prediction. With the paper's
    # linear trust ramp, a single-seed check reached 0.81 instead of 0.93 in 800 steps.
    "synthetic": dict(
        dataset="synthetic", model_config="tiny", batch_size=32, lr=1e-3, weight_decay=1e-4, num_epochs=16,
        scheduler="cosine", warmup_steps=120, class_balanced=False, samples_per_class=None, smoothing=0.11,
        augment="light", trust_schedule="none",
    ),
    "ferplus": dict(
        dataset="ferplus", model_config="paper", batch_size=32, lr=1e-4, weight_decay=0.01, num_epochs=100,
        scheduler="constant", warmup_steps=0, class_balanced=False, samples_per_class=None, smoothing=0.11,
        augment="seed", trust_schedule="linear",
    ),
    "rafdb": dict(
        dataset="rafdb", model_config="paper", batch_size=32, lr=3e-4, weight_decay=0.0, num_epochs=1000,
        scheduler="exponential", gamma=0.995, warmup_steps=0, class_balanced=True, samples_per_class=500,
        smoothing=0.11, augment="seed", trust_schedule="linear",
    ),
    "fer2013": dict(
        dataset="fer2013", model_config="paper", batch_size=32, lr=3e-4, weight_decay=0.0, num_epochs=1000,
        scheduler="exponential", gamma=0.995, warmup_steps=0, class_balanced=True, samples_per_class=500,
        smoothing=0.11, augment="seed", trust_schedule="linear",
    ),
}
SCHEDULERS = ("constant", "exponential", "cosine")
# Default seed of training and evaluation alike, so evaluate_model.py regenerates the splits training used.
DEFAULT_SEED = 0
# Magnitudes of BatchAugment: the seed's recipe, a milder one, a light one (random shift, flip and a little colour
# jitter: the synthetic faces already vary in pose and lighting), or none (plain resize).
AUGMENTATIONS = {
    "seed": dict(rotation=30.0, shear=15.0, perspective=0.3, jitter=0.4, hflip=0.5),
    "mild": dict(rotation=10.0, shear=5.0, perspective=0.1, jitter=0.2, hflip=0.5),
    "light": dict(rotation=0.0, shear=0.0, perspective=0.0, jitter=0.1, hflip=0.5),
    "none": dict(enabled=False),
}
CHECKPOINT_PATTERN = re.compile(r"^(step|epoch)_(\d+)$")
TRAINER_STATE = "trainer_state.json"
# Signals that ask a training run to checkpoint and stop (`StopRequest`): `kill -TERM`, schedulers, launchers; Ctrl-C.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Endings of the files in a checkpoint folder that hold pickles (accelerate's optimizer.bin, random_states_N.pkl, ...).
PICKLE_SUFFIXES = (".bin", ".pkl", ".pt", ".pth")


def lr_factor(step: int, *, scheduler: str, warmup_steps: int, steps_per_epoch: int, total_steps: int,
              gamma: float = 0.995) -> float:
    """Multiplier of the base learning rate after `step` optimizer steps.

    Linear warm-up, then constant, exponential decay by `gamma` per epoch (the seed's RAF-DB/FER2013 recipe), or
    cosine to zero over the remaining steps.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if scheduler == "constant":
        return 1.0
    if scheduler == "exponential":
        return gamma ** (step // max(steps_per_epoch, 1))
    progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


# Why a preset's MLP primary head, trained from random weights, gets a warning: measured in benchmarks/learning.py.
RANDOM_WEIGHTS_MLP_HEAD = (
    "--model_config {preset} starts from random weights with the primary MLP head {sizes}: from random weights this "
    "head kept GReFEL-tiny, and even a plain CNN, at chance for 800 steps on the synthetic default, where a linear "
    "head learned (README, 'The paper's primary head is a brake'). Start from converted official weights "
    "(scripts/convert_weights.py), as the paper does, or train a linear head: --head_hidden_sizes with no widths."
)


def build_model(model_config: str, num_labels: int, *, num_anchors: int | None = None,
                smoothing: float | None = None, trust_schedule: str | None = None,
                head_hidden_sizes: list[int] | None = None) -> GReFELForImageClassification:
    """A GReFEL model from a preset name (`tiny`, `paper`), a folder or a Hub id, set to `num_labels` classes.
    `head_hidden_sizes` (presets only): the primary head's hidden widths, [] for a linear head."""
    overrides = {}
    if head_hidden_sizes is not None:
        if model_config not in ("tiny", "paper"):
            raise ValueError(
                f"--head_hidden_sizes applies to the presets (tiny, paper), not to --model_config {model_config}, "
                "whose saved head keeps its own widths; leave --head_hidden_sizes out, or start from a preset."
            )
        overrides["head_hidden_sizes"] = head_hidden_sizes
    if num_anchors is not None:
        overrides["num_anchors"] = num_anchors
    if smoothing is not None:
        overrides["label_smoothing"] = smoothing
    if trust_schedule is not None:
        overrides["trust_schedule"] = trust_schedule
    if model_config in ("tiny", "paper"):
        config = getattr(GReFELConfig, model_config)(num_labels=num_labels, **overrides)
        if config.head_hidden_sizes:
            logging.getLogger(__name__).warning(
                RANDOM_WEIGHTS_MLP_HEAD.format(preset=model_config, sizes="-".join(map(str, config.head_hidden_sizes))))
        return GReFELForImageClassification(config)
    model = GReFELForImageClassification.from_pretrained(model_config, **overrides)
    if model.config.num_labels != num_labels:
        raise ValueError(
            f"--model_config {model_config} has {model.config.num_labels} labels but the dataset has {num_labels}; "
            "convert the weights with --num_labels matching the dataset (scripts/convert_weights.py)."
        )
    return model


# The parts as wide as the fusion ViT's hidden size (768 at the paper size, 96 in GReFEL-tiny): its blocks, class and
# position embeddings and SE gate, the token embedding into it, and the head on its embedding.
WIDE_PARAMETER_PREFIXES = ("grefel.fusion.", "grefel.embed_", "grefel_head.")


def build_optimizer(
    model: torch.nn.Module, *, lr: float, weight_decay: float, wide_lr_scale: float = 1.0
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, with weight decay only on weight matrices and convolution kernels.

    Norm scales, biases, the class and position embeddings, layer-scale gains, PReLU slopes and the class anchors
    are not decayed (as transformers' Trainer and timm leave out norms and biases): decay there pulls a LayerNorm
    gain, a layer-scale gain or an anchor towards zero rather than regularising anything. Decoupled (AdamW), not
    Adam's L2 term, which Adam's normalisation turns into a full-size step towards zero wherever gradients are small.

    `wide_lr_scale` multiplies the learning rate of the parts as wide as the fusion ViT (`WIDE_PARAMETER_PREFIXES`).
    Adam moves every weight by about lr a step whatever its gradient, so a layer's output moves by about lr times the
    L1 norm of its input, in proportion to its width (`benchmarks/first_step.py`): `96 / hidden_size` gives the
    paper's 768-wide parts the per-step change they have in GReFEL-tiny (muP's width scaling for Adam, Yang et al.
    2021, "Tensor Programs V").
    """
    # Decayed, then not decayed (the layout resumed checkpoints hold); the wide parts' two groups after, when scaled.
    keys = [(True, False), (False, False)] + ([(True, True), (False, True)] if wide_lr_scale != 1.0 else [])
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {key: [] for key in keys}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            is_kernel = parameter.ndim >= 2 and not name.endswith(("anchors", "cls_token", "pos_embed"))
            is_wide = wide_lr_scale != 1.0 and name.startswith(WIDE_PARAMETER_PREFIXES)
            groups[is_kernel, is_wide].append(parameter)
    return torch.optim.AdamW(
        [{"params": params, "weight_decay": weight_decay if is_kernel else 0.0,
          "lr": lr * (wide_lr_scale if is_wide else 1.0)} for (is_kernel, is_wide), params in groups.items()],
        lr=lr,
    )


# ----------------------------------------------------------------------------------------------- batching
@dataclass
class TrainCollator:
    """Decodes a list of examples into uint8 images at the augmentation's input size, skipping unreadable ones.

    The heavy augmentation runs later, batched on the accelerator's device; the CPU workers only decode and resize.
    """

    loader: object  # emotionnet.data.SafeImageLoader
    size: int
    soft_labels: bool = False

    def __call__(self, examples: list[dict]) -> dict:
        from .data import collate_images

        images, labels, soft, skipped = collate_images(examples, self.loader, self.size)
        # Unreadable images travel with the batch: the loader's own list lives in a worker process.
        batch = {"images": images, "labels": labels, "skipped": skipped}
        if self.soft_labels and soft is not None:
            batch["labels"] = soft
        return batch


@dataclass
class EvalCollator:
    """Prepares evaluation images with the model's own processor: exactly what inference will see."""

    loader: object
    processor: GReFELImageProcessor

    def __call__(self, examples: list[dict]) -> dict:
        images, labels = [], []
        before = len(self.loader.skipped)
        for example in examples:
            image = self.loader(example)
            if image is not None:
                images.append(image)
                labels.append(int(example["label"]))
        # As in TrainCollator: the unreadable images travel with the batch, so evaluation can report them.
        skipped = self.loader.skipped[before:]
        if not images:
            size = self.processor.size
            return {"pixel_values": torch.zeros(0, 3, size["height"], size["width"]),
                    "labels": torch.zeros(0, dtype=torch.long), "skipped": skipped}
        pixel_values = self.processor(images, return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixel_values, "labels": torch.tensor(labels, dtype=torch.long), "skipped": skipped}


# ----------------------------------------------------------------------------------------------- checkpoints
class CheckpointError(ValueError):
    """A checkpoint folder that resuming refuses: a file holding pickled Python objects, or an older layout."""


def checkpoint_order(path: Path) -> tuple[int, int, int]:
    """Sort key of `step_N` / `epoch_N` folders by the training step they hold (read from trainer_state.json).

    At equal steps, the folder whose end-of-epoch work (evaluation, best model) is recorded as done comes last.
    """
    state_file = path / TRAINER_STATE
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    return state.get("completed_steps", -1), state.get("epoch", -1), path.stat().st_mtime_ns


def list_checkpoints(output_dir: Path) -> list[Path]:
    folder = Path(output_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and CHECKPOINT_PATTERN.match(p.name)]
    return sorted(found, key=checkpoint_order)


def resolve_checkpoint(output_dir: Path, resume_from: str) -> Path:
    """`latest` -> the newest checkpoint under output_dir/checkpoints; otherwise the given folder."""
    if resume_from == "latest":
        found = list_checkpoints(output_dir)
        if not found:
            raise FileNotFoundError(
                f"--resume_from_checkpoint latest: no checkpoint under {Path(output_dir) / 'checkpoints'}; "
                "train once with --checkpointing_steps or pass a checkpoint folder."
            )
        return found[-1]
    path = Path(resume_from)
    if not (path / TRAINER_STATE).exists():
        raise FileNotFoundError(
            f"--resume_from_checkpoint {path}: not a checkpoint folder (no trainer_state.json); pass a step_N or "
            "epoch_N folder written by this script, or 'latest'."
        )
    return path


def save_checkpoint(accelerator, output_dir: Path, name: str, trainer_state: dict, keep: int | None) -> Path:
    """`accelerator.save_state` into a temporary folder, then an atomic rename: a crash never leaves half a checkpoint.

    Args:
        accelerator: The run's `Accelerator`; every process calls this function.
        output_dir: The run's output folder; checkpoints go to `output_dir/checkpoints/<name>`.
        name: `step_N` or `epoch_N` (`CHECKPOINT_PATTERN`); an existing folder of that name is replaced.
        trainer_state: Written to `trainer_state.json` in the checkpoint; its `completed_steps` orders checkpoints.
        keep: After the new checkpoint is in place, delete others so that `keep` remain, the new one always among
            them: first those further on than the new one (left by a run resumed from an older checkpoint), then the
            oldest (by `checkpoint_order`); None keeps every checkpoint.

    Rotation is ours, not Accelerate's `ProjectConfiguration(total_limit=..., automatic_checkpoint_naming=True)`.
    Read in accelerate 1.15 `Accelerator.save_state` and measured with it (2 checkpoints kept, CPU):
    - with automatic naming it ignores the `output_dir` it is given and writes straight into
      `project_dir/checkpoints/checkpoint_<iteration>`, so there is no temporary folder to rename: a crash leaves a
      half-written folder named like a complete checkpoint;
    - it deletes the oldest checkpoints *before* writing the new one, so during the write only `total_limit - 1`
      complete checkpoints exist;
    - it orders folders by the last number in their name, not by training step: beside `step_250` it deleted
      `epoch_3` (step 300, the newer one), and a folder name without a digit raised IndexError;
    - `load_state` does not restore the iteration counter, so after a resume the next save raised
      "Checkpoint directory .../checkpoint_0 (0) already exists".
    `total_limit` only acts together with automatic naming, so it cannot be combined with our names either.
    """
    if keep is not None and keep < 1:
        raise ValueError(f"save_checkpoint: `keep` must be None (keep all) or at least 1, got {keep!r}.")
    folder = Path(output_dir) / "checkpoints"
    final, partial = folder / name, folder / f".{name}.partial"
    if accelerator.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(partial, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json_atomic(partial / TRAINER_STATE, trainer_state)
        if final.exists():
            shutil.rmtree(final)
        os.replace(partial, final)
        if keep is not None:
            # The new checkpoint always stays. Checkpoints further on than it belong to the run this one was resumed
            # away from: they go first, else `latest` would resume the abandoned run.
            others = [path for path in list_checkpoints(output_dir) if path != final]
            steps = trainer_state.get("completed_steps", -1)
            abandoned = [path for path in others if checkpoint_order(path)[0] > steps]
            current = [path for path in others if path not in abandoned]
            for old in (abandoned[::-1] + current)[: max(0, len(others) - (keep - 1))]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def check_checkpoint_files(folder: Path) -> None:
    """Refuse a checkpoint folder holding a pickle that needs anything beyond tensors, numbers and containers.

    Every pickle file is read as `accelerator.load_state` reads it (accelerate's `load`: `torch.load(weights_only=True)`
    plus the numpy types of its RNG states), so nothing in it runs; zip files are memory-mapped, so tensors are not
    read twice. The scheduler and trainer state live in trainer_state.json and no custom object is registered, so
    accelerate never reaches its full-pickle path (`load_custom_state`, `weights_only=False`).

    Raises:
        CheckpointError: naming the file, what it needs, and what to do.
    """
    from accelerate.utils import load

    for path in sorted(Path(folder).iterdir()):
        if not path.is_file() or path.suffix not in PICKLE_SUFFIXES:
            continue
        try:
            with warnings.catch_warnings():  # torch warns about the pickle protocol of a file it then refuses
                warnings.simplefilter("ignore", UserWarning)
                load(path, map_location="cpu", **({"mmap": True} if zipfile.is_zipfile(path) else {}))
        except pickle.UnpicklingError as err:
            # torch names the globals a weights-only load refused (as emotionnet/convert.py reports them).
            found = re.findall(r"Unsupported global: GLOBAL (\S+)", str(err))
            needs = f"it needs {', '.join(found)}" if found else "not just tensors and numbers"
            raise CheckpointError(
                f"--resume_from_checkpoint: {path} holds pickled Python objects ({needs}), which this script never "
                "writes into a checkpoint; resuming reads checkpoint files with torch.load(weights_only=True) only, "
                "so nothing in them runs. Delete the file if you did not put it there, or resume from another "
                "checkpoint."
            ) from None
        except Exception as err:  # torch raises RuntimeError/EOFError/... on files that are not pickles at all
            raise CheckpointError(
                f"--resume_from_checkpoint: {path} is not a readable checkpoint file ({type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else ''}); resume from another checkpoint."
            ) from None


def load_checkpoint(accelerator, folder: Path, scheduler) -> dict:
    """Check `folder` (`check_checkpoint_files`), load the model, optimizer and RNG states and `scheduler`.

    Returns:
        The trainer state saved by `save_checkpoint` (its `scheduler` entry already loaded into `scheduler`).

    Raises:
        CheckpointError: a file holds pickled objects, or the folder predates the JSON scheduler state.
    """
    folder = Path(folder)
    check_checkpoint_files(folder)
    state = json.loads((folder / TRAINER_STATE).read_text())
    if "scheduler" not in state:
        raise CheckpointError(
            f"--resume_from_checkpoint: {folder} was written by an older scripts/train.py, which kept the scheduler "
            "in a full pickle (custom_checkpoint_0.pkl) that this version does not load; start the run again "
            "without --resume_from_checkpoint."
        )
    accelerator.load_state(str(folder))
    scheduler.load_state_dict(state["scheduler"])
    return state


# ------------------------------------------------------------------------------------------------- stopping
class StopRequest:
    """SIGTERM and SIGINT (Ctrl-C) ask the training loop to stop between two optimizer steps, checkpoint and exit.

    Used as a context manager around the loop. The handlers only record the first signal; the loop asks
    `agreed_signal` after each optimizer step, so the step under way finishes and the checkpoint holds a state that
    an uninterrupted run also passes through. After the first signal, a second SIGINT ends the process at once (the
    default action, no checkpoint); further SIGTERMs are ignored, since launchers and schedulers forward the one they
    got and SIGKILL is what forces. Outside the main thread no handler can be set, and signals keep their defaults.
    """

    def __init__(self, *, announce: bool = True) -> None:
        self.signal: signal.Signals | None = None
        self.announce = announce
        self._previous: dict[signal.Signals, object] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._record)
        return self

    def __exit__(self, *exc_info) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _record(self, signum: int, frame) -> None:
        if self.signal is not None:
            return
        self.signal = signal.Signals(signum)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if self.announce:
            # os.write, not print: the handler may interrupt a write of tqdm's to the same stream.
            os.write(2, f"\n{self.signal.name} received: stopping after the current optimizer step, then saving a "
                        "checkpoint (Ctrl-C again stops at once, without one).\n".encode())

    def agreed_signal(self, accelerator) -> signal.Signals | None:
        """The stop signal if this process or any other got one, else None; every process gets the same answer.

        A collective under DDP (each process sends its signal number, the largest wins): every process must call it
        at the same step, so that all stop together and none waits forever in the next step's all-reduce.
        """
        number = int(self.signal or 0)
        if accelerator.num_processes > 1:
            number = int(accelerator.gather(torch.tensor([number], device=accelerator.device)).max())
        return signal.Signals(number) if number else None


def leave_process_group(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: each loader worker moves to a process group of its own.

    Ctrl-C and `kill -- -PGID` signal the training process's group; a worker ended by them would fail the next batch
    before the training process could checkpoint. Ignoring the signals instead would also ignore the SIGTERM with
    which the DataLoader and multiprocessing end a worker at exit, which then hangs. Workers still end with the
    training process: it shuts them down on exit, and they quit when they find it gone.
    """
    os.setpgid(0, 0)


def save_pretrained_atomic(accelerator, model, processor, folder: Path) -> None:
    """Save the unwrapped model and its processor to a temporary folder beside `folder`, then rename it into place.

    A crash leaves the previous folder, the new one or (between the two renames) none, never a mix; resuming redoes
    the save.
    """
    folder = Path(folder)
    partial = folder.with_name(f".{folder.name}.partial")
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
    save_pretrained(accelerator, model, processor, partial)
    if accelerator.is_main_process:
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(partial, folder)
    accelerator.wait_for_everyone()


def save_pretrained(accelerator, model, processor, folder: Path) -> None:
    """The transformers folder of the unwrapped model (weights, config, remote code) plus the processor."""
    accelerator.wait_for_everyone()
    accelerator.unwrap_model(model).save_pretrained(
        folder, is_main_process=accelerator.is_main_process, save_function=accelerator.save
    )
    if accelerator.is_main_process:
        processor.save_pretrained(folder)


# glibc's mallopt parameters (malloc.h) and the threshold given to both: blocks up to 1 GiB come from the heap and
# stay there when freed.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
KEPT_BLOCK_BYTES = 1 << 30


def keep_freed_memory() -> bool:
    """Let glibc keep large freed blocks for reuse instead of handing them back to the OS, for training on a CPU.

    By default glibc serves a large allocation (past a threshold that starts at 128 KiB and adapts up to 32 MiB) with
    its own `mmap` and returns it with `munmap` when freed, so every training step's activation and gradient buffers
    (8 MiB each for GReFEL-tiny at batch 32) are mapped afresh and their pages faulted in again. Raising the mmap and
    trim thresholds keeps them in the heap, where the next step reuses them: on the tiny training step, ~85x fewer
    page faults and ~17x less system CPU time; its wall time changed by less than this shared machine's noise
    (`python scripts/benchmark.py --sections allocator`, README "Speed"). The cost is that the process keeps its peak
    memory until it exits. The same as starting Python with
    `MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824`.

    Returns:
        Whether the thresholds were set: False off glibc (macOS, Windows, musl), where nothing changes.
    """
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, KEPT_BLOCK_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, KEPT_BLOCK_BYTES))


def step_seed(seed: int, micro_step: int, process_index: int) -> int:
    """The RNG seed of one micro-batch: a resumed run replays exactly what an uninterrupted one would have drawn."""
    return (seed * 1_000_003 + micro_step * 7919 + process_index) % (2**63 - 1)


__all__ = [
    "DEFAULT_SEED",
    "RECIPES",
    "AUGMENTATIONS",
    "SCHEDULERS",
    "EvalCollator",
    "TrainCollator",
    "CheckpointError",
    "STOP_SIGNALS",
    "StopRequest",
    "build_model",
    "build_optimizer",
    "check_checkpoint_files",
    "keep_freed_memory",
    "leave_process_group",
    "list_checkpoints",
    "load_checkpoint",
    "lr_factor",
    "resolve_checkpoint",
    "save_checkpoint",
    "save_pretrained",
    "save_pretrained_atomic",
    "step_seed",
]
