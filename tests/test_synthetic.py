"""The embedded synthetic-faces dataset: shape, determinism, labelling, and a task that is learnable but not trivial."""

from __future__ import annotations

import numpy as np
import pytest

from emotionnet.synthetic import DESCRIPTION, GEOMETRY, SYNTHETIC_NAME, draw_face, make_synthetic_faces
from modeling_grefel.configuration_grefel import EXPRESSIONS


@pytest.fixture(scope="module")
def small():
    return make_synthetic_faces(num_per_class=8, image_size=40, seed=0)


def test_splits_sizes_and_balanced_canonical_labels(small):
    assert list(small) == ["train", "validation", "test"]
    assert [len(small[s]) for s in small] == [64, 16, 16]
    assert small["train"].features["label"].names == list(EXPRESSIONS)
    assert np.bincount(small["train"]["label"]).tolist() == [8] * 8


def test_images_are_rgb_squares_of_the_requested_size(small):
    image = small["validation"][0]["image"]
    assert image.size == (40, 40) and image.convert("RGB").mode == "RGB"


def test_every_split_says_it_is_synthetic(small):
    for split in small.values():
        assert split.info.description == DESCRIPTION and "SYNTHETIC" in DESCRIPTION
        assert split.info.dataset_name == SYNTHETIC_NAME == "synthetic-faces"


def test_same_seed_same_images_other_seed_other_images(small):
    again = make_synthetic_faces(num_per_class=8, image_size=40, seed=0)
    other = make_synthetic_faces(num_per_class=8, image_size=40, seed=1)
    first = np.asarray(small["train"][0]["image"])
    assert np.array_equal(first, np.asarray(again["train"][0]["image"]))
    assert not np.array_equal(first, np.asarray(other["train"][0]["image"]))


def test_splits_hold_different_images(small):
    assert not np.array_equal(np.asarray(small["train"][0]["image"]), np.asarray(small["test"][0]["image"]))


def test_seven_classes_leave_out_contempt():
    data = make_synthetic_faces(num_per_class=2, image_size=32, num_classes=7, eval_per_class=1)
    assert data["train"].features["label"].names == list(EXPRESSIONS[:7])
    assert sorted(set(data["train"]["label"])) == list(range(7)) and len(data["test"]) == 7


def test_every_canonical_expression_has_a_geometry():
    assert set(GEOMETRY) == set(EXPRESSIONS)


def test_expressions_differ_in_the_face_with_identity_pose_and_light_fixed():
    """Same random draws (identity, pose, lighting, background), different expression: the face region changes."""
    images = {
        label: np.asarray(draw_face(label, np.random.default_rng(7), 64), dtype=np.int16)
        for label in ("neutral", "happiness", "surprise")
    }
    for label in ("happiness", "surprise"):
        difference = np.abs(images[label] - images["neutral"]).mean(axis=2)
        assert difference[16:56, 12:52].mean() > 3 * difference[:8].mean() + 1, label


@pytest.mark.parametrize(
    "kwargs, message",
    [({"num_classes": 6}, "num_classes=6"), ({"num_per_class": 0}, "num_per_class=0"), ({"image_size": 8}, "image_size=8")],
)
def test_bad_arguments_are_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_synthetic_faces(**kwargs)


def test_expressions_are_learnable_but_not_trivial():
    """Logistic regression on 24x24 grey pixels scores about 0.53 on validation (seeds 0 and 1; chance is 0.125):
    the classes carry signal, and pose, identity, lighting and background keep a pixel-linear model far from 1.0."""
    from sklearn.linear_model import LogisticRegression

    data = make_synthetic_faces(num_per_class=80, image_size=48, seed=0, eval_per_class=40)

    def arrays(split):
        x = np.stack([np.asarray(im.convert("L").resize((24, 24)), dtype=np.float32).ravel() for im in data[split]["image"]])
        x = (x - x.mean(axis=1, keepdims=True)) / (x.std(axis=1, keepdims=True) + 1e-6)  # per-image contrast
        return x, np.asarray(data[split]["label"])

    accuracy = LogisticRegression(max_iter=500, C=0.1).fit(*arrays("train")).score(*arrays("validation"))
    assert 0.35 < accuracy < 0.9, accuracy


def test_imbalance_thins_the_training_classes_geometrically_and_keeps_evaluation_balanced():
    data = make_synthetic_faces(num_per_class=20, image_size=24, eval_per_class=2, imbalance=10)
    counts = np.bincount(data["train"]["label"], minlength=8).tolist()
    assert counts[0] == 20 and counts[-1] == 2 and counts == sorted(counts, reverse=True)
    assert np.bincount(data["validation"]["label"]).tolist() == [2] * 8 == np.bincount(data["test"]["label"]).tolist()


def test_label_noise_flips_that_fraction_of_training_labels_to_other_classes_and_keeps_the_images():
    clean = make_synthetic_faces(num_per_class=50, image_size=24, eval_per_class=2)
    noisy = make_synthetic_faces(num_per_class=50, image_size=24, eval_per_class=2, label_noise=0.2)
    flipped = np.asarray(clean["train"]["label"]) != np.asarray(noisy["train"]["label"])
    assert 0.13 < flipped.mean() < 0.27  # 400 labels at 20%: a binomial spread of about 2 points
    assert np.array_equal(np.asarray(clean["train"][5]["image"]), np.asarray(noisy["train"][5]["image"]))
    assert clean["validation"]["label"] == noisy["validation"]["label"]


@pytest.mark.parametrize("kwargs", [dict(imbalance=0.5), dict(label_noise=1.0), dict(label_noise=-0.1)])
def test_impossible_imbalance_or_noise_is_refused_by_name(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        make_synthetic_faces(num_per_class=2, image_size=24, **kwargs)
