"""Image processor of GReFEL: any photo, array or tensor in, ImageNet-normalised `(B, 3, H, W)` pixel values out.

This file is copied next to `config.json` on the Hub with `image_input_grefel.py`, the one reader of images that
the pipeline, the face detector, training and the Space share; it imports nothing else but the standard library,
numpy, PIL, torch and transformers.

Every input is first brought by `read_image` to one canonical form, an RGB image in the 8-bit 0-255 range: 8-bit data
as a PIL "RGB" image, higher-precision data (16-bit, float) as a float32 `(H, W, 3)` array so that no precision is
lost before resizing. `do_rescale` / `rescale_factor` therefore mean the same thing whatever the input's dtype.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import PIL.Image
import torch
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature
from transformers.utils import TensorType

from .image_input_grefel import ImageInputError, read_image, split_batch

# ImageNet statistics, the normalisation of the IR-50 and MobileFaceNet backbones GReFEL builds on.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_CHANNELS_FIRST = ("channels_first", "first")
_CHANNELS_LAST = ("channels_last", "last")

# The canonical form `read_image` gives: an 8-bit PIL "RGB" image, or a float32 (H, W, 3) array with values in [0, 255].
_Canonical = PIL.Image.Image | np.ndarray


class GReFELImageProcessor(BaseImageProcessor):
    r"""
    Turns face images into the `pixel_values` a GReFEL model takes: RGB, resized to `size`, rescaled to [0, 1] and
    normalised with ImageNet mean/std, as float32 `(B, 3, H, W)`.

    Accepted inputs, alone or in a list (sizes may differ), are those of `image_input_grefel.read_image`, the same
    for the pipeline, training and the Space: a path to an image file, its bytes, a PIL image of any common mode
    (EXIF orientation is applied; animated images give their first frame; 16-bit modes "I;16"/"I" are scaled from
    0-65535, not clipped; transparency is composited on white); a numpy array or torch tensor, `(H, W)`, `(H, W, C)`
    or `(C, H, W)` with C in {1, 3, 4}, of dtype uint8 (0-255), uint16 (0-65535), another integer type holding 0-255,
    bool, or float holding [0, 1]; a 4-D array or tensor, taken as a batch. URLs are refused (download them first).
    When both the first and the last axis could hold the channels (e.g. `(3, 4, 4)`), numpy arrays are read as
    channels-last and torch tensors as channels-first unless `input_data_format` says otherwise.
    Anything unusable raises an `ImageInputError` (a `ValueError`) naming the image's position in the batch
    ("image 3 of 5: ...") followed by the reader's own sentence.

    Args:
        do_resize (`bool`, *optional*, defaults to `True`):
            Whether to resize every image to `size`.
        size (`dict[str, int]` or `int`, *optional*, defaults to `{"height": 224, "width": 224}`):
            Output size; an int means a square. The model's `config.image_size` must match it.
        resample (`PIL.Image.Resampling` or `int`, *optional*, defaults to `PIL.Image.Resampling.BILINEAR`):
            PIL filter used for resizing (antialiased when shrinking).
        do_rescale (`bool`, *optional*, defaults to `True`):
            Whether to multiply the 0-255 values by `rescale_factor`.
        rescale_factor (`float`, *optional*, defaults to `1/255`):
            Scale applied when `do_rescale` is set.
        do_normalize (`bool`, *optional*, defaults to `True`):
            Whether to subtract `image_mean` and divide by `image_std`, per channel.
        image_mean (`list[float]`, *optional*, defaults to the ImageNet mean `[0.485, 0.456, 0.406]`):
            Per-channel mean.
        image_std (`list[float]`, *optional*, defaults to the ImageNet std `[0.229, 0.224, 0.225]`):
            Per-channel standard deviation.
        do_convert_rgb (`bool`, *optional*, defaults to `True`):
            Whether to convert grey, palette, CMYK, 16-bit and transparent images to RGB; when `False`, any input
            that is not already 3-channel RGB raises a `ValueError`.

    Example:

    ```python
    >>> import numpy as np
    >>> from PIL import Image
    >>> processor = GReFELImageProcessor(size={"height": 64, "width": 64})
    >>> photo = Image.fromarray(np.zeros((120, 90, 3), dtype=np.uint8))
    >>> processor([photo, np.ones((30, 30), dtype=np.float32)], return_tensors="pt")["pixel_values"].shape
    torch.Size([2, 3, 64, 64])
    ```
    """

    model_input_names = ["pixel_values"]

    def __init__(
        self,
        do_resize: bool = True,
        size: dict[str, int] | int | None = None,
        resample: PIL.Image.Resampling | int = PIL.Image.Resampling.BILINEAR,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        do_convert_rgb: bool = True,
        **kwargs: Any,
    ) -> None:
        # kwargs carries what save_pretrained wrote besides our arguments (image_processor_type, auto_map).
        super().__init__(**kwargs)
        self.do_resize = _check_bool("do_resize", do_resize)
        self.size = _check_size({"height": 224, "width": 224} if size is None else size)
        self.resample = _check_resample(resample)
        self.do_rescale = _check_bool("do_rescale", do_rescale)
        self.rescale_factor = _check_rescale_factor(rescale_factor)
        self.do_normalize = _check_bool("do_normalize", do_normalize)
        self.image_mean = _check_stats("image_mean", IMAGENET_MEAN if image_mean is None else image_mean)
        self.image_std = _check_stats("image_std", IMAGENET_STD if image_std is None else image_std, positive=True)
        self.do_convert_rgb = _check_bool("do_convert_rgb", do_convert_rgb)

    @classmethod
    def from_config(cls, config: Any, **kwargs: Any) -> GReFELImageProcessor:
        """The processor of a model with this config: `config.image_size` square, ImageNet mean/std.

        The one place the image geometry of a model is derived from its config; training's augmentation is in turn
        derived from this processor, so training and evaluation show a face at the same size.
        """
        return cls(size={"height": config.image_size, "width": config.image_size}, **kwargs)

    def __call__(self, images: Any, **kwargs: Any) -> BatchFeature:
        """Same as `preprocess`."""
        return self.preprocess(images, **kwargs)

    def preprocess(
        self,
        images: Any,
        do_resize: bool | None = None,
        size: dict[str, int] | int | None = None,
        resample: PIL.Image.Resampling | int | None = None,
        do_rescale: bool | None = None,
        rescale_factor: float | None = None,
        do_normalize: bool | None = None,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        do_convert_rgb: bool | None = None,
        return_tensors: str | TensorType | None = None,
        input_data_format: str | None = None,
    ) -> BatchFeature:
        """
        Preprocess one image or a batch; every argument left `None` takes the processor's own setting.

        Args:
            images: one image, a list/tuple of images, or a 4-D array/tensor holding a batch (see the class doc).
            return_tensors (`str` or `TensorType`, *optional*):
                `"pt"` for a torch float32 tensor `(B, 3, H, W)`, `"np"` for a numpy array, `None` for a list of
                float32 numpy arrays `(3, H, W)` (their sizes may then differ when `do_resize=False`).
            input_data_format (`str`, *optional*):
                `"channels_first"` or `"channels_last"`: where the channels of 3-D array/tensor inputs are, for
                inputs whose shape leaves it ambiguous. PIL images and paths ignore it.

        Returns:
            `BatchFeature` with `pixel_values`.
        """
        do_resize = self.do_resize if do_resize is None else _check_bool("do_resize", do_resize)
        size = self.size if size is None else _check_size(size)
        resample = self.resample if resample is None else _check_resample(resample)
        do_rescale = self.do_rescale if do_rescale is None else _check_bool("do_rescale", do_rescale)
        rescale_factor = self.rescale_factor if rescale_factor is None else _check_rescale_factor(rescale_factor)
        do_normalize = self.do_normalize if do_normalize is None else _check_bool("do_normalize", do_normalize)
        image_mean = self.image_mean if image_mean is None else _check_stats("image_mean", image_mean)
        image_std = self.image_std if image_std is None else _check_stats("image_std", image_std, positive=True)
        do_convert_rgb = (
            self.do_convert_rgb if do_convert_rgb is None else _check_bool("do_convert_rgb", do_convert_rgb)
        )
        tensor_type = _check_return_tensors(return_tensors)
        channels_first = _check_input_data_format(input_data_format)

        try:
            batch, _ = split_batch(images)
        except ImageInputError as error:
            raise ImageInputError(f"GReFELImageProcessor: {error}") from None
        mean = np.asarray(image_mean, dtype=np.float32)
        std = np.asarray(image_std, dtype=np.float32)
        arrays = []
        for index, image in enumerate(batch):
            try:
                canonical = read_image(image, convert_rgb=do_convert_rgb, channels_first=channels_first)
            except ImageInputError as error:
                raise ImageInputError(f"GReFELImageProcessor: image {index + 1} of {len(batch)}: {error}") from None
            if do_resize:
                canonical = _resize(canonical, size, resample)
            pixels = np.asarray(canonical, dtype=np.float32)  # (H, W, 3), 0-255
            if do_rescale:
                pixels = pixels * np.float32(rescale_factor)
            if do_normalize:
                pixels = (pixels - mean) / std
            arrays.append(np.ascontiguousarray(pixels.transpose(2, 0, 1), dtype=np.float32))  # (H, W, 3) -> (3, H, W)

        if tensor_type is None:
            return BatchFeature(data={"pixel_values": arrays})
        _check_same_size(arrays)
        stacked = np.stack(arrays)  # (B, 3, H, W)
        pixel_values = torch.from_numpy(stacked) if tensor_type is TensorType.PYTORCH else stacked
        return BatchFeature(data={"pixel_values": pixel_values})


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"GReFELImageProcessor: {name} must be True or False, got {value!r}.")
    return bool(value)


def _check_size(size: Any) -> dict[str, int]:
    if isinstance(size, int) and not isinstance(size, bool):
        size = {"height": size, "width": size}
    if not isinstance(size, dict) or set(size) != {"height", "width"}:
        raise ValueError(
            f'GReFELImageProcessor: size must be an int or a dict {{"height": int, "width": int}}, got {size!r}.'
        )
    for key, value in size.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"GReFELImageProcessor: size[{key!r}] must be a positive int, got {value!r}.")
    return {"height": int(size["height"]), "width": int(size["width"])}


def _check_resample(resample: Any) -> PIL.Image.Resampling:
    try:
        return PIL.Image.Resampling(int(resample))
    except (TypeError, ValueError):
        names = ", ".join(f"{r.name}={r.value}" for r in PIL.Image.Resampling)
        raise ValueError(
            f"GReFELImageProcessor: resample must be a PIL resampling filter ({names}), got {resample!r}."
        ) from None


def _check_rescale_factor(factor: Any) -> float:
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not np.isfinite(factor) or factor <= 0:
        raise ValueError(f"GReFELImageProcessor: rescale_factor must be a positive number, got {factor!r}.")
    return float(factor)


def _check_stats(name: str, values: Any, positive: bool = False) -> list[float]:
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        values = [values] * 3
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError):
        values = None
    if values is None or len(values) != 3 or not all(np.isfinite(values)) or (positive and min(values) <= 0):
        kind = "positive numbers" if positive else "numbers"
        raise ValueError(f"GReFELImageProcessor: {name} must be one number or three {kind} (R, G, B).")
    return values


def _check_return_tensors(return_tensors: Any) -> TensorType | None:
    if return_tensors is None:
        return None
    try:
        tensor_type = TensorType(return_tensors)
    except ValueError:
        tensor_type = None
    if tensor_type not in (TensorType.PYTORCH, TensorType.NUMPY):
        raise ValueError(f"GReFELImageProcessor: return_tensors must be 'pt', 'np' or None, got {return_tensors!r}.")
    return tensor_type


def _check_input_data_format(input_data_format: Any) -> bool | None:
    """True for channels-first, False for channels-last, None to infer from the shape."""
    if input_data_format is None:
        return None
    value = getattr(input_data_format, "value", input_data_format)
    if value in _CHANNELS_FIRST:
        return True
    if value in _CHANNELS_LAST:
        return False
    raise ValueError(
        f"GReFELImageProcessor: input_data_format must be 'channels_first', 'channels_last' or None, "
        f"got {input_data_format!r}."
    )


def _check_same_size(arrays: list[np.ndarray]) -> None:
    first = arrays[0].shape[1:]
    for index, array in enumerate(arrays):
        if array.shape[1:] != first:
            raise ValueError(
                f"GReFELImageProcessor: image {index + 1} of {len(arrays)} is {array.shape[1]}x{array.shape[2]} "
                f"but image 1 is {first[0]}x{first[1]}, so they cannot be stacked; keep do_resize=True or pass "
                "return_tensors=None to get a list."
            )


def _resize(image: _Canonical, size: dict[str, int], resample: PIL.Image.Resampling) -> _Canonical:
    target = (size["width"], size["height"])  # PIL sizes are (width, height)
    if isinstance(image, PIL.Image.Image):
        return image.resize(target, resample=resample)
    # High-precision data is resized per channel in PIL's 32-bit float mode "F", which keeps it unquantised.
    channels = [
        np.asarray(PIL.Image.fromarray(np.ascontiguousarray(image[:, :, c])).resize(target, resample=resample))
        for c in range(3)
    ]
    return np.stack(channels, axis=2)  # 3 x (H, W) -> (H, W, 3)


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "GReFELImageProcessor"]
