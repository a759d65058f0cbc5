"""Learning benchmark: does GReFEL learn as well as a plain CNN on the same images, seed after seed?

    python benchmarks/learning.py                                   # 5 seeds x 3 rungs, ~1 h on 2 CPU cores
    python benchmarks/learning.py --seeds 0 1 --rungs cnn grefel --output /tmp/learning.json

Three rungs, all on the default synthetic split (`make_synthetic_faces(seed=0)`) with the `synthetic` recipe's step
budget, batch, learning rate, warm-up, cosine schedule, AdamW and `light` augmentation, through `scripts/train.py`'s
own data path (SafeImageLoader, TrainCollator, BatchAugment on the batch, the model's processor for evaluation):

- `cnn`: a plain CNN reference, 4 x (conv3x3-BN-ReLU x2, max-pool) with 32-64-128-128 channels, global average pool,
  dropout 0.2, linear (0.58M parameters), cross-entropy with the recipe's label smoothing;
- `trunk`: the GReFEL-tiny trunk (`GReFELModel`) with one linear layer on its embedding, the same cross-entropy;
  with `--plain_head_hidden_sizes 384 192 96` both take the paper's primary head instead (rung `cnn+paper_head`), and
  `--plain_head_batch_norm before_relu|none` / `--plain_head_dropout 0` vary it (rungs named by what differs), and
  `--plain_image_size 112` feeds both larger images (rung e.g. `cnn(image_size=112)`);
- `ir` (not in the default set): the tiny preset's IR backbone alone, global average pool of its last stage, linear,
  the same cross-entropy; with `--plain_config '{"backbone_image_size": 112, ...}'` (GReFELConfig arguments, also for
  `trunk`) the trunk's pieces at another backbone resolution (rung e.g. `ir(image_size=112,backbone_image_size=112)`);
- `grefel`: full GReFEL-tiny trained by `scripts/train.py` itself (anchors, reliability balancing, GReFEL loss);
- `grefel_linear` (not in the default set): the same with the paper's linear trust ramp (`--trust_schedule linear`),
  so reliability balancing shapes the classification loss;
- `paper` (not in the default set; about 1.5 h a seed on 2 CPU cores, ~1 h on one with `--paper_precision bf16` where
  the CPU has native bf16, minutes on a GPU, where `--paper_device` defaults to cuda): the paper-size network at
  112 px, GReFEL loss, on the same data path for `--paper_steps` steps (300) of batch `--paper_batch` (32), with the
  recipe's AdamW, peak lr, 5% warm-up and cosine; it logs the training loss and batch accuracy every 10 steps (with
  the fusion ViT's SE gate and the embedding's between-image spread: `embedding_diagnostics`) and reports the first
  step at which the 20-step running mean of the loss falls below 0.9 ln(C) (the chance plateau is ln C), then the
  validation accuracy at the end. The question it answers: do the fixes carry to the size people train on GPUs?
- `paper_control` (not in the default set, a few minutes): GReFEL-tiny, which learns, through the `paper` rung's loop
  with the same steps and batch: whether that budget is enough images for this task to leave the plateau at all.

`--data hard` trains every rung on a long-tailed (10:1) synthetic split with 20% symmetric label noise in train
(`make_synthetic_faces(imbalance=10, label_noise=0.2)`; validation balanced and clean) and writes
benchmarks/learning_hard.json: what GReFEL's anchors and reliability balancing are for.

    python benchmarks/learning.py --data hard --seeds 0 1 2 --rungs trunk grefel grefel_linear

Per seed it reports validation accuracy (primary and geometry-corrected for `grefel`), balanced accuracy, macro-F1,
the lowest per-class recall, expected calibration error (15 bins), the first step at which validation accuracy
reaches 0.5 (evaluated once an epoch) and the wall time; then the mean and minimum over seeds. Writes JSON (`--output`) and prints a Markdown table (README's learning table).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT), str(ROOT / "scripts")] + [p for p in sys.path if p not in ("", str(ROOT / "benchmarks"))]

from emotionnet.augment import BatchAugment  # noqa: E402
from emotionnet.data import SafeImageLoader, load_fer_dataset, with_raw_images  # noqa: E402
from emotionnet.evaluation import compute_classification_metrics  # noqa: E402
from emotionnet.run_folder import HISTORY, RESULTS, RunFolder, write_json_atomic  # noqa: E402
from emotionnet.synthetic import make_synthetic_faces  # noqa: E402
from emotionnet.training import (  # noqa: E402
    AUGMENTATIONS,
    RECIPES,
    EvalCollator,
    TrainCollator,
    build_optimizer,
    keep_freed_memory,
    lr_factor,
)
from modeling_grefel import GReFELConfig, GReFELImageProcessor, GReFELModel  # noqa: E402
from modeling_grefel.backbones_grefel import GReFELIRBackbone  # noqa: E402
from modeling_grefel.modeling_grefel import mlp_classifier, resize_to_backbones  # noqa: E402

RUNGS = ("cnn", "trunk", "ir", "grefel", "grefel_linear", "paper", "paper_control")
DEFAULT_RUNGS = ("cnn", "trunk", "grefel")
# Training data of each `--data` choice: the default synthetic split, or a long-tailed (10:1) one with 20% symmetric
# label noise in train (validation stays balanced and clean), where GReFEL's anchors and reliability balancing are
# meant to pay off (issue 9, point 4).
DATA = {"default": {}, "hard": dict(imbalance=10.0, label_noise=0.2)}


class PlainCNN(nn.Module):
    """The reference: four conv3x3-BN-ReLU pairs with max-pooling, global average pool, dropout, linear. With
    `head_hidden_sizes`, the paper's primary head (`paper_head`: by default with the paper config's BatchNorm and
    dropout) replaces the dropout and the linear layer."""

    def __init__(self, num_labels: int, widths=(32, 64, 128, 128), head_hidden_sizes=(), **head_options):
        super().__init__()
        layers, channels = [], 3
        for width in widths:
            for _ in range(2):
                layers += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
                channels = width
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(0.2) if not head_hidden_sizes else nn.Identity()
        self.classifier = paper_head(channels, head_hidden_sizes, num_labels, **head_options)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(pixel_values).mean(dim=(2, 3))))


HEAD_BATCH_NORMS = ("after_relu", "before_relu", "none")


def paper_head(in_features: int, hidden_sizes, num_labels: int, batch_norm: str = "after_relu",
               dropout: float | None = None) -> nn.Module:
    """A linear layer, or with `hidden_sizes` the primary head as the paper config builds it (`mlp_classifier`:
    Linear-ReLU-BatchNorm-Dropout per width, ARBEx's order, dropout 0.5). Variants, to find what in that head keeps
    features learned from scratch at chance: `batch_norm="before_relu"` (Linear-BatchNorm-ReLU-Dropout, the common
    order, which the paper config does not use) or `"none"`, and `dropout` in place of the paper config's."""
    if not hidden_sizes:
        return nn.Linear(in_features, num_labels)
    if batch_norm not in HEAD_BATCH_NORMS:
        raise ValueError(f"batch_norm={batch_norm!r}: expected one of {HEAD_BATCH_NORMS}.")
    paper = GReFELConfig()
    dropout = paper.head_dropout if dropout is None else dropout
    if batch_norm != "before_relu":
        return mlp_classifier(in_features, hidden_sizes, num_labels, batch_norm == "after_relu", dropout)
    layers, width = [], in_features
    for hidden in hidden_sizes:
        layers += [nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(dropout)]
        width = hidden
    return nn.Sequential(*layers, nn.Linear(width, num_labels))


def head_rung_name(rung: str, batch_norm: str = "after_relu", dropout: float | None = None) -> str:
    """`cnn+paper_head` for the paper config's head; a variant names what differs, e.g.
    `cnn+paper_head(batch_norm=before_relu,dropout=0.0)`."""
    changes = ([f"batch_norm={batch_norm}"] if batch_norm != "after_relu" else []) + (
        [f"dropout={dropout}"] if dropout is not None else [])
    return f"{rung}+paper_head" + (f"({','.join(changes)})" if changes else "")


class TrunkClassifier(nn.Module):
    """GReFEL's trunk with a linear layer on its embedding e: the network without the GReFEL head and loss. With
    `head_hidden_sizes`, the paper's primary head instead of the linear layer, still under plain cross-entropy."""

    def __init__(self, config: GReFELConfig, head_hidden_sizes=(), **head_options):
        super().__init__()
        self.trunk = GReFELModel(config)
        self.classifier = paper_head(config.hidden_size, head_hidden_sizes, config.num_labels, **head_options)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.trunk(pixel_values).embeddings)


IR_POOLS = ("mean", "relu_mean", "max")


class IRClassifier(nn.Module):
    """GReFEL's IR backbone alone, at its backbone resolution, with a global pool of its last stage and a linear
    layer: the first piece of the trunk, to find where the trunk's backbone path slows down at 112 px. `pool`: the
    average of the last stage's output (`mean`; an IR stage ends on a BatchNorm, so that output is signed), the average
    after a BatchNorm and ReLU (`relu_mean`, as a plain CNN pools), or the maximum (`max`)."""

    def __init__(self, config: GReFELConfig, pool: str = "mean"):
        super().__init__()
        if pool not in IR_POOLS:
            raise ValueError(f"pool={pool!r}: expected one of {IR_POOLS}.")
        self.config, self.pool = config, pool
        self.backbone = GReFELIRBackbone(config)
        width = config.hidden_sizes[2]
        self.activation = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU()) if pool == "relu_mean" else nn.Identity()
        self.classifier = nn.Linear(width, config.num_labels)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        features = self.activation(self.backbone(resize_to_backbones(pixel_values, self.config))[-1])
        pooled = features.amax(dim=(2, 3)) if self.pool == "max" else features.mean(dim=(2, 3))
        return self.classifier(pooled)


def class_scores(probs: np.ndarray, labels: np.ndarray, names: list[str]) -> dict:
    """Accuracy, balanced accuracy, macro-F1, lowest class recall and ECE, as train.py's evaluation computes them."""
    metrics = compute_classification_metrics(probs, labels, names)
    recalls = [r for r in metrics["per_class_recall"].values() if r is not None]
    return {key: float(metrics[key]) for key in ("accuracy", "balanced_accuracy", "macro_f1", "ece")} | {
        "min_recall": float(min(recalls))}


def write_dataset(data: str, folder: str) -> str:
    """Save the `--data` choice's synthetic split to `folder` (train.py reads it as a `load_from_disk` path)."""
    make_synthetic_faces(seed=0, **DATA[data]).save_to_disk(folder)
    return folder


def load_data(dataset: str):
    return with_raw_images(load_fer_dataset(dataset, seed=0))


def train_plain(rung: str, seed: int, recipe: dict, dataset: str = "synthetic", head_hidden_sizes=(),
                image_size: int | None = None, config_overrides: dict | None = None, ir_pool: str = "mean",
                **head_options) -> dict:
    """Train the `cnn`, `trunk` or `ir` rung with train.py's data path and schedule; evaluate once an epoch.
    `head_hidden_sizes`: the paper's primary head (e.g. 384, 192, 96) in place of the rung's linear layer;
    `image_size`: the processor's input size instead of the tiny preset's 64 px (the CNN sees it as it is, the trunk
    resizes it to its backbones' 64 px); `config_overrides`: GReFELConfig arguments over the tiny preset for the
    `trunk` and `ir` rungs (e.g. `{"backbone_image_size": 112, "window_sizes": [14, 14, 7]}`); `ir_pool`: the `ir`
    rung's global pool (`IRClassifier`); `head_options`: `paper_head`'s `batch_norm` and `dropout` variants of it."""
    torch.manual_seed(seed)
    data = load_data(dataset)
    names = data["train"].features["label"].names
    if config_overrides and rung == "cnn":
        raise SystemExit("--plain_config changes the GReFEL network of the `trunk` and `ir` rungs; the `cnn` rung has "
                         "none (use --plain_image_size for its input size).")
    options = {**({"image_size": image_size} if image_size else {}), **(config_overrides or {})}
    config = GReFELConfig.tiny(num_labels=len(names), **options)
    processor = GReFELImageProcessor.from_config(config)
    if rung == "ir":
        if head_hidden_sizes:
            raise SystemExit("--plain_head_hidden_sizes: the `ir` rung keeps its linear layer; leave it out.")
        model = IRClassifier(config, ir_pool)
    elif rung == "cnn":
        model = PlainCNN(len(names), head_hidden_sizes=head_hidden_sizes, **head_options)
    else:
        model = TrunkClassifier(config, head_hidden_sizes, **head_options)
    augment = BatchAugment.from_processor(processor, **AUGMENTATIONS[recipe["augment"]])
    loader = SafeImageLoader()
    generator = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(data["train"], batch_size=recipe["batch_size"], shuffle=True, drop_last=True,
                              generator=generator, collate_fn=TrainCollator(loader, size=augment.input_size))
    eval_loader = DataLoader(data["validation"], batch_size=64, collate_fn=EvalCollator(loader, processor))
    optimizer = build_optimizer(model, lr=recipe["lr"], weight_decay=recipe["weight_decay"])
    steps_per_epoch, epochs = len(train_loader), recipe["num_epochs"]
    total = steps_per_epoch * epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(
        step, scheduler=recipe["scheduler"], warmup_steps=recipe["warmup_steps"], steps_per_epoch=steps_per_epoch,
        total_steps=total))
    started, step, first_half, history = time.time(), 0, None, []
    for _ in range(epochs):
        model.train()
        augment.train()
        for batch in train_loader:
            logits = model(augment(batch["images"]))
            loss = F.cross_entropy(logits, batch["labels"], label_smoothing=recipe["smoothing"])
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
        model.eval()
        probs, labels = [], []
        with torch.no_grad():
            for batch in eval_loader:
                probs.append(model(batch["pixel_values"]).softmax(-1))
                labels.append(batch["labels"])
        scores = class_scores(torch.cat(probs).numpy(), torch.cat(labels).numpy(), names)
        history.append({"step": step, "accuracy": scores["accuracy"]})
        if first_half is None and scores["accuracy"] >= 0.5:
            first_half = step
    head = {"rung": head_rung_name(rung, **head_options), "head_hidden_sizes": list(head_hidden_sizes),
            **{f"head_{key}": value for key, value in head_options.items()}} if head_hidden_sizes else {}
    if rung == "ir" and ir_pool != "mean":
        head = {"rung": f"ir+{ir_pool}_pool", "ir_pool": ir_pool}
    if options:  # a rung of its own in the summary, as the head variants are
        named = ",".join(f"{key}={json.dumps(value, separators=(',', ':'))}" for key, value in options.items())
        head = {**head, "rung": f"{head.get('rung', rung)}({named})", **({"image_size": image_size} if image_size else {}),
                **({"config_overrides": config_overrides} if config_overrides else {})}
    return {"rung": rung, "seed": seed, **scores, "steps": total, "warmup_steps": recipe["warmup_steps"],
            "first_step_at_0.5": first_half, **head,
            "time_s": round(time.time() - started, 1), "history": history}


def train_paper(seed: int, recipe: dict, steps: int, batch_size: int, preset: str = "paper",
                dataset: str = "synthetic", precision: str = "fp32", overrides: dict | None = None,
                wide_lr_scale: float = 1.0, device: str = "cpu", schedule_steps: int | None = None,
                warmup_steps: int | None = None) -> dict:
    """The paper-size network at 112 px (`preset="tiny"`: the tiny one at 64 px, the control) through the same data
    path: does it leave the ln(C) plateau? `precision="bf16"`: forward and loss under bf16 autocast on `device`
    (weights, gradients and Adam stay fp32, as with `accelerate launch --mixed_precision bf16`); only where the device
    has native bf16 (on such a CPU it runs the paper-size step ~2.2x faster). `overrides`: GReFELConfig arguments for
    the paper size (e.g. the tiny preset's read-out, `{"embedding_pooling": "mean", "head_hidden_sizes": []}`), or
    for the tiny preset of the control (one paper-size component at a time, e.g. `{"hidden_size": 768}`). `wide_lr_scale`: the
    learning-rate factor of the fusion-wide parts (`build_optimizer`). `device`: where it trains ("cuda" on a GPU,
    where a seed takes minutes instead of CPU hours; bf16 there needs a GPU with native bf16). `schedule_steps`: the
    length of the lr schedule (default `steps`), so a run can stop early in a longer schedule; `warmup_steps`: its
    linear warm-up (default 5% of `schedule_steps`, the recipe's 40 of 800 until 2026-12-04)."""
    from modeling_grefel import GReFELForImageClassification
    from modeling_grefel.inference_grefel import has_native_bf16

    device = torch.device(device)
    if precision == "bf16" and not has_native_bf16(device):
        where = ("this CPU has no native bf16 (AVX512-BF16 or AMX), where PyTorch emulates it ~300x slower than fp32"
                 if device.type == "cpu" else f"{device} has no native bf16")
        raise SystemExit(f"--paper_precision bf16: {where}; use --paper_precision fp32.")

    torch.manual_seed(seed)
    data = load_data(dataset)
    names = data["train"].features["label"].names
    rung = "paper" if preset == "paper" else "paper_control"
    config = (GReFELConfig(**{"image_size": 112, "num_labels": len(names), **(overrides or {})}) if preset == "paper"
              else GReFELConfig.tiny(**{"num_labels": len(names), **(overrides or {})}))
    config.label_smoothing, config.trust_schedule = recipe["smoothing"], recipe["trust_schedule"]
    processor = GReFELImageProcessor.from_config(config)
    model = GReFELForImageClassification(config).to(device)
    augment = BatchAugment.from_processor(processor, **AUGMENTATIONS[recipe["augment"]]).to(device)
    loader = SafeImageLoader()
    generator = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(data["train"], batch_size=batch_size, shuffle=True, drop_last=True,
                              generator=generator, collate_fn=TrainCollator(loader, size=augment.input_size))
    optimizer = build_optimizer(model, lr=recipe["lr"], weight_decay=recipe["weight_decay"], wide_lr_scale=wide_lr_scale)
    schedule_steps = schedule_steps or steps
    warmup = warmup_steps or max(1, schedule_steps // 20)  # the recipe's 5% (40 of 800 steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(
        step, scheduler=recipe["scheduler"], warmup_steps=warmup, steps_per_epoch=len(train_loader),
        total_steps=schedule_steps))
    plateau = 0.9 * float(np.log(len(names)))
    started, step, losses, hits, curve, left_plateau = time.time(), 0, [], [], [], None
    gate_input, first_block = {}, {}
    se_gate = model.grefel.fusion.se_block
    se_gate.register_forward_hook(lambda module, inputs, output: gate_input.update(x=inputs[0].detach()))
    model.grefel.fusion.blocks[0].register_forward_hook(
        lambda module, inputs, output: first_block.update(x=output[0].detach()))
    model.train()
    while step < steps:
        for batch in train_loader:
            model.set_trust(step, steps)
            images, labels = batch["images"].to(device), batch["labels"].to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                out = model(pixel_values=augment(images), labels=labels)
            optimizer.zero_grad()
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            losses.append(out.classification_loss.item())
            hits.append((out.primary_probs.argmax(-1) == labels).float().mean().item())
            if left_plateau is None and len(losses) >= 20 and np.mean(losses[-20:]) < plateau:
                left_plateau = step
            if step % 10 == 0:
                curve.append({"step": step, "classification_loss": round(float(np.mean(losses[-10:])), 4),
                              "batch_accuracy": round(float(np.mean(hits[-10:])), 4),
                              "lr_factor": round(optimizer.param_groups[0]["lr"] / optimizer.param_groups[0]["initial_lr"], 4),
                              **embedding_diagnostics(se_gate, gate_input["x"], out.embeddings.detach()),
                              **token_diagnostics(first_block["x"])})
                print(json.dumps(curve[-1]), flush=True)
            if step == steps:
                break
    model.eval()
    probs, labels = [], []
    eval_loader = DataLoader(data["validation"], batch_size=32, collate_fn=EvalCollator(loader, processor))
    with torch.no_grad():
        for batch in eval_loader:
            probs.append(model(pixel_values=batch["pixel_values"].to(device)).logits.softmax(-1).float().cpu())
            labels.append(batch["labels"])
    scores = class_scores(torch.cat(probs).numpy(), torch.cat(labels).numpy(), names)
    return {"rung": rung, "seed": seed, **scores, "steps": steps, "schedule_steps": schedule_steps,
            "warmup_steps": warmup, "batch_size": batch_size, "lr": recipe["lr"],
            "precision": precision, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "config_overrides": overrides or {}, "wide_lr_scale": wide_lr_scale,
            "first_step_at_0.5": None, "left_plateau_at_step": left_plateau, "time_s": round(time.time() - started, 1),
            "loss_curve": curve}


def embedding_diagnostics(se_gate: nn.Module, pooled: torch.Tensor, embeddings: torch.Tensor) -> dict:
    """What the fusion ViT's SE gate lets through, on one training batch: the mean gate value (0.5 at init, 0 closed),
    the share of gates below 0.05, and the share of the embedding's mean square that varies between the batch's
    samples (0 when every image gets the same embedding, the ln C plateau's state)."""
    with torch.no_grad():
        gate = se_gate.gate(pooled).float()
    return {"se_gate_mean": round(float(gate.mean()), 4),
            "se_gate_closed": round(float((gate < 0.05).float().mean()), 4),
            "embedding_spread": between_sample_share(embeddings)}


def token_diagnostics(block_output: torch.Tensor) -> dict:
    """The same spread for the first fusion block's output (B, 1 + N, D): of the class token, which enters every block
    as the same vector for every image and only reads the image through attention, and of the image tokens. A class
    token whose spread falls to ~0 while the image tokens keep theirs has stopped reading the image."""
    tokens = block_output[:, 1:]
    return {"class_token_spread": between_sample_share(block_output[:, 0]),
            "token_spread": between_sample_share(tokens) if tokens.shape[1] else None}


def between_sample_share(values: torch.Tensor) -> float:
    """The share of the mean square of (B, ...) values that varies between the batch's samples (0: the same for all)."""
    with torch.no_grad():
        values = values.float()
        share = (values - values.mean(0)).pow(2).mean() / values.pow(2).mean().clamp_min(1e-12)
    return round(float(share), 4)


def train_grefel(seed: int, recipe: dict, dataset: str = "synthetic", trust_schedule: str | None = None) -> dict:
    """Run scripts/train.py's default recipe with `--seed` (and `--trust_schedule`), then read what it wrote."""
    import train as train_script

    extra = ["--trust_schedule", trust_schedule] if trust_schedule else []
    with tempfile.TemporaryDirectory() as folder:
        started = time.time()
        train_script.main(["--dataset", dataset, "--seed", str(seed), "--output_dir", folder, "--num_workers", "0",
                           "--report_to", "none", "--checkpointing_steps", "none",
                           "--num_epochs", str(recipe["num_epochs"]), "--warmup_steps", str(recipe["warmup_steps"]),
                           *extra])
        elapsed = time.time() - started
        run = RunFolder(folder)
        results, history = run.read(RESULTS, required=True), run.read(HISTORY, required=True)
    recalls = [r for r in results["eval_per_class_recall"].values() if r is not None]  # as class_scores counts them
    first_half = next((h["step"] for h in history if h["eval_accuracy"] >= 0.5), None)
    return {
        "rung": "grefel_linear" if trust_schedule == "linear" else "grefel", "seed": seed,
        "accuracy": results["eval_accuracy"], "corrected_accuracy": results["eval_corrected_accuracy"],
        "balanced_accuracy": results["eval_balanced_accuracy"], "macro_f1": results["eval_macro_f1"],
        "ece": results["eval_ece"], "corrected_ece": results["eval_corrected_ece"],
        "min_recall": float(min(recalls)), "per_class_recall": results["eval_per_class_recall"],
        "steps": results["global_step"], "warmup_steps": recipe["warmup_steps"], "first_step_at_0.5": first_half,
        "time_s": round(elapsed, 1), "train_runtime_s": results["train_runtime_s"],
        "history": [{"step": h["step"], "accuracy": h["eval_accuracy"],
                     "corrected_accuracy": h["eval_corrected_accuracy"]} for h in history],
    }


def summary_key(row: dict) -> str:
    """The row's rung, with its epochs, warm-up and the tiny preset's read-out where those are not today's (rows of
    the `paper` rungs name their own)."""
    if row["rung"].startswith("paper"):
        return row["rung"]
    today = todays_setting()
    labels = {"num_epochs": lambda n: f"{n} epoch{'s' * (n != 1)}", "warmup_steps": lambda n: f"warm-up {n}",
              "tiny_embedding_pooling": lambda pooling: f"{pooling} read-out"}
    differs = [label(row[key]) for key, label in labels.items() if row.get(key) not in (None, today[key])]
    return f"{row['rung']} ({', '.join(differs)})" if differs else row["rung"]


@functools.cache
def todays_setting() -> dict:
    """What rows of the synthetic rungs run with today: the recipe's epochs and warm-up, the tiny preset's read-out."""
    return {"num_epochs": RECIPES["synthetic"]["num_epochs"], "warmup_steps": RECIPES["synthetic"]["warmup_steps"],
            "tiny_embedding_pooling": GReFELConfig.tiny().embedding_pooling}


def summarise(rows: list[dict]) -> dict:
    groups: dict[str, list[dict]] = {}  # the rungs, and `cnn+paper_head` apart from `cnn`, in order of first row
    for row in rows:
        groups.setdefault(summary_key(row), []).append(row)
    summary = {}
    for rung, mine in groups.items():
        entry = {"runs": len(mine), "seeds": len({r["seed"] for r in mine})}  # merged tables: a seed in several settings
        for key in ("accuracy", "corrected_accuracy", "balanced_accuracy", "macro_f1", "min_recall", "ece",
                    "corrected_ece", "time_s"):
            values = [r[key] for r in mine if r.get(key) is not None]
            if values:
                entry[f"mean_{key}"], entry[f"min_{key}"] = float(np.mean(values)), float(np.min(values))
        reached = [r["first_step_at_0.5"] for r in mine]
        entry["first_step_at_0.5"] = reached
        summary[rung] = entry
    return summary


def markdown(rows: list[dict], summary: dict) -> str:
    def fmt(value):
        return "-" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))

    lines = ["| rung | seed | val acc | corrected | balanced acc | macro-F1 | min class recall | ECE (corrected) | "
             "step at 0.5 | time (s) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ece = fmt(r.get("ece")) + (f" ({fmt(r['corrected_ece'])})" if r.get("corrected_ece") is not None else "")
        lines.append(f"| {r['rung']} | {r['seed']} | {fmt(r['accuracy'])} | {fmt(r.get('corrected_accuracy'))} | "
                     f"{fmt(r.get('balanced_accuracy'))} | {fmt(r['macro_f1'])} | {fmt(r['min_recall'])} | {ece} | "
                     f"{fmt(r['first_step_at_0.5'])} | {r['time_s']:.0f} |")
    for rung, s in summary.items():
        ece = fmt(s.get("mean_ece")) + (
            f" ({fmt(s['mean_corrected_ece'])})" if s.get("mean_corrected_ece") is not None else "")
        lines.append(f"| **{rung} mean / min** | {s['runs']} runs, {s['seeds']} seeds | {fmt(s['mean_accuracy'])} / "
                     f"{fmt(s['min_accuracy'])} | {fmt(s.get('mean_corrected_accuracy'))} / "
                     f"{fmt(s.get('min_corrected_accuracy'))} | {fmt(s.get('mean_balanced_accuracy'))} | "
                     f"{fmt(s['mean_macro_f1'])} | {fmt(s['min_min_recall'])} | {ece} | | {s['mean_time_s']:.0f} |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--rungs", nargs="+", choices=RUNGS, default=list(DEFAULT_RUNGS))
    parser.add_argument("--data", choices=sorted(DATA), default="default",
                        help="'default' (the synthetic split) or 'hard' (10:1 long tail, 20%% label noise in train).")
    parser.add_argument("--output", default=None,
                        help="Default: benchmarks/learning.json, or benchmarks/learning_hard.json for --data hard.")
    parser.add_argument("--num_epochs", type=int, default=None, help="Default: the synthetic recipe's (a smoke test).")
    parser.add_argument("--warmup_steps", type=int, default=None,
                        help="Linear warm-up of the cnn, trunk, ir and grefel rungs (default: the recipe's, 120 "
                             "steps since 2026-12-04, 40 before); summarised apart from the recipe's, e.g. "
                             "'grefel (warm-up 40)'.")
    parser.add_argument("--plain_head_hidden_sizes", type=int, nargs="+", default=[],
                        help="The `cnn` and `trunk` rungs with the paper's primary head (these hidden widths, e.g. 384 "
                             "192 96, with its BatchNorm and dropout) in place of their linear layer.")
    parser.add_argument("--plain_head_batch_norm", choices=HEAD_BATCH_NORMS, default=None,
                        help="Where that head's BatchNorm goes: after_relu (the paper config's, ARBEx's order), "
                             "before_relu (the common order) or none.")
    parser.add_argument("--plain_head_dropout", type=float, default=None,
                        help="That head's dropout in place of the paper config's 0.5.")
    parser.add_argument("--plain_image_size", type=int, default=None,
                        help="The cnn and trunk rungs' input size in pixels (default: the tiny preset's 64); the "
                             "trunk resizes it to its backbones' 64 px unless --plain_config sets backbone_image_size.")
    parser.add_argument("--plain_config", type=json.loads, default=None,
                        help="GReFELConfig arguments over the tiny preset for the `trunk` and `ir` rungs, as JSON, e.g. "
                             "'{\"backbone_image_size\": 112, \"window_sizes\": [14, 14, 7]}' with --plain_image_size "
                             "112: the backbones at 112 px (rows named by both).")
    parser.add_argument("--ir_pool", choices=IR_POOLS, default="mean",
                        help="The `ir` rung's global pool of the last IR stage: mean (signed, as the stage ends), "
                             "relu_mean (BatchNorm + ReLU first, as a plain CNN pools) or max (rung e.g. ir+max_pool).")
    parser.add_argument("--paper_steps", type=int, default=300, help="Steps of the `paper` rung.")
    parser.add_argument("--paper_schedule_steps", type=int, default=None,
                        help="Length of the `paper` rungs' lr schedule (default: --paper_steps): e.g. 3000 with "
                             "--paper_steps 300 trains the first 300 steps of a 3000-step run.")
    parser.add_argument("--paper_warmup_steps", type=int, default=None,
                        help="Linear warm-up of the `paper` rungs (default: 5%% of the schedule, the recipe's share "
                             "until 2026-12-04).")
    parser.add_argument("--paper_batch", type=int, default=32,
                        help="Batch of the `paper` and `paper_control` rungs. 32, the recipes' batch: at 8 and 16 even "
                             "GReFEL-tiny stays on the plateau for 300 steps (`paper_control`), so a smaller batch "
                             "cannot tell a paper-size defect from too few images.")
    parser.add_argument("--paper_lr", type=float, default=None,
                        help="Peak lr of the `paper` rung; default the synthetic recipe's (1e-3). The dataset recipes "
                             "train the paper size at 1e-4 (FERPlus) and 3e-4 (RAF-DB, FER2013).")
    parser.add_argument("--paper_wide_lr_scale", type=float, default=1.0,
                        help="Learning-rate factor of the fusion-wide parts (fusion ViT, token embedding, head) in the "
                             "`paper` and `paper_control` rungs, e.g. 0.125 = 96 / 768: the per-step change those parts "
                             "have in GReFEL-tiny (benchmarks/first_step.py).")
    parser.add_argument("--paper_config", type=json.loads, default=None,
                        help="GReFELConfig arguments overriding the `paper` rung's paper size (or the tiny preset "
                             "of `paper_control`), as JSON, e.g. '{\"embedding_pooling\": \"mean\", "
                             "\"head_hidden_sizes\": [], \"head_dropout\": 0.1}' (the tiny preset's read-out).")
    parser.add_argument("--paper_precision", choices=("fp32", "bf16"), default="fp32",
                        help="Training precision of the `paper` and `paper_control` rungs: bf16 autocast runs the "
                             "paper-size step ~2.2x faster on a CPU with native bf16 (refused where it is emulated).")
    parser.add_argument("--paper_device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="Device of the `paper` and `paper_control` rungs: 'cuda' (the default where a GPU is "
                             "visible) or 'cpu'. The other rungs train on the CPU.")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    keep_freed_memory()  # as scripts/train.py on a CPU: only the wall times change
    recipe = dict(RECIPES["synthetic"])
    recipe["num_epochs"] = args.num_epochs or recipe["num_epochs"]
    recipe["warmup_steps"] = args.warmup_steps if args.warmup_steps is not None else recipe["warmup_steps"]
    output = Path(args.output or ROOT / "benchmarks" / ("learning.json" if args.data == "default" else
                                                       f"learning_{args.data}.json"))
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        dataset = "synthetic" if args.data == "default" else write_dataset(args.data, folder)
        for rung in args.rungs:
            for seed in args.seeds:
                if rung in ("grefel", "grefel_linear"):
                    row = train_grefel(seed, recipe, dataset, "linear" if rung == "grefel_linear" else None)
                elif rung in ("paper", "paper_control"):
                    paper_recipe = {**recipe, "lr": args.paper_lr or recipe["lr"]}
                    preset = "tiny" if rung == "paper_control" else "paper"
                    row = train_paper(seed, paper_recipe, args.paper_steps, args.paper_batch, preset, dataset,
                                      args.paper_precision, args.paper_config, args.paper_wide_lr_scale,
                                      args.paper_device, args.paper_schedule_steps, args.paper_warmup_steps)
                else:
                    head_options = {key: value for key, value in (("batch_norm", args.plain_head_batch_norm),
                                                                  ("dropout", args.plain_head_dropout))
                                    if value is not None}
                    row = train_plain(rung, seed, recipe, dataset, args.plain_head_hidden_sizes, args.plain_image_size,
                                      args.plain_config, args.ir_pool, **head_options)
                row["data"] = args.data
                if not rung.startswith("paper"):  # the paper rungs count their own steps (--paper_steps)
                    row["num_epochs"] = recipe["num_epochs"]
                if rung not in ("cnn", "paper"):  # the preset changed; merged tables must say which one ran
                    tiny = GReFELConfig.tiny()
                    row["tiny_hidden_sizes"] = list(tiny.hidden_sizes)
                    if rung != "ir":  # the IR backbone alone has no fusion tokens to pool
                        row["tiny_embedding_pooling"] = tiny.embedding_pooling
                print(json.dumps({k: v for k, v in row.items() if k not in ("history", "loss_curve")}), flush=True)
                rows.append(row)
    summary = summarise(rows)
    report = {"recipe": recipe, "data": {"name": args.data, **DATA[args.data]},
              "torch_threads": torch.get_num_threads(), "rows": rows, "summary": summary,
              "date": time.strftime("%Y-%m-%d")}
    output.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(output, report)
    print(markdown(rows, summary))
    return report


if __name__ == "__main__":
    main()
