"""Reusable pieces of `scripts/train.py`: recipes, the model and its schedule, checkpoints, batching, outputs."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from modeling_grefel import GReFELConfig, GReFELForImageClassification, GReFELImageProcessor

# The seed's recipes (GREFEL_SPEC.md, "Recipes"). Flags given on the command line override them.
RECIPES: dict[str, dict] = {
    # The embedded default: the tiny network on generated synthetic faces, a few minutes on two CPU cores. The
    # plain-CNN reference of benchmarks/learning.py trains with the same lr, warm-up (5% of the steps) and schedule.
    # Trust 'none': the classification loss sees the primary distribution, while the anchors still learn through
    # the anchor and center losses and evaluation still reports the geometry-corrected prediction. With the paper's
    # linear trust ramp, a single-seed check reached 0.81 instead of 0.93 in 800 steps.
    "synthetic": dict(
        dataset="synthetic", model_config="tiny", batch_size=32, lr=1e-3, weight_decay=1e-4, num_epochs=20,
        scheduler="cosine", warmup_steps=40, class_balanced=False, samples_per_class=None, smoothing=0.11,
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
# Default seed of training and evaluation alike, so evaluate.py regenerates the splits training used.
DEFAULT_SEED = 0
# Magnitudes of BatchAugment: the seed's recipe, a milder one, a light one (random crop, flip and a little colour
# jitter: the synthetic faces already vary in pose and lighting), or none (plain resize).
AUGMENTATIONS = {
    "seed": dict(rotation=30.0, shear=15.0, perspective=0.3, jitter=0.4, hflip=0.5),
    "mild": dict(rotation=10.0, shear=5.0, perspective=0.1, jitter=0.2, hflip=0.5),
    "light": dict(rotation=0.0, shear=0.0, perspective=0.0, jitter=0.1, hflip=0.5),
    "none": dict(enabled=False),
}
CHECKPOINT_PATTERN = re.compile(r"^(step|epoch)_(\d+)$")


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


def build_model(model_config: str, num_labels: int, *, num_anchors: int | None = None,
                smoothing: float | None = None, trust_schedule: str | None = None) -> GReFELForImageClassification:
    """A GReFEL model from a preset name (`tiny`, `paper`), a folder or a Hub id, set to `num_labels` classes."""
    overrides = {}
    if num_anchors is not None:
        overrides["num_anchors"] = num_anchors
    if smoothing is not None:
        overrides["label_smoothing"] = smoothing
    if trust_schedule is not None:
        overrides["trust_schedule"] = trust_schedule
    if model_config in ("tiny", "paper"):
        config = getattr(GReFELConfig, model_config)(num_labels=num_labels, **overrides)
        return GReFELForImageClassification(config)
    model = GReFELForImageClassification.from_pretrained(model_config, **overrides)
    if model.config.num_labels != num_labels:
        raise ValueError(
            f"--model_config {model_config} has {model.config.num_labels} labels but the dataset has {num_labels}; "
            "convert the weights with --num_labels matching the dataset (scripts/convert_weights.py)."
        )
    return model


def build_optimizer(model: torch.nn.Module, *, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, with weight decay only on weight matrices and convolution kernels.

    Norm scales, biases, the class and position embeddings, layer-scale gains, PReLU slopes and the class anchors
    are not decayed (as transformers' Trainer and timm leave out norms and biases): decay there pulls a LayerNorm
    gain, a layer-scale gain or an anchor towards zero rather than regularising anything. Decoupled (AdamW), not
    Adam's L2 term, which Adam's normalisation turns into a full-size step towards zero wherever gradients are small.
    """
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            is_kernel = parameter.ndim >= 2 and not name.endswith(("anchors", "cls_token", "pos_embed"))
            (decay if is_kernel else no_decay).append(parameter)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr)


def build_processor(config: GReFELConfig) -> GReFELImageProcessor:
    return GReFELImageProcessor(size={"height": config.image_size, "width": config.image_size})


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
        for example in examples:
            image = self.loader(example)
            if image is not None:
                images.append(image)
                labels.append(int(example["label"]))
        if not images:
            size = self.processor.size
            return {"pixel_values": torch.zeros(0, 3, size["height"], size["width"]),
                    "labels": torch.zeros(0, dtype=torch.long)}
        pixel_values = self.processor(images, return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixel_values, "labels": torch.tensor(labels, dtype=torch.long)}


# ----------------------------------------------------------------------------------------------- checkpoints
def checkpoint_order(path: Path) -> tuple[int, int]:
    """Sort key of `step_N` / `epoch_N` folders by the training step they hold (read from trainer_state.json)."""
    state = path / "trainer_state.json"
    step = json.loads(state.read_text())["completed_steps"] if state.exists() else -1
    return step, path.stat().st_mtime_ns


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
    if not (path / "trainer_state.json").exists():
        raise FileNotFoundError(
            f"--resume_from_checkpoint {path}: not a checkpoint folder (no trainer_state.json); pass a step_N or "
            "epoch_N folder written by this script, or 'latest'."
        )
    return path


def save_checkpoint(accelerator, output_dir: Path, name: str, trainer_state: dict, keep: int | None) -> Path:
    """`accelerator.save_state` into a temporary folder, then an atomic rename: a crash never leaves half a checkpoint.

    Keeps the newest `keep` checkpoints when `keep` is set.
    """
    folder = Path(output_dir) / "checkpoints"
    final, partial = folder / name, folder / f".{name}.partial"
    if accelerator.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(partial, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json_atomic(partial / "trainer_state.json", trainer_state)
        if final.exists():
            shutil.rmtree(final)
        os.replace(partial, final)
        if keep:
            for old in list_checkpoints(output_dir)[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def write_json_atomic(path: Path, payload) -> None:
    """Write JSON to a temporary file beside `path` and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        json.dump(payload, handle, indent=2, sort_keys=True, default=str)
        handle.write("\n")
    os.replace(handle.name, path)


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
    "build_model",
    "build_optimizer",
    "build_processor",
    "list_checkpoints",
    "lr_factor",
    "resolve_checkpoint",
    "save_checkpoint",
    "step_seed",
    "write_json_atomic",
]
