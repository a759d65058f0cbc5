"""Tests of GReFELImageProcessor: every input kind, conversions, bad inputs, batching, saving and Hub-style reload."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import PIL.Image
import pytest
import torch

from modeling_grefel.image_processing_grefel import IMAGENET_MEAN, IMAGENET_STD, GReFELImageProcessor

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def raw(images, **kwargs) -> np.ndarray:
    """Pixels as the processor sees them after conversion: no resize, no normalisation, values in [0, 1]."""
    processor = GReFELImageProcessor(do_resize=False, do_normalize=False)
    return processor(images, return_tensors="np", **kwargs)["pixel_values"]


def rgb_at(pixels: np.ndarray, y: int = 0, x: int = 0) -> np.ndarray:
    """The 0-255 RGB value of the first image of a raw() batch at (y, x)."""
    return pixels[0, :, y, x] * 255


def random_rgb(height: int = 20, width: int = 30, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture
def small() -> GReFELImageProcessor:
    return GReFELImageProcessor(size={"height": 8, "width": 8})


# Defaults and output formats


def test_defaults_are_the_paper_preprocessing():
    processor = GReFELImageProcessor()
    assert processor.size == {"height": 224, "width": 224}
    assert processor.resample == PIL.Image.Resampling.BILINEAR
    assert processor.rescale_factor == pytest.approx(1 / 255)
    assert processor.image_mean == list(IMAGENET_MEAN) == [0.485, 0.456, 0.406]
    assert processor.image_std == list(IMAGENET_STD) == [0.229, 0.224, 0.225]
    assert processor.do_resize and processor.do_rescale and processor.do_normalize and processor.do_convert_rgb
    assert processor.model_input_names == ["pixel_values"]


def test_pt_output_is_float32_batch_at_default_size():
    pixel_values = GReFELImageProcessor()(PIL.Image.fromarray(random_rgb()), return_tensors="pt")["pixel_values"]
    assert isinstance(pixel_values, torch.Tensor)
    assert pixel_values.dtype == torch.float32
    assert pixel_values.shape == (1, 3, 224, 224)


def test_np_output_is_float32_array(small):
    pixel_values = small([random_rgb(), random_rgb(seed=1)], return_tensors="np")["pixel_values"]
    assert isinstance(pixel_values, np.ndarray)
    assert pixel_values.dtype == np.float32
    assert pixel_values.shape == (2, 3, 8, 8)


def test_no_return_tensors_gives_list_of_arrays(small):
    pixel_values = small([random_rgb(), random_rgb(seed=1)])["pixel_values"]
    assert isinstance(pixel_values, list) and len(pixel_values) == 2
    assert all(isinstance(p, np.ndarray) and p.shape == (3, 8, 8) and p.dtype == np.float32 for p in pixel_values)


def test_normalisation_uses_imagenet_mean_and_std(small):
    white = small(PIL.Image.new("RGB", (5, 5), WHITE), return_tensors="np")["pixel_values"][0]
    expected = (1 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(white[:, 0, 0], expected, rtol=1e-6)


def test_matches_transformers_pil_vit_processor_on_8bit_rgb():
    # The same resize/rescale/normalise chain as transformers' reference PIL backend, so 8-bit photos are
    # preprocessed exactly as any ViT-style checkpoint expects.
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    size = {"height": 16, "width": 12}
    reference = ViTImageProcessorPil(image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD), size=size)
    image = PIL.Image.fromarray(random_rgb(37, 23))
    ours = GReFELImageProcessor(size=size)(image, return_tensors="np")["pixel_values"]
    np.testing.assert_allclose(ours, reference(image, return_tensors="np")["pixel_values"], atol=1e-5)


def test_preprocess_arguments_override_the_settings(small):
    pixel_values = small(random_rgb(), size=5, do_normalize=False, return_tensors="np")["pixel_values"]
    assert pixel_values.shape == (1, 3, 5, 5)
    assert pixel_values.min() >= 0 and pixel_values.max() <= 1
    assert small.size == {"height": 8, "width": 8}


def test_rescale_off_keeps_8bit_range():
    pixels = raw(PIL.Image.new("RGB", (2, 2), (200, 100, 50)), do_rescale=False)
    np.testing.assert_allclose(pixels[0, :, 0, 0], [200, 100, 50])


def test_non_square_size_is_height_by_width():
    processor = GReFELImageProcessor(size={"height": 6, "width": 10})
    assert processor(random_rgb(), return_tensors="np")["pixel_values"].shape == (1, 3, 6, 10)


def test_from_config_is_a_square_of_the_image_size_with_imagenet_statistics():
    from modeling_grefel import GReFELConfig

    processor = GReFELImageProcessor.from_config(GReFELConfig.tiny(image_size=48))
    assert processor.size == {"height": 48, "width": 48}
    assert list(processor.image_mean) == list(IMAGENET_MEAN) and list(processor.image_std) == list(IMAGENET_STD)


# PIL images of each mode


def test_pil_rgb_values_are_kept():
    image = random_rgb(4, 5)
    np.testing.assert_allclose(raw(PIL.Image.fromarray(image))[0] * 255, image.transpose(2, 0, 1), atol=1e-4)


def test_pil_grey_l_is_repeated_on_three_channels():
    np.testing.assert_allclose(rgb_at(raw(PIL.Image.new("L", (3, 3), 77))), [77, 77, 77], atol=1e-4)


def test_pil_16bit_is_scaled_not_clipped():
    values = np.array([[0, 257 * 100], [65535, 32768]], dtype=np.uint16)
    image = PIL.Image.fromarray(values)
    assert image.mode == "I;16"
    pixels = raw(image)[0, 0] * 255
    np.testing.assert_allclose(pixels, values / 257.0, atol=1e-3)


def test_pil_32bit_i_mode_is_read_as_16bit():
    values = np.array([[0, 65535]], dtype=np.int32)
    image = PIL.Image.fromarray(values)
    assert image.mode == "I"
    np.testing.assert_allclose(raw(image)[0, 0, 0], [0.0, 1.0], atol=1e-6)


def test_16bit_png_file_keeps_its_precision(tmp_path):
    values = np.full((2, 2), 257 * 40 + 128, dtype=np.uint16)  # between two 8-bit levels
    PIL.Image.fromarray(values).save(tmp_path / "deep.png")
    np.testing.assert_allclose(rgb_at(raw(tmp_path / "deep.png")), [values[0, 0] / 257.0] * 3, atol=1e-3)


def test_pil_la_composites_on_white():
    transparent = rgb_at(raw(PIL.Image.new("LA", (2, 2), (100, 0))))
    opaque = rgb_at(raw(PIL.Image.new("LA", (2, 2), (100, 255))))
    np.testing.assert_allclose(transparent, WHITE, atol=1e-4)
    np.testing.assert_allclose(opaque, [100, 100, 100], atol=1e-4)


def test_pil_palette_with_transparency_composites_on_white():
    image = PIL.Image.new("P", (2, 2), 0)
    image.putpalette([*RED, *BLUE] + [0] * (256 * 3 - 6))
    image.putpixel((1, 1), 1)
    image.info["transparency"] = 0  # palette index 0 (red) is transparent
    pixels = raw(image)
    np.testing.assert_allclose(rgb_at(pixels, 0, 0), WHITE, atol=1e-4)
    np.testing.assert_allclose(rgb_at(pixels, 1, 1), BLUE, atol=1e-4)


def test_pil_palette_without_transparency_uses_its_colours():
    image = PIL.Image.new("P", (2, 2), 1)
    image.putpalette([*RED, *GREEN] + [0] * (256 * 3 - 6))
    np.testing.assert_allclose(rgb_at(raw(image)), GREEN, atol=1e-4)


def test_pil_rgba_composites_on_white():
    pixels = rgb_at(raw(PIL.Image.new("RGBA", (2, 2), (255, 0, 0, 128))))
    alpha = 128 / 255
    np.testing.assert_allclose(pixels, [255, 255 * (1 - alpha), 255 * (1 - alpha)], atol=1.0)


def test_pil_cmyk_converts_to_rgb():
    np.testing.assert_allclose(rgb_at(raw(PIL.Image.new("CMYK", (2, 2), (0, 255, 255, 0)))), RED, atol=1e-4)


def test_pil_1bit_gives_black_and_white():
    image = PIL.Image.new("1", (2, 1), 0)
    image.putpixel((1, 0), 1)
    pixels = raw(image)
    np.testing.assert_allclose(rgb_at(pixels, 0, 0), [0, 0, 0], atol=1e-4)
    np.testing.assert_allclose(rgb_at(pixels, 0, 1), WHITE, atol=1e-4)


def test_pil_float_mode_f_follows_the_float_rule():
    np.testing.assert_allclose(rgb_at(raw(PIL.Image.new("F", (2, 2), 0.5))), [127.5] * 3, atol=1e-3)


def _left_red_right_blue(path: pathlib.Path, orientation: int) -> None:
    image = PIL.Image.new("RGB", (40, 20), RED)
    image.paste(BLUE, (20, 0, 40, 20))
    exif = PIL.Image.Exif()
    exif[0x0112] = orientation
    image.save(path, exif=exif, quality=95)


def test_exif_orientation_is_applied_to_files(tmp_path):
    # Orientation 6: the stored pixels must turn 90 degrees clockwise to be upright, so the left (red) half
    # becomes the top half of a 20-wide, 40-tall picture.
    _left_red_right_blue(tmp_path / "rotated.jpg", orientation=6)
    pixels = raw(tmp_path / "rotated.jpg")
    assert pixels.shape == (1, 3, 40, 20)
    np.testing.assert_allclose(rgb_at(pixels, 5, 10), RED, atol=12)
    np.testing.assert_allclose(rgb_at(pixels, 35, 10), BLUE, atol=12)


def test_exif_orientation_is_applied_to_open_pil_images(tmp_path):
    _left_red_right_blue(tmp_path / "rotated.jpg", orientation=8)  # 90 degrees anticlockwise: red at the bottom
    with PIL.Image.open(tmp_path / "rotated.jpg") as image:
        pixels = raw(image)
    assert pixels.shape == (1, 3, 40, 20)
    np.testing.assert_allclose(rgb_at(pixels, 35, 10), RED, atol=12)


def _red_then_green_gif(path: pathlib.Path) -> None:
    frames = [PIL.Image.new("RGB", (4, 4), RED), PIL.Image.new("RGB", (4, 4), GREEN)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)


def test_animated_gif_file_gives_first_frame(tmp_path):
    _red_then_green_gif(tmp_path / "anim.gif")
    np.testing.assert_allclose(rgb_at(raw(tmp_path / "anim.gif")), RED, atol=1e-4)


def test_animated_image_gives_first_frame_and_keeps_callers_position(tmp_path):
    _red_then_green_gif(tmp_path / "anim.gif")
    with PIL.Image.open(tmp_path / "anim.gif") as image:
        image.seek(1)
        pixels = raw(image)
        assert image.tell() == 1
    np.testing.assert_allclose(rgb_at(pixels), RED, atol=1e-4)


# numpy arrays and torch tensors


def test_numpy_uint8_hwc_equals_pil():
    image = random_rgb(6, 7)
    np.testing.assert_array_equal(raw(image), raw(PIL.Image.fromarray(image)))


def test_numpy_chw_equals_hwc():
    image = random_rgb(6, 7)
    np.testing.assert_array_equal(raw(image.transpose(2, 0, 1)), raw(image))


def test_numpy_uint16_is_scaled_from_65535():
    image = np.full((3, 3, 3), 65535, dtype=np.uint16)
    image[..., 1] = 0
    np.testing.assert_allclose(rgb_at(raw(image)), [255, 0, 255], atol=1e-3)


def test_numpy_float_in_unit_range_equals_uint8():
    image = random_rgb(6, 7)
    np.testing.assert_allclose(raw(image.astype(np.float64) / 255), raw(image), atol=1e-5)


def test_numpy_grey_hw_and_hw1_equal_pil_l():
    grey = np.random.default_rng(0).integers(0, 256, (5, 6), dtype=np.uint8)
    expected = raw(PIL.Image.fromarray(grey))
    np.testing.assert_array_equal(raw(grey), expected)
    np.testing.assert_array_equal(raw(grey[:, :, None]), expected)


def test_numpy_rgba_equals_pil_rgba():
    image = np.random.default_rng(0).integers(0, 256, (5, 6, 4), dtype=np.uint8)
    np.testing.assert_array_equal(raw(image), raw(PIL.Image.fromarray(image, "RGBA")))


def test_numpy_float_rgba_composites_on_white():
    image = np.zeros((2, 2, 4), dtype=np.float32)  # black, alpha 0.25
    image[..., 3] = 0.25
    np.testing.assert_allclose(rgb_at(raw(image)), [255 * 0.75] * 3, atol=1e-3)


def test_numpy_int64_in_8bit_range_equals_uint8():
    image = random_rgb(4, 4)
    np.testing.assert_array_equal(raw(image.astype(np.int64)), raw(image))


def test_numpy_bool_gives_black_and_white():
    pixels = raw(np.array([[False, True]]))
    np.testing.assert_allclose(pixels[0, :, 0, :].T * 255, [[0, 0, 0], WHITE])


def test_torch_uint8_chw_equals_numpy_hwc():
    image = random_rgb(6, 7)
    np.testing.assert_array_equal(raw(torch.from_numpy(image.transpose(2, 0, 1).copy())), raw(image))


def test_torch_float_hwc_is_accepted():
    image = random_rgb(6, 7)
    tensor = torch.from_numpy(image).float() / 255
    np.testing.assert_allclose(raw(tensor), raw(image), atol=1e-5)


def test_torch_bfloat16_requiring_grad_is_accepted():
    tensor = torch.full((3, 2, 2), 0.5, dtype=torch.bfloat16, requires_grad=True)
    np.testing.assert_allclose(rgb_at(raw(tensor)), [127.5] * 3, atol=1e-3)


def test_ambiguous_shape_follows_each_library_convention():
    # (3, 4, 3) could hold channels first or last: numpy reads channels-last, torch channels-first.
    image = np.random.default_rng(0).integers(0, 256, (3, 4, 3), dtype=np.uint8)
    assert raw(image).shape == (1, 3, 3, 4)
    assert raw(torch.from_numpy(image)).shape == (1, 3, 4, 3)


def test_input_data_format_settles_ambiguous_shapes():
    image = np.random.default_rng(0).integers(0, 256, (3, 4, 3), dtype=np.uint8)
    assert raw(image, input_data_format="channels_first").shape == (1, 3, 4, 3)


def test_4d_array_is_a_batch():
    batch = np.stack([random_rgb(5, 5, seed=s) for s in range(3)])
    pixels = raw(batch)
    assert pixels.shape == (3, 3, 5, 5)
    np.testing.assert_array_equal(pixels[2], raw(batch[2])[0])


def test_one_pixel_image_is_fine(small):
    assert small(np.zeros((1, 1, 3), dtype=np.uint8), return_tensors="pt")["pixel_values"].shape == (1, 3, 8, 8)


def test_paths_as_str_and_pathlib_equal_the_opened_image(tmp_path):
    PIL.Image.fromarray(random_rgb()).save(tmp_path / "face.png")
    with PIL.Image.open(tmp_path / "face.png") as image:
        expected = raw(image)
    np.testing.assert_array_equal(raw(str(tmp_path / "face.png")), expected)
    np.testing.assert_array_equal(raw(tmp_path / "face.png"), expected)


def test_high_precision_input_is_resized_without_quantisation():
    # A 16-bit ramp resized in float: the output keeps levels between two 8-bit steps.
    ramp = np.linspace(10_000, 10_300, 64, dtype=np.float64).round().astype(np.uint16)
    image = np.tile(ramp, (4, 1))
    processor = GReFELImageProcessor(size={"height": 4, "width": 16}, do_normalize=False, do_rescale=False)
    row = processor(image, return_tensors="np")["pixel_values"][0, 0, 0]
    assert not np.allclose(row, np.round(row))


# Batches


def test_mixed_batch_equals_each_image_alone(small, tmp_path):
    PIL.Image.fromarray(random_rgb(9, 13, seed=3)).save(tmp_path / "face.png")
    images = [
        PIL.Image.fromarray(random_rgb(20, 30)),
        random_rgb(11, 17, seed=1).astype(np.float32) / 255,
        torch.from_numpy(random_rgb(15, 5, seed=2).transpose(2, 0, 1).copy()),
        PIL.Image.new("LA", (3, 9), (50, 200)),
        tmp_path / "face.png",
    ]
    batch = small(images, return_tensors="pt")["pixel_values"]
    assert batch.shape == (5, 3, 8, 8)
    for index, image in enumerate(images):
        assert torch.equal(batch[index], small(image, return_tensors="pt")["pixel_values"][0])


def test_mixed_sizes_without_resize_give_a_list():
    pixel_values = GReFELImageProcessor(do_resize=False)([random_rgb(4, 5), random_rgb(6, 7)])["pixel_values"]
    assert [p.shape for p in pixel_values] == [(3, 4, 5), (3, 6, 7)]


def test_mixed_sizes_without_resize_cannot_be_stacked():
    with pytest.raises(ValueError, match=r"image 2 of 2 is 6x7 but image 1 is 4x5.*return_tensors=None"):
        GReFELImageProcessor(do_resize=False)([random_rgb(4, 5), random_rgb(6, 7)], return_tensors="pt")


# Bad inputs: each names the position in the batch, the problem and what to do


def _truncated_png(directory: pathlib.Path) -> pathlib.Path:
    PIL.Image.fromarray(random_rgb(64, 64)).save(directory / "whole.png")
    data = (directory / "whole.png").read_bytes()
    (directory / "cut.png").write_bytes(data[: len(data) // 2])
    return directory / "cut.png"


def _truncated_jpeg(directory: pathlib.Path) -> pathlib.Path:
    PIL.Image.fromarray(random_rgb(64, 64)).save(directory / "whole.jpg")
    data = (directory / "whole.jpg").read_bytes()
    (directory / "cut.jpg").write_bytes(data[: len(data) // 2])
    return directory / "cut.jpg"


BAD_INPUTS = {
    "none": (lambda d: None, r"got None instead of an image; pass a path to an image file"),
    "missing path": (lambda d: str(d / "nope.png"), r"nope\.png' is not an existing file; check the path"),
    "directory": (lambda d: d, r"is not an existing file"),
    "url": (lambda d: "https://example.com/face.jpg", r"is a URL; images are not downloaded here, so download it"),
    "not an image": (lambda d: _text_file(d), r"notes\.txt' is not an image file PIL can read"),
    "not an image bytes": (lambda d: b"\x89PNG", r"the image data \(4 bytes\) is not an image file PIL can read"),
    "truncated png": (lambda d: _truncated_png(d), r"cut\.png' could not be decoded .*damaged or incomplete"),
    "truncated jpeg": (lambda d: _truncated_jpeg(d), r"cut\.jpg' could not be decoded .*damaged or incomplete"),
    "empty array": (lambda d: np.zeros((0, 4, 3), np.uint8), r"the array is empty \(shape \(0, 4, 3\)\)"),
    "1-d array": (lambda d: np.zeros(5, np.uint8), r"the array has shape \(5,\); expected \(H, W\)"),
    "5-d array": (lambda d: np.zeros((1, 1, 2, 2, 3), np.uint8), r"has shape \(1, 1, 2, 2, 3\)"),
    "4-d inside a list": (lambda d: np.zeros((1, 2, 2, 3), np.uint8), r"4-D batch must be passed on its own"),
    "2 channels": (lambda d: np.zeros((5, 6, 2), np.uint8), r"expected 1, 3 or 4 channels"),
    "5 channels": (lambda d: torch.zeros(5, 6, 7), r"the tensor has shape .*expected 1, 3 or 4 channels"),
    "nan": (lambda d: np.full((4, 4), np.nan, np.float32), r"contains NaN or infinite values"),
    "inf": (lambda d: torch.full((4, 4), float("inf")), r"contains NaN or infinite values"),
    "float 0-255": (lambda d: np.full((4, 4), 200.0), r"float with values 200\.\.200.*divide 0-255 data by 255"),
    "normalised float": (lambda d: np.full((4, 4), -1.5), r"must hold \[0, 1\] \(unnormalised\)"),
    "int out of range": (lambda d: np.full((4, 4), 300, np.int32), r"int32 with values 300\.\.300"),
    "complex dtype": (lambda d: np.zeros((4, 4), np.complex64), r"has dtype complex64"),
    "complex tensor": (lambda d: torch.zeros(4, 4, dtype=torch.complex64), r"has dtype torch\.complex64"),
    "zero-size pil": (lambda d: PIL.Image.new("RGB", (0, 0)), r"has zero size \(0x0\)"),
    "16-bit out of range": (lambda d: PIL.Image.fromarray(np.full((2, 2), -5, np.int32)), r"outside the 16-bit"),
    "nested list": (lambda d: [np.zeros((2, 2), np.uint8)], r"got a list \(a nested list of images\?\)"),
    "other type": (lambda d: {"image": 1}, r"got a dict without image 'bytes' or 'path'"),
}


def _text_file(directory: pathlib.Path) -> pathlib.Path:
    (directory / "notes.txt").write_text("not an image")
    return directory / "notes.txt"


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_names_its_position_and_problem(case, tmp_path, small):
    make, message = BAD_INPUTS[case]
    good = np.zeros((3, 3, 3), np.uint8)
    images = [good, good, make(tmp_path), good, good]
    with pytest.raises(ValueError, match=rf"image 3 of 5\b.*{message}"):
        small(images, return_tensors="pt")


def test_single_bad_input_is_image_1_of_1(small):
    with pytest.raises(ValueError, match=r"image 1 of 1: got None"):
        small(None)


def test_empty_list_is_rejected(small):
    with pytest.raises(ValueError, match=r"empty list of images; pass at least one image"):
        small([])


def test_convert_rgb_off_rejects_grey():
    with pytest.raises(ValueError, match=r"mode 'L' but do_convert_rgb=False accepts only RGB"):
        GReFELImageProcessor(do_convert_rgb=False)(PIL.Image.new("L", (2, 2)))


def test_convert_rgb_off_accepts_rgb():
    processor = GReFELImageProcessor(do_convert_rgb=False, size=4)
    assert processor(random_rgb(), return_tensors="pt")["pixel_values"].shape == (1, 3, 4, 4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": {"shortest_edge": 5}}, r"size must be an int or a dict"),
        ({"size": {"height": 0, "width": 5}}, r"size\['height'\] must be a positive int"),
        ({"resample": 99}, r"resample must be a PIL resampling filter"),
        ({"rescale_factor": 0}, r"rescale_factor must be a positive number"),
        ({"image_mean": [0.5, 0.5]}, r"image_mean must be one number or three numbers"),
        ({"image_std": [0.2, 0.0, 0.2]}, r"image_std must be one number or three positive numbers"),
        ({"do_resize": "yes"}, r"do_resize must be True or False"),
    ],
)
def test_bad_settings_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GReFELImageProcessor(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"return_tensors": "tf"}, r"return_tensors must be 'pt', 'np' or None"),
        ({"input_data_format": "middle"}, r"input_data_format must be 'channels_first', 'channels_last'"),
        ({"size": -3}, r"size\['height'\] must be a positive int"),
    ],
)
def test_bad_call_arguments_are_rejected(kwargs, message, small):
    with pytest.raises(ValueError, match=message):
        small(random_rgb(), **kwargs)


# Saving and reloading


def test_save_pretrained_writes_every_setting(tmp_path):
    GReFELImageProcessor(size={"height": 64, "width": 48}, resample=PIL.Image.Resampling.BICUBIC).save_pretrained(
        tmp_path
    )
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["image_processor_type"] == "GReFELImageProcessor"
    assert saved["size"] == {"height": 64, "width": 48}
    assert saved["resample"] == int(PIL.Image.Resampling.BICUBIC)
    for key in ("do_resize", "do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std"):
        assert key in saved
    assert saved["do_convert_rgb"] is True


def test_save_and_reload_round_trip(tmp_path):
    processor = GReFELImageProcessor(
        size={"height": 12, "width": 10},
        resample=PIL.Image.Resampling.BICUBIC,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.25, 0.25, 0.25],
        do_convert_rgb=False,
    )
    processor.save_pretrained(tmp_path)
    reloaded = GReFELImageProcessor.from_pretrained(tmp_path)
    assert reloaded.to_dict() == processor.to_dict()
    image = random_rgb()
    assert torch.equal(
        reloaded(image, return_tensors="pt")["pixel_values"], processor(image, return_tensors="pt")["pixel_values"]
    )


def test_auto_image_processor_reloads_remote_code_offline(tmp_path, monkeypatch):
    # Restore the class attribute afterwards so this test does not change how other tests save.
    monkeypatch.setattr(GReFELImageProcessor, "_auto_class", GReFELImageProcessor._auto_class)
    GReFELImageProcessor.register_for_auto_class("AutoImageProcessor")
    saved = tmp_path / "saved"
    processor = GReFELImageProcessor(size={"height": 16, "width": 16})
    processor.save_pretrained(saved)
    config = json.loads((saved / "preprocessor_config.json").read_text())
    assert config["auto_map"] == {"AutoImageProcessor": "image_processing_grefel.GReFELImageProcessor"}
    # The shared image reader travels with the processor, or remote code could not import it.
    assert (saved / "image_processing_grefel.py").is_file() and (saved / "image_input_grefel.py").is_file()

    image = random_rgb(21, 17)
    np.save(tmp_path / "image.npy", image)
    script = textwrap.dedent(
        f"""
        import numpy as np
        from transformers import AutoImageProcessor
        processor = AutoImageProcessor.from_pretrained({str(saved)!r}, trust_remote_code=True)
        assert type(processor).__module__.startswith("transformers_modules"), type(processor).__module__
        assert type(processor).__name__ == "GReFELImageProcessor"
        image = np.load({str(tmp_path / "image.npy")!r})
        np.save({str(tmp_path / "out.npy")!r}, processor(image, return_tensors="np")["pixel_values"])
        """
    )
    # A clean environment: offline, its own module cache, run from a folder where the project is not importable.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), processor(image, return_tensors="np")["pixel_values"])
