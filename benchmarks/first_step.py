"""First-step probe: how far does one AdamW step of each part of GReFEL move its predictions, at initialisation?

    python benchmarks/first_step.py                                  # the cases below, minutes on 2 CPU cores
    python benchmarks/first_step.py --cases tiny tiny_fusion_768 --lr 1e-3 --output /tmp/first_step.json

At its first step AdamW moves every parameter by lr * sign(gradient) (the bias-corrected moments cancel; eps aside),
whatever the gradient's size, so a layer's output moves by about lr * ||input||_1: in proportion to its fan-in. The
probe takes one batch of synthetic faces (every class equally, `make_synthetic_faces(seed=0)`), the GReFEL loss
gradient at initialisation (train mode, trust 0), applies that step to one module group at a time (then to all of
them) and reports how far the predictions move: the batch mean of KL(before || after) and the largest change of the
batch-mean predicted distribution (a swing of the predicted class prior). Dropout and drop-path draw the same masks before and after (the generator is reseeded).

It also reports what the head passes back to the trunk: the loss gradient at the embedding e (its norm over the batch,
and the share of it that differs between images) beside e's RMS.

Cases: `tiny` (the preset), `tiny_fusion_768` (the tiny preset with the paper's 768-wide, 2-block, 8-head fusion
ViT: the learning benchmark's rung that stays on the ln C plateau), `tiny_paper_head` and `tiny_paper_head_no_bn`
(the tiny preset with the paper's primary head, 384-192-96 with dropout 0.5, with and without its BatchNorms: rungs
that stay on the plateau too) and `paper` (the paper size at 112 px).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT)] + [p for p in sys.path if p not in ("", str(ROOT / "benchmarks"))]

from emotionnet.run_folder import write_json_atomic  # noqa: E402
from emotionnet.synthetic import make_synthetic_faces  # noqa: E402
from modeling_grefel import GReFELConfig, GReFELForImageClassification, GReFELImageProcessor  # noqa: E402

CASES = {
    "tiny": ("tiny", {}),
    "tiny_fusion_768": ("tiny", {"hidden_size": 768, "fusion_num_heads": 8, "fusion_depth": 2}),
    "tiny_paper_head": ("tiny", {"head_hidden_sizes": [384, 192, 96]}),
    "tiny_paper_head_no_bn": ("tiny", {"head_hidden_sizes": [384, 192, 96], "head_batch_norm": False}),
    "paper": ("paper", {"image_size": 112}),
}


def module_group(name: str) -> str:
    """`grefel.fusion.blocks.0.mlp.fc1.weight` -> `fusion.blocks`; `grefel.ir_back...` -> `ir_back`; head by part."""
    parts = name.split(".")
    if parts[0] == "grefel":
        return ".".join(parts[1:3]) if parts[1] == "fusion" else parts[1]
    return ".".join(parts[:2])


def _predictions(model: GReFELForImageClassification, pixel_values: torch.Tensor, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)  # the same dropout and drop-path masks on every call
    return model(pixel_values=pixel_values).logits.log_softmax(-1)


def first_step_shift(config: GReFELConfig, batch_size: int = 64, lr: float = 1e-3, seed: int = 0) -> dict:
    """{"groups": {group: {"kl", "prior_shift"}}, "all": {...}} for one sign step of size `lr` from initialisation."""
    torch.manual_seed(seed)
    model = GReFELForImageClassification(config).train()
    processor = GReFELImageProcessor.from_config(config)
    per_class = -(-batch_size // config.num_labels)
    faces = make_synthetic_faces(per_class, num_classes=config.num_labels, seed=0, eval_per_class=1)["train"]
    examples = faces.select(range(batch_size))  # every class in turn: the split interleaves them
    pixel_values = processor(list(examples["image"]), return_tensors="pt")["pixel_values"]
    labels = torch.tensor(list(examples["label"]))

    captured = {}

    def keep_embedding_grad(module, args):
        args[0].retain_grad()
        captured["embeddings"] = args[0]

    hook = model.grefel_head.register_forward_pre_hook(keep_embedding_grad)
    torch.manual_seed(seed + 1)
    model(pixel_values=pixel_values, labels=labels).loss.backward()
    hook.remove()
    embeddings, gradient = captured["embeddings"].detach(), captured["embeddings"].grad
    steps = {name: -lr * p.grad.sign() for name, p in model.named_parameters() if p.grad is not None}
    groups: dict[str, list[str]] = {}
    for name in steps:
        groups.setdefault(module_group(name), []).append(name)
    groups["all"] = list(steps)

    parameters = dict(model.named_parameters())
    with torch.no_grad():
        before = _predictions(model, pixel_values, seed + 2)
        report = {}
        for group, names in groups.items():
            saved = {name: parameters[name].detach().clone() for name in names}
            for name in names:
                parameters[name].add_(steps[name])
            after = _predictions(model, pixel_values, seed + 2)
            for name in names:
                parameters[name].copy_(saved[name])
            kl = (before.exp() * (before - after)).sum(-1).mean().item()
            prior_shift = (after.exp().mean(0) - before.exp().mean(0)).abs().max().item()
            report[group] = {"kl": round(kl, 5), "prior_shift": round(prior_shift, 4)}
    # What the head passes back to the trunk: the loss gradient at the embedding e (all images together), and the
    # share of it that differs between images (the part that can separate classes), beside e's own RMS.
    between = (gradient - gradient.mean(0)).norm() / gradient.norm().clamp_min(1e-30)
    embedding = {"rms": round(embeddings.pow(2).mean().sqrt().item(), 4),
                 "gradient_norm": round(gradient.norm().item(), 5), "gradient_between_images": round(between.item(), 4)}
    return {"groups": {k: v for k, v in report.items() if k != "all"}, "all": report["all"], "embedding": embedding}


def markdown(results: dict) -> str:
    names = list(results)
    groups = sorted({g for r in results.values() for g in r["groups"]})
    lines = ["| module group | " + " | ".join(f"{n}: KL / prior shift" for n in names) + " |",
             "|---" * (len(names) + 1) + "|"]
    for group in ["all", *groups]:
        cells = []
        for n in names:
            entry = results[n]["all"] if group == "all" else results[n]["groups"].get(group)
            cells.append("-" if entry is None else f"{entry['kl']:.4f} / {entry['prior_shift']:.3f}")
        lines.append(f"| {'**all**' if group == 'all' else group} | " + " | ".join(cells) + " |")
    cells = [f"{e['rms']:.3f} / {e['gradient_norm']:.4f}" for e in (results[n]["embedding"] for n in names)]
    lines.append("| *embedding e: RMS / loss gradient norm* | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--lr", type=float, default=1e-3, help="Step size; default the synthetic recipe's peak lr.")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None, help="JSON file to write (default: print only).")
    args = parser.parse_args(argv)

    results = {}
    for case in args.cases:
        preset, overrides = CASES[case]
        config = (GReFELConfig.tiny(num_labels=8, **overrides) if preset == "tiny"
                  else GReFELConfig(num_labels=8, **overrides))
        results[case] = {"config_overrides": overrides, "preset": preset,
                         **first_step_shift(config, args.batch_size, args.lr, args.seed)}
        print(case, json.dumps(results[case]["all"]), flush=True)
    report = {"date": time.strftime("%Y-%m-%d"), "lr": args.lr, "batch_size": args.batch_size, "seed": args.seed,
              "torch": torch.__version__, "cases": results}
    print(markdown(results))
    if args.output:
        write_json_atomic(Path(args.output), report)
    return report


if __name__ == "__main__":
    main()
