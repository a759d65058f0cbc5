"""The Hub model card of a trained EmotionNet (GReFEL) model, written from a training run's own result files.

Every number on the card comes from the training output folder (`all_results.json`, `confusion_matrix.json`,
`training_config.json`, `config.json`, the safetensors headers); nothing is typed in by hand. A run on synthetic
data gets a warning at the very top of the card.

Example:
    >>> card = build_model_card("outputs/ferplus", "me/grefel-ferplus")  # doctest: +SKIP
    >>> card.save("outputs/ferplus/hub_upload/README.md")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import re
import shlex
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .run_folder import CONFUSION_MATRIX, CONFUSION_MATRIX_IMAGE, RESULTS, TRAINING_CONFIG, RunFolder

SYNTHETIC_DATASET = "synthetic-faces"
DEFAULT_LICENSE = "apache-2.0"
DEFAULT_TAGS = (
    "facial-expression-recognition",
    "emotion-recognition",
    "grefel",
    "vision",
    "image-classification",
)

# The metrics the model-index reports, as (key suffix in all_results.json, Hub metric type, display name, args).
# Hub metric types follow the `evaluate` metric ids, so macro-F1 is "f1" with average=macro.
MODEL_INDEX_METRICS: tuple[tuple[str, str, str, dict[str, str] | None], ...] = (
    ("accuracy", "accuracy", "Accuracy", None),
    ("balanced_accuracy", "balanced_accuracy", "Balanced accuracy", None),
    ("macro_f1", "f1", "Macro F1", {"average": "macro"}),
)
# Prefixes of all_results.json keys that hold evaluation metrics, and the split each means when the file does not
# name it in "<prefix>_split" (transformers' run_* scripts use eval_ for validation and test_ for the test set).
SPLIT_PREFIXES = {"eval": "validation", "test": "test"}

DATASET_DISPLAY_NAMES = {
    "ferplus": "FERPlus",
    "fer2013": "FER2013",
    "rafdb": "RAF-DB",
    "raf-db": "RAF-DB",
    "affectnet": "AffectNet",
    "affectnet7": "AffectNet-7",
    "affectnet8": "AffectNet-8",
    SYNTHETIC_DATASET: "Synthetic faces (generated)",
}

# What each canonical class means on the card (order and names from modeling_grefel.configuration_grefel.EXPRESSIONS).
CLASS_DESCRIPTIONS = {
    "neutral": "no marked expression",
    "happiness": "smile, raised cheeks",
    "surprise": "raised brows, widened eyes, open mouth",
    "sadness": "lowered lip corners, raised inner brows",
    "anger": "lowered, drawn-together brows, pressed lips",
    "disgust": "wrinkled nose, raised upper lip",
    "fear": "raised, drawn-together brows, stretched lips",
    "contempt": "one-sided lip-corner raise (8-class models only)",
}

GREFEL_BIBTEX = """@inproceedings{wasi2024grefel,
  title         = {{GReFEL}: Geometry-Aware Reliable Facial Expression Learning under Bias and Imbalanced Data Distribution},
  author        = {Wasi, Azmine Toushik and Rafi, Taki Hasan and Islam, Raima and {\\v{S}}erbetar, Karlo and Chae, Dong-Kyu},
  booktitle     = {Proceedings of the Asian Conference on Computer Vision (ACCV)},
  year          = {2024},
  eprint        = {2410.15927},
  archivePrefix = {arXiv},
  primaryClass  = {cs.CV},
  url           = {https://arxiv.org/abs/2410.15927}
}"""

# Argument names whose values must never reach a public card or upload (a Hub token passed to training, say).
_SECRET_KEY = re.compile(r"(^|_)(token|secret|password|api_?key)$", re.IGNORECASE)
_SECRET_VALUE = re.compile(r"\bhf_[A-Za-z0-9]{8,}")


@dataclass(frozen=True)
class TrainingRun:
    """The files of one training output folder that the card is written from.

    Attributes:
        output_dir: The training output folder.
        model_config: `config.json` of the final model.
        results: `all_results.json`, or an empty dict when the run has none (a converted checkpoint, say).
        training_config: `training_config.json` with secrets redacted, or an empty dict when absent.
        confusion_matrix: `confusion_matrix.json` (`labels`, `matrix`), or None when absent.
        has_confusion_matrix_image: Whether `confusion_matrix.png` exists.
        num_parameters: Parameters in the safetensors weights, counted from their headers.
    """

    output_dir: Path
    model_config: dict[str, Any]
    results: dict[str, Any] = field(default_factory=dict)
    training_config: dict[str, Any] = field(default_factory=dict)
    confusion_matrix: dict[str, Any] | None = None
    has_confusion_matrix_image: bool = False
    num_parameters: int | None = None

    @property
    def dataset(self) -> str | None:
        """The dataset name the run evaluated on (all_results.json "dataset"), or None."""
        return self.results.get("dataset")

    @property
    def is_synthetic(self) -> bool:
        """Whether the run trained and evaluated on synthetic data (its numbers say nothing about real faces)."""
        return bool(self.results.get("synthetic")) or self.dataset == SYNTHETIC_DATASET

    @property
    def has_evaluation(self) -> bool:
        """Whether all_results.json holds evaluation metrics (an interrupted or converted run has none)."""
        return bool(evaluated_splits(self.results))

    @property
    def labels(self) -> list[str]:
        """Class names in id order, from the model's `id2label`."""
        id2label = self.model_config.get("id2label", {})
        return [id2label[key] for key in sorted(id2label, key=int)]


def redact_secrets(value: Any, key: str = "") -> Any:
    """Copy `value` with token-like argument values and strings replaced by "<redacted>".

    Training configs record every argument, so a Hub token given to training would otherwise be published.
    """
    if isinstance(value, Mapping):
        return {k: redact_secrets(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_secrets(v, key) for v in value]
    if key and _SECRET_KEY.search(key) and value not in (None, "", False):
        return "<redacted>"
    if isinstance(value, str):
        return _SECRET_VALUE.sub("<redacted>", value)
    return value


def count_safetensors_parameters(paths: Sequence[Path]) -> int:
    """Number of tensor elements in safetensors files, read from their JSON headers (no framework needed)."""
    total = 0
    for path in paths:
        with open(path, "rb") as handle:
            # safetensors layout: 8-byte little-endian header length, then a JSON header of name -> dtype/shape/offsets.
            (header_length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(header_length))
        total += sum(math.prod(info["shape"]) for name, info in header.items() if name != "__metadata__")
    return total


def load_training_run(output_dir: str | Path, weight_files: Sequence[Path] = ()) -> TrainingRun:
    """Read the files of a training output folder that the card needs.

    Args:
        output_dir: The training output folder (see the training-output contract).
        weight_files: The safetensors files of the model, to count parameters; none skips the count.

    Raises:
        FileNotFoundError: `config.json` is missing.
        ValueError: one of the JSON files does not parse.
    """
    output_dir = Path(output_dir)
    folder = RunFolder(output_dir)
    confusion = folder.read(CONFUSION_MATRIX)
    if confusion is not None:
        labels, matrix = confusion.get("labels"), confusion.get("matrix")
        if not isinstance(labels, list) or not isinstance(matrix, list) or len(matrix) != len(labels):
            raise ValueError(
                f"{folder / CONFUSION_MATRIX}: expected {{'labels': [...], 'matrix': [[...]]}} with one "
                "row per label; re-run the evaluation that writes it."
            )
    return TrainingRun(
        output_dir=output_dir,
        model_config=folder.read("config.json", required=True),
        results=folder.read(RESULTS) or {},
        training_config=redact_secrets(folder.read(TRAINING_CONFIG) or {}),
        confusion_matrix=confusion,
        has_confusion_matrix_image=(folder / CONFUSION_MATRIX_IMAGE).is_file(),
        num_parameters=count_safetensors_parameters(weight_files) if weight_files else None,
    )


def dataset_display_name(dataset: str) -> str:
    """A readable dataset name for the card ("ferplus" -> "FERPlus"); unknown names pass through."""
    return DATASET_DISPLAY_NAMES.get(dataset.lower(), dataset)


def evaluated_splits(results: Mapping[str, Any]) -> dict[str, str]:
    """Map each metric prefix in `results` that has model-index metrics (eval, test) to the split it measured."""
    splits = {}
    for prefix, default_split in SPLIT_PREFIXES.items():
        if any(f"{prefix}_{suffix}" in results for suffix, *_ in MODEL_INDEX_METRICS):
            splits[prefix] = str(results.get(f"{prefix}_split") or default_split)
    return splits


def eval_results_from_run(run: TrainingRun, *, dataset_id: str | None = None) -> list[EvalResult]:
    """The model-index entries of a run: accuracy, balanced accuracy and macro-F1 per evaluated split.

    Values are copied unrounded from all_results.json so the card and the file agree exactly.

    Args:
        run: The training run.
        dataset_id: The dataset's Hub id for the entries' `dataset.type`; defaults to the run's dataset name.
    """
    if not run.dataset:
        return []
    entries = []
    for prefix, split in evaluated_splits(run.results).items():
        for suffix, metric_type, metric_name, metric_args in MODEL_INDEX_METRICS:
            key = f"{prefix}_{suffix}"
            if key not in run.results:
                continue
            entries.append(
                EvalResult(
                    task_type="image-classification",
                    task_name="Facial expression recognition",
                    dataset_type=dataset_id or run.dataset,
                    dataset_name=dataset_display_name(run.dataset),
                    dataset_split=split,
                    metric_type=metric_type,
                    metric_name=metric_name,
                    metric_value=run.results[key],
                    metric_args=metric_args,
                )
            )
    return entries


# Arguments of scripts/train.py that shape the evaluation data, and the scripts/evaluate_model.py flag (and its default)
# that must repeat them for the numbers to reproduce: same columns, same truncation of the validation split. A value
# equal to the evaluation script's default is left out (tests/test_hub.py checks these defaults against its parser).
_EVALUATION_ARGUMENTS = (
    ("image_column", "--image_column", "image"),
    ("label_column", "--label_column", "label"),
    ("max_eval_samples", "--max_samples", None),
)


def evaluation_commands(run: TrainingRun, repo_id: str, revision: str | None = None) -> list[str]:
    """The `scripts/evaluate_model.py` command lines that reproduce the card's numbers from the Hub weights.

    The dataset is named as training was given it (training_config.json "dataset", e.g. "synthetic"), falling back
    to all_results.json's name; the data options that change the evaluated samples are repeated. The training seed
    (which draws generated and carved-out splits) is always passed, so the command stays right whichever default the
    evaluation script has.
    """
    if not run.dataset:
        return []
    config = run.training_config
    data = ["--dataset", str(config.get("dataset") or run.dataset)]
    if config.get("data_dir"):
        data += ["--data_dir", str(config["data_dir"])]
    extra = ["--revision", revision] if revision else []
    if config.get("seed") is not None:
        extra += ["--seed", str(config["seed"])]
    for train_key, flag, default in _EVALUATION_ARGUMENTS:
        if config.get(train_key) not in (None, default):
            extra += [flag, str(config[train_key])]
    return [
        shlex.join(["python", "scripts/evaluate_model.py", "--model", repo_id, *data, "--split", split, *extra])
        for split in evaluated_splits(run.results).values()
    ]


def _percent(value: Any) -> str:
    return f"{100 * value:.2f}" if isinstance(value, int | float) and not isinstance(value, bool) else "-"


def _results_section(run: TrainingRun, repo_id: str, revision: str | None) -> str:
    if not run.dataset or not run.has_evaluation:
        held = "no `all_results.json`" if not run.results else "an `all_results.json` without evaluation metrics"
        return (
            f"## Evaluation\n\nThe training output holds {held}, so this card reports no evaluation "
            "numbers. Evaluate the model with `scripts/evaluate_model.py` before relying on it.\n"
        )
    lines = [
        "## Evaluation",
        "",
        f"Numbers from this run's `all_results.json` on **{dataset_display_name(run.dataset)}** (percent). "
        "*Primary* is the model's default prediction (the primary head, as in ARBEx); *geometry-corrected* "
        'blends it with the anchor-based label distribution (`config.inference_correction="geometric"`).',
        "",
        "| split | prediction | accuracy | balanced accuracy | macro-F1 | ECE |",
        "|---|---|---|---|---|---|",
    ]
    splits = evaluated_splits(run.results)
    for prefix, split in splits.items():
        for variant, label in ((prefix, "primary"), (f"{prefix}_corrected", "geometry-corrected")):
            values = [run.results.get(f"{variant}_{name}") for name in ("accuracy", "balanced_accuracy", "macro_f1")]
            if all(value is None for value in values):
                continue
            ece = run.results.get(f"{variant}_ece")
            ece_text = f"{ece:.4f}" if isinstance(ece, int | float) else "-"
            lines.append(f"| {split} | {label} | " + " | ".join(_percent(v) for v in values) + f" | {ece_text} |")
    for prefix, split in splits.items():
        recall = run.results.get(f"{prefix}_per_class_recall")
        if isinstance(recall, Mapping) and recall:
            lines += ["", f"Per-class recall on {split} (percent):", ""]
            lines.append("| " + " | ".join(recall) + " |")
            lines.append("|" + "---|" * len(recall))
            lines.append("| " + " | ".join(_percent(v) for v in recall.values()) + " |")
    commands = evaluation_commands(run, repo_id, revision)
    lines += [
        "",
        "Reproduce these numbers from the Hub weights with the EmotionNet repository's evaluation script:",
        "",
        "```bash",
        *commands,
        "```",
    ]
    if run.has_confusion_matrix_image or run.confusion_matrix:
        lines += ["", "### Confusion matrix", ""]
    if run.has_confusion_matrix_image:
        lines += [f"![Confusion matrix on {dataset_display_name(run.dataset)}]({CONFUSION_MATRIX_IMAGE})", ""]
    if run.confusion_matrix:
        labels = run.confusion_matrix.get("labels", [])
        matrix = run.confusion_matrix.get("matrix", [])
        lines += ["Rows are true classes, columns predicted classes (`confusion_matrix.json`):", ""]
        lines.append("| true \\ predicted | " + " | ".join(labels) + " |")
        lines.append("|---|" + "---|" * len(labels))
        lines += [
            f"| {label} | " + " | ".join(str(v) for v in row) + " |" for label, row in zip(labels, matrix, strict=True)
        ]
    return "\n".join(lines) + "\n"


def _training_section(run: TrainingRun) -> str:
    if not run.training_config:
        return "## Training\n\nThe training output holds no `training_config.json`; the recipe is not recorded.\n"
    config = run.training_config
    lines = ["## Training", ""]
    if config.get("recipe"):
        lines.append(f"Recipe: `{config['recipe']}`.")
    facts = []
    for key, label in (("epochs", "epochs"), ("global_step", "optimizer steps")):
        if run.results.get(key) is not None:
            facts.append(f"{run.results[key]} {label}")
    if run.results.get("train_runtime_s") is not None:
        facts.append(f"{run.results['train_runtime_s']:.0f} s of training")
    if facts:
        lines.append("The run took " + ", ".join(facts) + ".")
    if config.get("command"):
        lines += ["", "Exact command:", "", "```bash", str(config["command"]), "```"]
    lines += [
        "",
        "<details><summary>Every argument of the run (training_config.json)</summary>",
        "",
        "```json",
        json.dumps(config, indent=2, sort_keys=True, default=str),
        "```",
        "",
        "</details>",
    ]
    return "\n".join(lines) + "\n"


def _usage_section(repo_id: str, revision: str | None) -> str:
    revision_arg = f', revision="{revision}"' if revision else ""
    # The snippets pass the file path and let the processor read it (modeling_grefel/image_input_grefel.py): it applies
    # the EXIF orientation and scales 16-bit images, where `Image.open(path).convert("RGB")` clips 16-bit data.
    return f"""## How to use

The model code lives in this repository (`trust_remote_code=True`). It expects a cropped, roughly frontal face;
run a face detector first on whole photos.

```python
from transformers import pipeline

classifier = pipeline("image-classification", model="{repo_id}"{revision_arg}, trust_remote_code=True)
print(classifier("face.jpg", top_k=3))
```

With the processor and the model (the processor also reads a file path, bytes, a PIL image, an array or a tensor):

```python
import torch
from transformers import AutoImageProcessor, AutoModelForImageClassification

processor = AutoImageProcessor.from_pretrained("{repo_id}"{revision_arg}, trust_remote_code=True)
model = AutoModelForImageClassification.from_pretrained("{repo_id}"{revision_arg}, trust_remote_code=True).eval()

with torch.no_grad():
    probs = model(**processor(images="face.jpg", return_tensors="pt")).logits.softmax(-1)[0]
print({{model.config.id2label[i]: round(p.item(), 3) for i, p in enumerate(probs)}})
```
"""


def _intended_use_section(run: TrainingRun) -> str:
    rows = "\n".join(
        f"| {index} | {label} | {CLASS_DESCRIPTIONS.get(label, 'custom class')} |"
        for index, label in enumerate(run.labels)
    )
    return f"""## Classes

The model predicts {len(run.labels)} classes in EmotionNet's canonical order (the same ids in every dataset it is
trained on; 7-class models drop `contempt`):

| id | label | what it marks |
|---|---|---|
{rows}

## Intended use and limitations

- **What it is for**: research on facial expression recognition, and demos that show which *visible expression* a
  face displays. A predicted label describes facial muscle configuration, not what a person feels: expressions are
  culture-, context- and person-dependent and are often posed.
- **Not for**: decisions about people (hiring, policing, education, health, credit, border control), surveillance,
  lie or intent detection, or inferring emotions of people who have not agreed to it.
- **Bias**: public FER datasets over-represent some ages, skin tones and genders, and their labels come from a few
  annotators per image; accuracy differs between groups and on faces unlike the training data. Balanced accuracy
  and per-class recall are reported because the classes are imbalanced (disgust, fear and contempt are rare).
- **Input**: one cropped face per image. Whole photos, profile views, occlusions and low light degrade predictions.
- **Confidence**: GReFEL's reliability head measures how peaked its own distribution is; a flat distribution means
  "uncertain", not a weak vote for the top class.
- **Dataset licences**: FER datasets carry their own terms (RAF-DB and AffectNet are for non-commercial research);
  weights trained on them inherit those restrictions whatever this card's licence field says.
"""


def _warning(run: TrainingRun) -> str:
    if not run.is_synthetic:
        return ""
    return (
        "> [!WARNING]\n"
        "> **Trained and evaluated on synthetic data.** This model was produced by a pipeline test on generated "
        "images, not on real faces. Its numbers below measure only whether the training pipeline runs; it does not "
        "recognise facial expressions. Do not use it for anything.\n\n"
    )


def build_model_card(
    run: TrainingRun | str | Path,
    repo_id: str,
    *,
    base_model: str | None = None,
    license: str = DEFAULT_LICENSE,
    dataset_ids: Sequence[str] | None = None,
    tags: Sequence[str] = (),
    revision: str | None = None,
) -> ModelCard:
    """Write the model card (README.md with YAML metadata) of a trained model.

    Args:
        run: A `TrainingRun`, or the training output folder to read one from.
        repo_id: The Hub model id the card describes ("namespace/name"); used in the snippets and commands.
        base_model: The Hub id of the checkpoint this model was converted or fine-tuned from, if any.
        license: The licence identifier for the metadata.
        dataset_ids: Hub dataset ids for the `datasets` metadata; defaults to the run's dataset name, and to none for a
            synthetic run (there is no such dataset on the Hub).
        tags: Extra tags after the default ones.
        revision: The branch the weights are uploaded to, put into the snippets when it is not the default branch.

    Returns:
        The card; `card.save(path)` writes it, `ModelCard.load(path)` parses it back.
    """
    if not isinstance(run, TrainingRun):
        run = load_training_run(run)
    if dataset_ids is None:
        dataset_ids = [] if run.is_synthetic or not run.dataset else [run.dataset]
    model_name = repo_id.split("/")[-1]
    all_tags = list(dict.fromkeys([*DEFAULT_TAGS, *tags, *(["synthetic-data"] if run.is_synthetic else [])]))
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-classification",
        license=license,
        tags=all_tags,
        datasets=list(dataset_ids) or None,
        base_model=base_model,
        metrics=[metric_type for _, metric_type, _, _ in MODEL_INDEX_METRICS],
        model_name=model_name,
        eval_results=eval_results_from_run(run, dataset_id=dataset_ids[0] if dataset_ids else None) or None,
    )
    image_size = run.model_config.get("image_size")
    facts = [f"{len(run.labels)} expression classes"]
    if image_size:
        facts.append(f"{image_size}x{image_size} RGB input")
    if run.num_parameters:
        facts.append(f"{run.num_parameters / 1e6:.2f}M parameters")
    origin = (
        f" It was converted or fine-tuned from [`{base_model}`](https://huggingface.co/{base_model})."
        if base_model
        else ""
    )
    intro = (
        f"# {model_name}\n\n"
        "A GReFEL facial expression recognition model (geometry-aware anchors and reliability balancing on a "
        "POSTER++-style window cross-attention ViT; Wasi et al., 2024, "
        f"[arXiv:2410.15927](https://arxiv.org/abs/2410.15927)), packaged for `transformers` by EmotionNet: "
        + ", ".join(facts)
        + f".{origin}\n"
    )
    body = "\n".join(
        [
            _warning(run) + intro,
            _results_section(run, repo_id, revision),
            _training_section(run),
            _usage_section(repo_id, revision),
            _intended_use_section(run),
            "## Citation\n\n```bibtex\n" + GREFEL_BIBTEX + "\n```\n",
        ]
    )
    # The metadata block is `ModelCardData.to_yaml()` in the `---` fence that `RepoCard.content` itself writes;
    # `ModelCard.from_template` would do the same through a Jinja2 template, and Jinja2 is not a dependency.
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


__all__ = [
    "CLASS_DESCRIPTIONS",
    "DEFAULT_LICENSE",
    "DEFAULT_TAGS",
    "GREFEL_BIBTEX",
    "MODEL_INDEX_METRICS",
    "SYNTHETIC_DATASET",
    "TrainingRun",
    "build_model_card",
    "count_safetensors_parameters",
    "dataset_display_name",
    "eval_results_from_run",
    "evaluated_splits",
    "evaluation_commands",
    "load_training_run",
    "redact_secrets",
]
