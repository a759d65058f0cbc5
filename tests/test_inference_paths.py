"""Inference paths: the lean eager forward equals the previous one, and every faster path agrees with eager fp32."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch

from emotionnet.previous_eager import previous_eager_forward, window_attention
from modeling_grefel import GReFELConfig, GReFELForImageClassification, GReFELModel
from modeling_grefel import modeling_grefel as modeling
from modeling_grefel.attention_grefel import GReFELWindowCrossAttention, relative_position_index
from modeling_grefel.inference_grefel import GReFELInt8Linear, calibration_pixel_values, has_native_bf16


def make_model(seed: int = 0, **kwargs) -> GReFELForImageClassification:
    torch.manual_seed(seed)
    return GReFELForImageClassification(GReFELConfig.tiny(**kwargs)).eval()


@pytest.fixture
def reference_forward():
    """Call it to switch every GReFEL model to the previous eager forward for the rest of the test."""
    with contextlib.ExitStack() as stack:
        yield lambda: stack.enter_context(previous_eager_forward())


@pytest.mark.parametrize("window_sizes", [(4, 4, 2), (2, 1, 1)])
def test_lean_eager_forward_matches_the_previous_implementation(reference_forward, window_sizes):
    model = make_model(window_sizes=window_sizes)
    x = calibration_pixel_values(model.config, batch=3)
    with torch.no_grad():
        lean = model(x, output_hidden_states=True)
        reference_forward()
        previous = model(x, output_hidden_states=True)
    torch.testing.assert_close(lean.logits, previous.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lean.embeddings, previous.embeddings, atol=1e-5, rtol=1e-5)
    for a, b in zip(lean.hidden_states, previous.hidden_states):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_lean_eager_gradients_match_the_previous_implementation(monkeypatch, reference_forward):  # this order: undone last
    # Both in channels-first memory: the channels-last layout's own gradient error is the next test's subject.
    monkeypatch.setattr(GReFELModel, "backbone_layout", staticmethod(lambda x: x))
    model = make_model().train()
    x = calibration_pixel_values(model.config, batch=4)
    labels = torch.tensor([0, 1, 2, 3])

    def grads():
        torch.manual_seed(1)  # the same drop-path draws in both runs
        model.zero_grad()
        model(x, labels=labels).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    lean = grads()
    reference_forward()
    previous = grads()
    assert lean.keys() == previous.keys()
    for name in lean:
        torch.testing.assert_close(lean[name], previous[name], atol=1e-5, rtol=1e-4, msg=name)


def test_the_classifier_runs_the_last_fusion_block_on_the_class_token_alone_with_the_same_results(reference_forward):
    model = make_model(embedding_pooling="cls", fusion_depth=2)
    tokens = 1 + model.config.num_tokens
    x = calibration_pixel_values(model.config, batch=3)
    mlp_rows = []
    model.grefel.fusion.blocks[-1].mlp.register_forward_hook(lambda module, args, out: mlp_rows.append(out.shape[1]))

    def trunk_training_step(output_last_hidden_state: bool):
        model.zero_grad()
        torch.manual_seed(1)  # the same drop-path draws in both runs
        out = model.train().grefel(x, output_last_hidden_state=output_last_hidden_state)
        (out.embeddings * torch.linspace(-1, 1, out.embeddings.numel()).view_as(out.embeddings)).sum().backward()
        model.eval()
        return out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    state = copy.deepcopy(model.state_dict())
    full, full_grads = trunk_training_step(True)
    model.load_state_dict(state)  # the training forward moves the BatchNorm statistics
    cls_only, cls_only_grads = trunk_training_step(False)
    model.load_state_dict(state)
    assert full.last_hidden_state.shape == (3, tokens, model.config.hidden_size)
    assert cls_only.last_hidden_state is None
    torch.testing.assert_close(cls_only.embeddings, full.embeddings, atol=1e-6, rtol=1e-5)
    assert cls_only_grads.keys() == full_grads.keys()
    for name, grad in full_grads.items():  # float rounding only: within 1e-5 of each tensor's largest entry
        torch.testing.assert_close(cls_only_grads[name], grad, atol=1e-5 * grad.abs().max().item(), rtol=1e-4, msg=name)

    with torch.no_grad():
        lean = model(x)
        reference_forward()
        previous = model(x)
    assert mlp_rows == [tokens, 1, 1, tokens]  # trunk (full, class token), classifier, previous classifier
    torch.testing.assert_close(lean.logits, previous.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lean.embeddings, previous.embeddings, atol=1e-5, rtol=1e-5)


def test_channels_last_training_gradients_stay_close_to_fp64(monkeypatch):
    """oneDNN's channels-last batch norm sums less exactly: over the whole tiny network the fp32 gradient is 0.85% off
    the fp64 one in channels-last memory and 0.014% in channels-first (measured), well inside bf16 training's own
    rounding (0.4% per value); a wrong layout or a dropped term would be off by far more."""
    model = make_model().train()
    torch.manual_seed(5)
    x = torch.randn(16, 3, model.config.image_size, model.config.image_size)
    labels = torch.arange(16) % model.config.num_labels

    def gradient(dtype):
        torch.manual_seed(1)
        model.zero_grad()
        model.to(dtype)(x.to(dtype), labels=labels).loss.backward()
        return torch.cat([p.grad.double().flatten() for p in model.parameters() if p.grad is not None])

    channels_last = gradient(torch.float32)
    monkeypatch.setattr(GReFELModel, "backbone_layout", staticmethod(lambda x: x))
    exact = gradient(torch.float64)
    assert (channels_last - exact).norm() / exact.norm() < 0.03


def test_output_attentions_returns_the_explicit_probabilities(reference_forward):
    model = make_model()
    x = calibration_pixel_values(model.config, batch=2)
    with torch.no_grad():
        lean = model(x, output_attentions=True)
        reference_forward()
        previous = model(x, output_attentions=True)
    assert len(lean.attentions) == model.config.fusion_depth
    for a, b in zip(lean.attentions, previous.attentions):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(a.sum(-1), torch.ones(a.shape[:-1]))
    torch.testing.assert_close(lean.logits, previous.logits, atol=1e-5, rtol=1e-5)


def test_window_attention_weights_only_on_request():
    torch.manual_seed(0)
    attention = GReFELWindowCrossAttention(dim=8, num_heads=2, window=3)
    torch.nn.init.normal_(attention.relative_position_bias_table)
    image, query = torch.randn(4, 9, 8), torch.randn(4, 9, 8)
    fused, none = attention(image, query)
    explicit, probs = attention(image, query, need_weights=True)
    assert none is None and probs.shape == (4, 2, 9, 9)
    torch.testing.assert_close(fused, explicit, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(fused, window_attention(attention, image, query)[0], atol=1e-6, rtol=1e-5)


def test_relative_position_index_is_a_buffer_outside_the_state_dict_and_rebuilt_by_from_pretrained(tmp_path):
    model = make_model()
    assert not any("relative_position_index" in key for key in model.state_dict())
    model.save_pretrained(tmp_path)
    loaded = GReFELForImageClassification.from_pretrained(tmp_path)
    for attention in (model.grefel.cross_attention[0].attention, loaded.grefel.cross_attention[0].attention):
        assert "relative_position_index" in dict(attention.named_buffers())
        torch.testing.assert_close(attention.relative_position_index,
                                   relative_position_index(attention.window).reshape(-1))


def test_unknown_path_is_refused():
    with pytest.raises(ValueError, match="path must be one of auto, eager, bf16, int8, compile; got 'fp16'"):
        make_model().optimize_for_inference("fp16")


def test_eager_path_changes_nothing():
    model = make_model()
    x = calibration_pixel_values(model.config)
    with torch.no_grad():
        before = model(x).logits
        after = model.optimize_for_inference("eager")(x).logits
    assert model.inference_path == "eager"
    torch.testing.assert_close(before, after)


def test_bf16_is_refused_where_it_would_be_emulated(monkeypatch):
    monkeypatch.setattr(modeling, "has_native_bf16", lambda device: False)
    with pytest.raises(ValueError, match="needs native bf16"):
        make_model().optimize_for_inference("bf16")


def test_auto_never_times_bf16_where_it_would_be_emulated(monkeypatch):
    monkeypatch.setattr(modeling, "has_native_bf16", lambda device: False)
    model = make_model().optimize_for_inference("auto")
    assert "bf16" not in model.inference_report["paths"]
    assert model.inference_path in ("eager", "int8")


def test_native_bf16_follows_the_cpu_flags(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    real_open = open

    def fake_open(path, *args, **kwargs):
        return real_open(cpuinfo if path == "/proc/cpuinfo" else path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", fake_open)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 fma avx512f\n")
    assert not has_native_bf16("cpu")
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert has_native_bf16("cpu")
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 amx_bf16 amx_tile\n")
    assert has_native_bf16("cpu")


@pytest.mark.skipif(not has_native_bf16("cpu"), reason="this CPU has no native bf16")
def test_bf16_path_agrees_with_eager_fp32():
    model = make_model()
    x = calibration_pixel_values(model.config, batch=16)
    with torch.no_grad():
        reference = model(x)
        out = model.optimize_for_inference("bf16")(x)
    assert model.inference_path == "bf16"
    assert out.logits.dtype == torch.float32 and out.embeddings.dtype == torch.float32
    assert (out.logits.argmax(-1) == reference.logits.argmax(-1)).float().mean() >= 0.99
    torch.testing.assert_close(out.logits.exp(), reference.logits.exp(), atol=0.02, rtol=0)
    model.train()  # training never runs under the inference autocast
    assert model(x).embeddings.dtype == torch.float32


def test_int8_path_agrees_with_eager_fp32_and_saves_the_fp32_weights(tmp_path):
    model = make_model()
    x = calibration_pixel_values(model.config, batch=16)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        reference = model(x).logits
        out = model.optimize_for_inference("int8")(x).logits
    assert model.inference_path == "int8"
    assert any(isinstance(m, GReFELInt8Linear) for m in model.grefel.modules())
    assert model.state_dict().keys() == state.keys()
    assert (out.argmax(-1) == reference.argmax(-1)).float().mean() >= 0.99
    torch.testing.assert_close(out.exp(), reference.exp(), atol=0.02, rtol=0)
    model.save_pretrained(tmp_path)
    reloaded = GReFELForImageClassification.from_pretrained(tmp_path)
    for key, value in reloaded.state_dict().items():
        torch.testing.assert_close(value, state[key], msg=key)



def test_int8_path_computes_gradients_in_fp32():
    """Grad-CAM and training need gradients; under autograd the int8 layers are their fp32 selves."""
    model = make_model()
    x = calibration_pixel_values(model.config, batch=2)
    reference = model(x).logits
    int8 = model.optimize_for_inference("int8")(x).logits
    torch.testing.assert_close(int8, reference)
    int8[0, 0].backward()
    assert all(p.grad is not None for p in model.grefel.fusion.parameters() if p.requires_grad)


def test_auto_keeps_the_fastest_agreeing_path_and_reports_it():
    model = make_model()
    x = calibration_pixel_values(model.config)
    with torch.no_grad():
        reference = model(x).logits.argmax(-1)
        model.optimize_for_inference("auto")
        chosen = model(x).logits.argmax(-1)
    report = model.inference_report
    assert report["chosen"] == model.inference_path
    assert set(report["paths"]) >= {"eager", "int8"}
    assert report["paths"][model.inference_path]["top1_agreement"] >= 0.99
    assert (chosen == reference).float().mean() >= 0.99


def test_an_optimised_model_refuses_a_second_path():
    model = make_model().optimize_for_inference("int8")
    with pytest.raises(ValueError, match="already runs the 'int8' path; load it again"):
        model.optimize_for_inference("eager")


@pytest.mark.slow
def test_compile_path_matches_eager():
    model = make_model()
    x = calibration_pixel_values(model.config, batch=4)
    with torch.no_grad():
        reference = model(x).logits
        out = model.optimize_for_inference("compile")(x).logits
    torch.testing.assert_close(out, reference, atol=1e-4, rtol=1e-4)


def make_pipeline(model, **kwargs):
    from modeling_grefel import GReFELImageProcessor
    from modeling_grefel.pipeline_grefel import FacialExpressionPipeline

    processor = GReFELImageProcessor.from_config(model.config)
    return FacialExpressionPipeline(model=model, image_processor=processor, device="cpu", **kwargs)


def test_pipeline_runs_the_auto_path_by_default():
    model = make_model()
    make_pipeline(model)
    assert model.inference_report["chosen"] == model.inference_path


def test_pipeline_takes_an_inference_path_and_leaves_an_optimised_model_alone():
    model = make_model()
    make_pipeline(model, inference_path="int8")
    assert model.inference_path == "int8"
    make_pipeline(model)  # already optimised: auto does not run again
    assert model.inference_path == "int8" and model.inference_report is None
    eager = make_model()
    make_pipeline(eager, inference_path="eager")
    assert eager.inference_path == "eager"
    with pytest.raises(ValueError, match="path must be one of"):
        make_pipeline(make_model(), inference_path="fast")


def test_previous_forward_is_restored_after_its_block():
    lean = GReFELWindowCrossAttention.forward
    with pytest.raises(RuntimeError), previous_eager_forward():
        assert GReFELWindowCrossAttention.forward is window_attention
        raise RuntimeError("restored on errors too")
    assert GReFELWindowCrossAttention.forward is lean


def test_backbones_take_channels_last_maps_on_the_cpu_and_the_previous_forward_did_not():
    x = torch.randn(2, 3, 8, 8)
    assert GReFELModel.backbone_layout(x).is_contiguous(memory_format=torch.channels_last)
    with previous_eager_forward():
        assert GReFELModel.backbone_layout(x) is x
    assert GReFELModel.backbone_layout(x).is_contiguous(memory_format=torch.channels_last)


def kernels(model):
    return [p for p in model.parameters() if p.ndim == 4]


def test_kernels_are_channels_last_when_built_and_when_loaded_and_compute_the_same(tmp_path):
    model = make_model()
    assert kernels(model) and all(k.is_contiguous(memory_format=torch.channels_last) for k in kernels(model))
    model.save_pretrained(tmp_path)
    loaded = GReFELForImageClassification.from_pretrained(tmp_path)
    assert all(k.is_contiguous(memory_format=torch.channels_last) for k in kernels(loaded))
    x = calibration_pixel_values(model.config, batch=3)
    with torch.no_grad():
        channels_last = model(x).logits
        with previous_eager_forward():
            model.eval()  # the previous layout: channels-first kernels
        assert all(k.is_contiguous() for k in kernels(model))
        channels_first = model(x).logits
    torch.testing.assert_close(channels_last, channels_first, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loaded(x).logits, channels_last, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_paper_size_lean_eager_forward_matches_the_previous_implementation(reference_forward):
    torch.manual_seed(0)
    model = GReFELForImageClassification(GReFELConfig.paper(num_labels=7)).eval()
    x = calibration_pixel_values(model.config, batch=2)
    with torch.no_grad():
        lean = model(x)
        reference_forward()
        previous = model(x)
    torch.testing.assert_close(lean.logits, previous.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lean.embeddings, previous.embeddings, atol=1e-5, rtol=1e-5)
