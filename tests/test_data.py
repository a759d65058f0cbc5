"""The data entry point, robust decoding, and the synthetic-faces default."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from emotionnet.data import SafeImageLoader, collate_images, load_fer_dataset, with_validation_split
from emotionnet.synthetic import DESCRIPTION, make_synthetic_faces
from modeling_grefel import EXPRESSIONS


@pytest.fixture(scope="module")
def synthetic():
    return make_synthetic_faces(num_per_class=12, image_size=48, seed=0)


def test_synthetic_splits_labels_and_name(synthetic):
    assert set(synthetic) == {"train", "validation", "test"}
    assert synthetic["train"].features["label"].names == list(EXPRESSIONS)
    assert len(synthetic["train"]) == 96 and len(synthetic["validation"]) == 24
    assert np.bincount(synthetic["train"]["label"]).tolist() == [12] * 8
    assert "SYNTHETIC" in synthetic["train"].info.description == DESCRIPTION
    assert synthetic["train"][0]["image"].size == (48, 48)


def test_synthetic_is_deterministic_and_seeded(synthetic):
    again = make_synthetic_faces(num_per_class=12, image_size=48, seed=0)
    other = make_synthetic_faces(num_per_class=12, image_size=48, seed=1)
    first = np.asarray(synthetic["train"][0]["image"])
    assert np.array_equal(first, np.asarray(again["train"][0]["image"]))
    assert not np.array_equal(first, np.asarray(other["train"][0]["image"]))


def test_synthetic_seven_classes_drop_contempt():
    data = make_synthetic_faces(num_per_class=2, image_size=32, num_classes=7)
    assert data["train"].features["label"].names == list(EXPRESSIONS[:7])


def test_synthetic_expressions_are_learnable_but_not_trivial():
    """A linear classifier on raw pixels is far above chance (1/8) but far from perfect: geometry matters."""
    from sklearn.linear_model import LogisticRegression

    data = make_synthetic_faces(num_per_class=60, image_size=32, seed=0)

    def arrays(split):
        x = np.stack([np.asarray(im.convert("L"), dtype=np.float32).ravel() / 255 for im in data[split]["image"]])
        return x, np.asarray(data[split]["label"])

    x_train, y_train = arrays("train")
    x_val, y_val = arrays("validation")
    accuracy = LogisticRegression(max_iter=300).fit(x_train, y_train).score(x_val, y_val)
    assert 0.3 < accuracy < 0.95, accuracy


def test_load_fer_dataset_synthetic_and_missing_data_dir():
    with pytest.raises(ValueError, match="data_dir"):
        load_fer_dataset("rafdb")


def test_validation_split_is_carved_stratified_and_deterministic(synthetic):
    from datasets import DatasetDict

    only_train = DatasetDict({"train": synthetic["train"]})
    a = with_validation_split(only_train, 0.25, seed=0)
    b = with_validation_split(only_train, 0.25, seed=0)
    assert len(a["validation"]) == 24 and a["validation"]["label"] == b["validation"]["label"]
    assert np.bincount(a["validation"]["label"]).tolist() == [3] * 8
    assert with_validation_split(synthetic, 0.25, 0) is synthetic  # an existing validation split is kept


def test_safe_loader_skips_and_counts_unreadable_images(tmp_path):
    good = tmp_path / "good.png"
    Image.new("L", (20, 10), 128).save(good)
    truncated = tmp_path / "truncated.jpg"
    buffer = tmp_path / "full.jpg"
    Image.new("RGB", (64, 64), (10, 200, 30)).save(buffer, quality=95)
    truncated.write_bytes(buffer.read_bytes()[:200])
    not_image = tmp_path / "notes.txt"
    not_image.write_text("not an image")
    loader = SafeImageLoader()
    examples = [{"image": str(good), "label": 1}, {"image": str(truncated), "label": 2},
                {"image": {"bytes": None, "path": str(not_image)}, "label": 3},
                {"image": Image.new("RGBA", (8, 8)), "label": 4}]
    images, labels, soft, skipped = collate_images(examples, loader, size=16)
    assert images.shape == (2, 3, 16, 16) and images.dtype == torch.uint8
    assert labels.tolist() == [1, 4] and soft is None
    assert [where for where, _ in skipped] == [str(truncated), str(not_image)]
    assert len(loader.skipped) == 2 and "2 unreadable image(s)" in loader.summary()


def test_collate_keeps_soft_labels():
    loader = SafeImageLoader()
    examples = [{"image": Image.new("RGB", (8, 8)), "label": 0, "soft_label": [0.5, 0.5] + [0.0] * 6}]
    _, _, soft, _ = collate_images(examples, loader, size=8)
    assert soft.shape == (1, 8) and soft.sum().item() == pytest.approx(1.0)
