"""Face detection and cropping (modeling_grefel/face_detection_grefel.py) on public-domain photos from scikit-image."""

from __future__ import annotations

import sys

import numpy as np
import PIL.Image
import pytest
from face_images import ASTRONAUT_FACE, multi_face_photo, no_face_photo, one_face_photo

from modeling_grefel import face_detection_grefel
from modeling_grefel.face_detection_grefel import FaceBox, FaceDetector


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def corners(box: FaceBox) -> tuple[float, float, float, float]:
    return box.x0, box.y0, box.x1, box.y1


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="module")
def astronaut() -> PIL.Image.Image:
    return one_face_photo()


@pytest.fixture(scope="module")
def astronaut_box(detector, astronaut) -> FaceBox:
    (box,) = detector.detect(astronaut)
    return box


def test_detects_the_astronauts_face_where_it_is(astronaut_box):
    assert iou(corners(astronaut_box), ASTRONAUT_FACE) > 0.9
    assert astronaut_box.score > 0


def test_detects_every_face_of_the_group_photo_largest_first(detector):
    photo, count = multi_face_photo()
    boxes = detector.detect(photo)
    assert len(boxes) == count
    areas = [b.area for b in boxes]
    assert areas == sorted(areas, reverse=True) and areas[0] > areas[-1]
    assert all(iou(corners(a), corners(b)) == 0 for i, a in enumerate(boxes) for b in boxes[i + 1 :])


def test_finds_no_face_in_the_coffee_photo(detector):
    assert detector.detect(no_face_photo()) == []


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16"])
def test_grey_transparent_and_16bit_images_give_the_same_face(detector, astronaut, astronaut_box, mode):
    if mode == "I;16":
        values = np.asarray(astronaut.convert("L"), dtype=np.uint16) * 257  # 0-255 -> 0-65535
        image = PIL.Image.fromarray(values)
    else:
        image = astronaut.convert(mode)
    (box,) = detector.detect(image)
    assert iou(corners(box), corners(astronaut_box)) > 0.95


def test_large_images_are_shrunk_for_detection_and_boxes_mapped_back(astronaut, astronaut_box):
    big = astronaut.resize((1024, 1024), PIL.Image.Resampling.BILINEAR)
    boxes = FaceDetector(max_side=512).detect(big)
    doubled = tuple(2 * v for v in corners(astronaut_box))
    assert iou(corners(boxes[0]), doubled) > 0.9


def test_images_smaller_than_the_cascade_window_have_no_face(detector, astronaut):
    assert detector.detect(astronaut.resize((20, 20))) == []


def test_min_face_size_drops_smaller_faces():
    photo, _ = multi_face_photo()
    boxes = FaceDetector(min_face_size=70).detect(photo)
    assert boxes and all(min(b.width, b.height) >= 70 for b in boxes)
    assert len(boxes) < 3


def test_detection_is_deterministic(detector):
    photo, _ = multi_face_photo()
    assert detector.detect(photo) == detector.detect(photo)


def test_crop_is_the_square_around_the_box_with_margin(astronaut, astronaut_box):
    crop = FaceDetector(margin=0.2).crop(astronaut, astronaut_box)
    side = round(max(astronaut_box.width, astronaut_box.height) * 1.4)
    assert crop.size == (side, side)
    cx, cy = (astronaut_box.x0 + astronaut_box.x1) / 2, (astronaut_box.y0 + astronaut_box.y1) / 2
    x0, y0 = int(np.floor(cx - side / 2)), int(np.floor(cy - side / 2))
    np.testing.assert_array_equal(np.asarray(crop), np.asarray(astronaut)[y0 : y0 + side, x0 : x0 + side])


def test_crop_pads_with_zeros_beyond_the_border(astronaut):
    crop = FaceDetector(margin=0.0).crop(astronaut, FaceBox(0, 0, 40, 40, score=1.0))
    pixels = np.asarray(crop)
    assert crop.size == (40, 40)
    np.testing.assert_array_equal(pixels, np.asarray(astronaut)[:40, :40])
    padded = FaceDetector(margin=0.5).crop(astronaut, FaceBox(0, 0, 40, 40, score=1.0))
    assert padded.size == (80, 80)
    assert not np.asarray(padded)[:20, :20].any() and np.asarray(padded)[20:, 20:].any()


def test_crop_accepts_the_pipelines_box_dict(detector, astronaut, astronaut_box):
    from_dict = detector.crop(astronaut, astronaut_box.as_dict())
    np.testing.assert_array_equal(np.asarray(from_dict), np.asarray(detector.crop(astronaut, astronaut_box)))


def test_aligning_detector_finds_one_eye_on_each_side_of_the_face(astronaut):
    (box,) = FaceDetector(align=True).detect(astronaut)
    (lx, ly), (rx, ry) = box.left_eye, box.right_eye
    assert box.x0 < lx < (box.x0 + box.x1) / 2 < rx < box.x1
    assert box.y0 < ly < (box.y0 + box.y1) / 2 and box.y0 < ry < (box.y0 + box.y1) / 2


def test_alignment_levels_the_eyes_of_a_tilted_face(astronaut, astronaut_box):
    # Turn the photo 15 degrees clockwise about the face; the aligned crop must look like the upright face again.
    centre = ((astronaut_box.x0 + astronaut_box.x1) / 2, (astronaut_box.y0 + astronaut_box.y1) / 2)
    tilted = astronaut.rotate(-15, center=centre, resample=PIL.Image.Resampling.BILINEAR)
    upright = np.asarray(FaceDetector().crop(astronaut, astronaut_box).resize((64, 64)), dtype=np.float32)
    aligner = FaceDetector(align=True)
    (box,) = aligner.detect(tilted)
    assert box.right_eye[1] > box.left_eye[1]  # tilted clockwise: the right eye sits lower
    aligned = np.asarray(aligner.crop(tilted, box).resize((64, 64)), dtype=np.float32)
    plain = np.asarray(FaceDetector().crop(tilted, box).resize((64, 64)), dtype=np.float32)
    assert np.abs(aligned - upright).mean() < 0.7 * np.abs(plain - upright).mean()


@pytest.mark.parametrize(
    "kwargs",
    [{"min_face_size": 0}, {"scale_factor": 1.0}, {"min_neighbors": -1}, {"margin": -0.1}, {"align": "yes"},
     {"max_side": 10}],
)
def test_bad_settings_are_refused_by_name(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        FaceDetector(**kwargs)


def test_missing_opencv_is_reported_with_the_install_command(monkeypatch, astronaut):
    monkeypatch.setitem(sys.modules, "cv2", None)  # makes `import cv2` raise ImportError
    monkeypatch.setattr(face_detection_grefel, "_CASCADES", {})
    with pytest.raises(ImportError, match=r'pip install "emotionnet\[faces\]"'):
        FaceDetector().detect(astronaut)


def test_remote_code_loading_does_not_require_opencv():
    from transformers.dynamic_module_utils import get_imports

    third_party = set(get_imports(face_detection_grefel.__file__)) - set(sys.stdlib_module_names) - {"__future__"}
    assert third_party == {"numpy", "PIL"}
