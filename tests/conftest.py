"""Shared fixtures: tiny GReFEL models and saved model folders, built once per session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Nothing in the suite may reach the network: the Hub, telemetry, Gradio analytics.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

from modeling_grefel import GReFELConfig, GReFELForImageClassification  # noqa: E402


def save_tiny_model(folder: Path, num_labels: int = 8, seed: int = 0, **config_kwargs) -> Path:
    """A randomly initialised tiny GReFEL saved with its processor and remote code, as a user would get it."""
    from modeling_grefel import GReFELImageProcessor

    torch.manual_seed(seed)
    config = GReFELConfig.tiny(num_labels=num_labels, **config_kwargs)
    model = GReFELForImageClassification(config).eval()
    model.save_pretrained(folder)
    GReFELImageProcessor.from_config(config).save_pretrained(folder)
    return folder


@pytest.fixture
def tiny_config() -> GReFELConfig:
    return GReFELConfig.tiny()


@pytest.fixture
def tiny_model(tiny_config) -> GReFELForImageClassification:
    torch.manual_seed(0)
    return GReFELForImageClassification(tiny_config).eval()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved tiny 8-class model folder (weights, config with auto_map, processor, remote code)."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny_model"))
