"""EmotionNet demo Space: facial expressions of every face in a photo or a webcam stream, with explanations.

Run it locally (from the repository root or from this folder)::

    python space/app.py                                   # model from $EMOTIONNET_MODEL, default outputs/synthetic-default
    EMOTIONNET_MODEL=user/emotionnet-ferplus python space/app.py   # a Hub model id
    PORT=8080 python space/app.py                         # port from $PORT / $GRADIO_SERVER_PORT, default 7860

The model is loaded (`model_loader.py`) with the Auto classes and `trust_remote_code=True`, so the Space needs nothing
but the model's remote code (model, image processor, face detector and pipeline files next to its config.json). When
the model folder is missing or cannot be loaded, the page and the log say so and a randomly initialised tiny GReFEL is
built instead, under an "untrained model" banner, so the app always starts.
"""

from __future__ import annotations

import os

# Zero outbound calls: no Gradio analytics or version check, no Hub telemetry. Set before gradio is imported.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import base64  # noqa: E402
import binascii  # noqa: E402
import functools  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.parse  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import PIL.Image  # noqa: E402
import PIL.ImageDraw  # noqa: E402
import PIL.ImageFont  # noqa: E402
import PIL.ImageOps  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from explain import METHODS, explain_face  # noqa: E402
from model_loader import LoadedModel, load_model  # noqa: E402

LOGGER = logging.getLogger("emotionnet.space")

# Uploads are read by the model's own image reader (image_input_grefel.py, next to its pipeline), the one the image
# processor, the pipeline and training use, so the page accepts and refuses exactly what they do; it refuses images
# above its MAX_PIXELS from the file header, and PIL's decompression-bomb guard stays on for anything larger.
UNTRAINED_WARNING = "UNTRAINED MODEL: predictions are random"
# Photos are analysed at most this large: face detection and drawing cost grow with the pixel count, accuracy does not.
MAX_SIDE = 1600
MAX_FILE_SIZE = "50mb"
# Per-face probability bars shown on the page; the annotated image and the JSON list every face.
MAX_FACES_SHOWN = 4
EXAMPLES_DIR = HERE / "examples"
PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45"]


# ----------------------------------------------------------------------------------------------- photos
class UploadError(ValueError):
    """An upload the demo cannot analyse; the message is shown to the user as is."""


def read_photo(source: Any, image_input: Any, name: str | None = None) -> tuple[PIL.Image.Image, list[str]]:
    """Read an upload as an RGB photo no larger than `MAX_SIDE`, with notes on what was changed.

    `source` is anything the model's image reader `image_input` (the `image_input_grefel` module) reads, usually the
    uploaded file's path; `name` is how messages call it (default: the file's own name, not the server's temporary
    path). Raises `UploadError` with the reader's sentence when it refuses the upload.
    """
    if source is None:
        raise UploadError("No image: upload a photo, take one with the webcam or pick an example.")
    if name is None and isinstance(source, (str, os.PathLike)):
        name = Path(source).name
    notes = []
    try:
        if image_input.is_file_source(source):
            with image_input.open_image(source, name=name) as opened:
                frames = getattr(opened, "n_frames", 1)
                image = image_input.read_rgb_image(opened, name=name)
            if frames > 1:
                notes.append(f"animated image with {frames} frames: the first frame is analysed")
        else:
            image = image_input.read_rgb_image(source, name=name)
    except image_input.ImageInputError as error:
        raise UploadError(str(error)) from None
    if max(image.size) > MAX_SIDE:
        original = image.size
        image = PIL.ImageOps.contain(image, (MAX_SIDE, MAX_SIDE), PIL.Image.Resampling.BILINEAR)
        notes.append(f"downscaled from {original[0]}x{original[1]} to {image.size[0]}x{image.size[1]}")
    return image, notes


def data_url_bytes(url: str) -> bytes:
    """The bytes a `data:` URL carries (RFC 2397: `data:[<mediatype>][;base64],<data>`), as the webcam sends photos."""
    header, comma, data = url.partition(",")
    if not comma:
        raise UploadError(
            "The image arrived as a data URL with no data (nothing after 'data:...,'); take the photo again or "
            "upload it as a file."
        )
    if not header.endswith(";base64"):
        return urllib.parse.unquote_to_bytes(data)
    try:
        return base64.b64decode(data, validate=True)
    except binascii.Error as error:
        raise UploadError(
            f"The image arrived as a data URL whose base64 data is broken ({error}); take the photo again or upload "
            "it as a file."
        ) from None


def payload_photo(payload: dict | str | None, image_input: Any) -> tuple[PIL.Image.Image, list[str]]:
    """`read_photo` on what the browser or API sent for an image input (the event runs with `preprocess=False`).

    Gradio's own preprocessing would open every upload with PIL before the event function runs, and a text file or
    a corrupt image would end in a bare library error; here the payload (an uploaded file's path, or the webcam's
    data URL) goes to `read_photo`, which explains what is wrong.
    """
    if isinstance(payload, dict):
        url = payload.get("url") or ""
        if not payload.get("path") and url.startswith("data:"):
            return read_photo(data_url_bytes(url), image_input, name="webcam image")
        payload = payload.get("path")
    return read_photo(payload, image_input)


# ----------------------------------------------------------------------------------------------- drawing
def _font(size: int) -> PIL.ImageFont.ImageFont:
    return PIL.ImageFont.load_default(size=size)


def draw_faces(image: PIL.Image.Image, faces: list[dict]) -> PIL.Image.Image:
    """A copy of `image` with each face's box and "n. label score" drawn on it."""
    annotated = image.copy()
    draw = PIL.ImageDraw.Draw(annotated)
    short_side = min(image.size)
    width = max(2, round(short_side / 200))
    for number, face in enumerate(faces, start=1):
        box = face["box"]
        # The caption is about as wide as its box, readable for small faces, never larger than a line of the image.
        font = _font(int(np.clip((box["xmax"] - box["xmin"]) / 7, 12, max(12, short_side / 20))))
        colour = PALETTE[(number - 1) % len(PALETTE)]
        corners = (box["xmin"], box["ymin"], box["xmax"], box["ymax"])
        draw.rectangle(corners, outline=colour, width=width)
        text = f"{number}. {face['label']} {face['score']:.0%}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        text_height = bottom - top + 2 * width
        y = box["ymin"] - text_height if box["ymin"] >= text_height else box["ymax"]
        draw.rectangle((box["xmin"], y, box["xmin"] + right - left + 2 * width, y + text_height), fill=colour)
        draw.text((box["xmin"] + width, y + width - top), text, fill="white", font=font)
    return annotated


# ----------------------------------------------------------------------------------------------- streaming
def box_iou(a: dict, b: dict) -> float:
    """Intersection over union of two {xmin, ymin, xmax, ymax} boxes."""
    width = min(a["xmax"], b["xmax"]) - max(a["xmin"], b["xmin"])
    height = min(a["ymax"], b["ymax"]) - max(a["ymin"], b["ymin"])
    inter = max(width, 0) * max(height, 0)
    area = lambda box: (box["xmax"] - box["xmin"]) * (box["ymax"] - box["ymin"])  # noqa: E731
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


class FaceTracker:
    """Per-face exponential moving average of the predicted distribution across video frames.

    Faces are matched to tracks greedily by box overlap (IoU); a track unseen for `max_missed` frames is dropped.
    `alpha` is the weight of the newest frame: 1 shows the raw prediction, smaller values steady the label.
    """

    def __init__(self, alpha: float = 0.3, iou_threshold: float = 0.3, max_missed: int = 5):
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}.")
        self.alpha, self.iou_threshold, self.max_missed = alpha, iou_threshold, max_missed
        self.tracks: list[dict] = []
        self.next_id = 1

    def update(self, faces: list[dict]) -> list[dict]:
        """Smooth this frame's faces; returns them with smoothed `scores`, `label`, `score` and a `track` id."""
        pairs = sorted(
            ((box_iou(t["box"], f["box"]), ti, fi) for ti, t in enumerate(self.tracks) for fi, f in enumerate(faces)),
            reverse=True,
        )
        matched_tracks, matched_faces = {}, {}
        for iou, ti, fi in pairs:
            if iou < self.iou_threshold:
                break
            if ti not in matched_tracks and fi not in matched_faces:
                matched_tracks[ti], matched_faces[fi] = fi, ti
        for ti, track in enumerate(self.tracks):
            track["missed"] = 0 if ti in matched_tracks else track["missed"] + 1
        smoothed = []
        for fi, face in enumerate(faces):
            if fi in matched_faces:
                track = self.tracks[matched_faces[fi]]
                track["scores"] = {
                    k: self.alpha * p + (1 - self.alpha) * track["scores"].get(k, p) for k, p in face["scores"].items()
                }
                track["box"] = face["box"]
            else:
                track = {"id": self.next_id, "box": face["box"], "scores": dict(face["scores"]), "missed": 0}
                self.next_id += 1
                self.tracks.append(track)
            label = max(track["scores"], key=track["scores"].get)
            smoothed.append(
                {**face, "scores": dict(track["scores"]), "label": label, "score": track["scores"][label],
                 "track": track["id"]}
            )
        self.tracks = [t for t in self.tracks if t["missed"] <= self.max_missed]
        return smoothed


# ----------------------------------------------------------------------------------------------- the app
class EmotionApp:
    """The event functions of the Space around one loaded model."""

    def __init__(self, loaded: LoadedModel):
        self.loaded = loaded
        self.labels = [loaded.model.config.id2label[i] for i in range(loaded.model.config.num_labels)]
        # Events run in worker threads; OpenCV's cascade detector is not documented as thread-safe, and on a CPU
        # two concurrent forwards are no faster than two in turn.
        self._lock = threading.Lock()

    def analyse(self, image: PIL.Image.Image, detector=None) -> dict:
        """Run the face pipeline on one RGB image (with `detector` instead of the pipeline's own, if given); one result
        dict {status, faces, message}."""
        with self._lock:
            result = self.loaded.pipeline(image) if detector is None else self.loaded.pipeline(image, detector=detector)
        return result[0] if isinstance(result, list) else result

    @functools.cached_property
    def stream_detector(self):
        """The model code's `FaceDetector.for_video()` (a 320-px search, ~5x faster on a 640x480 frame), or the
        pipeline's own detector where the model's code predates it."""
        detector = self.loaded.pipeline.face_detector
        return type(detector).for_video() if hasattr(type(detector), "for_video") else detector

    # ------------------------------------------------------------------ photo tab
    def predict(self, photo: dict | str | None):
        """Photo tab: annotated image, status text, one probability block per face (up to 4), every face as JSON.

        `photo` is the raw image payload (the event runs with `preprocess=False`) or a file path. The JSON result
        carries `model_trained`, and a `warning` when the model is the untrained fallback, so that API clients, who
        never see the page's banner, know when the predictions mean nothing.
        """
        hidden = [gr.Label(value=None, visible=False) for _ in range(MAX_FACES_SHOWN)]
        if photo is None:
            return None, "Upload a photo, take one with the webcam, or pick an example below.", *hidden, None
        try:
            image, notes = payload_photo(photo, self.loaded.image_input)
        except UploadError as error:
            gr.Warning(str(error))
            return None, f"**Could not use this upload.** {error}", *hidden, self._api_result("error", str(error))
        try:
            result = self._api_result(**self.analyse(image))
        except Exception as error:  # the server keeps serving; the user gets the reason
            LOGGER.exception("Analysis failed")
            message = f"The analysis failed: {error}"
            gr.Warning(message)
            return image, f"**Error.** {message}", *hidden, self._api_result("error", message)
        faces = result.get("faces", [])
        labels = list(hidden)
        for i, face in enumerate(faces[:MAX_FACES_SHOWN]):
            labels[i] = gr.Label(
                value=face["scores"], visible=True, label=f"Face {i + 1}: {face['label']} ({face['score']:.0%})"
            )
        status = self._photo_status(result, faces, notes)
        if result.get("status") == "no_face":
            gr.Warning("No face found in this image.")
        return draw_faces(image, faces), status, *labels, result

    def _api_result(self, status: str, message: str, faces: list[dict] | None = None) -> dict:
        """The Photo tab's JSON: the pipeline's {status, faces, message} plus whether the model is trained."""
        result = {"status": status, "faces": faces or [], "message": message, "model_trained": self.loaded.trained}
        if not self.loaded.trained:
            result["warning"] = f"{UNTRAINED_WARNING}. {self.loaded.problem}"
        return result

    @staticmethod
    def _photo_status(result: dict, faces: list[dict], notes: list[str]) -> str:
        if result.get("status") == "error":
            text = f"**Error.** {result.get('message') or 'the pipeline reported an error.'}"
        elif not faces:
            text = "**No face found.** Try a sharper, frontal photo where the face is at least ~40 pixels wide."
        else:
            summary = ", ".join(f"{i}. {f['label']} ({f['score']:.0%})" for i, f in enumerate(faces, start=1))
            text = f"**{len(faces)} face{'s' if len(faces) != 1 else ''} found:** {summary}"
            if len(faces) > MAX_FACES_SHOWN:
                text += f". Bars for the first {MAX_FACES_SHOWN}; all faces are in the JSON below."
        if notes:
            text += "\n\n_Note: " + "; ".join(notes) + "._"
        return text

    # ------------------------------------------------------------------ webcam stream
    def stream(self, frame: np.ndarray | None, alpha: float, tracker: FaceTracker | None, fps: float | None):
        """Webcam stream: one frame in, the annotated frame with smoothed labels out, and the measured frame rate."""
        if frame is None:
            return None, tracker, fps, "Waiting for the webcam..."
        tracker = tracker or FaceTracker(alpha=alpha)
        tracker.alpha = float(alpha)
        start = time.perf_counter()
        image = self.loaded.image_input.read_rgb_image(frame, name="the webcam frame")
        if max(image.size) > 640:
            image.thumbnail((640, 640), PIL.Image.BILINEAR)
        result = self.analyse(image, detector=self.stream_detector)
        faces = tracker.update(result.get("faces", []))
        annotated = draw_faces(image, faces)
        elapsed = time.perf_counter() - start
        # Smoothed like the labels, so the number is readable while frames arrive.
        fps = 1.0 / elapsed if fps is None else 0.8 * fps + 0.2 / elapsed
        text = (
            f"Processing speed: **{fps:.1f} frames/s** ({1000 * elapsed:.0f} ms for the last frame: face detection, "
            f"model, drawing) on this machine's CPU; {len(faces)} face(s) tracked."
        )
        return annotated, tracker, fps, text

    # ------------------------------------------------------------------ explanation
    def explain(self, photo: dict | str | None, face_number: float | None, method: str):
        """Explain tab: heatmap over the chosen face crop, nearest anchors table, a text summary."""
        empty_table = [[None, None, None, None]]
        if photo is None:
            return None, empty_table, "Upload a photo to see where the model looked."
        if method not in METHODS:
            return None, empty_table, f"**Unknown method {method!r}:** choose one of {', '.join(METHODS)}."
        try:
            image, _ = payload_photo(photo, self.loaded.image_input)
        except UploadError as error:
            gr.Warning(str(error))
            return None, empty_table, f"**Could not use this upload.** {error}"
        detector = self.loaded.pipeline.face_detector
        with self._lock:
            # The pipeline lists faces in its detector's order; the FaceBox (unlike the box dict of the results)
            # keeps the eye positions, so the crop is the aligned one the pipeline classified.
            boxes = detector.detect(image)
        if not boxes:
            return None, empty_table, "**No face found**, so there is nothing to explain."
        number = int(face_number or 1)
        if not 1 <= number <= len(boxes):
            return None, empty_table, f"**Face {number} does not exist:** this photo has {len(boxes)} face(s)."
        face = detector.crop(image, boxes[number - 1])
        with self._lock:
            explanation = explain_face(self.loaded.model, self.loaded.processor, face, method=method)
        table = [[rank, a.label, a.anchor, round(a.distance, 4)] for rank, a in enumerate(explanation.anchors, 1)]
        how = (
            "class-token attention of the last fusion-ViT layer (averaged over heads and the three scales)"
            if method == "attention"
            else "Grad-CAM of the predicted class on the trunk's three cross-attention maps"
        )
        nearest = explanation.anchors[0]
        text = (
            f"Face {number}: **{explanation.label}** ({explanation.scores[explanation.label]:.0%}). Heatmap: {how}; "
            f"bright = looked at. Nearest anchor: **{nearest.label}** #{nearest.anchor} at distance {nearest.distance:.3f}."
        )
        return explanation.overlay, table, text


def header_markdown(loaded: LoadedModel) -> str:
    text = (
        "# EmotionNet: facial expressions with GReFEL\n"
        "Every face in the image is found, cropped and classified into "
        f"{loaded.model.config.num_labels} expressions.\n\n"
        f"**Model:** `{loaded.source}` &nbsp; **Training data:** {loaded.training_data}"
    )
    if not loaded.trained:
        text = (
            f"## ⚠️ {UNTRAINED_WARNING}\n"
            f"{loaded.problem}\n\n" + text
        )
    return text


def build_demo(loaded: LoadedModel) -> gr.Blocks:
    """The Blocks app around one loaded model."""
    app = EmotionApp(loaded)
    examples = sorted(str(p) for p in EXAMPLES_DIR.glob("*.jpg")) if EXAMPLES_DIR.is_dir() else []
    with gr.Blocks(title="EmotionNet (GReFEL)") as demo:
        gr.Markdown(header_markdown(loaded), elem_id="header")
        with gr.Tabs():
            with gr.Tab("Photo", id="photo"):
                with gr.Row():
                    photo = gr.Image(
                        type="filepath", image_mode=None, sources=["upload", "webcam", "clipboard"], label="Photo",
                        elem_id="photo-input",
                    )
                    annotated = gr.Image(type="pil", label="Faces found", interactive=False, elem_id="annotated")
                status = gr.Markdown(elem_id="photo-status")
                with gr.Row():
                    bars = [
                        gr.Label(num_top_classes=len(app.labels), visible=False, elem_id=f"face-{i + 1}")
                        for i in range(MAX_FACES_SHOWN)
                    ]
                with gr.Accordion("All faces (JSON, as the API returns them)", open=False):
                    faces_json = gr.JSON(label="faces")
                if examples:
                    gr.Examples(examples, inputs=photo, label="Examples (public-domain / CC0 photos)")
                # preprocess=False: unreadable uploads reach `payload_photo`, which says what is wrong with them.
                photo.change(
                    app.predict, photo, [annotated, status, *bars, faces_json], api_name="predict", preprocess=False
                )
            with gr.Tab("Webcam stream", id="stream"):
                gr.Markdown(
                    "Live labels from your webcam. Each face's probabilities are an exponential moving average over "
                    "frames (faces are followed by box overlap), so the label does not flicker."
                )
                with gr.Row():
                    camera = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Webcam")
                    live = gr.Image(type="pil", label="Live labels", interactive=False, elem_id="live-labels")
                alpha = gr.Slider(0.05, 1.0, value=0.3, step=0.05, label="Weight of the newest frame (1 = no smoothing)")
                speed = gr.Markdown("The processing rate is measured on every frame and shown here.", elem_id="stream-speed")
                tracker, fps = gr.State(None), gr.State(None)
                camera.stream(
                    app.stream, [camera, alpha, tracker, fps], [live, tracker, fps, speed],
                    stream_every=0.1, time_limit=300, api_name="stream",
                )
            with gr.Tab("Explain", id="explain"):
                gr.Markdown(
                    "Where the model looked on one face, and which class anchors its embedding is nearest: GReFEL "
                    "keeps several learned anchors per expression and corrects its prediction by these distances."
                )
                with gr.Row():
                    explain_photo = gr.Image(
                        type="filepath", image_mode=None, sources=["upload", "clipboard"], label="Photo",
                        elem_id="explain-input",
                    )
                    overlay = gr.Image(type="pil", label="Heatmap on the face crop", interactive=False)
                with gr.Row():
                    face_number = gr.Number(value=1, precision=0, minimum=1, label="Face number")
                    method = gr.Radio(list(METHODS), value="attention", label="Method")
                    run = gr.Button("Explain", variant="primary")
                explanation = gr.Markdown()
                anchors = gr.Dataframe(
                    headers=["rank", "class", "anchor", "distance"], label="Nearest class anchors", interactive=False
                )
                if examples:
                    gr.Examples(examples, inputs=explain_photo)
                inputs, outputs = [explain_photo, face_number, method], [overlay, anchors, explanation]
                run.click(app.explain, inputs, outputs, api_name="explain", preprocess=False)
                explain_photo.change(app.explain, inputs, outputs, api_visibility="private", preprocess=False)
    return demo


def server_port() -> int:
    return int(os.environ.get("PORT") or os.environ.get("GRADIO_SERVER_PORT") or 7860)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    loaded = load_model()
    if not loaded.trained:
        LOGGER.warning("UNTRAINED MODEL: %s", loaded.problem)
    LOGGER.info("Model: %s; training data: %s", loaded.source, loaded.training_data)
    demo = build_demo(loaded)
    demo.queue(default_concurrency_limit=2).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=server_port(),
        max_file_size=MAX_FILE_SIZE,
        ssr_mode=False,
        show_error=True,
    )


if __name__ == "__main__":
    main()


__all__ = [
    "MAX_SIDE",
    "EmotionApp",
    "FaceTracker",
    "UNTRAINED_WARNING",
    "UploadError",
    "box_iou",
    "build_demo",
    "data_url_bytes",
    "draw_faces",
    "header_markdown",
    "payload_photo",
    "read_photo",
    "server_port",
]
