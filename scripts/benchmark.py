"""Measure GReFEL's size and speed on this machine; every figure in README.md comes from here.

    python scripts/benchmark.py                       # all sections, results in benchmarks/results.json
    python scripts/benchmark.py --sections size train --device cuda

Sections:
  size      parameters and FLOPs (torch.utils.flop_counter, 2 FLOPs per multiply-add) of the paper-size network at
            1x3x224x224, beside the POSTER++ figures of GREFEL_SPEC.md.
  train     training throughput (images/s) of the tiny and paper-size configs: augmentation on the device, forward,
            backward and an Adam step, median of timed steps after warm-up.
  latency   per-photo latency of the face pipeline (detection + classification) for the tiny and paper-size models.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# Import from the repository root (runs from a checkout without installing), never from scripts/, where
# evaluate.py would shadow the `evaluate` library.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "scripts"]

from modeling_grefel import GReFELConfig, GReFELForImageClassification  # noqa: E402

# POSTER++ figures quoted in GREFEL_SPEC.md: thop (MACs, hooked modules only) and torch.utils.flop_counter on the
# official code (its modules include the frozen landmark network and some modules its forward never uses).
POSTER_THOP = {"params_m": 43.7, "gmacs": 8.4}
POSTER_FLOP_COUNTER = {"params_m_all_modules": 58.3, "gflops": 17.2}


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def size_section(device: str) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    model = GReFELForImageClassification(GReFELConfig.paper(num_labels=7)).eval().to(device)
    trunk = model.grefel
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        trunk(torch.randn(1, 3, 224, 224, device=device))
    trunk_flops = counter.get_total_flops()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 3, 224, 224, device=device))
    result = {
        "trunk_params_m": count(trunk) / 1e6,
        "landmark_backbone_params_m": count(trunk.face_landback) / 1e6,
        "landmark_head_unused_params_m": count(trunk.face_landback.output_layer) / 1e6,
        "grefel_head_params_m": count(model.grefel_head) / 1e6,
        "total_params_m": count(model) / 1e6,
        "trainable_params_m": sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6,
        "trunk_gflops": trunk_flops / 1e9,
        "total_gflops": counter.get_total_flops() / 1e9,
        "poster_pp_thop": POSTER_THOP,
        "poster_pp_flop_counter": POSTER_FLOP_COUNTER,
    }
    result["trunk_params_vs_poster_thop"] = result["trunk_params_m"] / POSTER_THOP["params_m"]
    result["trunk_flops_vs_poster_flop_counter"] = result["trunk_gflops"] / POSTER_FLOP_COUNTER["gflops"]
    return result


def train_throughput(preset: str, batch_size: int, device: str, steps: int, warmup: int) -> dict:
    from emotionnet.augment import BatchAugment

    torch.manual_seed(0)
    config = getattr(GReFELConfig, preset)(num_labels=8)
    model = GReFELForImageClassification(config).train().to(device)
    model.set_trust(1, 2)
    augment = BatchAugment(image_size=config.image_size).to(device)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    side = augment.input_size
    images = torch.randint(0, 256, (batch_size, 3, side, side), dtype=torch.uint8, device=device)
    labels = torch.randint(0, 8, (batch_size,), device=device)
    times = []
    for step in range(warmup + steps):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = model(pixel_values=augment(images), labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if device == "cuda":
            torch.cuda.synchronize()
        if step >= warmup:
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {"preset": preset, "batch_size": batch_size, "image_size": config.image_size, "steps": steps,
            "median_step_s": median, "images_per_s": batch_size / median}


def latency_section(device: str, repeats: int) -> dict:
    from PIL import Image

    from modeling_grefel import GReFELImageProcessor
    from modeling_grefel.pipeline_grefel import FacialExpressionPipeline

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from face_images import one_face_photo  # the public-domain astronaut photo, built offline

    photo = one_face_photo()
    if not isinstance(photo, Image.Image):
        photo = Image.fromarray(photo)
    results = {}
    for preset in ("tiny", "paper"):
        config = getattr(GReFELConfig, preset)()
        model = GReFELForImageClassification(config).eval().to(device)
        processor = GReFELImageProcessor(size={"height": config.image_size, "width": config.image_size})
        pipe = FacialExpressionPipeline(model=model, image_processor=processor, device=device)
        pipe(photo)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            out = pipe(photo)
            times.append(time.perf_counter() - start)
        results[preset] = {"median_ms": 1000 * statistics.median(times), "faces": len(out["faces"]),
                           "photo_size": list(photo.size)}
    return results


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", nargs="+", default=["size", "train", "latency"],
                        choices=["size", "train", "latency"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=5, help="Timed training steps per config.")
    parser.add_argument("--tiny_batch_size", type=int, default=32)
    parser.add_argument("--paper_batch_size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5, help="Timed pipeline calls per model.")
    parser.add_argument("--output", default="benchmarks/results.json")
    args = parser.parse_args(argv)

    results = {"machine": {"platform": platform.platform(), "python": platform.python_version(),
                           "torch": torch.__version__, "device": args.device, "threads": torch.get_num_threads(),
                           "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None}}
    if "size" in args.sections:
        results["size"] = size_section(args.device)
    if "train" in args.sections:
        results["train"] = [
            train_throughput("tiny", args.tiny_batch_size, args.device, args.steps, warmup=2),
            train_throughput("paper", args.paper_batch_size, args.device, args.steps, warmup=1),
        ]
    if "latency" in args.sections:
        results["latency"] = latency_section(args.device, args.repeats)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
