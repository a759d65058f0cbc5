"""Evaluate any GReFEL model folder or Hub id on a FER dataset split, through the Auto classes.

    python scripts/evaluate_model.py --model outputs/synthetic-default --dataset synthetic --split validation
    python scripts/evaluate_model.py --model your-name/grefel-rafdb --dataset rafdb --data_dir data/RAF-DB/basic --split test

Reports accuracy, balanced accuracy, macro-F1, per-class recall, ECE and the confusion matrix for the primary
prediction and for the geometry-corrected one, with how many images were scored and which could not be read, and
writes them to --output_dir (eval_results.json, confusion_matrix.png/json, skipped_images.json).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from transformers import AutoImageProcessor, AutoModelForImageClassification

from emotionnet.data import SafeImageLoader, describe_skipped, load_fer_dataset, with_raw_images
from emotionnet.evaluation import evaluate_model
from emotionnet.run_folder import EVAL_RESULTS, SKIPPED_IMAGES, RunFolder
from emotionnet.training import DEFAULT_SEED, EvalCollator


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="A model folder or Hub id (loaded with trust_remote_code).")
    parser.add_argument("--revision", default=None, help="Hub branch, tag or commit of --model.")
    parser.add_argument("--dataset", required=True,
                        help="ferplus, rafdb, fer2013, imagefolder, synthetic, a Hub dataset id or a load_from_disk path.")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--split", default="validation")
    parser.add_argument("--image_column", default="image")
    parser.add_argument("--label_column", default="label")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--max_samples", type=int, default=None)
    parser.add_argument("--output_dir", default=None, help="Default: <model folder>/eval_<dataset>_<split>.")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help="Seed of generated splits (synthetic, carved validation); as in training.")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch_size must be at least 1, got {args.batch_size}.")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    model = AutoModelForImageClassification.from_pretrained(args.model, revision=args.revision, trust_remote_code=True)
    processor = AutoImageProcessor.from_pretrained(args.model, revision=args.revision, trust_remote_code=True)
    model.eval().to("cuda" if torch.cuda.is_available() else "cpu")
    label_names = [model.config.id2label[i] for i in range(model.config.num_labels)]

    data = load_fer_dataset(args.dataset, data_dir=args.data_dir, num_classes=len(label_names),
                            image_column=args.image_column, label_column=args.label_column, seed=args.seed)
    if args.split not in data:
        raise SystemExit(f"--split {args.split}: dataset {args.dataset} has splits {sorted(data)}; pick one of them.")
    split = with_raw_images(data[args.split])
    if split.features["label"].names != label_names:
        raise SystemExit(
            f"--model {args.model} predicts {label_names} but the dataset's labels are "
            f"{split.features['label'].names}; pass the matching --num_classes when loading or use a matching model."
        )
    if args.max_samples:
        split = split.select(range(min(args.max_samples, len(split))))
    loader = DataLoader(split, batch_size=args.batch_size, collate_fn=EvalCollator(SafeImageLoader(), processor))
    try:
        metrics = evaluate_model(model, loader, label_names=label_names)
    except ValueError as err:  # nothing readable: the message names the files
        raise SystemExit(f"--dataset {args.dataset} --split {args.split}: {err}") from None

    if args.output_dir:
        output_dir = Path(args.output_dir)
    elif Path(args.model).is_dir():
        output_dir = Path(args.model) / f"eval_{Path(args.dataset).name}_{args.split}"
    else:
        output_dir = Path("outputs") / f"eval_{args.model.replace('/', '--')}_{Path(args.dataset).name}_{args.split}"
    matrix = metrics.pop("eval_confusion_matrix")
    metrics.pop("eval_corrected_confusion_matrix", None)
    skipped = metrics.pop("eval_skipped")
    results = {"model": args.model, "dataset": args.dataset, "split": args.split, **metrics}
    folder = RunFolder(output_dir)
    folder.write(EVAL_RESULTS, results)
    folder.write_confusion_matrix(matrix, label_names, title=f"{args.model} on {args.dataset} ({args.split})")
    if skipped:
        folder.write(SKIPPED_IMAGES, skipped)
    summary = {k: round(v, 4) if isinstance(v, float) else v for k, v in results.items() if isinstance(v, int | float)}
    print(json.dumps(summary, indent=2))
    print(f"Scored {metrics['eval_samples']} of {len(split)} {args.split} images.")
    if skipped:
        unreadable = describe_skipped([(entry["image"], entry["reason"]) for entry in skipped])
        print(f"Skipped {unreadable}; all listed in {folder / SKIPPED_IMAGES}.")
    print(f"Wrote {folder / EVAL_RESULTS} and the confusion matrix beside it.")
    return results


if __name__ == "__main__":
    main()
