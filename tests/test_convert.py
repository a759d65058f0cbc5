"""Weight conversion: official IR-50 / MobileFaceNet / POSTER++ files into a GReFEL model folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from official_layouts import (
    EVOLVE_IR50_KEYS,
    official_ir50,
    official_mobilefacenet,
    official_poster_checkpoint,
    official_poster_state_dict,
    randomised,
)

from emotionnet.convert import (
    REPORT_NAME,
    ConversionError,
    build_converted_model,
    check_mapped,
    convert_weights,
    map_ir50,
    map_mobilefacenet,
    map_poster,
    read_checkpoint,
)
from modeling_grefel import GReFELConfig, GReFELForImageClassification
from tests.load_script import load_script

ROOT = Path(__file__).resolve().parents[1]


class TrainingRecorder:
    """Stands in for POSTER++'s RecorderMeter: an object only pickle code can rebuild."""

    def __init__(self):
        self.epochs = 3


@pytest.fixture(scope="module")
def paper_model() -> GReFELForImageClassification:
    torch.manual_seed(0)
    return GReFELForImageClassification(GReFELConfig.paper(num_labels=7)).eval()


@pytest.fixture(scope="module")
def grefel_state(paper_model) -> dict[str, torch.Tensor]:
    """The paper model's names and shapes with distinct random values: the weights an official file would hold."""
    return randomised(paper_model.state_dict(), seed=0)


@pytest.fixture(scope="module")
def files(tmp_path_factory, grefel_state) -> dict[str, Path]:
    """The official files, saved once per module."""
    folder = tmp_path_factory.mktemp("official")
    contents = {
        "ir50_evolve.pth": official_ir50(grefel_state, "evolve"),
        "ir50_poster.pth": official_ir50(grefel_state, "poster"),
        "mobilefacenet_model_best.pth.tar": official_mobilefacenet(grefel_state),
        "mobilefacenet_dataparallel.pth.tar": official_mobilefacenet(grefel_state, module_prefix=True),
        "poster_rafdb.pth": official_poster_checkpoint(grefel_state, num_classes=7),
    }
    paths = {}
    for name, content in contents.items():
        paths[name] = folder / name
        torch.save(content, paths[name])
    return paths


def assert_component_equal(model: GReFELForImageClassification, source: dict, component: str) -> None:
    prefix = f"grefel.{component}."
    converted = {k: v for k, v in model.state_dict().items() if k.startswith(prefix)}
    assert converted, component
    for key, value in converted.items():
        assert torch.equal(value, source[key]), key


def test_official_evolve_ir50_has_the_official_key_count(grefel_state):
    assert len(official_ir50(grefel_state, "evolve")) == EVOLVE_IR50_KEYS


def test_evolve_ir50_and_mobilefacenet_convert_exactly(files, grefel_state):
    model, report = build_converted_model(
        ir50=files["ir50_evolve.pth"], mobilefacenet=files["mobilefacenet_model_best.pth.tar"], num_labels=7
    )
    assert_component_equal(model, grefel_state, "ir_back")
    assert_component_equal(model, grefel_state, "face_landback")
    assert report["components"]["ir_back"]["tensors"] == 292
    assert report["components"]["face_landback"]["tensors"] == 333


def test_evolve_ir50_stage4_and_output_layer_are_reported_dropped(files):
    _, report = build_converted_model(
        ir50=files["ir50_evolve.pth"], mobilefacenet=files["mobilefacenet_model_best.pth.tar"], num_labels=7
    )
    dropped = [k for group in report["sources"]["ir50"]["dropped"] for k in group["keys"]]
    assert "body.21.shortcut_layer.0.weight" in dropped and "body.23.res_layer.4.running_var" in dropped
    assert "output_layer.3.weight" in dropped
    assert len(dropped) == EVOLVE_IR50_KEYS - 292


def test_poster_style_ir50_converts_exactly(files, grefel_state, paper_model):
    state, stripped, _ = read_checkpoint(files["ir50_poster.pth"], "ir50")
    weights = map_ir50(state)
    assert not stripped and weights.layout.startswith("POSTER++")
    assert check_mapped(paper_model, weights, ("ir_back",)) == []
    for key, value in weights.tensors.items():
        assert torch.equal(value, grefel_state[key]), key


def test_mobilefacenet_module_prefix_is_stripped(files, grefel_state):
    state, stripped, extras = read_checkpoint(files["mobilefacenet_dataparallel.pth.tar"], "mobilefacenet")
    assert stripped and extras == ["epoch"]
    weights = map_mobilefacenet(state)
    assert set(weights.tensors) == {k for k in grefel_state if k.startswith("grefel.face_landback.")}


def test_mobilefacenet_gdc_head_names_match_the_official_module(paper_model):
    names = {k for k in paper_model.state_dict() if k.startswith("grefel.face_landback.output_layer.")}
    official = {"conv_6_dw.conv.weight", "linear.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"}
    assert {"grefel.face_landback.output_layer." + k for k in official} <= names


@pytest.mark.slow
def test_poster_checkpoint_fills_the_whole_trunk(files, grefel_state):
    model, report = build_converted_model(poster_checkpoint=files["poster_rafdb.pth"], num_labels=7)
    trunk = {k: v for k, v in model.state_dict().items() if k.startswith("grefel.")}
    assert set(trunk) == {k for k in grefel_state if k.startswith("grefel.")}
    for key, value in trunk.items():
        assert torch.equal(value, grefel_state[key]), key
    assert list(report["freshly_initialised"]) == ["grefel_head"]
    assert report["sources"]["poster_checkpoint"]["module_prefix_stripped"]


def test_poster_checkpoint_drops_only_the_listed_modules(grefel_state, paper_model):
    weights = map_poster(official_poster_state_dict(grefel_state), paper_model.config)
    dropped = {k for keys in weights.dropped.values() for k in keys}
    expected_prefixes = (
        "ir_back.output_layer.", "VIT.head.", "VIT.patch_embed.", "VIT.CON1.", "VIT.IRLinear1.", "VIT.IRLinear2.",
        "VIT.eca_block.", "VIT.blocks.0.conv.", "VIT.blocks.1.conv.", "attn1.relative_position_index",
        "attn2.relative_position_index", "attn3.relative_position_index",
    )
    assert weights.unknown == []
    assert all(k.startswith(expected_prefixes) for k in dropped)
    assert {p for p in expected_prefixes if any(k.startswith(p) for k in dropped)} == set(expected_prefixes)


def test_ir50_separate_file_replaces_the_poster_backbone(files, grefel_state):
    _, report = build_converted_model(
        poster_checkpoint=files["poster_rafdb.pth"], ir50=files["ir50_poster.pth"], num_labels=7
    )
    assert report["components"]["ir_back"]["source"] == "ir50"
    assert report["components"]["fusion"]["source"] == "poster_checkpoint"


def test_missing_key_is_listed(grefel_state, paper_model):
    state = official_ir50(grefel_state, "poster")
    del state["body3.13.res_layer.1.weight"]
    with pytest.raises(ConversionError, match="body3.13.res_layer.1.weight") as info:
        check_mapped(paper_model, map_ir50(state), ("ir_back",))
    assert info.value.missing == ["grefel.ir_back.body3.13.res_layer.1.weight"]
    assert "(file key body3.13.res_layer.1.weight)" in str(info.value)


def test_unknown_key_is_listed(grefel_state, paper_model):
    state = official_mobilefacenet(grefel_state)["state_dict"]
    state["conv_7.weight"] = torch.zeros(3)
    with pytest.raises(ConversionError, match="conv_7.weight") as info:
        check_mapped(paper_model, map_mobilefacenet(state), ("face_landback",))
    assert info.value.unexpected == ["conv_7.weight"]


def test_extra_unit_of_a_known_stage_is_listed(grefel_state, paper_model):
    state = official_ir50(grefel_state, "poster")
    state["body1.3.res_layer.1.weight"] = state["body1.2.res_layer.1.weight"]
    with pytest.raises(ConversionError, match=r"body1\.3\.res_layer\.1\.weight"):
        check_mapped(paper_model, map_ir50(state), ("ir_back",))


def test_wrong_shape_is_listed(grefel_state, paper_model):
    state = official_poster_state_dict(grefel_state)
    state["VIT.pos_embed"] = torch.zeros(1, 197, 768)
    with pytest.raises(ConversionError, match=r"VIT\.pos_embed: file \(1, 197, 768\)") as info:
        check_mapped(paper_model, map_poster(state, paper_model.config), ("fusion",))
    assert len(info.value.mismatched) == 1


def test_other_window_size_is_refused(grefel_state, paper_model):
    state = official_poster_state_dict(grefel_state)
    state["attn3.relative_position_index"] = state["attn3.relative_position_index"].flip(0)
    with pytest.raises(ConversionError, match="attn3.relative_position_index"):
        map_poster(state, paper_model.config)


def test_unknown_ir50_layout_is_refused():
    with pytest.raises(ConversionError, match="body.N"):
        map_ir50({"layer1.0.conv1.weight": torch.zeros(1)})


def test_mixed_module_prefix_is_refused(tmp_path):
    path = tmp_path / "mixed.pth"
    torch.save({"module.conv1.conv.weight": torch.zeros(1), "conv1.bn.weight": torch.zeros(1)}, path)
    with pytest.raises(ConversionError, match="'module.' prefix"):
        read_checkpoint(path, "mobilefacenet")


def test_missing_batchnorm_counter_is_filled_and_reported(grefel_state, paper_model):
    state = official_mobilefacenet(grefel_state)["state_dict"]
    del state["conv1.bn.num_batches_tracked"]
    assert check_mapped(paper_model, map_mobilefacenet(state), ("face_landback",)) == [
        "grefel.face_landback.conv1.bn.num_batches_tracked"
    ]


def test_file_needing_pickle_code_is_refused(tmp_path, grefel_state):
    path = tmp_path / "poster_with_recorder.pth"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "recorder": TrainingRecorder()}, path)
    with pytest.raises(ConversionError, match=r"weights_only=True.*TrainingRecorder|TrainingRecorder.*weights_only"):
        read_checkpoint(path, "poster_checkpoint")


def test_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("not a checkpoint")
    with pytest.raises(ConversionError, match="not a readable PyTorch checkpoint"):
        read_checkpoint(path, "ir50")


def test_num_labels_must_be_a_canonical_set(files):
    with pytest.raises(ConversionError, match="--num_labels must be 7 or 8"):
        build_converted_model(poster_checkpoint=files["poster_rafdb.pth"], num_labels=5)


def test_sources_must_cover_the_backbones(files):
    with pytest.raises(ConversionError, match="both --ir50 and --mobilefacenet"):
        build_converted_model(ir50=files["ir50_evolve.pth"], num_labels=7)


@pytest.mark.slow
def test_saved_folder_reloads_with_auto_classes(files, grefel_state, tmp_path, monkeypatch):
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    report = convert_weights(output_dir=tmp_path, poster_checkpoint=files["poster_rafdb.pth"], num_labels=8)
    model = AutoModelForImageClassification.from_pretrained(tmp_path, trust_remote_code=True)
    processor = AutoImageProcessor.from_pretrained(tmp_path, trust_remote_code=True)
    assert model.config.num_labels == 8 and processor.size == {"height": 224, "width": 224}
    reloaded = model.state_dict()
    for key, value in grefel_state.items():
        if key.startswith("grefel."):
            assert torch.equal(reloaded[key], value), key
    saved = json.loads((tmp_path / REPORT_NAME).read_text())
    assert saved["loaded_tensors"] == report["loaded_tensors"] == 718
    assert "freshly initialised" in saved["freshly_initialised"]["grefel_head"]


@pytest.mark.slow
def test_cli_refuses_a_bad_file_with_a_message_and_nonzero_exit(tmp_path, files):
    bad = tmp_path / "ir50_with_recorder.pth"
    torch.save({"state_dict": {}, "recorder": TrainingRecorder()}, bad)
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "convert_weights.py"), "--ir50", str(bad),
         "--mobilefacenet", str(files["mobilefacenet_model_best.pth.tar"]), "--num_labels", "7",
         "--output_dir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode != 0
    assert "error: --ir50" in result.stderr and "weights_only" in result.stderr
    assert not (tmp_path / "out").exists()


def test_cli_without_sources_exits_with_usage(capsys):
    convert_weights = load_script(ROOT / "scripts" / "convert_weights.py")
    with pytest.raises(SystemExit) as info:
        convert_weights.parse_args(["--num_labels", "7", "--output_dir", "x"])
    assert info.value.code != 0
    assert "--poster_checkpoint, or both --ir50 and --mobilefacenet" in capsys.readouterr().err
