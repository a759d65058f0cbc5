"""Reading one image, for every entry point of GReFEL: the image processor, the facial-expression pipeline, the face
detector, the training loader (`emotionnet.data.SafeImageLoader`) and the Space.

Written once so that they all accept the same inputs and refuse the same bad ones with the same sentence. This file
is copied next to `config.json` on the Hub with the processor and the pipeline (transformers copies the files a
remote-code module imports relatively), so it imports nothing but the standard library, numpy, PIL and torch.

Accepted, one image each: a file path (`str` / `os.PathLike`), the file's bytes, an open binary file, a `datasets`
image dict `{"bytes", "path"}`, a PIL image of any common mode, a numpy array or a torch tensor (`(H, W)`,
`(H, W, C)` or `(C, H, W)` with C in {1, 3, 4}; uint8 0-255, uint16 0-65535, another integer type holding 0-255,
bool, or float holding [0, 1], bfloat16 included). Files are decoded to their first frame with the EXIF orientation
applied; 16-bit data is scaled from 0-65535, not clipped; transparency is composited on white. URLs are refused
(nothing is downloaded), as are files above `MAX_PIXELS`, read from the header before anything is decoded.

Every refusal is an `ImageInputError` (a `ValueError`) whose message is one sentence naming the input, what is wrong
and what to do; entry points put their own prefix ("image 3 of 5: ...") in front and never reword it.
"""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np
import PIL.ExifTags
import PIL.Image
import PIL.ImageOps
import torch

# The largest image a file may hold, checked from its header before decoding: a 20000x20000 upload would need
# 1.2 GB of RAM as RGB, and a face photo needs nowhere near 40 MP. PIL's own decompression-bomb guard
# (`PIL.Image.MAX_IMAGE_PIXELS`, 89 MP in Pillow 10-12) stays on and refuses what is larger still before the header
# can be read here.
MAX_PIXELS = 40_000_000
# Schemes of strings that are addresses, not file names; "data:" is a URL too (RFC 2397) and is not decoded here.
URL_PREFIXES = ("http://", "https://", "ftp://", "file://", "data:")
ACCEPTED = "a path to an image file, its bytes, a PIL image, a numpy array or a torch tensor"

# Transparent pixels are composited on white, the background transformers' own `convert_to_rgb` uses, so a cut-out
# face reads the same here as through other transformers processors, and no dark halo is invented around it.
BACKGROUND = (255, 255, 255)
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_16BIT_MAX = 65535.0
# Float inputs may overshoot [0, 1] by rounding (e.g. after an interpolation); anything beyond this is a mistake.
_FLOAT_TOLERANCE = 1e-3
_CHANNEL_COUNTS = (1, 3, 4)


class ImageInputError(ValueError):
    """An input that is not a usable image; the message says which, why, and what to do."""


# ---------------------------------------------------------------------------------------------- batches
def split_batch(images: Any) -> tuple[list[Any], bool]:
    """`(images as a list, whether one image was given)`: a list/tuple as is, a 4-D array/tensor split on its first
    axis, anything else as one image."""
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise ImageInputError("got an empty list of images; pass at least one image.")
        return list(images), False
    if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4:
        if images.shape[0] == 0:
            raise ImageInputError(
                f"got a batch of shape {tuple(images.shape)} that holds no image; pass at least one image."
            )
        return list(images), False
    return [images], True


# ---------------------------------------------------------------------------------------------- files
def is_file_source(image: Any) -> bool:
    """Whether `image` is something `open_image` reads: a path, bytes, a binary file or a `datasets` image dict."""
    return (
        isinstance(image, (str, os.PathLike, bytes, bytearray, memoryview))
        or callable(getattr(image, "read", None))
        or (isinstance(image, dict) and (image.get("bytes") is not None or bool(image.get("path"))))
    )


def open_image(source: Any, name: str | None = None, max_pixels: int = MAX_PIXELS) -> PIL.Image.Image:
    """The image file `source` opened by PIL (header read and size checked, pixels not yet decoded).

    `source` is a path, bytes, a binary file or a `datasets` dict `{"bytes", "path"}`; `name` is how messages call
    it (default: the path, or the file object's name). Use it as a context manager so the file is closed.
    """
    if isinstance(source, dict):
        source = source["bytes"] if source.get("bytes") is not None else source["path"]
    if isinstance(source, (str, os.PathLike)):
        path = os.fsdecode(os.fspath(source))
        if path.lower().startswith(URL_PREFIXES):
            raise ImageInputError(
                f"{_shorten(path)!r} is a URL; images are not downloaded here, so download it and pass the file "
                "(its path or bytes)."
            )
        if not os.path.isfile(path):
            raise ImageInputError(f"{name or path!r} is not an existing file; check the path.")
        opener = path
    elif isinstance(source, (bytes, bytearray, memoryview)):
        opener = io.BytesIO(source)
    elif callable(getattr(source, "read", None)):
        opener = source
    else:
        raise ImageInputError(f"got {_type_name(source)}, which is not an image file; pass {ACCEPTED}.")
    subject = _file_subject(source, name)

    try:
        opened = PIL.Image.open(opener)
    except PIL.Image.DecompressionBombError:
        limit = 2 * (PIL.Image.MAX_IMAGE_PIXELS or 0)  # PIL refuses above twice its warning size
        raise ImageInputError(_too_large(subject, f"more than {limit / 1e6:.0f} MP", max_pixels)) from None
    except PIL.UnidentifiedImageError:
        raise ImageInputError(
            f"{subject} is not an image file PIL can read; pass a JPEG, PNG, WebP, GIF, BMP or TIFF image."
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        # Some decoders (JPEG) already fail while PIL.Image.open reads the headers of a damaged file.
        raise ImageInputError(_damaged(subject, error)) from None
    width, height = opened.size
    if width * height > max_pixels:
        opened.close()
        raise ImageInputError(_too_large(subject, f"{width}x{height} pixels ({width * height / 1e6:.0f} MP)", max_pixels))
    return opened


def _file_subject(source: Any, name: str | None) -> str:
    """How messages call a file source: its name or path quoted, else what it is."""
    if isinstance(source, dict):
        source = source["bytes"] if source.get("bytes") is not None else source["path"]
    label = name or (source if isinstance(source, (str, os.PathLike)) else getattr(source, "name", None))
    if label:
        return repr(os.fsdecode(label))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"the image data ({len(source)} bytes)"
    return "the image file"


def _too_large(subject: str, size: str, max_pixels: int) -> str:
    return f"{subject} is {size}, above the limit of {max_pixels / 1e6:.0f} MP for one image; downscale it first."


def _damaged(subject: str, error: BaseException) -> str:
    return (
        f"{subject} could not be decoded ({error}); the file is damaged or incomplete, so re-save or re-download it."
    )


def _shorten(text: str, limit: int = 80) -> str:
    """A data URL can be megabytes long: messages quote its start only."""
    return text if len(text) <= limit else text[:limit] + "..."


def _type_name(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} (a nested list of images?)"
    if isinstance(value, dict):
        return "a dict without image 'bytes' or 'path' (the form of a datasets image)"
    return f"an object of type {type(value).__name__}"


# ---------------------------------------------------------------------------------------------- decoding
def read_image(
    image: Any,
    name: str | None = None,
    convert_rgb: bool = True,
    channels_first: bool | None = None,
) -> PIL.Image.Image | np.ndarray:
    """One image in the canonical form: an 8-bit PIL "RGB" image, or a float32 `(H, W, 3)` array in [0, 255] for
    higher-precision data (16-bit, float), so that nothing is lost before resizing.

    Args:
        image: any accepted input (see the module doc).
        name: how messages call the input; default its path, file name or kind.
        convert_rgb: when False, anything that is not already 3-channel RGB is refused.
        channels_first: where the channels of a 3-D array/tensor are when its shape leaves it ambiguous (e.g.
            `(3, 4, 4)`); `None` reads numpy arrays as channels-last and torch tensors as channels-first.

    Raises:
        `ImageInputError` naming the input, the problem and what to do.
    """
    if isinstance(image, PIL.Image.Image):
        return _pil_to_canonical(image, _pil_subject(image, name), convert_rgb)
    if isinstance(image, torch.Tensor):
        if image.is_complex():
            raise ImageInputError(f"{name or 'the tensor'} has dtype {image.dtype}; {_DTYPES}")
        tensor = image.detach().cpu()
        # numpy has no bfloat16, and float16 arithmetic is lossy: float tensors are read in float32.
        if tensor.is_floating_point():
            tensor = tensor.float()
        first = True if channels_first is None else channels_first
        return _array_to_canonical(tensor.numpy(), name or "the tensor", convert_rgb, channels_first, first)
    if isinstance(image, np.ndarray):
        return _array_to_canonical(image, name or "the array", convert_rgb, channels_first, False)
    if is_file_source(image):
        with open_image(image, name=name) as opened:
            return _pil_to_canonical(opened, _file_subject(image, name), convert_rgb)
    raise ImageInputError(f"got {_type_name(image)} instead of an image; pass {ACCEPTED}.")


def read_rgb_image(image: Any, name: str | None = None, channels_first: bool | None = None) -> PIL.Image.Image:
    """`read_image` as an 8-bit PIL "RGB" image, what face detection, cropping and training batches work on."""
    canonical = read_image(image, name=name, channels_first=channels_first)
    if isinstance(canonical, PIL.Image.Image):
        return canonical
    return PIL.Image.fromarray(np.clip(np.round(canonical), 0, 255).astype(np.uint8))  # (H, W, 3) float -> RGB


_DTYPES = "pass uint8 (0-255), uint16 (0-65535) or float (0-1) values."


def _pil_subject(image: PIL.Image.Image, name: str | None) -> str:
    filename = name or getattr(image, "filename", None)
    return repr(os.fsdecode(filename)) if filename else "the image"


def _pil_to_canonical(image: PIL.Image.Image, subject: str, convert_rgb: bool) -> PIL.Image.Image | np.ndarray:
    """Canonical RGB from a PIL image: first frame, decoded, EXIF orientation applied, mode converted."""
    try:
        frame = _first_frame(image)
        # exif_transpose copies even an upright image, and the pipeline reads a photo for detection and for every crop.
        if frame.getexif().get(PIL.ExifTags.Base.Orientation, 1) != 1:
            frame = PIL.ImageOps.exif_transpose(frame)
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        # PIL raises OSError ("image file is truncated") or SyntaxError (broken chunk) when a file is damaged.
        raise ImageInputError(_damaged(subject, error)) from None
    if frame.width == 0 or frame.height == 0:
        raise ImageInputError(f"{subject} has zero size ({frame.width}x{frame.height}); pass a real image.")

    mode = frame.mode
    if mode == "RGB" and "transparency" not in frame.info:
        return frame
    if not convert_rgb:
        raise ImageInputError(
            f"{subject} has PIL mode {mode!r} but do_convert_rgb=False accepts only RGB; "
            "set do_convert_rgb=True or convert the image yourself."
        )
    if mode == "I" or mode.startswith("I;16"):
        # PIL's own convert("RGB") clips 16-bit values at 255, so scale 0-65535 onto 0-255 here.
        values = np.asarray(frame).astype(np.float32)
        if values.min() < 0 or values.max() > _16BIT_MAX:
            raise ImageInputError(
                f"{subject} has PIL mode {mode!r} with values {values.min():g}..{values.max():g}, outside the 16-bit "
                "range 0-65535 that mode is read as; rescale it to 0-65535 or 0-255 (mode 'L')."
            )
        return _grey_float_to_rgb(values * np.float32(255.0 / _16BIT_MAX))
    if mode == "F":
        return _float_to_canonical(np.asarray(frame, dtype=np.float32), subject)
    if mode in _ALPHA_MODES or "transparency" in frame.info:
        return _composite_on_background(frame.convert("RGBA"))
    try:
        return frame.convert("RGB")
    except (ValueError, OSError) as error:
        raise ImageInputError(
            f"{subject} has PIL mode {mode!r}, which PIL cannot convert to RGB ({error}); convert it to RGB first."
        ) from None


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
    background = PIL.Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
    return PIL.Image.alpha_composite(background, rgba).convert("RGB")


def _array_to_canonical(
    array: np.ndarray, subject: str, convert_rgb: bool, channels_first: bool | None, default_first: bool
) -> PIL.Image.Image | np.ndarray:
    """Canonical RGB from a numpy array (torch tensors arrive here as numpy), validating shape, dtype and values."""
    shape = tuple(array.shape)
    if array.ndim not in (2, 3):
        raise ImageInputError(
            f"{subject} has shape {shape}; expected (H, W), (H, W, C) or (C, H, W) "
            "(a 4-D batch must be passed on its own, not inside a list)."
        )
    if array.size == 0:
        raise ImageInputError(f"{subject} is empty (shape {shape}); pass an image with pixels.")
    if array.ndim == 3:
        array = _channels_last(array, subject, channels_first, default_first)
        if array.shape[2] == 1:
            array = array[:, :, 0]
    channels = 1 if array.ndim == 2 else array.shape[2]
    if channels != 3 and not convert_rgb:
        raise ImageInputError(
            f"{subject} has {channels} channel(s) but do_convert_rgb=False accepts only RGB; "
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
            raise ImageInputError(
                f"{subject} has dtype {array.dtype} with values {low}..{high}; integer images other than uint16 "
                f"must hold 0-255, so {_DTYPES}"
            )
        return _uint8_to_canonical(array.astype(np.uint8))
    if kind == "f":
        return _float_to_canonical(array.astype(np.float32), subject)
    raise ImageInputError(f"{subject} has dtype {array.dtype}; {_DTYPES}")


def _channels_last(array: np.ndarray, subject: str, channels_first: bool | None, default_first: bool) -> np.ndarray:
    """(H, W, C) from a 3-D array whose channel axis is first or last."""
    first_ok = array.shape[0] in _CHANNEL_COUNTS
    last_ok = array.shape[2] in _CHANNEL_COUNTS
    if channels_first is None:
        channels_first = default_first if first_ok and last_ok else first_ok
    if (channels_first and not first_ok) or (not channels_first and not last_ok):
        raise ImageInputError(
            f"{subject} has shape {tuple(array.shape)}; expected 1, 3 or 4 channels (grey, RGB, RGBA) on the "
            f"{'first' if channels_first else 'last'} axis{'' if first_ok or last_ok else ' or on the other one'}, "
            "so convert it to grey, RGB or RGBA first."
        )
    return array.transpose(1, 2, 0) if channels_first else array  # (C, H, W) -> (H, W, C)


def _uint8_to_canonical(array: np.ndarray) -> PIL.Image.Image:
    """8-bit data goes through PIL, so an array and the PIL image holding the same pixels give the same output."""
    image = PIL.Image.fromarray(np.ascontiguousarray(array))  # (H, W) -> "L", (H, W, 3) -> "RGB", (H, W, 4) -> "RGBA"
    if image.mode == "RGBA":
        return _composite_on_background(image)
    return image.convert("RGB")


def _float_to_canonical(array: np.ndarray, subject: str) -> np.ndarray:
    """Canonical float RGB from float data in [0, 1] (grey, RGB or RGBA), checked for NaN/inf and range."""
    if not np.isfinite(array).all():
        raise ImageInputError(f"{subject} contains NaN or infinite values; pass finite values in [0, 1].")
    low, high = float(array.min()), float(array.max())
    if low < -_FLOAT_TOLERANCE or high > 1 + _FLOAT_TOLERANCE:
        raise ImageInputError(
            f"{subject} is float with values {low:g}..{high:g}; float images must hold [0, 1] (unnormalised), so "
            "divide 0-255 data by 255 or pass it as uint8."
        )
    return _float_rgb(np.clip(array, 0.0, 1.0) * np.float32(255.0))


def _float_rgb(array: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 in [0, 255] from grey (H, W), RGB or RGBA (H, W, 3|4) float data already in [0, 255]."""
    if array.ndim == 2:
        return _grey_float_to_rgb(array)
    if array.shape[2] == 4:
        alpha = array[:, :, 3:] / np.float32(255.0)
        background = np.asarray(BACKGROUND, dtype=np.float32)
        return (array[:, :, :3] * alpha + background * (1 - alpha)).astype(np.float32)
    return array.astype(np.float32)


def _grey_float_to_rgb(array: np.ndarray) -> np.ndarray:
    return np.repeat(array.astype(np.float32)[:, :, None], 3, axis=2)  # (H, W) -> (H, W, 3)


__all__ = [
    "ACCEPTED",
    "MAX_PIXELS",
    "ImageInputError",
    "is_file_source",
    "open_image",
    "read_image",
    "read_rgb_image",
    "split_batch",
]
