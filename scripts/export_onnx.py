"""Export a GReFEL model folder or Hub id to ONNX for ONNX Runtime, optionally with a statically quantised int8 twin.

    python scripts/export_onnx.py --model outputs/synthetic-default --output_dir outputs/synthetic-default/onnx
    python scripts/export_onnx.py --model outputs/synthetic-default --output_dir onnx --int8 --calibration_images 64

Writes model.onnx (input `pixel_values` as the model's image processor makes them, output `logits`, any batch size)
and, with --int8, model_int8.onnx calibrated on synthetic faces; then prints each one's top-1 agreement with the eager
fp32 model on synthetic faces it was not calibrated on. Needs the `onnx` extra: pip install 'emotionnet[onnx]'.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from transformers import AutoImageProcessor, AutoModelForImageClassification

from emotionnet.onnx_export import (
    CALIBRATION_IMAGES,
    INT8_TWINS,
    OnnxImageClassifier,
    compare_with_eager,
    export_for_onnx_runtime,
    onnx_session,
    require_onnxruntime,
    synthetic_calibration_pixel_values,
)

# Agreement is checked on faces drawn with another seed than the calibration faces (seed 1).
AGREEMENT_SEED = 2


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="A model folder or Hub id (loaded with trust_remote_code).")
    parser.add_argument("--revision", default=None, help="Hub branch, tag or commit of --model.")
    parser.add_argument("--output_dir", required=True, help="Where model.onnx (and model_int8.onnx) are written.")
    parser.add_argument("--int8", action="store_true", help="Also write model_int8.onnx (static int8, QDQ).")
    parser.add_argument("--int8_operators", nargs="+", choices=sorted(INT8_TWINS), default=["all"],
                        help="With --int8, which twins: 'all' (every Conv/MatMul/Gemm in int8, model_int8.onnx, the "
                             "fastest) and/or 'conv' (convolutions only, model_int8_conv.onnx, closer to fp32).")
    parser.add_argument("--calibration_images", type=int, default=CALIBRATION_IMAGES,
                        help="Synthetic faces the int8 activation ranges are calibrated on.")
    parser.add_argument("--agreement_images", type=int, default=128,
                        help="Synthetic faces the top-1 agreement with eager fp32 is measured on.")
    args = parser.parse_args(argv)
    if args.calibration_images < 1:
        parser.error(f"--calibration_images must be at least 1, got {args.calibration_images}.")
    if args.agreement_images < 1:
        parser.error(f"--agreement_images must be at least 1, got {args.agreement_images}.")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    try:
        require_onnxruntime()
    except ImportError as err:
        raise SystemExit(str(err)) from None
    model = AutoModelForImageClassification.from_pretrained(args.model, revision=args.revision, trust_remote_code=True)
    processor = AutoImageProcessor.from_pretrained(args.model, revision=args.revision, trust_remote_code=True)
    model.eval()

    print(f"Exporting {args.model} to {args.output_dir}" + (" (fp32 and int8)" if args.int8 else ""), flush=True)
    exported = export_for_onnx_runtime(model, processor, args.output_dir, int8=args.int8 and args.int8_operators,
                                       calibration_images=args.calibration_images)
    faces = synthetic_calibration_pixel_values(processor, args.agreement_images, seed=AGREEMENT_SEED)
    results = {"model": args.model, "export_s": round(exported["export_s"], 2)}
    if "quantize_s" in exported:
        results.update(quantize_s=round(exported["quantize_s"], 2), calibration_images=args.calibration_images)
    for name, path in exported["paths"].items():
        with torch.no_grad():
            agreement = compare_with_eager(model, OnnxImageClassifier(onnx_session(path)), faces)
        results[name] = {"path": str(path), **{k: round(v, 4) if isinstance(v, float) else v
                                                for k, v in agreement.items()}}
    print(json.dumps(results, indent=2))
    for name, path in exported["paths"].items():
        print(f"Wrote {path} ({Path(path).stat().st_size / 2**20:.1f} MiB): top-1 agreement with eager fp32 "
              f"{results[name]['top1_agreement']:.1%} on {results[name]['images']} synthetic faces.")
    return results


if __name__ == "__main__":
    main()
