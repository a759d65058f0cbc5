"""GReFEL for `transformers`. This folder is the code the Hub copies next to a model's config.json."""

from .configuration_grefel import EXPRESSIONS, EXPRESSIONS_7, GReFELConfig, expression_id2label
from .loss_grefel import GReFELLoss
from .modeling_grefel import (
    GReFELForImageClassification,
    GReFELImageClassifierOutput,
    GReFELModel,
    GReFELModelOutput,
    GReFELPreTrainedModel,
)

__all__ = [
    "EXPRESSIONS",
    "EXPRESSIONS_7",
    "GReFELConfig",
    "GReFELForImageClassification",
    "GReFELImageClassifierOutput",
    "GReFELLoss",
    "GReFELModel",
    "GReFELModelOutput",
    "GReFELPreTrainedModel",
    "expression_id2label",
]
