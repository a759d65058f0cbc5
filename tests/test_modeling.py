"""GReFEL network: shapes, loss, determinism, batch equivalence, gradients, init, save/load, remote code."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from modeling_grefel import GReFELConfig, GReFELForImageClassification, GReFELModel
from modeling_grefel.attention_grefel import window_partition, window_reverse
from modeling_grefel.modeling_grefel import GReFELHeadOutput


def pixels(config: GReFELConfig, batch: int = 4, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, config.num_channels, config.image_size, config.image_size, generator=generator)


@pytest.mark.parametrize("num_labels", [2, 7, 8])
@pytest.mark.parametrize("window_sizes", [(16, 8, 4), (8, 8, 2), (2, 1, 1)])
def test_output_shapes(num_labels, window_sizes):
    kwargs = {"num_labels": num_labels} if num_labels in (7, 8) else {
        "id2label": {0: "negative", 1: "positive"}, "label2id": {"negative": 0, "positive": 1}}
    config = GReFELConfig.tiny(window_sizes=window_sizes, **kwargs)
    model = GReFELForImageClassification(config).train()
    out = model(pixels(config), labels=torch.arange(4) % num_labels, output_hidden_states=True, output_attentions=True)
    b, c, k, d = 4, num_labels, config.num_anchors, config.hidden_size
    assert out.logits.shape == (b, c)
    for name in ("primary_probs", "geometric_probs", "attentive_probs", "corrected_probs"):
        probs = getattr(out, name)
        assert probs.shape == (b, c), name
        torch.testing.assert_close(probs.sum(-1), torch.ones(b), msg=name)
    assert out.confidences.shape == (b, 3)
    assert out.embeddings.shape == (b, d)
    assert out.anchor_distances.shape == (b, c, k)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    sides = config.feature_map_sizes
    expected_maps = [(b, w, s, s) for w, s in zip(config.hidden_sizes, sides)] * 2
    assert [tuple(h.shape) for h in out.hidden_states[:6]] == expected_maps
    assert all(h.shape == (b, 1 + config.num_tokens, d) for h in out.hidden_states[6:])
    assert len(out.hidden_states) == 6 + 1 + config.fusion_depth
    n = 1 + config.num_tokens
    assert [tuple(a.shape) for a in out.attentions] == [(b, config.fusion_num_heads, n, n)] * config.fusion_depth


def test_window_partition_reverse_round_trip():
    x = torch.randn(2, 28, 28, 5)
    windows = window_partition(x, 7)
    assert windows.shape == (2 * 16, 49, 5)
    # The first window is the top-left 7x7 block, row-major.
    torch.testing.assert_close(windows[0], x[0, :7, :7].reshape(49, 5))
    torch.testing.assert_close(window_reverse(windows, 7, 28, 28), x)


def test_loss_only_with_labels(tiny_model):
    x = pixels(tiny_model.config)
    out = tiny_model(x)
    assert out.loss is None and out.classification_loss is None
    out = tiny_model(x, labels=torch.tensor([0, 1, 2, 3]))
    assert out.loss is not None
    expected = out.classification_loss + out.anchor_loss + out.center_loss
    torch.testing.assert_close(out.loss, expected)


def test_soft_labels_equal_one_hot_labels(tiny_model):
    x = pixels(tiny_model.config)
    hard = torch.tensor([0, 3, 5, 7])
    with torch.no_grad():
        a = tiny_model(x, labels=hard).loss
        b = tiny_model(x, labels=torch.nn.functional.one_hot(hard, 8).float() * 3).loss  # vote counts
    torch.testing.assert_close(a, b)


def test_out_of_range_labels_are_refused(tiny_model):
    with pytest.raises(ValueError, match=r"class ids in \[0, 7\]"):
        tiny_model(pixels(tiny_model.config), labels=torch.tensor([0, 1, 2, 8]))


def test_eval_is_deterministic(tiny_model):
    x = pixels(tiny_model.config)
    with torch.no_grad():
        torch.testing.assert_close(tiny_model(x).logits, tiny_model(x).logits, rtol=0, atol=0)


def test_batch_equivalence_in_eval(tiny_model):
    x = pixels(tiny_model.config, batch=5)
    with torch.no_grad():
        batched = tiny_model(x)
        for i in range(5):
            alone = tiny_model(x[i : i + 1])
            torch.testing.assert_close(alone.logits[0], batched.logits[i], rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(alone.corrected_probs[0], batched.corrected_probs[i], rtol=1e-4, atol=1e-5)


def test_inference_correction_selects_the_logits():
    torch.manual_seed(0)
    config = GReFELConfig.tiny(inference_correction="geometric")
    model = GReFELForImageClassification(config).eval()
    with torch.no_grad():
        out = model(pixels(config))
    torch.testing.assert_close(out.logits.softmax(-1), out.corrected_probs)
    conf_p = out.confidences[:, :1]
    torch.testing.assert_close(out.corrected_probs, conf_p * out.primary_probs + (1 - conf_p) * out.geometric_probs)
    assert out.attentive_probs is None
    model.config.inference_correction = "primary"
    with torch.no_grad():
        torch.testing.assert_close(model(pixels(config)).logits.softmax(-1), out.primary_probs)


def test_trust_schedule_mixes_primary_and_balanced(tiny_model):
    model = tiny_model.train()
    x = pixels(model.config)
    assert model.set_trust(0, 100) == 0.0
    torch.manual_seed(1)
    out = model(x)
    torch.testing.assert_close(out.corrected_probs, out.primary_probs)
    assert model.set_trust(50, 100) == 0.5
    assert model.set_trust(500, 100) == 1.0
    model.config.trust_schedule = "none"
    assert model.set_trust(50, 100) == 0.0


def test_every_trainable_parameter_gets_a_gradient_and_the_landmark_backbone_none(tiny_model):
    model = tiny_model.train()
    model.set_trust(1, 2)  # all three correction paths contribute
    out = model(pixels(model.config, batch=6), labels=torch.tensor([0, 1, 2, 3, 4, 5]))
    out.loss.backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: p for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith("grefel.face_landback.") for n in frozen)
    missing = [n for n, p in trainable.items() if p.grad is None or not torch.any(p.grad != 0)]
    # The landmark network's own landmark head is not on the GReFEL path; it is frozen anyway.
    assert missing == []
    assert all(p.grad is None for p in frozen.values())
    assert not model.grefel.face_landback.training  # frozen BatchNorm statistics stay put


def test_unfrozen_landmark_backbone_trains():
    config = GReFELConfig.tiny(freeze_landmark_backbone=False)
    model = GReFELForImageClassification(config).train()
    model(pixels(config), labels=torch.tensor([0, 1, 2, 3])).loss.backward()
    assert model.grefel.face_landback.conv1.conv.weight.grad is not None
    assert model.grefel.face_landback.training


def test_without_landmark_backbone():
    config = GReFELConfig.tiny(use_landmark_backbone=False)
    model = GReFELForImageClassification(config).eval()
    assert model.grefel.face_landback is None
    assert model(pixels(config)).logits.shape == (4, 8)


def test_init_weights_covers_every_parameter(tiny_model):
    with torch.no_grad():
        for parameter in tiny_model.parameters():
            parameter.fill_(float("nan"))
        for buffer in tiny_model.buffers():
            if buffer.is_floating_point():
                buffer.fill_(float("nan"))
    for module in tiny_model.modules():
        module._is_hf_initialized = False
    for tensor in list(tiny_model.parameters()) + list(tiny_model.buffers()):
        tensor._is_hf_initialized = False
    tiny_model.initialize_weights()
    untouched = [n for n, t in list(tiny_model.named_parameters()) + list(tiny_model.named_buffers()) if t.isnan().any()]
    assert untouched == []
    anchors = tiny_model.grefel_head.anchors
    assert 0 < anchors.std().item() < 3 * tiny_model.config.anchor_init_std  # small random, not ARBEx's zeros


def test_tuple_and_model_output_agree(tiny_model):
    x, labels = pixels(tiny_model.config), torch.tensor([1, 2, 3, 4])
    with torch.no_grad():
        as_output = tiny_model(x, labels=labels, return_dict=True)
        as_tuple = tiny_model(x, labels=labels, return_dict=False)
    expected = as_output.to_tuple()
    assert len(as_tuple) == len(expected)
    for a, b in zip(as_tuple, expected):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(as_tuple[0], as_output.loss)
    torch.testing.assert_close(as_tuple[1], as_output.logits)


def test_base_model_outputs(tiny_model):
    trunk = tiny_model.grefel
    assert isinstance(trunk, GReFELModel)
    with torch.no_grad():
        out = trunk(pixels(tiny_model.config), output_attentions=True)
        as_tuple = trunk(pixels(tiny_model.config), output_attentions=True, return_dict=False)
    # last_hidden_state first, as in every transformers model.
    assert list(out.keys())[:2] == ["last_hidden_state", "embeddings"]
    torch.testing.assert_close(as_tuple[0], out.last_hidden_state)
    torch.testing.assert_close(as_tuple[1], out.embeddings)
    assert out.last_hidden_state.shape == (4, 1 + tiny_model.config.num_tokens, tiny_model.config.hidden_size)


def test_the_head_returns_a_typed_output_the_classifier_output_names(tiny_model):
    with torch.no_grad():
        embeddings = tiny_model.grefel(pixels(tiny_model.config)).embeddings
        head = tiny_model.grefel_head(embeddings, tiny_model.trust)
        out = tiny_model(pixels(tiny_model.config))
    assert isinstance(head, GReFELHeadOutput)
    for name in ("primary_probs", "geometric_probs", "corrected_probs", "confidences", "anchor_distances"):
        torch.testing.assert_close(getattr(out, name), getattr(head, name))


def test_trust_is_a_buffer_set_from_the_step_and_not_saved(tiny_model, tmp_path):
    model = GReFELForImageClassification(GReFELConfig.tiny(trust_schedule="linear"))
    assert "trust" in dict(model.named_buffers()) and "trust" not in model.state_dict()
    assert model.set_trust(25, 100) == 0.25 and model.trust.item() == 0.25
    model.save_pretrained(tmp_path)
    assert GReFELForImageClassification.from_pretrained(tmp_path).trust.item() == 0.0


def test_a_bf16_model_takes_fp32_pixel_values(tiny_model):
    model = GReFELForImageClassification(tiny_model.config).to(torch.bfloat16).eval()
    with torch.no_grad():
        out = model(pixels(tiny_model.config))  # fp32, as the processor returns
    assert out.logits.dtype == torch.bfloat16 and torch.isfinite(out.logits.float()).all()


def test_bad_pixel_values_are_explained(tiny_model):
    with pytest.raises(ValueError, match="GReFELImageProcessor"):
        tiny_model(torch.randn(2, 64, 64))


def test_save_and_load_give_identical_logits(tiny_model, tmp_path):
    x = pixels(tiny_model.config)
    tiny_model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    again = GReFELForImageClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(x).logits, tiny_model(x).logits, rtol=0, atol=0)
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map == {
        "AutoConfig": "configuration_grefel.GReFELConfig",
        "AutoModel": "modeling_grefel.GReFELModel",
        "AutoModelForImageClassification": "modeling_grefel.GReFELForImageClassification",
    }
    assert {"configuration_grefel.py", "modeling_grefel.py", "loss_grefel.py"} <= {p.name for p in tmp_path.iterdir()}


REMOTE_SCRIPT = textwrap.dedent(
    """
    import sys, torch
    from PIL import Image
    from transformers import (AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification, pipeline)
    folder = sys.argv[1]
    assert "modeling_grefel" not in sys.modules
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True).eval()
    trunk = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    image = Image.new("RGB", (90, 70), (200, 120, 90))
    inputs = processor(image, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
        torch.testing.assert_close(trunk(**inputs).embeddings, model.grefel(**inputs).embeddings)
    torch.save(logits, sys.argv[2])
    result = pipeline("image-classification", model=folder, trust_remote_code=True)(image, top_k=3)
    assert len(result) == 3 and result[0]["label"] in config.id2label.values(), result
    print("REMOTE_OK", type(config).__name__, type(processor).__name__)
    """
)


def test_remote_code_reload_offline_in_a_fresh_process(tiny_model_dir, tmp_path):
    from PIL import Image

    from modeling_grefel import GReFELImageProcessor

    script = tmp_path / "load.py"
    script.write_text(REMOTE_SCRIPT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home"), "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    # Run from an empty folder so the local package cannot be imported: only the saved remote code is used.
    result = subprocess.run(
        [sys.executable, str(script), str(tiny_model_dir), str(tmp_path / "logits.pt")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "REMOTE_OK GReFELConfig GReFELImageProcessor" in result.stdout
    local = GReFELForImageClassification.from_pretrained(tiny_model_dir).eval()
    processor = GReFELImageProcessor.from_pretrained(tiny_model_dir)
    inputs = processor(Image.new("RGB", (90, 70), (200, 120, 90)), return_tensors="pt")
    # The same code and weights; float rounding alone may differ between processes: with AVX-512/AMX kernels oneDNN
    # summed in another order in the fresh process (2.4e-7 on 3 of 8 logits, 2026-12-04), so a rounding tolerance,
    # far below what any change to the model or its weights moves (>1e-3).
    with torch.no_grad():
        torch.testing.assert_close(torch.load(tmp_path / "logits.pt"), local(**inputs).logits, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_paper_size_parameters_and_flops_match_poster_plus_plus():
    from torch.utils.flop_counter import FlopCounterMode

    config = GReFELConfig.paper(num_labels=7)
    model = GReFELForImageClassification(config).eval()
    trunk_params = sum(p.numel() for p in model.grefel.parameters())
    # POSTER++'s 43.7M (thop) counts the trunk it uses; ours holds the same trunk.
    assert math.isclose(trunk_params / 1e6, 43.7, rel_tol=0.10), trunk_params
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.grefel(torch.randn(1, 3, 224, 224))
    # 17.2 GFLOP per image: the official POSTER++ trunk under torch.utils.flop_counter (2 FLOPs per MAC).
    assert math.isclose(counter.get_total_flops() / 1e9, 17.2, rel_tol=0.10), counter.get_total_flops()
    out = model(torch.randn(2, 3, 224, 224))
    assert out.logits.shape == (2, 7) and out.embeddings.shape == (2, 768)
    assert config.num_tokens == 147


def test_mean_pooling_embeds_the_mean_of_the_fusion_tokens():
    config = GReFELConfig.tiny(embedding_pooling="mean")
    model = GReFELForImageClassification(config).eval()
    with torch.no_grad():
        out = model.grefel(pixels(config))
        expected = model.grefel.fusion.se_block(out.last_hidden_state[:, 1:].mean(dim=1))
    torch.testing.assert_close(out.embeddings, expected)


def test_class_token_pooling_embeds_the_class_token():
    config = GReFELConfig.tiny(embedding_pooling="cls")
    model = GReFELForImageClassification(config).eval()
    with torch.no_grad():
        out = model.grefel(pixels(config))
        expected = model.grefel.fusion.se_block(out.last_hidden_state[:, 0])
    torch.testing.assert_close(out.embeddings, expected)


def test_max_pooling_normalises_the_per_channel_maximum_of_the_tokens(tiny_model):
    model, config = tiny_model, tiny_model.config
    assert config.embedding_pooling == "max"  # the tiny preset's read-out
    with torch.no_grad():
        out = model.grefel(pixels(config), output_hidden_states=True)
        fusion = model.grefel.fusion
        pre_norm = out.hidden_states[-1]  # the last fusion block's output, before the final LayerNorm
        expected = fusion.se_block(fusion.norm(pre_norm[:, 1:].amax(dim=1)))
    torch.testing.assert_close(out.embeddings, expected)
    torch.testing.assert_close(out.last_hidden_state, fusion.norm(pre_norm))


def test_fusion_layer_scale_starts_the_fusion_blocks_near_identity(tmp_path):
    config = GReFELConfig.tiny(fusion_layer_scale_init_value=1e-5)
    model = GReFELForImageClassification(config).eval()
    block = model.grefel.fusion.blocks[0]
    assert torch.equal(block.gamma1, torch.full_like(block.gamma1, 1e-5))
    with torch.no_grad():
        out = model.grefel(pixels(config), output_hidden_states=True)
    before, after = out.hidden_states[-2], out.hidden_states[-1]  # into and out of the one fusion block
    assert (after - before).abs().max() < 1e-3 * before.abs().max()
    without = GReFELForImageClassification(GReFELConfig.tiny()).eval()
    assert without.grefel.fusion.blocks[0].gamma1 is None  # and no new keys in the default state dict
    assert not any("fusion" in key and "gamma" in key for key in without.state_dict())
    with torch.no_grad():
        block.gamma1.fill_(0.5)
    model.save_pretrained(tmp_path)
    reloaded = GReFELForImageClassification.from_pretrained(tmp_path)
    assert torch.equal(reloaded.grefel.fusion.blocks[0].gamma1, block.gamma1)


@pytest.mark.parametrize("preset", ["tiny", "paper"])
def test_random_frozen_landmark_taps_keep_their_scale(preset):
    """Without pretrained weights the frozen MobileFaceNet must still give input-dependent queries, not ~0."""
    config = getattr(GReFELConfig, preset)()
    torch.manual_seed(0)
    model = GReFELModel(config).eval()
    x = torch.nn.functional.interpolate(pixels(config), size=config.backbone_image_size)
    with torch.no_grad():
        taps = model.landmark_features(x)
    for tap in taps:
        assert 0.1 < tap.std().item() < 100, [t.std().item() for t in taps]


def test_random_landmark_residual_stages_do_not_blow_up_their_input():
    """A residual stage of n blocks whose branches each preserved the variance doubled it at every block (nothing
    renormalises in the frozen network's eval mode): at the paper size (4 and 6 blocks) the landmark queries reached an
    RMS of ~50 and the window cross-attention's softmax over them was near one-hot. Branches start at 1/sqrt(n) of
    that scale, which bounds the growth of a stage's RMS by sqrt(e) ~ 1.65 instead of 2^(n/2)."""
    config = GReFELConfig.tiny(landmark_num_blocks=(4, 6, 2))  # the paper size's residual blocks
    torch.manual_seed(0)
    model = GReFELModel(config).eval()
    stages = [model.face_landback.conv_3, model.face_landback.conv_4, model.face_landback.conv_5]
    ratios = {}
    for index, stage in enumerate(stages):
        stage.register_forward_hook(
            lambda module, args, out, index=index: ratios.update({index: (out.pow(2).mean() / args[0].pow(2).mean())
                                                                  .sqrt().item()}))
    torch.manual_seed(1)
    with torch.no_grad():
        model.landmark_features(torch.randn(2, 3, config.backbone_image_size, config.backbone_image_size))
    assert len(ratios) == 3 and all(r < 2.0 for r in ratios.values()), ratios


def test_prelu_starts_as_relu(tiny_model):
    fresh = GReFELForImageClassification(tiny_model.config)
    slopes = [m.weight for m in fresh.modules() if isinstance(m, torch.nn.PReLU)]
    assert slopes and all(bool((s == 0).all()) for s in slopes)


def test_from_pretrained_keeps_the_landmark_backbone_frozen(tiny_model_dir):
    model = GReFELForImageClassification.from_pretrained(tiny_model_dir)
    landmark = list(model.grefel.face_landback.parameters())
    assert landmark and not any(p.requires_grad for p in landmark)
    trunk = GReFELModel.from_pretrained(tiny_model_dir)
    assert not any(p.requires_grad for p in trunk.face_landback.parameters())


def test_head_and_loss_stay_fp32_under_an_outer_bf16_autocast():
    """accelerate's --mixed_precision bf16 wraps the whole forward in autocast: the distributions must still sum to 1
    (evaluation's ECE refuses rows summing to 0.9985-1.001, as bf16 softmaxes did) and the loss be fp32."""
    torch.manual_seed(0)
    model = GReFELForImageClassification(GReFELConfig.tiny(num_labels=8)).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(pixel_values=torch.randn(4, 3, 64, 64), labels=torch.tensor([0, 1, 2, 3]))
    for probs in (out.primary_probs, out.corrected_probs, out.geometric_probs):
        assert probs.dtype == torch.float32
        torch.testing.assert_close(probs.sum(-1), torch.ones(4), atol=1e-5, rtol=0)
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)


@pytest.mark.parametrize("batch_norm", [True, False])
def test_primary_mlp_head_has_arbex_layer_order(batch_norm):
    # ARBEx (takihasan/ARBEx, arbex/models/head.py): Linear, ReLU, BatchNorm1d (its switch), Dropout per hidden layer.
    config = GReFELConfig.tiny(head_hidden_sizes=(32, 16), head_dropout=0.5, head_batch_norm=batch_norm)
    head = GReFELForImageClassification(config).grefel_head.primary
    block = [torch.nn.Linear, torch.nn.ReLU, *([torch.nn.BatchNorm1d] if batch_norm else []), torch.nn.Dropout]
    assert [type(layer) for layer in head] == block * 2 + [torch.nn.Linear]
    assert [layer.out_features for layer in head if isinstance(layer, torch.nn.Linear)] == [32, 16, config.num_labels]
    assert all(layer.p == 0.5 for layer in head if isinstance(layer, torch.nn.Dropout))
    # A train-mode forward of the whole model with that head, and its gradient into the trunk.
    model = GReFELForImageClassification(config).train()
    out = model(pixels(config), labels=torch.tensor([0, 1, 2, 3]))
    out.loss.backward()
    assert torch.isfinite(out.loss) and model.grefel.fusion.se_block.linear1.weight.grad.abs().sum() > 0
