"""Loading the model the demo Space serves: from a local folder or the Hub with its remote code, else a randomly
initialised tiny GReFEL from the EmotionNet checkout, so the app always starts (app.py shows why under a banner)."""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
LOGGER = logging.getLogger("emotionnet.space")

DEFAULT_MODEL = "outputs/synthetic-default"
# The model's inference path (GReFELForImageClassification.optimize_for_inference): "auto" times the paths this
# machine allows once at start-up and serves the fastest whose top-1 agrees with eager fp32.
INFERENCE_PATH = os.environ.get("EMOTIONNET_INFERENCE_PATH", "auto")


@dataclass
class LoadedModel:
    """The model the Space serves, and what the page says about it."""

    model: torch.nn.Module
    processor: Any
    pipeline: Any
    image_input: Any  # the image_input_grefel module next to the pipeline's code
    source: str
    training_data: str
    trained: bool
    problem: str = ""
    results: dict = field(default_factory=dict)


def _repository_root() -> Path | None:
    """The EmotionNet checkout this Space folder sits in, if any (it holds the `modeling_grefel` package)."""
    root = HERE.parent
    return root if (root / "modeling_grefel" / "__init__.py").is_file() else None


def _local_folder(reference: str) -> Path | None:
    """`reference` as an existing local folder: as given, relative to the working directory, or to the checkout."""
    candidates = [Path(reference).expanduser()]
    root = _repository_root()
    if root is not None and not Path(reference).is_absolute():
        candidates.append(root / reference)
    return next((c.resolve() for c in candidates if c.is_dir()), None)


def _read_results(reference: str, folder: Path | None) -> dict:
    """The training run's all_results.json (dataset, synthetic, metrics), from the folder or the Hub repo."""
    try:
        if folder is not None:
            path = folder / "all_results.json"
            return json.loads(path.read_text()) if path.is_file() else {}
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(reference, "all_results.json")).read_text())
    except Exception as error:  # a model without results is still served; the page then says the data is unknown
        LOGGER.info("No all_results.json for %s (%s).", reference, error)
        return {}


def describe_training_data(results: dict) -> str:
    """One line for the page: which data the model was trained on and how it scored."""
    if not results:
        return "unknown (the model folder has no all_results.json)"
    dataset = results.get("dataset", "unknown dataset")
    line = f"`{dataset}`"
    if results.get("synthetic"):
        line += " (synthetic faces drawn by the training script: the model has never seen a real photo)"
    if "eval_accuracy" in results:
        line += f"; {results.get('eval_split', 'eval')} accuracy {results['eval_accuracy']:.3f}"
    if "eval_macro_f1" in results:
        line += f", macro-F1 {results['eval_macro_f1']:.3f}"
    return line


def _pipeline_class(reference: str, folder: Path | None):
    """`FacialExpressionPipeline` from the model's remote code, else from the EmotionNet checkout."""
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    try:
        pipeline_class = get_class_from_dynamic_module(
            "pipeline_grefel.FacialExpressionPipeline", str(folder or reference)
        )
        image_input_module(pipeline_class)
        return pipeline_class
    except Exception as error:  # older model folders lack the pipeline or the image reader: use the checkout's
        LOGGER.info(
            "The model at %s ships no pipeline_grefel.py or image_input_grefel.py (%s); using the checkout's.",
            reference, error,
        )
    return _checkout_pipeline_class(reference)


def image_input_module(pipeline_class: type):
    """The `image_input_grefel` module next to the pipeline's (the model's remote code, or the checkout's package)."""
    package = pipeline_class.__module__.rpartition(".")[0]
    return importlib.import_module(f"{package}.image_input_grefel")


def _build_pipeline(pipeline_class, model, processor):
    """The pipeline on `INFERENCE_PATH`; a model folder saved before inference paths existed takes no such argument."""
    if "inference_path" in inspect.signature(pipeline_class.__init__).parameters:
        return pipeline_class(model=model, image_processor=processor, inference_path=INFERENCE_PATH)
    return pipeline_class(model=model, image_processor=processor)


def _checkout_pipeline_class(reference: str):
    """`FacialExpressionPipeline` of the EmotionNet checkout this Space folder sits in."""
    root = _repository_root()
    if root is None:
        raise RuntimeError(
            f"The model {reference} has no pipeline_grefel.py and this Space is not inside an EmotionNet checkout; "
            "save the model with the current EmotionNet, whose save_pretrained writes the pipeline's code next to it."
        )
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from modeling_grefel.pipeline_grefel import FacialExpressionPipeline

    return FacialExpressionPipeline


def _untrained_model() -> tuple[torch.nn.Module, Any]:
    """A randomly initialised tiny GReFEL from the checkout's `modeling_grefel`, so the app can start without weights."""
    root = _repository_root()
    if root is None:
        raise RuntimeError(
            "No model could be loaded and this Space is not inside an EmotionNet checkout to build an untrained one; "
            "set EMOTIONNET_MODEL to a Hub id or a folder saved with save_pretrained."
        )
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from modeling_grefel import GReFELConfig, GReFELForImageClassification, GReFELImageProcessor

    torch.manual_seed(0)
    config = GReFELConfig.tiny()
    model = GReFELForImageClassification(config).eval()
    processor = GReFELImageProcessor.from_config(config)
    return model, processor


def load_model(reference: str | None = None) -> LoadedModel:
    """Load the model named by `reference` (default: $EMOTIONNET_MODEL, else `outputs/synthetic-default`).

    Never raises for a missing or broken model: it falls back to an untrained tiny model and records why.
    """
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    reference = reference or os.environ.get("EMOTIONNET_MODEL") or DEFAULT_MODEL
    folder = _local_folder(reference)
    problem = ""
    if folder is None and reference == DEFAULT_MODEL:
        problem = (
            f"The default model folder `{DEFAULT_MODEL}` does not exist: run the embedded default training "
            "(`make demo`) to create it, or set EMOTIONNET_MODEL to a Hub id or a saved model folder."
        )
    else:
        try:
            source = str(folder or reference)
            model = AutoModelForImageClassification.from_pretrained(source, trust_remote_code=True).eval()
            processor = AutoImageProcessor.from_pretrained(source, trust_remote_code=True)
            pipeline_class = _pipeline_class(reference, folder)
            pipeline = _build_pipeline(pipeline_class, model, processor)
            results = _read_results(reference, folder)
            LOGGER.info("Loaded model %s.", source)
            return LoadedModel(
                model, processor, pipeline, image_input_module(pipeline_class), source,
                describe_training_data(results), True, "", results,
            )
        except Exception as error:  # the app must start anyway; the banner carries the reason
            problem = f"The model `{reference}` could not be loaded: {error}"
    LOGGER.warning("%s Serving a randomly initialised tiny model instead: its predictions mean nothing.", problem)
    model, processor = _untrained_model()
    pipeline_class = _checkout_pipeline_class("the untrained fallback")
    pipeline = _build_pipeline(pipeline_class, model, processor)
    return LoadedModel(
        model, processor, pipeline, image_input_module(pipeline_class), "randomly initialised GReFELConfig.tiny()",
        "none (untrained)", False, problem,
    )


__all__ = [
    "DEFAULT_MODEL",
    "INFERENCE_PATH",
    "LoadedModel",
    "describe_training_data",
    "image_input_module",
    "load_model",
]
