"""Train GReFEL with Accelerate on FERPlus, RAF-DB, FER2013, an image folder, any `datasets` dataset, or the
embedded synthetic-faces default.

    accelerate launch scripts/train.py                                   # synthetic faces, tiny model, CPU minutes
    accelerate launch scripts/train.py --recipe ferplus --data_dir data/FERPlus --soft_labels
    accelerate launch scripts/train.py --recipe rafdb --data_dir data/RAF-DB/basic \
        --model_config outputs/converted-ir50-mfn --num_classes 7
    accelerate launch --multi_gpu --num_processes 8 scripts/train.py --recipe fer2013 --data_dir data/fer2013
    accelerate launch --multi_gpu --num_processes 2 scripts/train.py --cpu      # two-process DDP on a CPU
    accelerate launch scripts/train.py --resume_from_checkpoint latest --output_dir outputs/rafdb

SIGTERM or Ctrl-C stops a run after its current optimizer step with a checkpoint to resume from (exit status 128 +
the signal's number); signal the launcher's process group (`kill -TERM -- -PGID`), never SIGKILL the launcher.

Recipes (`--recipe`) set the seed's hyper-parameters; any flag given explicitly overrides its recipe value.
Mixed precision, gradient accumulation, FSDP/DeepSpeed come from `accelerate config` / `accelerate launch` flags.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.logging import get_logger
from accelerate.utils import gather_object, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from emotionnet.augment import BatchAugment
from emotionnet.data import (
    SafeImageLoader,
    describe_skipped,
    load_fer_dataset,
    require_readable_image,
    with_raw_images,
)
from emotionnet.evaluation import evaluate_model
from emotionnet.run_folder import CONFUSION_MATRIX_IMAGE, HISTORY, RESULTS, SKIPPED_IMAGES, TRAINING_CONFIG, RunFolder
from emotionnet.sampling import ClassBalancedSampler
from emotionnet.training import (
    AUGMENTATIONS,
    DEFAULT_SEED,
    RECIPES,
    SCHEDULERS,
    CheckpointError,
    EvalCollator,
    StopRequest,
    TrainCollator,
    build_model,
    build_optimizer,
    keep_freed_memory,
    leave_process_group,
    load_checkpoint,
    lr_factor,
    resolve_checkpoint,
    save_checkpoint,
    save_pretrained,
    save_pretrained_atomic,
    step_seed,
)
from modeling_grefel import GReFELImageProcessor
from modeling_grefel.configuration_grefel import TRUST_SCHEDULES
from modeling_grefel.inference_grefel import has_native_bf16

logger = get_logger(__name__)
METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "corrected_accuracy", "corrected_balanced_accuracy",
           "corrected_macro_f1")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", choices=sorted(RECIPES), default=None,
                        help="Hyper-parameter preset; defaults to the --dataset's recipe, or 'synthetic'.")
    parser.add_argument("--dataset", default=None,
                        help="ferplus, rafdb, fer2013, imagefolder, synthetic, a Hub dataset id or a load_from_disk path.")
    parser.add_argument("--data_dir", default=None, help="Folder of the dataset's files (layouts in README.md).")
    parser.add_argument("--image_column", default="image")
    parser.add_argument("--label_column", default="label")
    parser.add_argument("--num_classes", type=int, default=None, choices=(7, 8),
                        help="7 (no contempt) or 8; default: what the dataset has.")
    parser.add_argument("--soft_labels", action="store_true", help="Train on FERPlus vote distributions.")
    parser.add_argument("--model_config", default=None,
                        help="'tiny', 'paper', or a model folder / Hub id to start from (e.g. converted weights).")
    parser.add_argument("--head_hidden_sizes", type=int, nargs="*", default=None,
                        help="Hidden widths of the primary head of a preset (--model_config tiny or paper); given "
                             "with no widths, a linear head, which is what learns from random weights (README).")
    parser.add_argument("--num_anchors", type=int, default=None)
    parser.add_argument("--smoothing", type=float, default=None, help="Label smoothing of L_cls.")
    parser.add_argument("--trust_schedule", choices=TRUST_SCHEDULES, default=None,
                        help="Trust t mixing the primary and corrected distributions in L_cls (config.trust_schedule).")
    parser.add_argument("--num_epochs", type=int, default=None)
    parser.add_argument("--batch_size", type=int, default=None, help="Per device.")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--weight_decay", type=float, default=None,
                        help="AdamW's decoupled weight decay, on weight matrices and kernels only.")
    parser.add_argument("--scheduler", choices=SCHEDULERS, default=None)
    parser.add_argument("--gamma", type=float, default=None, help="Exponential decay per epoch.")
    parser.add_argument("--warmup_steps", type=int, default=None)
    parser.add_argument("--wide_lr_scale", type=float, default=1.0,
                        help="Learning-rate factor of the parts as wide as the fusion ViT (fusion blocks, token "
                             "embedding, head), e.g. 0.125 = 96 / 768 for the paper size from random weights, with a "
                             "long --warmup_steps (README, 'On a GPU: a longer warm-up frees the paper size'). Keep it "
                             "the same when resuming: it changes the optimizer's parameter groups.")
    parser.add_argument("--class_balanced", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--samples_per_class", type=int, default=None)
    parser.add_argument("--augment", choices=sorted(AUGMENTATIONS), default=None,
                        help="'seed' (the paper recipe), 'mild', 'light' (shift, flip, jitter) or 'none' (plain resize).")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help="Seeds the weights, data order and augmentation.")
    parser.add_argument("--output_dir", default=None, help="Default: outputs/<recipe>-default or outputs/<dataset>.")
    parser.add_argument("--num_workers", type=int, default=2)
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1)
    parser.add_argument("--max_grad_norm", type=float, default=1.0, help="Gradient clipping; 0 turns it off.")
    parser.add_argument("--mixed_precision", choices=("no", "fp16", "bf16"), default=None,
                        help="Overrides accelerate's config.")
    parser.add_argument("--cpu", action="store_true", help="Force the CPU (also for DDP across CPU processes).")
    parser.add_argument("--checkpointing_steps", default="epoch",
                        help="'epoch', a number of optimizer steps, or 'none'.")
    parser.add_argument("--checkpoints_total_limit", type=int, default=3,
                        help="Keep the newest K checkpoints, by training step; 0 keeps all.")
    parser.add_argument("--resume_from_checkpoint", default=None, help="A checkpoint folder, or 'latest'.")
    parser.add_argument("--stop_after_steps", type=int, default=None,
                        help="Checkpoint and stop after this many optimizer steps (time-limited jobs); the "
                             "schedules still follow --num_epochs.")
    parser.add_argument("--metric_for_best_model", choices=METRICS, default="accuracy")
    parser.add_argument("--report_to", default="tensorboard", help="tensorboard, wandb, all, or none.")
    parser.add_argument("--max_train_samples", type=int, default=None, help="Truncate train (quick checks).")
    parser.add_argument("--max_eval_samples", type=int, default=None, help="Truncate validation (quick checks).")
    # The recipe table holds the defaults of these flags: --help shows each recipe's value.
    for action in parser._actions:
        values = [f"{name} {recipe[action.dest]}" for name, recipe in sorted(RECIPES.items()) if action.dest in recipe]
        if values:
            action.help = f"{action.help or ''} Default per recipe: {', '.join(values)}.".lstrip()
    args = parser.parse_args(argv)

    recipe_name = args.recipe or (args.dataset if args.dataset in RECIPES else "synthetic")
    recipe = RECIPES[recipe_name]
    for key, value in recipe.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    args.gamma = args.gamma if args.gamma is not None else recipe.get("gamma", 0.995)
    args.recipe = recipe_name
    if args.output_dir is None:
        args.output_dir = f"outputs/{recipe_name}-default" if args.dataset == recipe["dataset"] else \
            f"outputs/{Path(str(args.dataset)).name}"

    # Sanity checks, each naming its flag.
    if args.dataset in ("ferplus", "rafdb", "fer2013", "imagefolder") and not args.data_dir:
        parser.error(f"--dataset {args.dataset} needs --data_dir (the folder layouts are in README.md).")
    for name in ("num_epochs", "batch_size", "gradient_accumulation_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}.")
    if args.lr <= 0:
        parser.error(f"--lr must be positive, got {args.lr}.")
    if args.wide_lr_scale <= 0:
        parser.error(f"--wide_lr_scale must be positive (1 leaves the lr as it is), got {args.wide_lr_scale}.")
    if args.checkpoints_total_limit < 0:
        parser.error(f"--checkpoints_total_limit must be 0 (keep all) or more, got {args.checkpoints_total_limit}.")
    if args.checkpointing_steps not in ("epoch", "none") and not str(args.checkpointing_steps).isdigit():
        parser.error(f"--checkpointing_steps must be 'epoch', 'none' or a number, got {args.checkpointing_steps!r}.")
    if args.class_balanced and args.soft_labels:
        parser.error("--class_balanced samples by hard label; drop it or --soft_labels.")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    cpu = args.cpu or not torch.accelerator.is_available()
    accelerator = Accelerator(
        cpu=cpu,
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=None if args.report_to == "none" else args.report_to,
        project_dir=str(output_dir),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
    )
    if accelerator.mixed_precision == "bf16" and accelerator.device.type == "cpu" and not has_native_bf16("cpu"):
        raise SystemExit("--mixed_precision bf16 on this CPU: it has no native bf16 (AVX512-BF16 or AMX), where PyTorch "
                         "emulates bf16 many times slower than fp32; train with --mixed_precision no.")
    if accelerator.device.type == "cpu":
        keep_freed_memory()  # each step's activations reuse the last step's memory instead of faulting in new pages
    set_seed(args.seed)
    run_folder = RunFolder(output_dir)
    if args.resume_from_checkpoint and run_folder.is_finished():
        # all_results.json is written last, once everything else is in place: the run is complete.
        finished = run_folder.read(RESULTS)
        accelerator.print(
            f"--resume_from_checkpoint: the run in {output_dir} is already finished ({finished.get('epochs')} epochs, "
            f"{finished.get('global_step')} steps, see {RESULTS}); nothing to resume and nothing was changed. "
            f"To train further, start a new run from its weights: --model_config {output_dir} --output_dir <new folder>."
        )
        return finished
    if accelerator.is_main_process and run_folder.is_finished():
        # A new run in this folder: until it finishes, the folder must not read as finished (resume checks this).
        accelerator.print(f"{output_dir} held a finished run; its {RESULTS} is removed, the rest is overwritten.")
        (run_folder / RESULTS).unlink()

    # ---------------------------------------------------------------- data
    with accelerator.main_process_first():
        data = load_fer_dataset(args.dataset, data_dir=args.data_dir, num_classes=args.num_classes,
                                image_column=args.image_column, label_column=args.label_column, seed=args.seed)
    # Images are decoded by SafeImageLoader in the collate function, where an unreadable one is skipped, not fatal.
    data = with_raw_images(data)
    train_set, eval_set = data["train"], data["validation"]
    if args.max_train_samples:
        train_set = train_set.select(range(min(args.max_train_samples, len(train_set))))
    if args.max_eval_samples:
        eval_set = eval_set.select(range(min(args.max_eval_samples, len(eval_set))))
    label_names = train_set.features["label"].names
    if args.soft_labels and "soft_label" not in train_set.column_names:
        raise SystemExit(f"--soft_labels: dataset {args.dataset} has no vote distributions (only FERPlus does).")
    # Fail in seconds, not after an epoch, when a split has nothing readable.
    try:
        require_readable_image(train_set, f"The training set of {args.dataset}")
        require_readable_image(eval_set, f"The validation set of {args.dataset}")
    except ValueError as err:
        raise SystemExit(str(err)) from None

    # ---------------------------------------------------------------- model
    try:
        model = build_model(args.model_config, len(label_names), num_anchors=args.num_anchors,
                            smoothing=args.smoothing, trust_schedule=args.trust_schedule,
                            head_hidden_sizes=args.head_hidden_sizes)
    except ValueError as err:
        raise SystemExit(str(err)) from None
    config = model.config
    processor = GReFELImageProcessor.from_config(config)
    augment = BatchAugment.from_processor(processor, **AUGMENTATIONS[args.augment]).to(accelerator.device)

    loader = SafeImageLoader()
    train_collate = TrainCollator(loader, size=augment.input_size, soft_labels=args.soft_labels)
    sampler = None
    if args.class_balanced:
        sampler = ClassBalancedSampler(train_set["label"], samples_per_class=args.samples_per_class, seed=args.seed)
    # Full batches only, unless the whole set is smaller than one step's images: then it trains as one short batch.
    drop_last = len(train_set) >= args.batch_size * accelerator.num_processes
    if not drop_last:
        accelerator.print(f"The training set ({len(train_set)} images) is smaller than one batch "
                          f"({args.batch_size} x {accelerator.num_processes} process(es)): each step trains on all "
                          "of it.")
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=sampler is None, sampler=sampler,
                              collate_fn=train_collate, num_workers=args.num_workers, drop_last=drop_last,
                              persistent_workers=args.num_workers > 0, worker_init_fn=leave_process_group)
    eval_loader = DataLoader(eval_set, batch_size=args.batch_size, collate_fn=EvalCollator(loader, processor),
                             num_workers=args.num_workers, worker_init_fn=leave_process_group)

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(model, lr=args.lr, weight_decay=args.weight_decay, wide_lr_scale=args.wide_lr_scale)
    model, optimizer, train_loader, eval_loader = accelerator.prepare(model, optimizer, train_loader, eval_loader)

    batches_per_epoch = len(train_loader)
    steps_per_epoch = math.ceil(batches_per_epoch / args.gradient_accumulation_steps)
    total_steps = steps_per_epoch * args.num_epochs
    # Not registered for accelerate's checkpointing, which pickles it: its state goes into trainer_state.json.
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(
        step, scheduler=args.scheduler, warmup_steps=args.warmup_steps, steps_per_epoch=steps_per_epoch,
        total_steps=total_steps, gamma=args.gamma))

    run_config = {k: v for k, v in vars(args).items()}
    run_config["command"] = "accelerate launch scripts/train.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    run_config.update(num_processes=accelerator.num_processes, total_steps=total_steps, steps_per_epoch=steps_per_epoch,
                      train_samples=len(train_set), eval_samples=len(eval_set), labels=label_names)
    if args.report_to != "none":
        accelerator.init_trackers("grefel", config={k: v for k, v in run_config.items()
                                                    if isinstance(v, (int, float, str, bool))})

    # ---------------------------------------------------------------- resume
    # `epoch` counts the epochs whose evaluation and best-model save are done; `epoch_batches` the micro-batches of
    # the next epoch already trained (all of them when a checkpoint falls between its last step and its evaluation).
    state = {"completed_steps": 0, "epoch": 0, "epoch_batches": 0, "best_metric": None, "best_epoch": None,
             "history": [], "metrics": {}, "train_runtime_s": 0.0, "trained_samples": 0, "skipped": {}}
    if args.resume_from_checkpoint:
        checkpoint_dir = resolve_checkpoint(output_dir, args.resume_from_checkpoint)
        try:
            state = load_checkpoint(accelerator, checkpoint_dir, scheduler)
        except CheckpointError as err:
            raise SystemExit(str(err)) from None
        accelerator.print(f"Resumed from {checkpoint_dir} at step {state['completed_steps']}.")
    unwrapped = accelerator.unwrap_model(model)
    skipped = state["skipped"]  # unreadable training images, each once: {image: reason}
    started, runtime_before = time.time(), state["train_runtime_s"]

    def checkpoint(name: str) -> Path:
        gathered = gather_object([list(skipped.items())])  # every process's skipped images, saved by the main one
        skipped.update(entry for part in gathered for entry in part)
        state.update(scheduler=scheduler.state_dict(), train_runtime_s=runtime_before + time.time() - started)
        return save_checkpoint(accelerator, output_dir, name, state, args.checkpoints_total_limit or None)

    # ---------------------------------------------------------------- train
    accelerator.print(f"Training {args.recipe} recipe on {args.dataset}: {len(train_set)} train / {len(eval_set)} "
                      f"validation images, {total_steps} steps on {accelerator.num_processes} process(es).")
    progress = tqdm(total=total_steps, initial=state["completed_steps"], disable=not accelerator.is_local_main_process)
    # Why training stops before its last epoch (--stop_after_steps, or SIGTERM/SIGINT), and the checkpoint it leaves.
    stopped_by, stop_checkpoint, last_loss = None, None, None
    with StopRequest(announce=accelerator.is_local_main_process) as stop:
        for epoch in range(state["epoch"], args.num_epochs):
            model.train()
            train_loader.set_epoch(epoch)
            epoch_loader = train_loader
            if state["epoch_batches"]:
                epoch_loader = accelerator.skip_first_batches(train_loader, state["epoch_batches"])
            for batch in epoch_loader:
                # Reseeding per micro-batch makes augmentation, dropout and drop-path replay exactly on resume.
                micro_step = epoch * batches_per_epoch + state["epoch_batches"]
                torch.manual_seed(step_seed(args.seed, micro_step, accelerator.process_index))
                state["epoch_batches"] += 1
                images, labels = batch["images"], batch["labels"]
                skipped.update((str(key), reason) for key, reason in batch["skipped"])
                if accelerator.num_processes > 1:
                    # A batch whose images were all unreadable is skipped on every process together (DDP stays in step).
                    empty = accelerator.gather(torch.tensor([images.shape[0] == 0], device=accelerator.device))
                    if bool(empty.any()):
                        continue
                elif images.shape[0] == 0:
                    continue
                with accelerator.accumulate(model):
                    unwrapped.set_trust(state["completed_steps"], total_steps)
                    outputs = model(pixel_values=augment(images), labels=labels)
                    accelerator.backward(outputs.loss)
                    if args.max_grad_norm > 0 and accelerator.sync_gradients:
                        accelerator.clip_grad_norm_(trainable, args.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad()
                if not accelerator.sync_gradients:
                    continue
                scheduler.step()
                state["completed_steps"] += 1
                completed_steps = state["completed_steps"]
                state["trained_samples"] += (images.shape[0] * accelerator.num_processes
                                             * args.gradient_accumulation_steps)
                progress.update(1)
                last_loss = outputs.classification_loss.item()
                log = {"train/loss": outputs.loss.item(), "train/classification_loss": last_loss,
                       "train/anchor_loss": outputs.anchor_loss.item(), "train/center_loss": outputs.center_loss.item(),
                       "train/lr": scheduler.get_last_lr()[0], "train/trust": float(unwrapped.trust), "epoch": epoch}
                progress.set_postfix(loss=f"{log['train/loss']:.3f}")
                if args.report_to != "none":
                    accelerator.log(log, step=completed_steps)
                if args.checkpointing_steps.isdigit() and completed_steps % int(args.checkpointing_steps) == 0:
                    stop_checkpoint = checkpoint(f"step_{completed_steps}")
                if args.stop_after_steps and completed_steps >= args.stop_after_steps:
                    stopped_by = "--stop_after_steps"
                # A collective under DDP, so every rank asks at every step and all stop at the same one.
                stopped_by = stopped_by or stop.agreed_signal(accelerator)
                if stopped_by:
                    break
            if stopped_by:
                completed_steps = state["completed_steps"]
                if not (args.checkpointing_steps.isdigit() and completed_steps % int(args.checkpointing_steps) == 0):
                    stop_checkpoint = checkpoint(f"step_{completed_steps}")
                break

            # ------------------------------------------------------------ evaluate
            metrics = evaluate_model(model, eval_loader, accelerator, label_names=label_names)
            score = metrics[f"eval_{args.metric_for_best_model}"]
            state["history"].append({"epoch": epoch + 1, "step": state["completed_steps"],
                                     "eval_loss": metrics.get("eval_loss"), "eval_accuracy": metrics["eval_accuracy"],
                                     "eval_corrected_accuracy": metrics["eval_corrected_accuracy"]})
            loss_text = f"train classification loss {last_loss:.3f}, " if last_loss is not None else ""
            accelerator.print(f"epoch {epoch + 1}: {loss_text}accuracy {metrics['eval_accuracy']:.4f}, corrected "
                              f"{metrics['eval_corrected_accuracy']:.4f}, macro-F1 {metrics['eval_macro_f1']:.4f} on "
                              f"{metrics['eval_samples']} of {len(eval_set)} validation images")
            if metrics["eval_skipped"] and not state["history"][:-1]:  # named once, at the first evaluation
                unreadable = [(entry["image"], entry["reason"]) for entry in metrics["eval_skipped"]]
                accelerator.print(f"Validation skips {describe_skipped(unreadable)}; they are listed in "
                                  f"{SKIPPED_IMAGES} at the end.")
            if args.report_to != "none":
                accelerator.log({f"eval/{k[5:]}": v for k, v in metrics.items() if isinstance(v, (int, float))},
                                step=state["completed_steps"])
            if state["best_metric"] is None or score > state["best_metric"]:
                state.update(best_metric=score, best_epoch=epoch + 1)
                save_pretrained_atomic(accelerator, model, processor, output_dir / "best")
            # Recorded only now, after `best/` is written: a checkpoint taken before this point redoes this epoch's end.
            state.update(epoch=epoch + 1, epoch_batches=0, metrics=metrics)
            if args.checkpointing_steps == "epoch":
                stop_checkpoint = checkpoint(f"epoch_{epoch + 1}")
            # A signal during the evaluation stops here rather than after the next step; after the last epoch only the
            # final save is left, which the run finishes instead.
            if epoch + 1 < args.num_epochs and (stopped_by := stop.agreed_signal(accelerator)):
                if args.checkpointing_steps != "epoch":
                    stop_checkpoint = checkpoint(f"epoch_{epoch + 1}")
                break
    progress.close()

    # ---------------------------------------------------------------- outputs
    if stopped_by:
        reason = "as asked" if stopped_by == "--stop_after_steps" else f"on {stopped_by.name}"
        accelerator.print(f"Stopped after step {state['completed_steps']} of {total_steps} {reason}, with checkpoint "
                          f"{stop_checkpoint}; resume with --resume_from_checkpoint latest --output_dir {output_dir}.")
        accelerator.end_training()
        if stopped_by != "--stop_after_steps":
            raise SystemExit(128 + stopped_by)  # the shell's code for "ended by this signal": `train && next` stops
        return {"completed_steps": state["completed_steps"]}
    runtime = runtime_before + time.time() - started
    skipped.update(entry for part in gather_object([list(skipped.items())]) for entry in part)
    metrics = dict(state["metrics"])
    eval_skipped = metrics.pop("eval_skipped")
    save_pretrained(accelerator, model, processor, output_dir)
    results = {k: v for k, v in metrics.items() if "confusion" not in k}
    results.update(
        dataset="synthetic-faces" if args.dataset == "synthetic" else args.dataset, num_classes=len(label_names),
        eval_split="validation", synthetic=args.dataset == "synthetic", epochs=state["epoch"],
        global_step=state["completed_steps"], train_runtime_s=round(runtime, 2),
        train_samples_per_second=round(state["trained_samples"] / max(runtime, 1e-9), 2),
        best_epoch=state["best_epoch"], best_metric=state["best_metric"],
        metric_for_best_model=args.metric_for_best_model, train_skipped_images=len(skipped),
    )
    unreadable = [{"image": image, "reason": reason, "split": "train"} for image, reason in skipped.items()]
    unreadable += [{**entry, "split": "validation"} for entry in eval_skipped]
    if accelerator.is_main_process:
        run_folder.write(TRAINING_CONFIG, run_config)
        run_folder.write(HISTORY, state["history"])
        run_folder.write_confusion_matrix(metrics["eval_confusion_matrix"], label_names,
                                          title=f"GReFEL on {results['dataset']} (validation)")
        if unreadable:
            run_folder.write(SKIPPED_IMAGES, unreadable)
        # Last, once everything else is in place: its presence marks the run as finished.
        run_folder.write(RESULTS, results)
    accelerator.end_training()
    accelerator.print(
        f"Done in {runtime:.0f}s: accuracy {results['eval_accuracy']:.4f} (corrected "
        f"{results['eval_corrected_accuracy']:.4f}) on {results['eval_samples']} of {len(eval_set)} validation "
        f"images, best epoch {state['best_epoch']}. Unreadable images skipped: {len(skipped)} train, "
        f"{len(eval_skipped)} validation{f' (see {SKIPPED_IMAGES})' if unreadable else ''}.\n"
        f"Wrote the model, processor and remote code to {output_dir} (best model in {output_dir / 'best'}), "
        f"{RESULTS}, {TRAINING_CONFIG} and {CONFUSION_MATRIX_IMAGE}."
    )
    return results


if __name__ == "__main__":
    main()
