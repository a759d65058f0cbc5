"""scripts/benchmark.py's latency section runs and reports the webcam-frame figure issue 11 asks for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
