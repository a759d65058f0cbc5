"""The "facial-expression-recognition" pipeline: raw photos in, one expression distribution per detected face out.

This file, `face_detection_grefel.py` and `image_input_grefel.py` are copied next to a model's `config.json`, whose
`custom_pipelines` entry lets transformers build the pipeline by task name from remote code:

```python
>>> from transformers import pipeline
>>> pipe = pipeline("facial-expression-recognition", model="path/or/hub-id", trust_remote_code=True)
>>> pipe("group_photo.jpg")
{'status': 'ok', 'faces': [{'box': {'xmin': 177, ...}, 'label': 'happiness', 'score': 0.91, ...}], 'message': ...}
```

The same pipeline without the task machinery: `FacialExpressionPipeline(model=model, image_processor=processor)`.

How a custom task is found (transformers 5.x, `pipelines/__init__.py`): `pipeline()` reads `config.custom_pipelines`,
and for a task listed there loads `impl` ("module.Class") with `get_class_from_dynamic_module` when
`trust_remote_code=True`, the model with the Auto classes named in `pt`, and the image processor because
`_load_image_processor` is set. A GReFEL model's `save_pretrained` writes that entry and, through the relative import
of this module in `modeling_grefel.py`, transformers copies these files, so every saved folder (and one saved by
`FacialExpressionPipeline.save_pretrained` or `push_to_hub`, which save the model) loads by task name.
`register_pipeline` adds the task to transformers' registry for in-memory models. Faces are found with OpenCV,
imported only when the first photo is processed. Images are read by `image_input_grefel.py`, the reader the image
processor, training and the Space share, so all of them accept and refuse the same inputs with the same sentences.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForImageClassification
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.base import ChunkPipeline

from .face_detection_grefel import FaceDetector
from .image_input_grefel import read_rgb_image, split_batch

TASK = "facial-expression-recognition"
NO_FACE_MODES = ("skip", "whole_image")
DEFAULT_BATCH_SIZE = 8


@dataclass(frozen=True)
class _NumberedImage:
    """One input of a call with its place in the call, so an unreadable one is reported as "image i of n"."""

    image: Any
    index: int
    total: int


class FacialExpressionPipeline(ChunkPipeline):
    """Finds every face in each photo, crops it, and classifies the crops with a GReFEL model in batches.

    A `ChunkPipeline`: `preprocess` yields one chunk per face (one placeholder chunk for an image with no face to
    classify, so every image still gets its result), transformers' DataLoader pools the chunks of all images into
    batches of `batch_size` for `_forward`, and `postprocess` regroups them per image (by their `is_last` flag).

    Args:
        model (`PreTrainedModel`): an image-classification model (GReFEL); it is put in eval mode.
        image_processor (`BaseImageProcessor`): the model's processor; it receives the raw PIL face crops.
        detector (`FaceDetector`, *optional*): finds and crops the faces; a default `FaceDetector()` when `None`.
        no_face (`str`, *optional*, defaults to `"skip"`): default for images without a face, see `__call__`.
        top_k (`int`, *optional*): default number of classes kept in each face's `scores`; all when `None`.
        batch_size (`int`, *optional*, defaults to 8): default number of chunks (face crops) per model forward.
        inference_path (`str`, *optional*, defaults to `"auto"`): passed to the model's `optimize_for_inference`
            ("auto", "eager", "bf16", "int8" or "compile"); `"auto"` times the paths this device allows once, here,
            and keeps the fastest that agrees with eager fp32. A model already optimised, or one without that method
            (not GReFEL), is used as it is; `None` leaves the model alone.
        device: as for any transformers pipeline (`None` picks the first accelerator, else the CPU).

    Example:

    ```python
    >>> pipe = FacialExpressionPipeline(model=model, image_processor=processor, device="cpu")
    >>> results = pipe(["a.jpg", "b.jpg"], no_face="whole_image", batch_size=16)
    ```
    """

    _load_processor = False
    _load_image_processor = True
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(
        self,
        model: Any,
        image_processor: Any = None,
        detector: FaceDetector | None = None,
        inference_path: str | None = "auto",
        **kwargs: Any,
    ) -> None:
        if image_processor is None:
            raise ValueError(
                "FacialExpressionPipeline: image_processor is required; pass the model's processor, e.g. "
                "AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)."
            )
        self.face_detector = _check_detector(FaceDetector() if detector is None else detector)
        # no_face, top_k and anything unknown reach _sanitize_parameters, which keeps them as this pipeline's defaults.
        super().__init__(model=model, image_processor=image_processor, **kwargs)
        self._batch_size = _check_batch_size(DEFAULT_BATCH_SIZE if self._batch_size is None else self._batch_size)
        # Dropout and GReFEL's training-only branches must be off, whatever mode the caller's model was in.
        self.model.eval()
        optimize = getattr(self.model, "optimize_for_inference", None)
        if inference_path is not None and optimize is not None and getattr(self.model, "inference_path", "") == "eager":
            optimize(inference_path)

    def __call__(self, images: Any, **kwargs: Any) -> dict[str, Any] | list[dict[str, Any]]:
        """Classify the expression of every face in one image or a list of images.

        Args:
            images: one image, a list/tuple of them or a 4-D array/tensor holding a batch; each anything the
                image processor reads (`image_input_grefel.read_image`): a path to an image file, its bytes, a PIL
                image, a numpy array or torch tensor ((H, W) grey, (H, W, C) or (C, H, W) with C in 1/3/4; uint8,
                uint16, bool or float in [0, 1], bfloat16 included). URLs are refused, not downloaded.
            no_face (`str`, *optional*): `"skip"` reports an image without a face with no prediction; `"whole_image"`
                classifies the whole image instead (its face then has `box=None`, `whole_image=True`). Status is
                "no_face" either way.
            top_k (`int`, *optional*): keep only the k most probable classes in each face's `scores` (all when `None`).
            batch_size (`int`, *optional*): chunks per model forward; the face crops of all images are pooled, so a
                batch may mix images (an image with no face to classify takes one slot and no model input).
            detector (`FaceDetector`, *optional*): a detector for this call instead of the pipeline's own.

        Returns:
            For one image a dict, for a list a list of dicts in the same order, each
            `{"status": "ok" | "no_face" | "error", "faces": [...], "message": str}` where every face is
            `{"box": {"xmin", "ymin", "xmax", "ymax"} or None, "label": str, "score": float,
            "scores": {label: probability} (most probable first), "whole_image": bool}`. Faces are listed
            largest first. An image that cannot be read gets status "error", no faces and a message naming it; the
            other images are still processed.
        """
        # Only the input forms are handled here; the arguments go through `_sanitize_parameters` and the work through
        # the hooks. `Pipeline.__call__` treats only a `list` as several inputs and cannot number them, hence the
        # split (tuples, 4-D arrays) and the numbering.
        if kwargs.get("batch_size") is not None:
            _check_batch_size(kwargs["batch_size"])  # Pipeline.__call__ takes batch_size itself, unchecked
        items, single = split_batch(images)
        results = super().__call__([_NumberedImage(item, i, len(items)) for i, item in enumerate(items)], **kwargs)
        return results[0] if single else results

    # ------------------------------------------------------------------ transformers' Pipeline hooks
    def _sanitize_parameters(
        self,
        no_face: str | None = None,
        top_k: int | None = None,
        detector: FaceDetector | None = None,
        **kwargs: Any,
    ) -> tuple[dict, dict, dict]:
        """Split the keyword arguments of `__init__` and `__call__` into those of `preprocess`, `_forward` and
        `postprocess`, each checked by name. Only the ones given are returned: transformers merges a call's over those
        given at construction, and the hooks' own defaults fill the rest."""
        if kwargs:
            raise TypeError(
                f"FacialExpressionPipeline got unexpected arguments {sorted(kwargs)}; it takes detector, no_face, "
                "top_k, batch_size, inference_path and device."
            )
        preprocess_params, postprocess_params = {}, {}
        if no_face is not None:
            preprocess_params["no_face"] = _check_no_face(no_face)
        if detector is not None:
            preprocess_params["detector"] = _check_detector(detector)
        if top_k is not None:
            postprocess_params["top_k"] = _check_top_k(top_k)
        return preprocess_params, {}, postprocess_params

    def preprocess(
        self, image: Any, no_face: str = "skip", detector: FaceDetector | None = None
    ) -> Iterator[dict[str, Any]]:
        """Load one image, find its faces and yield one chunk per face crop.

        Each chunk is {"pixel_values": (1, 3, H, W), "classify": (1,) bool, "box": box dict or None, "whole_image",
        "status", "message", "is_last"}. An image with nothing to classify (no face under `no_face="skip"`, or an
        input that is not a usable image) yields one chunk with `classify` False, zero pixels and its status
        ("no_face" or "error", with the reason); `_forward` leaves such chunks out of the model's batch.
        """
        numbered = image if isinstance(image, _NumberedImage) else _NumberedImage(image, 0, 1)
        detector = self.face_detector if detector is None else detector
        try:
            photo = read_rgb_image(numbered.image)  # read once: the detector and the crops work on the same pixels
            boxes = detector.detect(photo)
            if boxes:
                crops = [detector.crop(photo, box) for box in boxes]
                count = len(boxes)
                status, message = "ok", f"{count} face{'s' if count > 1 else ''} found."
                box_dicts, whole = [box.as_dict() for box in boxes], False
            elif no_face == "whole_image":
                crops, box_dicts, whole = [photo], [None], True
                status, message = "no_face", "No face found; the whole image was classified instead."
            else:
                crops, box_dicts, whole = [], [], False
                status = "no_face"
                message = 'No face found; nothing was classified (no_face="whole_image" classifies the whole image).'
            pixel_values = self.image_processor(crops, return_tensors="pt")["pixel_values"] if crops else None
        except ImportError:
            raise  # a missing OpenCV concerns every image: the caller must install it
        except Exception as error:  # one unusable image must not cost the others their results
            pixel_values, box_dicts, whole, status = None, [], False, "error"
            message = f"image {numbered.index + 1} of {numbered.total} could not be processed: {error}"
        if pixel_values is None:
            yield {"pixel_values": self._no_pixels(), "classify": torch.zeros(1, dtype=torch.bool), "box": None,
                   "whole_image": False, "status": status, "message": message, "is_last": True}
            return
        for index, box in enumerate(box_dicts):
            yield {"pixel_values": pixel_values[index : index + 1],  # (1, 3, H, W)
                   "classify": torch.ones(1, dtype=torch.bool), "box": box, "whole_image": whole, "status": status,
                   "message": message, "is_last": index == len(box_dicts) - 1}

    def _forward(self, model_inputs: dict[str, Any]) -> dict[str, Any]:
        """Logits of the chunks of one DataLoader batch; the other entries pass through for `postprocess`.

        `pixel_values` is (B, 3, H, W) and `classify` (B,) for a batch of B chunks (B = 1 with `batch_size=1`, when
        transformers hands the chunk over as `preprocess` made it); only the rows to classify reach the model.
        """
        pixel_values, classify = model_inputs.pop("pixel_values"), model_inputs.pop("classify")
        # (B, C); the rows of chunks without a face stay 0 and are never read
        logits = torch.zeros(len(classify), self.model.config.num_labels, device=pixel_values.device)
        if classify.any():
            rows = pixel_values[classify].to(self.model.dtype)  # (B', 3, H, W), B' <= B
            logits[classify] = self.model(pixel_values=rows).logits.float()
        # "logits" first: transformers' PipelinePackIterator reads the batch size from the first entry.
        return {"logits": logits, "classify": classify, **model_inputs}

    def postprocess(self, model_outputs: list[dict[str, Any]], top_k: int | None = None) -> dict[str, Any]:
        """One image's result from its chunks, each with its (1, C) logits."""
        id2label = self.model.config.id2label
        faces = []
        for chunk in model_outputs:
            if not bool(chunk["classify"]):
                continue
            row = chunk["logits"][0].softmax(dim=-1)  # (C,)
            order = torch.argsort(row, descending=True).tolist()
            kept = order if top_k is None else order[:top_k]
            scores = {id2label[i]: float(row[i]) for i in kept}
            best = order[0]
            faces.append({"box": chunk["box"], "label": id2label[best], "score": float(row[best]), "scores": scores,
                          "whole_image": chunk["whole_image"]})
        return {"status": model_outputs[0]["status"], "faces": faces, "message": model_outputs[0]["message"]}

    def _no_pixels(self) -> torch.Tensor:
        """(1, 3, H, W) zeros at the processor's output size: what a chunk without a face holds, so that every chunk
        of a batch has the same pixel shape for transformers' collate function."""
        size = self.image_processor.size
        return torch.zeros(1, 3, size["height"], size["width"])


# ---------------------------------------------------------------------------------------------- arguments
def _check_no_face(no_face: Any) -> str:
    if no_face not in NO_FACE_MODES:
        raise ValueError(f"FacialExpressionPipeline: no_face must be one of {NO_FACE_MODES}, got {no_face!r}.")
    return no_face


def _check_top_k(top_k: Any) -> int | None:
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"FacialExpressionPipeline: top_k must be a positive int or None, got {top_k!r}.")
    return top_k


def _check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"FacialExpressionPipeline: batch_size must be a positive int, got {batch_size!r}.")
    return batch_size


def _check_detector(detector: Any) -> Any:
    if not (callable(getattr(detector, "detect", None)) and callable(getattr(detector, "crop", None))):
        raise TypeError(
            "FacialExpressionPipeline: detector must be a FaceDetector (an object with detect(image) and "
            f"crop(image, box)), got {type(detector).__name__}."
        )
    return detector


# ---------------------------------------------------------------------------------------------- saving
def custom_pipelines_entry() -> dict[str, dict[str, Any]]:
    """The `custom_pipelines` value of config.json that makes the task loadable from a model folder.

    `impl` is "module.Class" inside the model folder, `pt` the transformers Auto class that loads the model (both
    resolved by `transformers.pipeline`, see `clean_custom_task`), `type` the input modality.
    """
    return {
        TASK: {
            "impl": f"{Path(__file__).stem}.{FacialExpressionPipeline.__name__}",
            "pt": [AutoModelForImageClassification.__name__],
            "type": "image",
        }
    }


def add_pipeline_to_config(config: Any) -> Any:
    """Add the `custom_pipelines` entry to a model config (in place, other entries kept) and return the config.

    Call it before `model.save_pretrained(folder)` so config.json carries the entry; the pipeline files come with the
    model code, because `modeling_grefel.py` imports this module relatively and transformers copies relative imports.
    Before the save is what `save_pretrained(push_to_hub=True)` needs: transformers uploads inside save_pretrained.
    """
    if not hasattr(config, "to_dict"):
        raise TypeError(
            f"add_pipeline_to_config: config must be a transformers PreTrainedConfig, got {type(config).__name__}."
        )
    config.custom_pipelines = {**(getattr(config, "custom_pipelines", None) or {}), **custom_pipelines_entry()}
    return config


def register_pipeline() -> None:
    """Register the task with transformers so `pipeline(TASK, model=model, image_processor=processor)` builds this
    pipeline for an in-memory model. Loading from a folder needs no registration (its config.json names the class).
    Registering again is a no-op.
    """
    registered = PIPELINE_REGISTRY.supported_tasks.get(TASK, {}).get("impl")
    if registered is FacialExpressionPipeline:
        return
    PIPELINE_REGISTRY.register_pipeline(
        TASK, pipeline_class=FacialExpressionPipeline, pt_model=AutoModelForImageClassification, type="image"
    )


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "FacialExpressionPipeline",
    "NO_FACE_MODES",
    "TASK",
    "add_pipeline_to_config",
    "custom_pipelines_entry",
    "register_pipeline",
]
