"""The demo Space: its helpers in-process, then the real server through `gradio_client`."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from emotionnet.run_folder import RESULTS
from tests.load_script import load_script

ROOT = Path(__file__).resolve().parents[1]
SPACE = ROOT / "space"
EXAMPLES = SPACE / "examples"
SERVER_START_TIMEOUT_S = 120


def _import_space_module(name: str):
    """Import space/<name>.py as the Space itself would (its folder first on sys.path)."""
    if str(SPACE) not in sys.path:
        sys.path.insert(0, str(SPACE))
    return load_script(SPACE / f"{name}.py", f"space_{name}")


def copy_with_results(model_dir: Path, folder: Path) -> Path:
    """A copy of the shared tiny model folder plus the all_results.json a synthetic-data training run writes."""
    shutil.copytree(model_dir, folder)
    (folder / RESULTS).write_text(json.dumps({"dataset": "synthetic-faces", "synthetic": True}))
    return folder


@pytest.fixture(scope="module")
def space_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    return copy_with_results(tiny_model_dir, tmp_path_factory.mktemp("space_model") / "synthetic-tiny")


@pytest.fixture(scope="module")
def app_module():
    return _import_space_module("app")


@pytest.fixture(scope="module")
def explain_module():
    return _import_space_module("explain")


@pytest.fixture(scope="module")
def image_input():
    """The image reader the Space gets from the model's remote code; in the checkout, modeling_grefel's."""
    from modeling_grefel import image_input_grefel

    return image_input_grefel


# ----------------------------------------------------------------------------------------------- bad files
def write_huge_png(path: Path, side: int = 8000) -> Path:
    """A valid 1-bit `side` x `side` PNG (all black) of a few tens of kilobytes, without building it in memory."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def write_truncated_jpeg(path: Path) -> Path:
    buffer = io.BytesIO()
    PIL.Image.open(EXAMPLES / "astronaut.jpg").save(buffer, format="JPEG", quality=90)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 3])
    return path


def write_animated_gif(path: Path) -> Path:
    frames = [PIL.Image.new("RGB", (32, 32), colour) for colour in ("red", "green", "blue")]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


# ----------------------------------------------------------------------------------------------- reading uploads
def test_read_photo_refuses_a_text_file_naming_it(app_module, image_input, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a photo")
    with pytest.raises(app_module.UploadError, match="^'notes.txt' is not an image"):
        app_module.read_photo(path, image_input)


def test_read_photo_refuses_a_huge_image_before_decoding_it(app_module, image_input, tmp_path):
    path = write_huge_png(tmp_path / "huge.png")
    with pytest.raises(app_module.UploadError, match=r"8000x8000 pixels \(64 MP\), above the limit of 40 MP"):
        app_module.read_photo(path, image_input)


def test_read_photo_refuses_an_image_beyond_pils_own_guard_with_the_same_sentence(app_module, image_input, tmp_path):
    path = write_huge_png(tmp_path / "huge.png", side=20000)
    with pytest.raises(app_module.UploadError, match=r"'huge.png' is more than \d+ MP, above the limit of 40 MP"):
        app_module.read_photo(path, image_input)


def test_the_space_leaves_pils_decompression_bomb_guard_on(app_module):
    # Issue 12.1: the Space used to set PIL.Image.MAX_IMAGE_PIXELS = None for the whole process.
    assert PIL.Image.MAX_IMAGE_PIXELS is not None and PIL.Image.MAX_IMAGE_PIXELS > 0


def test_read_photo_refuses_a_truncated_jpeg(app_module, image_input, tmp_path):
    with pytest.raises(app_module.UploadError, match="'cut.jpg' could not be decoded .* damaged or incomplete"):
        app_module.read_photo(write_truncated_jpeg(tmp_path / "cut.jpg"), image_input)


def test_read_photo_takes_the_first_frame_of_an_animated_gif(app_module, image_input, tmp_path):
    image, notes = app_module.read_photo(write_animated_gif(tmp_path / "anim.gif"), image_input)
    assert image.mode == "RGB" and image.getpixel((0, 0)) == (255, 0, 0)
    assert notes == ["animated image with 3 frames: the first frame is analysed"]


def test_read_photo_scales_a_16bit_png_instead_of_clipping_it(app_module, image_input, tmp_path):
    # Issue 10.6: the Space read 16-bit greyscale with PIL's convert("RGB"), which clips at 255 (near-white).
    values = np.asarray(PIL.Image.open(EXAMPLES / "astronaut.jpg").convert("L"), dtype=np.uint16) * 257
    PIL.Image.fromarray(values).save(tmp_path / "grey16.png")
    image, _ = app_module.read_photo(tmp_path / "grey16.png", image_input)
    np.testing.assert_allclose(np.asarray(image)[:, :, 0], values / 257, atol=1)


def test_a_data_url_without_data_is_refused_with_a_sentence(app_module, image_input):
    # Issue 10.6: this used to raise IndexError("list index out of range").
    with pytest.raises(app_module.UploadError, match=r"data URL with no data"):
        app_module.payload_photo({"path": None, "url": "data:image/png;base64"}, image_input)
    with pytest.raises(app_module.UploadError, match=r"base64 data is broken"):
        app_module.payload_photo({"path": None, "url": "data:image/png;base64,abc"}, image_input)


def test_a_webcam_data_url_is_read(app_module, image_input):
    buffer = io.BytesIO()
    PIL.Image.new("RGB", (4, 3), "red").save(buffer, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    image, _ = app_module.payload_photo({"path": None, "url": url}, image_input)
    assert image.size == (4, 3) and image.getpixel((0, 0)) == (255, 0, 0)


def test_read_photo_downscales_large_photos(app_module, image_input, tmp_path):
    path = tmp_path / "wide.png"
    PIL.Image.new("RGB", (4000, 1000), "white").save(path)
    image, notes = app_module.read_photo(path, image_input)
    assert image.size == (app_module.MAX_SIDE, app_module.MAX_SIDE // 4)
    assert "downscaled from 4000x1000" in notes[0]


# ----------------------------------------------------------------------------------------------- tracking
def _face(xmin: int, scores: dict[str, float]) -> dict:
    label = max(scores, key=scores.get)
    return {"box": {"xmin": xmin, "ymin": 0, "xmax": xmin + 10, "ymax": 10}, "label": label, "score": scores[label],
            "scores": scores}


def test_tracker_averages_an_overlapping_face_exponentially(app_module):
    tracker = app_module.FaceTracker(alpha=0.25)
    tracker.update([_face(0, {"happiness": 1.0, "sadness": 0.0})])
    (smoothed,) = tracker.update([_face(1, {"happiness": 0.0, "sadness": 1.0})])
    assert smoothed["scores"] == pytest.approx({"happiness": 0.75, "sadness": 0.25})
    assert smoothed["label"] == "happiness" and smoothed["track"] == 1


def test_tracker_starts_a_new_track_for_a_face_elsewhere(app_module):
    tracker = app_module.FaceTracker(alpha=0.25)
    tracker.update([_face(0, {"happiness": 1.0, "sadness": 0.0})])
    (smoothed,) = tracker.update([_face(100, {"happiness": 0.0, "sadness": 1.0})])
    assert smoothed["track"] == 2 and smoothed["label"] == "sadness"


def test_tracker_forgets_a_face_unseen_for_too_long(app_module):
    tracker = app_module.FaceTracker(max_missed=2)
    tracker.update([_face(0, {"happiness": 1.0, "sadness": 0.0})])
    for _ in range(3):
        tracker.update([])
    assert tracker.tracks == []


def test_box_iou_of_half_overlapping_boxes(app_module):
    a = {"xmin": 0, "ymin": 0, "xmax": 10, "ymax": 10}
    b = {"xmin": 5, "ymin": 0, "xmax": 15, "ymax": 10}
    assert app_module.box_iou(a, b) == pytest.approx(50 / 150)


# ----------------------------------------------------------------------------------------------- explanations
def test_class_token_attention_averages_heads_and_scales(explain_module):
    g = 2
    attention = torch.zeros(1, 2, 1 + 3 * g * g, 1 + 3 * g * g)
    attention[0, 0, 0, 1] = 1.0  # head 0 looks at the top-left token of scale 1 only
    attention[0, 1, 0, 1 + g * g + 3] = 1.0  # head 1 at the bottom-right token of scale 2
    maps = explain_module.class_token_attention((attention,), g)
    assert maps.shape == (1, g, g)
    assert maps[0, 0, 0] == pytest.approx(1.0) and maps[0, 1, 1] == pytest.approx(1.0)
    assert maps[0, 0, 1] == pytest.approx(0.0)


def test_nearest_anchors_lists_the_closest_first_with_their_class(explain_module):
    distances = torch.tensor([[3.0, 0.5], [0.2, 4.0]])  # (C=2, K=2)
    matches = explain_module.nearest_anchors(distances, {0: "neutral", 1: "happiness"}, top_k=2)
    assert [(m.label, m.anchor) for m in matches] == [("happiness", 0), ("neutral", 1)]
    assert matches[0].distance == pytest.approx(0.2)


@pytest.mark.parametrize("method", ["attention", "gradcam"])
def test_explain_face_overlays_a_normalised_heatmap(explain_module, tiny_model_dir, method):
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(tiny_model_dir, trust_remote_code=True).eval()
    processor = AutoImageProcessor.from_pretrained(tiny_model_dir, trust_remote_code=True)
    face = PIL.Image.open(EXAMPLES / "astronaut.jpg").crop((170, 50, 290, 180))
    explanation = explain_module.explain_face(model, processor, face, method=method, top_k=3, display_size=96)
    assert explanation.overlay.size == (96, 96)
    assert float(explanation.heatmap.min()) >= 0.0 and float(explanation.heatmap.max()) == pytest.approx(1.0)
    assert len(explanation.anchors) == 3 and explanation.label in model.config.id2label.values()
    assert sum(explanation.scores.values()) == pytest.approx(1.0, abs=1e-4)


# ----------------------------------------------------------------------------------------------- loading
def test_a_missing_model_folder_falls_back_to_an_untrained_model_with_a_banner(app_module, tmp_path):
    loaded = app_module.load_model(str(tmp_path / "no-such-model"))
    assert not loaded.trained and "no-such-model" in loaded.problem
    assert "UNTRAINED MODEL" in app_module.header_markdown(loaded)


def test_the_api_json_says_when_predictions_come_from_an_untrained_model(app_module, tmp_path):
    # Issue 10.6: only the page's banner said so; an API client got plain predictions.
    app = app_module.EmotionApp(app_module.load_model(str(tmp_path / "no-such-model")))
    *_, result = app.predict(str(EXAMPLES / "astronaut.jpg"))
    assert result["status"] == "ok" and result["model_trained"] is False
    assert result["warning"].startswith("UNTRAINED MODEL: predictions are random") and "no-such-model" in result["warning"]
    (tmp_path / "notes.txt").write_text("not a photo")
    *_, refused = app.predict(str(tmp_path / "notes.txt"))
    assert refused["status"] == "error" and refused["model_trained"] is False and "warning" in refused


def test_a_16bit_png_upload_finds_the_face_the_pipeline_finds(app_module, space_model_dir, tmp_path):
    # Issue 10.6: the page said "No face found" for a 16-bit greyscale PNG the pipeline handled.
    values = np.asarray(PIL.Image.open(EXAMPLES / "astronaut.jpg").convert("L"), dtype=np.uint16) * 257
    PIL.Image.fromarray(values).save(tmp_path / "grey16.png")
    app = app_module.EmotionApp(app_module.load_model(str(space_model_dir)))
    _, status, *_, result = app.predict(str(tmp_path / "grey16.png"))
    assert "1 face found" in status and result["model_trained"] is True and "warning" not in result
    assert result["faces"][0]["box"] == app.loaded.pipeline(str(tmp_path / "grey16.png"))["faces"][0]["box"]


def test_the_page_names_the_model_and_its_training_data(app_module, space_model_dir):
    loaded = app_module.load_model(str(space_model_dir))
    header = app_module.header_markdown(loaded)
    assert loaded.trained and str(space_model_dir) in header
    assert "`synthetic-faces` (synthetic faces" in header and "UNTRAINED" not in header


# ----------------------------------------------------------------------------------------------- the server
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_space(model_dir: Path, log_path: Path) -> Iterator[str]:
    """Start `python space/app.py` on a free port; yield its URL; always stop it."""
    port = free_port()
    env = {
        **os.environ, "PORT": str(port), "EMOTIONNET_MODEL": str(model_dir), "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, str(SPACE / "app.py")], cwd=ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"space/app.py exited with {process.returncode} while starting:\n{log_path.read_text()}")
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"{url}/config", timeout=2).close()
                break
            if time.monotonic() > deadline:
                pytest.fail(f"space/app.py did not answer within {SERVER_START_TIMEOUT_S}s:\n{log_path.read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@pytest.fixture(scope="module")
def space_url(space_model_dir, tmp_path_factory) -> Iterator[str]:
    with running_space(space_model_dir, tmp_path_factory.mktemp("space") / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def client(space_url):
    from gradio_client import Client

    return Client(space_url, verbose=False)


def predict(client, path: Path):
    """(status text, first face's label block, the JSON result) of the Photo tab."""
    from gradio_client import handle_file

    annotated, status, face1, _face2, _face3, _face4, result = client.predict(handle_file(str(path)), api_name="/predict")
    return status, face1, result


def test_server_labels_the_face_in_a_photo(client):
    status, face1, result = predict(client, EXAMPLES / "astronaut.jpg")
    assert result["status"] == "ok" and len(result["faces"]) == 1
    assert face1["visible"] and face1["value"]["label"] == result["faces"][0]["label"]
    assert "1 face found" in status


def test_server_labels_every_face_of_the_collage(client):
    status, _, result = predict(client, EXAMPLES / "astronaut_collage.jpg")
    assert len(result["faces"]) == 3 and "3 faces found" in status


def test_server_says_when_there_is_no_face(client):
    status, face1, result = predict(client, EXAMPLES / "coffee_no_face.jpg")
    assert result["status"] == "no_face" and "No face found" in status


def test_server_explains_a_bad_upload_and_keeps_serving(client, tmp_path):
    bad = tmp_path / "report.txt"
    bad.write_text("this is not an image")
    status, _, result = predict(client, bad)
    assert result["status"] == "error" and "'report.txt' is not an image" in status
    status, _, result = predict(client, EXAMPLES / "astronaut.jpg")
    assert result["status"] == "ok" and "1 face found" in status


def test_server_refuses_a_huge_image_with_a_message(client, tmp_path):
    status, _, _ = predict(client, write_huge_png(tmp_path / "huge.png"))
    assert "8000x8000 pixels" in status and "downscale it" in status


def test_server_explains_a_face_with_its_nearest_anchors(client):
    from gradio_client import handle_file

    overlay, anchors, text = client.predict(
        handle_file(str(EXAMPLES / "astronaut.jpg")), 1, "attention", api_name="/explain"
    )
    assert Path(overlay).is_file() and "Nearest anchor" in text
    assert len(anchors["data"]) == 5


def test_stream_smooths_frames_and_reports_the_frame_rate(app_module, space_model_dir):
    app = app_module.EmotionApp(app_module.load_model(str(space_model_dir)))
    frame = np.asarray(PIL.Image.open(EXAMPLES / "astronaut.jpg").convert("RGB"))
    tracker, fps = None, None
    for _ in range(3):
        annotated, tracker, fps, text = app.stream(frame, 0.3, tracker, fps)
    assert annotated.size == (512, 512) and fps > 0
    assert "frames/s" in text and len(tracker.tracks) == 1
    # The stream searches a 320-px copy (FaceDetector.for_video), the photo tab the pipeline's default detector.
    assert app.stream_detector.max_side == 320 and app.loaded.pipeline.face_detector.max_side == 1024


def test_server_explain_names_the_faces_that_exist(client):
    from gradio_client import handle_file

    overlay, _, text = client.predict(handle_file(str(EXAMPLES / "astronaut.jpg")), 5, "gradcam", api_name="/explain")
    assert overlay is None and "Face 5 does not exist" in text and "1 face(s)" in text
