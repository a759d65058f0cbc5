"""Image processor of GReFEL: any photo, array or tensor in, ImageNet-normalised `(B, 3, H, W)` pixel values out.

This file is copied next to `config.json` on the Hub, so it imports nothing but the standard library, numpy, PIL,
torch and transformers, and no other module of this package.

Every input is first brought to one canonical form, an RGB image in the 8-bit 0-255 range: 8-bit data as a PIL
"RGB" image, higher-precision data (16-bit, float) as a float32 `(H, W, 3)` array so that no precision is lost
before resizing. `do_rescale` / `rescale_factor` therefore mean the same thing whatever the input's dtype.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageOps
import torch
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature
from transformers.utils import TensorType

# ImageNet statistics, the normalisation of the IR-50 and MobileFaceNet backbones GReFEL builds on.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Transparent pixels are composited on white, the background transformers' own `convert_to_rgb` uses, so a cut-out
# face reads the same here as through other transformers processors, and no dark halo is invented around it.
_BACKGROUND = (255, 255, 255)
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_16BIT_MAX = 65535.0
# Float inputs may overshoot [0, 1] by rounding (e.g. after an interpolation); anything beyond this is a mistake.
_FLOAT_TOLERANCE = 1e-3
_CHANNEL_COUNTS = (1, 3, 4)
_CHANNELS_FIRST = ("channels_first", "first")
_CHANNELS_LAST = ("channels_last", "last")

# The canonical form: an 8-bit PIL "RGB" image, or a float32 (H, W, 3) array with values in [0, 255].
_Canonical = PIL.Image.Image | np.ndarray


class GReFELImageProcessor(BaseImageProcessor):
    r"""
    Turns face images into the `pixel_values` a GReFEL model takes: RGB, resized to `size`, rescaled to [0, 1] and
    normalised with ImageNet mean/std, as float32 `(B, 3, H, W)`.

    Accepted inputs, alone or in a list (sizes may differ): a PIL image of any common mode (EXIF orientation is
    applied; animated images give their first frame; 16-bit modes "I;16"/"I" are scaled from 0-65535, not clipped;
    transparency is composited on white); a numpy array or torch tensor, `(H, W)`, `(H, W, C)` or `(C, H, W)` with
    C in {1, 3, 4}, of dtype uint8 (0-255), uint16 (0-65535), another integer type holding 0-255, bool, or float
    holding [0, 1]; a 4-D array or tensor, taken as a batch; a `str` or `os.PathLike` path to an image file.
    When both the first and the last axis could hold the channels (e.g. `(3, 4, 4)`), numpy arrays are read as
    channels-last and torch tensors as channels-first unless `input_data_format` says otherwise.
    Anything unusable raises a `ValueError` naming the image's position in the batch ("image 3 of 5").

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

        batch = _as_batch(images)
        mean = np.asarray(image_mean, dtype=np.float32)
        std = np.asarray(image_std, dtype=np.float32)
        arrays = []
        for index, image in enumerate(batch):
            where = f"image {index + 1} of {len(batch)}"
            canonical = _to_canonical(image, where, do_convert_rgb, channels_first)
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


def _as_batch(images: Any) -> list[Any]:
    """The flat list of images a call received: a list/tuple as is, a 4-D array/tensor split on its first axis."""
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise ValueError("GReFELImageProcessor: got an empty list of images; pass at least one image.")
        return list(images)
    if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4:
        if images.shape[0] == 0:
            raise ValueError(
                f"GReFELImageProcessor: got a batch array of shape {tuple(images.shape)} that holds no image; "
                "pass at least one image."
            )
        return list(images)
    return [images]


def _to_canonical(image: Any, where: str, do_convert_rgb: bool, channels_first: bool | None) -> _Canonical:
    """Bring one input to the canonical RGB form, or raise a ValueError naming it by `where`."""
    if isinstance(image, PIL.Image.Image):
        return _pil_to_canonical(image, where, do_convert_rgb)
    if isinstance(image, (str, os.PathLike)):
        return _path_to_canonical(image, where, do_convert_rgb)
    if isinstance(image, torch.Tensor):
        if image.is_complex():
            raise ValueError(
                f"GReFELImageProcessor: {where} is a complex tensor; pass uint8 (0-255), uint16 (0-65535) "
                "or float (0-1) values."
            )
        tensor = image.detach().cpu()
        # numpy has no bfloat16 and float16 arithmetic is lossy: work in float32.
        if tensor.is_floating_point():
            tensor = tensor.float()
        return _array_to_canonical(tensor.numpy(), where, do_convert_rgb, channels_first, default_first=True)
    if isinstance(image, np.ndarray):
        return _array_to_canonical(image, where, do_convert_rgb, channels_first, default_first=False)
    accepted = "a PIL image, a numpy array, a torch tensor or a path to an image file"
    if image is None:
        problem = f"is None; pass {accepted}"
    elif isinstance(image, (list, tuple)):
        problem = "is itself a list; pass one flat list of images"
    elif isinstance(image, (bytes, bytearray)):
        problem = "is raw bytes; open them with PIL.Image.open(io.BytesIO(data)) first"
    else:
        problem = f"has unsupported type {type(image).__name__}; pass {accepted}"
    raise ValueError(f"GReFELImageProcessor: {where} {problem}.")


def _path_to_canonical(path: str | os.PathLike, where: str, do_convert_rgb: bool) -> _Canonical:
    path_text = os.fspath(path)
    if isinstance(path_text, bytes):
        path_text = os.fsdecode(path_text)
    if path_text.startswith(("http://", "https://")):
        raise ValueError(
            f"GReFELImageProcessor: {where} is the URL {path_text!r}; this processor reads local files only, "
            "so download it first (the image-classification pipeline fetches URLs itself)."
        )
    if not os.path.isfile(path_text):
        raise ValueError(
            f"GReFELImageProcessor: {where} is the path {path_text!r}, which is not an existing file; check the path."
        )
    try:
        with PIL.Image.open(path_text) as opened:
            return _pil_to_canonical(opened, where, do_convert_rgb, source=path_text)
    except PIL.UnidentifiedImageError:
        raise ValueError(
            f"GReFELImageProcessor: {where}, the file {path_text!r}, is not an image PIL can read; "
            "pass an image file (JPEG, PNG, WebP, ...)."
        ) from None
    except OSError as error:
        # Some decoders (JPEG) already fail while PIL.Image.open reads the headers of a damaged file.
        raise ValueError(
            f"GReFELImageProcessor: {where}, the file {path_text!r}, could not be read ({error}); check that the "
            "file is readable and complete, or re-save it."
        ) from error


def _pil_to_canonical(
    image: PIL.Image.Image, where: str, do_convert_rgb: bool, source: str | None = None
) -> _Canonical:
    """Canonical RGB from a PIL image: first frame, decoded, EXIF orientation applied, mode converted."""
    named = f"{where}, the file {source!r}," if source else where
    try:
        frame = PIL.ImageOps.exif_transpose(_first_frame(image))
    except (OSError, SyntaxError, ValueError) as error:
        # PIL raises OSError ("image file is truncated") or SyntaxError (broken chunk) when a file is damaged.
        raise ValueError(
            f"GReFELImageProcessor: {named} could not be decoded ({error}); the file is damaged or incomplete, "
            "so re-save or re-download it."
        ) from error
    if frame.width == 0 or frame.height == 0:
        raise ValueError(
            f"GReFELImageProcessor: {named} has zero size ({frame.width}x{frame.height}); pass a real image."
        )

    mode = frame.mode
    if mode == "RGB" and "transparency" not in frame.info:
        return frame
    if not do_convert_rgb:
        raise ValueError(
            f"GReFELImageProcessor: {named} has PIL mode {mode!r} but do_convert_rgb=False accepts only RGB; "
            "set do_convert_rgb=True or convert the image yourself."
        )
    if mode == "I" or mode.startswith("I;16"):
        # PIL's own convert("RGB") clips 16-bit values at 255, so scale 0-65535 onto 0-255 here.
        values = np.asarray(frame).astype(np.float32)
        if values.size and (values.min() < 0 or values.max() > _16BIT_MAX):
            raise ValueError(
                f"GReFELImageProcessor: {named} has PIL mode {mode!r} with values {values.min():g}..{values.max():g}, "
                "outside the 16-bit range 0-65535 that mode is read as; rescale it to 0-65535 or 0-255 (mode 'L')."
            )
        return _grey_float_to_rgb(values * np.float32(255.0 / _16BIT_MAX))
    if mode == "F":
        return _float_to_canonical(np.asarray(frame, dtype=np.float32), named)
    if mode in _ALPHA_MODES or "transparency" in frame.info:
        return _composite_on_background(frame.convert("RGBA"))
    try:
        return frame.convert("RGB")
    except (ValueError, OSError) as error:
        raise ValueError(
            f"GReFELImageProcessor: {named} has PIL mode {mode!r}, which PIL cannot convert to RGB ({error}); "
            "convert it to RGB first."
        ) from error


def _first_frame(image: PIL.Image.Image) -> PIL.Image.Image:
    """A loaded copy of the first frame, leaving a caller's animated image on the frame it was on."""
    if getattr(image, "n_frames", 1) > 1:
        position = image.tell()
        image.seek(0)
        try:
            frame = image.copy()
        finally:
            image.seek(position)
        return frame
    image.load()
    return image


def _composite_on_background(rgba: PIL.Image.Image) -> PIL.Image.Image:
    background = PIL.Image.new("RGBA", rgba.size, (*_BACKGROUND, 255))
    return PIL.Image.alpha_composite(background, rgba).convert("RGB")


def _array_to_canonical(
    array: np.ndarray, where: str, do_convert_rgb: bool, channels_first: bool | None, default_first: bool
) -> _Canonical:
    """Canonical RGB from a numpy array (torch tensors arrive here as numpy), validating shape, dtype and values."""
    shape = tuple(array.shape)
    if array.ndim not in (2, 3):
        raise ValueError(
            f"GReFELImageProcessor: {where} has shape {shape}; expected (H, W), (H, W, C) or (C, H, W) "
            "(or a 4-D batch passed on its own, not inside a list)."
        )
    if array.size == 0:
        raise ValueError(f"GReFELImageProcessor: {where} is empty (shape {shape}); pass an image with pixels.")
    if array.ndim == 3:
        array = _channels_last(array, where, channels_first, default_first)
        if array.shape[2] == 1:
            array = array[:, :, 0]
    channels = 1 if array.ndim == 2 else array.shape[2]
    if channels != 3 and not do_convert_rgb:
        raise ValueError(
            f"GReFELImageProcessor: {where} has {channels} channel(s) but do_convert_rgb=False accepts only RGB; "
            "set do_convert_rgb=True or pass 3-channel images."
        )

    kind = array.dtype.kind
    if kind == "b":
        return _uint8_to_canonical(array.astype(np.uint8) * np.uint8(255))
    if array.dtype == np.uint8:
        return _uint8_to_canonical(array)
    if array.dtype == np.uint16:
        return _float_rgb(array.astype(np.float32) * np.float32(255.0 / _16BIT_MAX))
    if kind in "iu":
        low, high = array.min(), array.max()
        if low < 0 or high > 255:
            raise ValueError(
                f"GReFELImageProcessor: {where} has dtype {array.dtype} with values {low}..{high}; integer images "
                "other than uint16 must hold 0-255, so pass uint8 (0-255), uint16 (0-65535) or float (0-1)."
            )
        return _uint8_to_canonical(array.astype(np.uint8))
    if kind == "f":
        return _float_to_canonical(array.astype(np.float32), where)
    raise ValueError(
        f"GReFELImageProcessor: {where} has dtype {array.dtype}; pass uint8 (0-255), uint16 (0-65535) "
        "or float (0-1) values."
    )


def _channels_last(array: np.ndarray, where: str, channels_first: bool | None, default_first: bool) -> np.ndarray:
    """(H, W, C) from a 3-D array whose channel axis is first or last."""
    first_ok = array.shape[0] in _CHANNEL_COUNTS
    last_ok = array.shape[2] in _CHANNEL_COUNTS
    if channels_first is None:
        channels_first = default_first if first_ok and last_ok else first_ok
    if (channels_first and not first_ok) or (not channels_first and not last_ok):
        raise ValueError(
            f"GReFELImageProcessor: {where} has shape {tuple(array.shape)}; expected 1, 3 or 4 channels "
            f"(grey, RGB, RGBA) on the {'first' if channels_first else 'last'} axis"
            f"{'' if first_ok or last_ok else ' or on the other one'}, so convert it to grey, RGB or RGBA first."
        )
    return array.transpose(1, 2, 0) if channels_first else array  # (C, H, W) -> (H, W, C)


def _uint8_to_canonical(array: np.ndarray) -> PIL.Image.Image:
    """8-bit data goes through PIL, so an array and the PIL image holding the same pixels give the same output."""
    image = PIL.Image.fromarray(np.ascontiguousarray(array))  # (H, W) -> "L", (H, W, 3) -> "RGB", (H, W, 4) -> "RGBA"
    if image.mode == "RGBA":
        return _composite_on_background(image)
    return image.convert("RGB")


def _float_to_canonical(array: np.ndarray, where: str) -> np.ndarray:
    """Canonical float RGB from float data in [0, 1] (grey, RGB or RGBA), checked for NaN/inf and range."""
    if not np.isfinite(array).all():
        raise ValueError(
            f"GReFELImageProcessor: {where} contains NaN or infinite values; pass finite values in [0, 1]."
        )
    low, high = float(array.min()), float(array.max())
    if low < -_FLOAT_TOLERANCE or high > 1 + _FLOAT_TOLERANCE:
        raise ValueError(
            f"GReFELImageProcessor: {where} is float with values {low:g}..{high:g}; float images must hold [0, 1] "
            "(unnormalised), so divide 0-255 data by 255 or pass it as uint8."
        )
    return _float_rgb(np.clip(array, 0.0, 1.0) * np.float32(255.0))


def _float_rgb(array: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 in [0, 255] from grey (H, W), RGB or RGBA (H, W, 3|4) float data already in [0, 255]."""
    if array.ndim == 2:
        return _grey_float_to_rgb(array)
    if array.shape[2] == 4:
        alpha = array[:, :, 3:] / np.float32(255.0)
        background = np.asarray(_BACKGROUND, dtype=np.float32)
        return (array[:, :, :3] * alpha + background * (1 - alpha)).astype(np.float32)
    return array.astype(np.float32)


def _grey_float_to_rgb(array: np.ndarray) -> np.ndarray:
    return np.repeat(array.astype(np.float32)[:, :, None], 3, axis=2)  # (H, W) -> (H, W, 3)


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
