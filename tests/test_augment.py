"""BatchAugment: shapes, determinism, identity at zero magnitude, flip, rotation, jitter, perspective."""

import math

import pytest
import torch

from emotionnet.augment import BatchAugment, homography_from_corners


def zero_magnitude(image_size=32, **kwargs) -> BatchAugment:
    defaults = dict(translate=0.0, rotation=0, shear=0, perspective=0, jitter=0, hflip=0, mean=(0, 0, 0),
                    std=(1, 1, 1))
    defaults.update(kwargs)
    return BatchAugment(image_size=image_size, **defaults)


def test_shapes_dtypes_and_finiteness():
    augment = BatchAugment(image_size=64)
    assert augment.input_size == 64  # decoded at the evaluation size: the augmentation keeps the scale
    for images in (torch.randint(0, 256, (3, 3, 73, 73), dtype=torch.uint8), torch.rand(3, 3, 73, 73).double(),
                   torch.rand(1, 3, 73, 73)):
        out = augment(images)
        assert out.shape == (images.shape[0], 3, 64, 64) and out.dtype == torch.float32
        assert torch.isfinite(out).all()


def test_deterministic_under_a_seed():
    augment = BatchAugment(image_size=32)
    images = torch.rand(4, 3, 37, 37)
    torch.manual_seed(3)
    a = augment(images)
    torch.manual_seed(3)
    b = augment(images)
    torch.manual_seed(4)
    c = augment(images)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)


def test_zero_magnitudes_reproduce_the_input():
    images = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(zero_magnitude()(images), images, atol=1e-5, rtol=0)


def test_shift_keeps_the_face_size_of_evaluation():
    """Training moves a face but shows it at evaluation's size (the plain resize), never zoomed in."""
    images = torch.zeros(8, 3, 32, 32)
    images[..., 10:20, 10:20] = 1.0  # a 10 x 10 "face"
    augment = zero_magnitude(translate=0.125)
    torch.manual_seed(0)
    out = augment(images)[:, 0]
    plain = augment.plain(images)[:, 0]
    area = (out > 0.5).sum(dim=(1, 2)).float()
    assert torch.all((area - 100).abs() <= 20), area  # 10 +- 1 px a side after a sub-pixel shift
    assert (plain > 0.5).sum(dim=(1, 2)).eq(100).all()
    rows = torch.arange(32.0)
    centre = (out * rows[:, None]).sum(dim=(1, 2)) / out.sum(dim=(1, 2))
    assert (centre - 14.5).abs().max() > 1.0  # moved (by up to 4 px)
    assert (centre - 14.5).abs().max() <= 4.5


def test_flip_mirrors():
    images = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(zero_magnitude(hflip=1.0)(images), images.flip(-1), atol=1e-5, rtol=0)


def test_rotation_moves_a_bright_pixel_around_the_centre():
    image = torch.zeros(1, 3, 33, 33)
    image[..., 16, 28] = 1.0  # 12 px right of the centre
    augment = zero_magnitude(image_size=33, rotation=90)
    torch.manual_seed(0)
    out = augment(image)[0, 0]
    y, x = divmod(int(out.argmax()), 33)
    radius = math.hypot(x - 16, y - 16)
    assert radius == pytest.approx(12, abs=1.5)  # rotated about the centre: the distance is kept


def test_disabled_or_eval_only_resizes_and_normalises():
    augment = BatchAugment(image_size=16, enabled=False)
    images = torch.full((2, 3, 18, 18), 255, dtype=torch.uint8)
    out = augment(images)
    expected = (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(out[:, :, 5, 5], expected.expand(2, 3))
    torch.testing.assert_close(BatchAugment(image_size=16).eval()(images), out)


def test_colour_jitter_stays_in_range_and_changes_images():
    augment = zero_magnitude(jitter=0.4)
    images = torch.rand(8, 3, 32, 32)
    out = augment(images)
    assert out.min() >= 0 and out.max() <= 1
    assert not torch.allclose(out, images)


def test_homography_maps_corners():
    source = torch.tensor([[[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]])
    target = source + torch.tensor([[[0.1, 0.2], [-0.2, 0.1], [0.05, -0.1], [0.2, -0.3]]])
    h = homography_from_corners(source, target)
    points = torch.cat([source, torch.ones(1, 4, 1)], -1) @ h.transpose(1, 2)
    torch.testing.assert_close(points[..., :2] / points[..., 2:], target, atol=1e-5, rtol=0)


def test_bad_shape_is_explained():
    with pytest.raises(ValueError, match=r"\(batch, 3, height, width\)"):
        BatchAugment(image_size=16)(torch.rand(3, 16, 16))


def face_side(pixel_values: torch.Tensor, processor) -> torch.Tensor:
    """Mean side in pixels of the bright square in each normalised image of a batch (its area's square root)."""
    red = pixel_values[:, 0] * processor.image_std[0] + processor.image_mean[0]  # back to 0-1
    return (red > 0.5).sum(dim=(1, 2)).float().sqrt()


def test_a_face_has_the_same_size_in_training_and_evaluation_batches():
    """Processor and augmentation come from one config: only the shift differs between the two batches."""
    import PIL.Image

    from emotionnet.data import SafeImageLoader
    from emotionnet.training import EvalCollator, TrainCollator
    from modeling_grefel import GReFELConfig, GReFELImageProcessor

    photo = torch.zeros(3, 150, 150, dtype=torch.uint8)
    photo[:, 45:105, 45:105] = 255  # a 60 x 60 "face", 40% of the side
    examples = [{"image": PIL.Image.fromarray(photo.permute(1, 2, 0).numpy()), "label": 0}] * 8
    processor = GReFELImageProcessor.from_config(GReFELConfig.tiny())
    augment = BatchAugment.from_processor(processor, translate=0.125, rotation=0, shear=0, perspective=0, jitter=0,
                                          hflip=0)
    torch.manual_seed(0)
    train = augment(TrainCollator(SafeImageLoader(), size=augment.input_size)(examples)["images"])
    evaluation = EvalCollator(SafeImageLoader(), processor)(examples)["pixel_values"]
    assert train.shape == evaluation.shape
    expected = 0.4 * processor.size["height"]
    torch.testing.assert_close(face_side(evaluation, processor), torch.full((8,), expected), atol=1.0, rtol=0)
    torch.testing.assert_close(face_side(train, processor), torch.full((8,), expected), atol=1.0, rtol=0)


def test_from_processor_takes_its_size_mean_and_std_and_refuses_a_non_square_size():
    from modeling_grefel import GReFELImageProcessor

    processor = GReFELImageProcessor(size=24, image_mean=[0.5, 0.5, 0.5], image_std=[0.25, 0.25, 0.25])
    augment = BatchAugment.from_processor(processor, enabled=False)
    assert augment.image_size == augment.input_size == 24 and not augment.enabled
    torch.testing.assert_close(augment(torch.full((1, 3, 24, 24), 0.75)), torch.ones(1, 3, 24, 24))
    with pytest.raises(ValueError, match="square"):
        BatchAugment.from_processor(GReFELImageProcessor(size={"height": 24, "width": 32}))
