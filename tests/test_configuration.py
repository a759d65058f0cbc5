"""GReFELConfig: presets, derived sizes, canonical labels, round trip and validation errors."""

import re

import pytest

from modeling_grefel import EXPRESSIONS, GReFELConfig


def test_paper_preset_matches_the_spec():
    config = GReFELConfig.paper()
    assert config.ir_stage_units == (3, 4, 14)
    assert config.feature_map_sizes == [28, 14, 7]
    assert config.window_sizes == [28, 14, 7]
    assert config.num_tokens == 147
    assert config.hidden_size == 768
    assert config.num_anchors == 10
    assert config.label_smoothing == pytest.approx(0.11)


def test_canonical_labels_eight_and_seven():
    assert list(GReFELConfig().id2label.values()) == list(EXPRESSIONS)
    seven = GReFELConfig(num_labels=7)
    assert list(seven.id2label.values()) == list(EXPRESSIONS[:7])
    assert "contempt" not in seven.label2id


def test_custom_label_set_is_kept():
    config = GReFELConfig.tiny(id2label={0: "calm", 1: "joy"}, label2id={"calm": 0, "joy": 1})
    assert config.num_labels == 2


def test_round_trip(tmp_path):
    config = GReFELConfig.tiny(num_labels=7, window_sizes=(2, 8, 2), anchor_margin=2.5)
    config.save_pretrained(tmp_path)
    again = GReFELConfig.from_pretrained(tmp_path)
    assert again.to_dict() == config.to_dict()
    assert again.id2label == config.id2label


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"ir_depth": 42}, "ir_depth"),
        ({"window_sizes": (5, 14, 7)}, "window_sizes[0]"),
        ({"window_sizes": (28, 14)}, "window_sizes"),
        ({"num_attention_heads": (3, 4, 8)}, "num_attention_heads[0]"),
        ({"fusion_num_heads": 5}, "fusion_num_heads"),
        ({"label_smoothing": 1.5}, "label_smoothing"),
        ({"trust_schedule": "cosine"}, "trust_schedule"),
        ({"inference_correction": "batch"}, "inference_correction"),
        ({"num_anchors": 0}, "num_anchors"),
        ({"anchor_temperature": -1.0}, "anchor_temperature"),
        ({"drop_path_rates": (0.0, 0.1, 1.0)}, "drop_path_rates"),
        ({"backbone_interpolation": "lanczos"}, "backbone_interpolation"),
        ({"landmark_hidden_sizes": (32, 128, 512)}, "landmark_hidden_sizes"),
        ({"num_labels": 5}, "num_labels"),
        ({"anchor_loss_weight": -1}, "anchor_loss_weight"),
        ({"head_hidden_sizes": (384, 0)}, "head_hidden_sizes"),
    ],
)
def test_invalid_arguments_are_named(kwargs, argument):
    with pytest.raises(ValueError, match=re.escape(argument)):
        GReFELConfig(**kwargs)


def test_landmark_widths_free_without_landmark_backbone():
    config = GReFELConfig.tiny(use_landmark_backbone=False, landmark_hidden_sizes=(8, 8, 8))
    assert not config.use_landmark_backbone


def test_embedding_pooling_is_validated():
    with pytest.raises(ValueError, match="embedding_pooling"):
        GReFELConfig.tiny(embedding_pooling="gem")
    assert GReFELConfig.paper().embedding_pooling == "cls"  # what converted POSTER++ weights expect


def test_fusion_layer_scale_is_off_by_default_and_validated():
    assert GReFELConfig.paper().fusion_layer_scale_init_value is None  # POSTER++'s fusion blocks have no gains
    assert GReFELConfig.tiny(fusion_layer_scale_init_value=1e-5).fusion_layer_scale_init_value == 1e-5
    for bad in (0.0, -1e-5, "small", True):
        with pytest.raises(ValueError, match="fusion_layer_scale_init_value"):
            GReFELConfig.tiny(fusion_layer_scale_init_value=bad)
