"""GReFEL for `transformers`. This folder is the code the Hub copies next to a model's config.json."""

from .configuration_grefel import EXPRESSIONS, EXPRESSIONS_7, GReFELConfig, expression_id2label
from .face_detection_grefel import FaceBox, FaceDetector
from .image_input_grefel import ImageInputError, read_image, read_rgb_image
from .image_processing_grefel import GReFELImageProcessor
from .loss_grefel import GReFELLoss
from .modeling_grefel import (
    GReFELForImageClassification,
    GReFELImageClassifierOutput,
    GReFELModel,
    GReFELModelOutput,
    GReFELPreTrainedModel,
)
from .pipeline_grefel import FacialExpressionPipeline, add_pipeline_to_config, register_pipeline

# The processor's own module is copied to the Hub; registering here keeps that file free of side effects.
GReFELImageProcessor.register_for_auto_class("AutoImageProcessor")
register_pipeline()

__all__ = [
    "EXPRESSIONS",
    "EXPRESSIONS_7",
    "FaceBox",
    "FaceDetector",
    "FacialExpressionPipeline",
    "GReFELConfig",
    "GReFELForImageClassification",
    "GReFELImageClassifierOutput",
    "GReFELImageProcessor",
    "GReFELLoss",
    "GReFELModel",
    "GReFELModelOutput",
    "GReFELPreTrainedModel",
    "ImageInputError",
    "add_pipeline_to_config",
    "expression_id2label",
    "read_image",
    "read_rgb_image",
    "register_pipeline",
]
