"""Publish a trained EmotionNet model to the Hugging Face Hub, with a generated model card, and optionally its demo Space.

    # Look at exactly what would be uploaded (written to outputs/ferplus/hub_upload), upload nothing:
    python scripts/push_to_hub.py outputs/ferplus --repo_id me/grefel-ferplus --dry_run

    # Upload (token from HF_TOKEN or `hf auth login`), to a private repo, on branch "v1", plus the Gradio demo:
    python scripts/push_to_hub.py outputs/ferplus --repo_id me/grefel-ferplus --private --revision v1 \
        --space me/grefel-demo

Everything happens in `emotionnet.hub`; this script parses arguments and reports errors.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from emotionnet.hub import HubPublishError, publish
from emotionnet.model_card import DEFAULT_LICENSE

DEFAULT_SPACE_DIR = Path(__file__).resolve().parent.parent / "space"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output_dir", type=Path, help="Training output folder (scripts/train.py --output_dir).")
    parser.add_argument("--repo_id", required=True, help="Hub model id, 'namespace/name'.")
    parser.add_argument("--private", action="store_true", help="Create the repositories private.")
    parser.add_argument("--revision", default=None, help="Branch to upload to; created from main when missing.")
    parser.add_argument("--commit_message", default=None, help="Commit message of the model upload.")
    parser.add_argument("--base_model", default=None, help="Hub id of the checkpoint this model was converted from.")
    parser.add_argument("--license", default=DEFAULT_LICENSE, help="Licence identifier for the model card.")
    parser.add_argument(
        "--dataset_id",
        action="append",
        default=None,
        help="Hub dataset id for the card's `datasets` metadata (repeatable); default: the run's dataset name.",
    )
    parser.add_argument("--space", default=None, help="Also publish the Gradio demo Space under this id.")
    parser.add_argument("--space_dir", type=Path, default=DEFAULT_SPACE_DIR, help="Source folder of the Space.")
    parser.add_argument("--dry_run", action="store_true", help="Write the upload folder and upload nothing.")
    parser.add_argument(
        "--dry_run_dir",
        type=Path,
        default=None,
        help="Where --dry_run writes the folder (default OUTPUT_DIR/hub_upload).",
    )
    parser.add_argument("--overwrite", action="store_true", help="Replace a non-empty --dry_run_dir.")
    args = parser.parse_args(argv)
    if args.dry_run_dir is not None and not args.dry_run:
        parser.error("--dry_run_dir only applies with --dry_run.")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the publish; return the exit status (0 on success, 1 with a one-paragraph error on stderr)."""
    args = parse_args(argv)
    try:
        publish(
            args.output_dir,
            args.repo_id,
            space_id=args.space,
            space_dir=args.space_dir,
            private=args.private,
            revision=args.revision,
            commit_message=args.commit_message,
            base_model=args.base_model,
            license=args.license,
            dataset_ids=args.dataset_id,
            dry_run=args.dry_run,
            dry_run_dir=args.dry_run_dir,
            overwrite=args.overwrite,
        )
    except HubPublishError as err:
        print(f"push_to_hub: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
