"""GReFEL for `transformers`. This folder is the code the Hub copies next to a model's config.json."""

from .configuration_grefel import EXPRESSIONS, EXPRESSIONS_7, GReFELConfig, expression_id2label
from .image_processing_grefel import GReFELImageProcessor
from .loss_grefel import GReFELLoss
from .modeling_grefel import (
    GReFELForImageClassification,
    GReFELImageClassifierOutput,
    GReFELModel,
    GReFELModelOutput,
    GReFELPreTrainedModel,
)

# The processor's own module is copied to the Hub; registering here keeps that file free of side effects.
GReFELImageProcessor.register_for_auto_class("AutoImageProcessor")

__all__ = [
    "EXPRESSIONS",
    "EXPRESSIONS_7",
    "GReFELConfig",
    "GReFELForImageClassification",
    "GReFELImageClassifierOutput",
    "GReFELImageProcessor",
    "GReFELLoss",
    "GReFELModel",
    "GReFELModelOutput",
    "GReFELPreTrainedModel",
    "expression_id2label",
]
