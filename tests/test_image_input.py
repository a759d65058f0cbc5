"""One image reader (modeling_grefel/image_input_grefel.py) behind every entry point: the image processor, the face
pipeline, the face detector, the training loader and the Space accept the same inputs, read to the same pixels,
and refuse the same bad ones with the same sentence."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from test_space import _import_space_module, write_huge_png

from emotionnet.data import SafeImageLoader
from modeling_grefel import GReFELForImageClassification, GReFELImageProcessor, image_input_grefel
from modeling_grefel.image_input_grefel import ImageInputError, read_rgb_image
from modeling_grefel.pipeline_grefel import FacialExpressionPipeline

HEIGHT, WIDTH = 32, 40


def gradient(channels: int = 3) -> np.ndarray:
    """(HEIGHT, WIDTH, channels) float32 in [0, 1] with no two rows or columns alike, so rotations show."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    planes = [(y / HEIGHT), (x / WIDTH), ((x + 2 * y) % 7) / 7][:channels]
    return np.stack(planes, axis=2)


def png_bytes(image: PIL.Image.Image, **save_kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **save_kwargs)
    return buffer.getvalue()


def grey16_png(folder: Path) -> str:
    values = (gradient(1)[:, :, 0] * 65535).astype(np.uint16)
    PIL.Image.fromarray(values).save(folder / "grey16.png")
    return "grey16.png"


def palette_with_alpha_png(folder: Path) -> str:
    image = PIL.Image.fromarray((gradient() * 255).astype(np.uint8)).quantize(16)
    image.save(folder / "palette.png", transparency=0)
    return "palette.png"


def exif_rotated_jpeg(folder: Path) -> str:
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # Orientation 6: turn 90 degrees clockwise to be upright
    PIL.Image.fromarray((gradient() * 255).astype(np.uint8)).save(folder / "rotated.jpg", exif=exif, quality=95)
    return "rotated.jpg"


def truncated_png(folder: Path) -> str:
    data = png_bytes(PIL.Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)))
    (folder / "cut.png").write_bytes(data[: len(data) // 2])
    return "cut.png"


# Each case: (make the input inside the working folder, None if it is accepted, else a fragment of its refusal).
# File inputs are relative paths, so the processor's "the path as given" and the Space's "the file's own name" agree.
CASES = {
    "16-bit grey png": (grey16_png, None),
    "float array 0-1": (lambda d: gradient(), None),
    "bfloat16 tensor": (lambda d: torch.from_numpy(gradient()).permute(2, 0, 1).to(torch.bfloat16), None),
    "palette with alpha": (palette_with_alpha_png, None),
    "exif-rotated jpeg": (exif_rotated_jpeg, None),
    "png bytes": (lambda d: png_bytes(PIL.Image.fromarray((gradient() * 255).astype(np.uint8))), None),
    "url": (lambda d: "https://example.com/face.jpg", "is a URL; images are not downloaded here"),
    "missing file": (lambda d: "nope.jpg", "'nope.jpg' is not an existing file"),
    "truncated file": (truncated_png, "'cut.png' could not be decoded"),
    "non-image bytes": (lambda d: b"GIF89a? not really", "the image data (18 bytes) is not an image file PIL can read"),
    "huge dimensions": (lambda d: write_huge_png(d / "huge.png", 8000).name, "'huge.png' is 8000x8000 pixels (64 MP)"),
    "beyond pil's guard": (lambda d: write_huge_png(d / "vast.png", 20000).name, "'vast.png' is more than"),
    "nan array": (lambda d: np.full((4, 4), np.nan, np.float32), "the array contains NaN or infinite values"),
}


@pytest.fixture(scope="module")
def pipe(tiny_model_dir):
    model = GReFELForImageClassification.from_pretrained(tiny_model_dir).eval()
    return FacialExpressionPipeline(
        model=model, image_processor=GReFELImageProcessor.from_pretrained(tiny_model_dir), device="cpu"
    )


@pytest.fixture(scope="module")
def app_module():
    return _import_space_module("app")


def _processor(pipe, image):
    try:
        return "accepted", pipe.image_processor(image, return_tensors="pt")["pixel_values"]
    except ValueError as error:
        return "refused", str(error).removeprefix("GReFELImageProcessor: image 1 of 1: ")


def _pipeline(pipe, image):
    result = pipe(image, no_face="whole_image")
    if result["status"] == "error":
        return "refused", result["message"].removeprefix("image 1 of 1 could not be processed: ")
    return "accepted", result


def _detector(pipe, image):
    try:
        return "accepted", pipe.face_detector.detect(image)
    except ImageInputError as error:
        return "refused", str(error)


def _loader(pipe, image):
    loader = SafeImageLoader()
    decoded = loader(image)
    return ("accepted", decoded) if decoded is not None else ("refused", loader.skipped[0][1])


def _space(app_module, image):
    try:
        return "accepted", app_module.read_photo(image, image_input_grefel)[0]
    except app_module.UploadError as error:
        return "refused", str(error)


@pytest.mark.parametrize("case", list(CASES))
def test_every_entry_point_reads_or_refuses_an_input_the_same_way(case, pipe, app_module, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make, refusal = CASES[case]
    image = make(tmp_path)
    try:
        reference, expected = read_rgb_image(image), None
    except ImageInputError as error:
        reference, expected = None, str(error)
    assert (expected is None) == (refusal is None), expected
    if refusal is not None:
        assert refusal in expected

    outcomes = {
        "processor": _processor(pipe, image),
        "pipeline": _pipeline(pipe, image),
        "detector": _detector(pipe, image),
        "loader": _loader(pipe, image),
        "space": _space(app_module, image),
    }
    if expected is not None:
        assert outcomes == {name: ("refused", expected) for name in outcomes}
        return
    assert {name: verdict for name, (verdict, _) in outcomes.items()} == {name: "accepted" for name in outcomes}
    # The same pixels everywhere: what the loader and the Space hand on, what the detector and pipeline work on.
    assert np.array_equal(np.asarray(outcomes["loader"][1]), np.asarray(reference))
    assert np.array_equal(np.asarray(outcomes["space"][1]), np.asarray(reference))
    assert outcomes["detector"][1] == pipe.face_detector.detect(reference)
    assert outcomes["pipeline"][1] == pipe(reference, no_face="whole_image")
    # The processor keeps 16-bit and float inputs unquantised, so it may differ from the 8-bit reference by about one
    # 8-bit step: half from quantising the input, half from PIL's 8-bit resize (fixed-point weights, rounded output).
    torch.testing.assert_close(
        outcomes["processor"][1], pipe.image_processor(reference, return_tensors="pt")["pixel_values"],
        atol=2 / 255 / min(pipe.image_processor.image_std), rtol=0,
    )


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    image = read_rgb_image(tmp_path / grey16_png(tmp_path))
    np.testing.assert_allclose(np.asarray(image)[:, :, 0], gradient(1)[:, :, 0] * 255, atol=1)


def test_palette_transparency_is_composited_on_white(tmp_path):
    image = read_rgb_image(tmp_path / palette_with_alpha_png(tmp_path))
    source = PIL.Image.open(tmp_path / "palette.png")
    transparent = np.asarray(source) == 0  # palette index 0 is the transparent one
    assert transparent.any() and (np.asarray(image)[transparent] == 255).all()


def test_exif_orientation_turns_the_jpeg_upright(tmp_path):
    image = read_rgb_image(tmp_path / exif_rotated_jpeg(tmp_path))
    assert image.size == (HEIGHT, WIDTH)  # (width, height): 40x32 stored, 32x40 upright


def test_bfloat16_tensor_equals_its_float32_values():
    tensor = torch.from_numpy(gradient()).permute(2, 0, 1)  # (H, W, 3) -> (3, H, W)
    as_bf16 = read_rgb_image(tensor.to(torch.bfloat16))
    assert np.array_equal(np.asarray(as_bf16), np.asarray(read_rgb_image(tensor.to(torch.bfloat16).float())))


def test_a_datasets_image_dict_reads_its_bytes_or_its_path(tmp_path):
    name = grey16_png(tmp_path)
    by_path = read_rgb_image({"bytes": None, "path": str(tmp_path / name)})
    by_bytes = read_rgb_image({"bytes": (tmp_path / name).read_bytes(), "path": None})
    assert np.array_equal(np.asarray(by_path), np.asarray(by_bytes))
