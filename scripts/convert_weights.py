"""Convert official IR-50 / MobileFaceNet / POSTER++ weights into a GReFEL model folder.

    python scripts/convert_weights.py --ir50 pretrain/ir50.pth \
        --mobilefacenet pretrain/mobilefacenet_model_best.pth.tar --num_labels 7 --output_dir converted/grefel-ms1m
    python scripts/convert_weights.py --poster_checkpoint rafdb_best.pth --num_labels 7 --output_dir converted/rafdb

The folder loads with AutoModelForImageClassification.from_pretrained(dir, trust_remote_code=True). The GReFEL
head is freshly initialised: fine-tune before use. conversion_report.json says what came from where and what was
dropped on purpose. The work is done by `emotionnet.convert`.
"""

from __future__ import annotations

import argparse
import sys

from emotionnet.convert import ConversionError, convert_weights, summarize


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ir50", default=None, help="IR-50 (MS-Celeb-1M) state dict, body.N or body1/2/3 layout.")
    parser.add_argument("--mobilefacenet", default=None, help="mobilefacenet_model_best.pth.tar (GDC, 68 landmarks).")
    parser.add_argument("--poster_checkpoint", default=None,
                        help="A whole POSTER++ checkpoint; fills the trunk (then --ir50/--mobilefacenet are optional "
                             "and, if given, replace its backbones).")
    parser.add_argument("--num_labels", type=int, choices=(7, 8), required=True,
                        help="7 (no contempt) or 8 canonical expression classes.")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--seed", type=int, default=0, help="Seed of the fresh initialisation of the GReFEL head.")
    args = parser.parse_args(argv)
    if args.poster_checkpoint is None and (args.ir50 is None or args.mobilefacenet is None):
        parser.error("pass --poster_checkpoint, or both --ir50 and --mobilefacenet.")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        report = convert_weights(
            output_dir=args.output_dir, ir50=args.ir50, mobilefacenet=args.mobilefacenet,
            poster_checkpoint=args.poster_checkpoint, num_labels=args.num_labels, seed=args.seed,
        )
    except ConversionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(summarize(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
