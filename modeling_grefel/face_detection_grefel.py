"""Face detection and cropping for GReFEL: OpenCV's Haar cascades find faces, a square crop with margin feeds the model.

This file is copied next to `config.json` on the Hub with the pipeline, so at module level it imports only the
standard library, numpy, PIL and `image_input_grefel.py`, the image reader every entry point shares. OpenCV (`pip install "emotionnet[faces]"`, i.e. `opencv-python-headless<5`) is
imported when a detector first runs; its 4.x wheels ship the cascade files under `cv2.data.haarcascades`.

The same `FaceDetector.detect` and `FaceDetector.crop` that serve the pipeline can prepare raw datasets
(`detector.crop(image, detector.detect(image)[0])`), so a model is trained on crops framed as the ones it later sees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image

from .image_input_grefel import read_rgb_image

FACE_CASCADE = "haarcascade_frontalface_default.xml"
EYE_CASCADE = "haarcascade_eye.xml"
# The frontal-face cascade was trained on 24x24 windows: nothing smaller can be found.
_CASCADE_WINDOW = 24
# Eyes are searched in the upper part of the face box, where they sit in a frontal face.
_EYE_REGION_HEIGHT = 0.6
_EYE_MIN_NEIGHBORS = 3
_INSTALL_HINT = 'pip install "emotionnet[faces]" (or opencv-python-headless>=4.8,<5)'

# Cascades by file name: loading one parses a large XML file, so each process does it once.
_CASCADES: dict[str, Any] = {}


@dataclass
class FaceBox:
    """One detected face in original-image pixel coordinates (x to the right, y down; x1/y1 exclusive).

    `score` is the cascade's confidence (its final stage weight; larger is surer). `left_eye` / `right_eye` are the
    (x, y) centres of the eye on the image's left and on its right, filled only by an aligning detector that found both.
    """

    x0: int
    y0: int
    x1: int
    y1: int
    score: float
    left_eye: tuple[float, float] | None = None
    right_eye: tuple[float, float] | None = None

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def area(self) -> int:
        return self.width * self.height

    def as_dict(self) -> dict[str, int]:
        """The box as the pipeline reports it: {"xmin", "ymin", "xmax", "ymax"} in whole pixels."""
        return {"xmin": self.x0, "ymin": self.y0, "xmax": self.x1, "ymax": self.y1}


def _import_cv2():
    # Inside a try block so that transformers' remote-code import check does not demand OpenCV to load the pipeline.
    try:
        import cv2
    except ImportError as error:
        raise ImportError(
            f"Face detection in face_detection_grefel.py needs OpenCV, which is not installed; run {_INSTALL_HINT}."
        ) from error
    return cv2


def _cascade(file_name: str):
    """The OpenCV cascade bundled with the installed OpenCV, loaded once per process."""
    if file_name not in _CASCADES:
        cv2 = _import_cv2()
        path = cv2.data.haarcascades + file_name
        classifier = cv2.CascadeClassifier(path)
        if classifier.empty():
            raise RuntimeError(
                f"OpenCV could not load its bundled cascade {path}; reinstall OpenCV 4.x with {_INSTALL_HINT}."
            )
        _CASCADES[file_name] = classifier
    return _CASCADES[file_name]


class FaceDetector:
    """Finds frontal faces with OpenCV's Haar cascade and cuts square, margin-padded (optionally eye-levelled) crops.

    Args:
        min_face_size (`int`, *optional*, defaults to 24): smallest face side, in original-image pixels, to report.
        scale_factor (`float`, *optional*, defaults to 1.1): step between the cascade's search scales (> 1).
        min_neighbors (`int`, *optional*, defaults to 5): overlapping hits a face needs; higher means fewer false faces.
        margin (`float`, *optional*, defaults to 0.2): context added on every side of the crop, as a fraction of the
            box's longer side.
        align (`bool`, *optional*, defaults to `False`): find the eyes and rotate crops so that they are level.
        max_side (`int`, *optional*, defaults to 1024): larger images are shrunk to this longer side for detection
            (boxes are mapped back to the original), which bounds the time one photo takes.

    Example:

    ```python
    >>> detector = FaceDetector(margin=0.2)
    >>> boxes = detector.detect(photo)  # largest face first
    >>> face = detector.crop(photo, boxes[0]) if boxes else None
    ```
    """

    def __init__(
        self,
        min_face_size: int = 24,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        margin: float = 0.2,
        align: bool = False,
        max_side: int = 1024,
    ) -> None:
        if isinstance(min_face_size, bool) or not isinstance(min_face_size, int) or min_face_size < 1:
            raise ValueError(f"FaceDetector: min_face_size must be a positive int (pixels), got {min_face_size!r}.")
        if isinstance(scale_factor, bool) or not isinstance(scale_factor, (int, float)) or not scale_factor > 1:
            raise ValueError(f"FaceDetector: scale_factor must be a number above 1 (e.g. 1.1), got {scale_factor!r}.")
        if isinstance(min_neighbors, bool) or not isinstance(min_neighbors, int) or min_neighbors < 0:
            raise ValueError(f"FaceDetector: min_neighbors must be a non-negative int, got {min_neighbors!r}.")
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin <= 2:
            raise ValueError(f"FaceDetector: margin must be a number in [0, 2] (fraction of the face), got {margin!r}.")
        if not isinstance(align, bool):
            raise ValueError(f"FaceDetector: align must be True or False, got {align!r}.")
        if isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < _CASCADE_WINDOW:
            raise ValueError(f"FaceDetector: max_side must be an int of at least {_CASCADE_WINDOW}, got {max_side!r}.")
        self.min_face_size = min_face_size
        self.scale_factor = float(scale_factor)
        self.min_neighbors = min_neighbors
        self.margin = float(margin)
        self.align = align
        self.max_side = max_side

    @classmethod
    def for_video(cls, **kwargs) -> FaceDetector:
        """A detector for webcam frames: searches a 320-px copy in coarser steps (scale factor 1.2).

        Measured on a 640x480 frame with one face (`python scripts/benchmark.py --sections latency`, one thread, AMD
        EPYC, 2026-12-02, `benchmarks/latency.json`): 23 ms against 124 ms for the defaults, the same face found; faces under ~36 px in a 640-px
        frame are missed. Keyword arguments override these settings.
        """
        return cls(**{"max_side": 320, "scale_factor": 1.2, **kwargs})

    def __repr__(self) -> str:
        return (
            f"FaceDetector(min_face_size={self.min_face_size}, scale_factor={self.scale_factor}, "
            f"min_neighbors={self.min_neighbors}, margin={self.margin}, align={self.align}, max_side={self.max_side})"
        )

    # ------------------------------------------------------------------ detection
    def detect(self, image: Any) -> list[FaceBox]:
        """Every face in `image`, largest first, as `FaceBox`es in the image's own pixel coordinates.

        `image` is anything `image_input_grefel.read_image` reads (a PIL image of any mode, an array, a tensor, a
        file), read the same way: EXIF orientation applied, transparency on white, 16-bit scaled. Images smaller than
        the cascade's window give `[]`. The result is deterministic: the same image always gives the same boxes in the
        same order. Raises `ImageInputError` for an input that is not a usable image.
        """
        photo = read_rgb_image(image)
        width, height = photo.size
        if min(width, height) < max(self.min_face_size, _CASCADE_WINDOW):
            return []
        grey = np.asarray(photo.convert("L"), dtype=np.uint8)  # (H, W) luminance, what the cascades were trained on
        scale = min(1.0, self.max_side / max(width, height))
        if scale < 1.0:
            small = (max(1, round(width * scale)), max(1, round(height * scale)))
            grey = np.asarray(PIL.Image.fromarray(grey).resize(small, PIL.Image.Resampling.BILINEAR))
        min_side = max(_CASCADE_WINDOW, round(self.min_face_size * scale))
        if min(grey.shape) < min_side:
            return []
        # detectMultiScale3 with outputRejectLevels also returns each face's final-stage weight, used as its score.
        rects, _levels, weights = _cascade(FACE_CASCADE).detectMultiScale3(
            grey,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(min_side, min_side),
            outputRejectLevels=True,
        )
        boxes = []
        for (x, y, w, h), weight in zip(np.asarray(rects).reshape(-1, 4), np.asarray(weights).reshape(-1)):
            # Back to original pixels; rounding and clipping keep the box inside the image it was found in.
            box = FaceBox(
                x0=max(0, int(round(x / scale))),
                y0=max(0, int(round(y / scale))),
                x1=min(width, int(round((x + w) / scale))),
                y1=min(height, int(round((y + h) / scale))),
                score=float(weight),
            )
            if self.align:
                box.left_eye, box.right_eye = self._find_eyes(grey, (x, y, w, h), scale)
            boxes.append(box)
        boxes.sort(key=lambda b: (-b.area, b.y0, b.x0))
        return boxes

    def _find_eyes(
        self, grey: np.ndarray, rect: tuple[int, int, int, int], scale: float
    ) -> tuple[tuple[float, float] | None, tuple[float, float] | None]:
        """(left, right) eye centres in original coordinates, or (None, None) unless one eye is found on each side."""
        x, y, w, h = (int(v) for v in rect)
        region = grey[y : y + max(1, int(h * _EYE_REGION_HEIGHT)), x : x + w]
        min_eye = max(5, w // 10)
        if min(region.shape) < min_eye:
            return None, None
        rects, _levels, weights = _cascade(EYE_CASCADE).detectMultiScale3(
            region, scaleFactor=1.1, minNeighbors=_EYE_MIN_NEIGHBORS, minSize=(min_eye, min_eye),
            outputRejectLevels=True,
        )
        # The surest eye on each half of the face: a face has one eye per side, anything else is a false hit.
        best: dict[str, tuple[float, float, float]] = {}
        for (ex, ey, ew, eh), weight in zip(np.asarray(rects).reshape(-1, 4), np.asarray(weights).reshape(-1)):
            cx, cy = float(ex + ew / 2.0), float(ey + eh / 2.0)
            side = "left" if cx < w / 2.0 else "right"
            if side not in best or weight > best[side][0]:
                best[side] = (float(weight), cx, cy)
        if len(best) < 2:
            return None, None
        (_, lx, ly), (_, rx, ry) = best["left"], best["right"]
        return ((x + lx) / scale, (y + ly) / scale), ((x + rx) / scale, (y + ry) / scale)

    # ------------------------------------------------------------------ cropping
    def crop(self, image: Any, box: FaceBox | dict[str, int]) -> PIL.Image.Image:
        """The square RGB crop the model sees for `box`: centred on it, its longer side plus `margin` on every side.

        `image` is read as `detect` reads it, so a box `detect` found frames the same pixels. `box` is a `FaceBox` or
        the pipeline's {"xmin", "ymin", "xmax", "ymax"} dict. Parts beyond the image are filled with black. When the
        detector aligns and the box carries both eyes, the image is first rotated about the box centre so that the
        eyes are level.
        """
        image = read_rgb_image(image)
        box = _as_face_box(box)
        cx, cy = (box.x0 + box.x1) / 2.0, (box.y0 + box.y1) / 2.0
        side = max(box.width, box.height) * (1.0 + 2.0 * self.margin)
        side_px = max(1, int(round(side)))
        if self.align and box.left_eye is not None and box.right_eye is not None:
            (lx, ly), (rx, ry) = box.left_eye, box.right_eye
            angle = math.degrees(math.atan2(ry - ly, rx - lx))
            # Cut a region large enough that the rotated square has no corners missing, rotate it about its centre
            # (PIL turns counter-clockwise for positive angles, which levels a right eye lying lower), then trim.
            outer = int(math.ceil(side * math.sqrt(2.0))) + 2
            region = _padded_crop(image, cx, cy, outer)
            region = region.rotate(angle, resample=PIL.Image.Resampling.BILINEAR)
            return _padded_crop(region, outer / 2.0, outer / 2.0, side_px)
        return _padded_crop(image, cx, cy, side_px)


def _padded_crop(image: PIL.Image.Image, cx: float, cy: float, side: int) -> PIL.Image.Image:
    """The `side` x `side` square centred on (cx, cy); PIL fills what lies outside the image with zeros."""
    x0 = int(math.floor(cx - side / 2.0))
    y0 = int(math.floor(cy - side / 2.0))
    return image.crop((x0, y0, x0 + side, y0 + side))


def _as_face_box(box: FaceBox | dict[str, int]) -> FaceBox:
    if isinstance(box, FaceBox):
        return box
    if isinstance(box, dict) and {"xmin", "ymin", "xmax", "ymax"} <= set(box):
        return FaceBox(
            int(round(box["xmin"])), int(round(box["ymin"])), int(round(box["xmax"])), int(round(box["ymax"])),
            score=float(box.get("score", 0.0)),
        )
    raise TypeError(
        f'FaceDetector.crop: box must be a FaceBox or a dict with "xmin", "ymin", "xmax", "ymax", got {box!r}.'
    )


__all__ = [
    "EYE_CASCADE",
    "FACE_CASCADE",
    "FaceBox",
    "FaceDetector",
]
