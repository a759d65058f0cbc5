"""scripts/benchmark.py's latency and inference sections run and report the figures issue 11 asks for."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from modeling_grefel.inference_grefel import has_native_bf16
from tests.load_script import load_script

ROOT = Path(__file__).resolve().parents[1]


def test_latency_section_times_the_pipeline_on_a_webcam_frame_with_one_face(tmp_path):
    pytest.importorskip("cv2")
    output = tmp_path / "latency.json"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--sections", "latency",
                           "--latency_presets", "tiny", "--repeats", "1", "--output", str(output)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    latency = json.loads(output.read_text())["latency"]
    assert latency["frame_size"] == [640, 480] and latency["detector_frame_ms"] > 0
    for path in ("eager", "auto"):
        row = latency[f"tiny_{path}"]
        assert row["frame_faces"] == row["frame_video_detector_faces"] == 1
        assert row["frame_ms"] > 0 and row["photo_ms"] > 0 and row["frame_video_detector_ms"] > 0
    assert latency["tiny_eager"]["chosen_path"] == "eager"



def test_inference_section_reports_the_onnx_int8_path_beside_eager(tmp_path):
    pytest.importorskip("onnxruntime")
    output = tmp_path / "inference.json"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--sections", "inference",
                           "--inference_presets", "tiny", "--inference_paths", "onnx_int8", "--inference_repeats", "1",
                           "--interleaved_repeats", "1", "--agreement_inputs", "16", "--steps", "2",
                           "--output", str(output)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(output.read_text())
    rows = {(row["path"], row["batch"]): row for row in report["inference"]}
    assert set(rows) == {(path, batch) for path in ("previous_eager", "eager", "onnx_int8") for batch in (1, 16, 64)}
    for batch in (1, 16, 64):
        int8 = rows[("onnx_int8", batch)]
        assert int8["images_per_s"] > 0 and int8["agreement_inputs"] == 16 and 0.0 <= int8["top1_agreement"] <= 1.0
    for row in rows.values():  # a fresh process per row: torch alone is ~300 MB resident, the tiny model little more
        assert 200 < row["peak_rss_mb_alone"] < 4000
    details = report["inference_details"][0]
    assert details["onnx"]["export_s"] > 0 and details["onnx"]["quantize_s"] > 0
    assert {row["path"] for row in details["interleaved"]} == {"previous_eager", "eager", "onnx_int8"}
    step = report["train_step"][0]
    assert step["images_per_s"] > 0 and step["previous_eager_images_per_s"] > 0
    assert ("bf16_images_per_s" in step) == has_native_bf16("cpu")  # bf16 autocast only where it is native

def test_interleaved_medians_time_each_call_in_turn_after_one_warm_up_turn(monkeypatch):
    from emotionnet import timing

    now, order = [0.0], []

    def call(name: str, first: float, then: float):
        def run():
            order.append(name)
            now[0] += first if order.count(name) == 1 else then
        return run

    monkeypatch.setattr(timing.time, "perf_counter", lambda: now[0])
    calls = {"a": call("a", 100.0, 1.0), "b": call("b", 50.0, 2.0)}
    medians = timing.interleaved_median_seconds(calls, repeats=1, synchronize=lambda: order.append("sync"))
    assert order == ["a", "sync", "b", "sync"] * 2
    assert medians == {"a": 1.0, "b": 2.0}  # the slow first (warm-up) calls are not counted


def test_peak_rss_alone_is_the_fresh_process_not_the_parent_it_was_started_from():
    """getrusage's ru_maxrss survives exec, so a probe started from a large benchmark process reported the parent's
    peak; VmHWM does not."""
    benchmark = load_script(ROOT / "scripts" / "benchmark.py")
    ballast = bytearray(1536 * 2**20)
    ballast[:: 4096] = b"\x01" * len(range(0, len(ballast), 4096))  # touch every page: 1.5 GB resident here
    peaks = benchmark.peak_rss_alone("tiny", "eager", [1], "cpu")
    assert benchmark.high_water_rss_mb() > 1536
    assert 100 < peaks[1] < 1200, peaks  # torch, transformers and the tiny model: ~400 MB measured


def test_the_previous_eager_yardstick_keeps_channels_first_kernels_and_eager_does_not():
    from modeling_grefel import GReFELConfig

    benchmark = load_script(ROOT / "scripts" / "benchmark.py")
    config = GReFELConfig.tiny(num_labels=7)
    previous = benchmark.build_path_model(config, "previous_eager", "cpu")
    eager = benchmark.build_path_model(config, "eager", "cpu", previous.state_dict())
    # A 1x1 or a depth-wise kernel is contiguous in both layouts at once
    kernels = [(a, b) for a, b in zip(previous.parameters(), eager.parameters())
               if a.ndim == 4 and a.shape[1] > 1 and a.shape[-1] > 1]
    assert kernels and all(a.is_contiguous() and not a.is_contiguous(memory_format=torch.channels_last)
                           for a, _ in kernels)
    assert all(b.is_contiguous(memory_format=torch.channels_last) for _, b in kernels)
    assert all(torch.equal(a, b) for a, b in kernels)


def test_largest_fitting_batch_doubles_until_memory_runs_out():
    benchmark = load_script(ROOT / "scripts" / "benchmark.py")
    tried = []

    def fits(batch):
        tried.append(batch)
        if batch > 100:
            raise torch.OutOfMemoryError("CUDA out of memory")

    assert benchmark.largest_fitting_batch(fits, start=8, limit=1024) == 64
    assert tried == [8, 16, 32, 64, 128]
    assert benchmark.largest_fitting_batch(fits, start=200, limit=1024) == 0
    assert benchmark.largest_fitting_batch(lambda batch: None, start=8, limit=40) == 32
    with pytest.raises(ValueError):  # anything but running out of memory is a failure, not a limit
        benchmark.largest_fitting_batch(lambda batch: int("x"), start=8, limit=40)


def test_flop_counts_include_the_fused_attention_kernel():
    """torch.utils.flop_counter misses the fused CPU attention kernel; the benchmark counts attention explicitly:
    qkv and output projections plus QK^T and AV, 2 FLOPs per multiply-add."""
    from modeling_grefel.attention_grefel import GReFELSelfAttention

    benchmark = load_script(ROOT / "scripts" / "benchmark.py")
    attention = GReFELSelfAttention(32, num_heads=4)
    with benchmark.counted_flops() as counter:
        attention(torch.randn(1, 10, 32))
    projections = 2 * 10 * 32 * (3 * 32) + 2 * 10 * 32 * 32
    products = 2 * (2 * 4 * 10 * 10 * 8)
    assert counter.get_total_flops() == projections + products


def test_allocator_section_times_each_setting_in_its_own_process_and_reports_the_ratio():
    benchmark = load_script(ROOT / "scripts" / "benchmark.py")
    result = benchmark.allocator_section(batch_size=2, steps=2, rounds=1)
    assert result["applied"] is (platform.libc_ver()[0] == "glibc")
    for figure in benchmark.ALLOCATOR_FIGURES:
        assert set(result[figure]) == {"default", "keep_freed_memory"}, figure
    assert all(len(values) == 1 and values[0] > 0 for values in result["per_process_step_s"].values())
    assert result["median_step_s"]["default"] > 0 and result["user_s_per_step"]["default"] > 0
    assert result["keep_freed_memory_vs_default"] == pytest.approx(
        result["median_step_s"]["keep_freed_memory"] / result["median_step_s"]["default"])
