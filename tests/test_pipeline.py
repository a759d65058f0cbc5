"""The "facial-expression-recognition" pipeline (modeling_grefel/pipeline_grefel.py) on a tiny random GReFEL."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from face_images import ASTRONAUT_FACE, multi_face_photo, no_face_photo, one_face_photo
from transformers import pipeline

from modeling_grefel import GReFELForImageClassification, GReFELImageProcessor, face_detection_grefel
from modeling_grefel.face_detection_grefel import FaceDetector
from modeling_grefel.pipeline_grefel import (
    TASK,
    FacialExpressionPipeline,
    add_pipeline_to_config,
    register_pipeline,
)

FACE_KEYS = {"box", "label", "score", "scores", "whole_image"}


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return GReFELForImageClassification.from_pretrained(tiny_model_dir).eval()


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    return GReFELImageProcessor.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def pipe(model, processor):
    return FacialExpressionPipeline(model=model, image_processor=processor, device="cpu")


@pytest.fixture(scope="module")
def photos():
    group, count = multi_face_photo()
    return {"one": one_face_photo(), "group": group, "group_count": count, "none": no_face_photo()}


def model_probs(model, processor, image) -> torch.Tensor:
    """What the model says about one image handed to the processor as is: softmax of its logits, shape (C,)."""
    with torch.no_grad():
        return model(**processor(image, return_tensors="pt")).logits.softmax(-1)[0]


def test_one_face_is_found_and_classified(pipe, photos, model):
    result = pipe(photos["one"])
    assert result["status"] == "ok" and result["message"] == "1 face found."
    (face,) = result["faces"]
    assert set(face) == FACE_KEYS and face["whole_image"] is False
    box = face["box"]
    assert (box["xmin"], box["ymin"], box["xmax"], box["ymax"]) == ASTRONAUT_FACE
    assert set(face["scores"]) == set(model.config.id2label.values())
    assert sum(face["scores"].values()) == pytest.approx(1.0, abs=1e-5)
    assert face["label"] == max(face["scores"], key=face["scores"].get)
    assert face["score"] == face["scores"][face["label"]]


def test_probabilities_are_the_softmax_of_the_models_logits_on_the_raw_crop(pipe, photos, model, processor):
    (face,) = pipe(photos["one"])["faces"]
    crop = pipe.face_detector.crop(photos["one"], face["box"])
    expected = model_probs(model, processor, crop)
    got = torch.tensor([face["scores"][model.config.id2label[i]] for i in range(model.config.num_labels)])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_every_face_of_a_group_photo_is_classified_largest_first(pipe, photos):
    result = pipe(photos["group"])
    assert result["status"] == "ok" and len(result["faces"]) == photos["group_count"]
    widths = [f["box"]["xmax"] - f["box"]["xmin"] for f in result["faces"]]
    assert widths == sorted(widths, reverse=True)


def test_an_image_without_a_face_is_skipped_by_default(pipe, photos):
    result = pipe(photos["none"])
    assert result["status"] == "no_face" and result["faces"] == []
    assert "No face found" in result["message"]


def test_whole_image_fallback_classifies_the_whole_photo(pipe, photos, model, processor):
    result = pipe(photos["none"], no_face="whole_image")
    assert result["status"] == "no_face"
    (face,) = result["faces"]
    assert face["box"] is None and face["whole_image"] is True
    expected = model_probs(model, processor, photos["none"])
    assert face["score"] == pytest.approx(float(expected.max()), rel=1e-4)


def test_a_list_gives_one_result_per_image_in_order(pipe, photos):
    results = pipe([photos["none"], photos["one"], photos["group"]])
    assert [r["status"] for r in results] == ["no_face", "ok", "ok"]
    assert [len(r["faces"]) for r in results] == [0, 1, photos["group_count"]]


def test_a_broken_image_is_reported_without_aborting_the_others(pipe, photos, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"this is not a JPEG")
    results = pipe([photos["one"], str(broken), photos["group"]])
    assert [r["status"] for r in results] == ["ok", "error", "ok"]
    assert results[1]["faces"] == []
    assert "image 2 of 3" in results[1]["message"] and "broken.jpg" in results[1]["message"]
    assert len(results[2]["faces"]) == photos["group_count"]


def test_a_single_unreadable_input_gets_an_error_status(pipe):
    result = pipe(np.zeros((5, 5, 7), dtype=np.uint8))
    assert result["status"] == "error" and "image 1 of 1" in result["message"]


def test_a_url_is_refused_as_a_url_not_as_a_missing_file(pipe):
    # Issue 10.6: this used to report "No such file or directory".
    result = pipe("https://example.com/face.jpg")
    assert result["status"] == "error" and "is a URL; images are not downloaded here" in result["message"]
    assert "No such file" not in result["message"]


def test_a_bfloat16_tensor_is_read_as_float32(pipe, photos):
    # Issue 10.6: this used to fail with torch's "Got unsupported ScalarType BFloat16".
    array = np.asarray(photos["one"], dtype=np.float32) / 255.0
    tensor = torch.from_numpy(array).permute(2, 0, 1)  # (H, W, 3) -> (3, H, W)
    result = pipe(tensor.to(torch.bfloat16))
    assert result["status"] == "ok" and result["faces"][0]["box"] == pipe(photos["one"])["faces"][0]["box"]


def test_paths_arrays_and_tensors_give_the_same_result_as_the_pil_image(pipe, photos, tmp_path):
    path = tmp_path / "astronaut.png"
    photos["one"].save(path)
    array = np.asarray(photos["one"])
    tensor = torch.from_numpy(array.copy()).permute(2, 0, 1)  # (H, W, 3) -> (3, H, W)
    reference = pipe(photos["one"])
    for same in (str(path), path, array, tensor):
        assert pipe(same) == reference


def test_all_faces_of_all_images_go_through_the_model_in_one_forward(pipe, photos, model):
    batch_sizes = []
    handle = model.register_forward_hook(lambda _module, _args, output: batch_sizes.append(output.logits.shape[0]))
    try:
        results = pipe([photos["one"], photos["group"], photos["none"]], batch_size=8)
    finally:
        handle.remove()
    assert sum(len(r["faces"]) for r in results) == 4
    assert batch_sizes == [4]


def test_batch_size_splits_the_pooled_faces(pipe, photos, model):
    batch_sizes = []
    handle = model.register_forward_hook(lambda _module, _args, output: batch_sizes.append(output.logits.shape[0]))
    try:
        pipe([photos["one"], photos["group"], photos["none"]], batch_size=3)
    finally:
        handle.remove()
    assert batch_sizes == [3, 1]


def test_batched_results_match_one_image_at_a_time(pipe, photos):
    images = [photos["group"], photos["none"], photos["one"]]
    batched = pipe(images, batch_size=8, no_face="whole_image")
    for image, together in zip(images, batched):
        alone = pipe(image, no_face="whole_image")
        assert [f["box"] for f in together["faces"]] == [f["box"] for f in alone["faces"]]
        for a, b in zip(together["faces"], alone["faces"]):
            assert a["scores"] == pytest.approx(b["scores"], rel=1e-4)


def test_batch_size_one_gives_the_same_results_as_pooled_batches(pipe, photos):
    # With batch_size=1 transformers hands each chunk to _forward as preprocess made it, without its collate function.
    images = [photos["one"], photos["none"], photos["group"]]
    one_by_one = pipe(images, batch_size=1, no_face="whole_image")
    pooled = pipe(images, batch_size=8, no_face="whole_image")
    assert [r["status"] for r in one_by_one] == [r["status"] for r in pooled]
    for a, b in zip(one_by_one, pooled):
        assert [f["box"] for f in a["faces"]] == [f["box"] for f in b["faces"]]
        for face_a, face_b in zip(a["faces"], b["faces"]):
            assert face_a["scores"] == pytest.approx(face_b["scores"], rel=1e-4)


def test_arguments_given_at_construction_are_the_defaults_of_every_call(model, processor, photos):
    built = FacialExpressionPipeline(
        model=model, image_processor=processor, device="cpu", no_face="whole_image", top_k=2, inference_path=None
    )
    (face,) = built(photos["none"])["faces"]
    assert face["whole_image"] is True and len(face["scores"]) == 2
    assert built(photos["none"], no_face="skip")["faces"] == []


def test_unknown_arguments_are_refused_by_name(model, processor, pipe, photos):
    with pytest.raises(TypeError, match="threshold"):
        FacialExpressionPipeline(model=model, image_processor=processor, device="cpu", threshold=0.5)
    with pytest.raises(TypeError, match="threshold"):
        pipe(photos["one"], threshold=0.5)


def test_top_k_keeps_the_most_probable_classes_in_order(pipe, photos):
    (full,) = pipe(photos["one"])["faces"]
    (top,) = pipe(photos["one"], top_k=3)["faces"]
    ranked = sorted(full["scores"], key=full["scores"].get, reverse=True)
    assert list(top["scores"]) == ranked[:3]
    assert top["label"] == full["label"]


def test_a_detector_per_call_overrides_the_pipelines_own(pipe, photos):
    result = pipe(photos["group"], detector=FaceDetector(min_face_size=70))
    assert 0 < len(result["faces"]) < photos["group_count"]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"no_face": "ignore"}, ValueError), ({"top_k": 0}, ValueError), ({"batch_size": 0}, ValueError),
     ({"detector": "haar"}, TypeError)],
)
def test_bad_call_arguments_are_refused_by_name(pipe, photos, kwargs, error):
    with pytest.raises(error, match=next(iter(kwargs))):
        pipe(photos["one"], **kwargs)


def test_missing_opencv_raises_instead_of_marking_every_image_as_broken(pipe, photos, monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # makes `import cv2` raise ImportError
    monkeypatch.setattr(face_detection_grefel, "_CASCADES", {})
    with pytest.raises(ImportError, match="emotionnet"):
        pipe([photos["one"], photos["none"]])


def test_the_registered_task_builds_the_pipeline_for_in_memory_models(model, processor):
    register_pipeline()
    register_pipeline()  # a second registration changes nothing
    built = pipeline(TASK, model=model, image_processor=processor, device="cpu")
    assert isinstance(built, FacialExpressionPipeline)


def test_add_pipeline_to_config_adds_the_task_and_keeps_other_entries(model):
    config = model.config.__class__.from_dict(model.config.to_dict())
    config.custom_pipelines = {"other-task": {"impl": "other.Pipeline"}}
    add_pipeline_to_config(config)
    assert set(config.custom_pipelines) == {"other-task", TASK}
    assert config.to_dict()["custom_pipelines"][TASK]["impl"] == "pipeline_grefel.FacialExpressionPipeline"


def test_model_save_pretrained_writes_the_task_and_copies_the_code(model, tmp_path):
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["custom_pipelines"][TASK]["impl"] == "pipeline_grefel.FacialExpressionPipeline"
    assert config["custom_pipelines"][TASK]["pt"] == ["AutoModelForImageClassification"]
    assert config["auto_map"]["AutoModelForImageClassification"] == "modeling_grefel.GReFELForImageClassification"
    for name in ("pipeline_grefel.py", "face_detection_grefel.py", "image_input_grefel.py"):
        assert (tmp_path / name).is_file(), name


def test_pipeline_save_pretrained_writes_a_folder_loadable_by_task(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["custom_pipelines"][TASK]["impl"] == "pipeline_grefel.FacialExpressionPipeline"
    for name in ("pipeline_grefel.py", "face_detection_grefel.py", "image_input_grefel.py", "preprocessor_config.json",
                 "model.safetensors"):
        assert (tmp_path / name).is_file(), name


def test_task_name_loads_offline_from_remote_code_in_a_fresh_process(tiny_model_dir, tmp_path, photos):
    # tiny_model_dir is what model.save_pretrained plus the processor's save_pretrained wrote, nothing added.
    folder = shutil.copytree(tiny_model_dir, tmp_path / "model")
    photo = tmp_path / "astronaut.png"
    photos["one"].save(photo)
    workdir = tmp_path / "empty_cwd"
    workdir.mkdir()
    script = textwrap.dedent(
        f"""
        import json
        from transformers import pipeline
        pipe = pipeline({TASK!r}, model={str(folder)!r}, trust_remote_code=True, device="cpu")
        print(json.dumps({{"module": type(pipe).__module__, "result": pipe({str(photo)!r})}}))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=workdir, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    output = json.loads(done.stdout.strip().splitlines()[-1])
    assert output["module"].startswith("transformers_modules.") and output["module"].endswith(".pipeline_grefel")
    assert output["result"]["status"] == "ok" and len(output["result"]["faces"]) == 1


PUSH_SCRIPT = """
import sys
from modeling_grefel import FacialExpressionPipeline, GReFELConfig, GReFELForImageClassification, GReFELImageProcessor
config = GReFELConfig.tiny(num_labels=8)
model = GReFELForImageClassification(config).eval()
if sys.argv[1] == "model":
    model.save_pretrained(sys.argv[2], push_to_hub=True, repo_id="tester/pushed")
else:
    processor = GReFELImageProcessor.from_config(config)
    pipe = FacialExpressionPipeline(model=model, image_processor=processor, device="cpu", inference_path=None)
    pipe.save_pretrained(sys.argv[2], push_to_hub=True, repo_id="tester/pushed")
"""


def pushed_files(saver: str, tmp_path) -> dict[str, bytes]:
    """The files `save_pretrained(push_to_hub=True)` of a fresh tiny model ("model") or pipeline ("pipeline") sent to a
    local stand-in for the Hub (tests/hub_server.py), run in a fresh process since huggingface_hub reads HF_ENDPOINT
    at import."""
    from hub_server import FakeHub

    with FakeHub() as hub:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        # HF_HUB_DISABLE_XET: the LFS upload FakeHub implements, even where hf_xet is installed.
        env.update(HF_ENDPOINT=hub.url, HF_TOKEN=hub.token, HF_HUB_OFFLINE="0", HF_HUB_DISABLE_XET="1",
                   OMP_NUM_THREADS="1")
        done = subprocess.run([sys.executable, "-c", PUSH_SCRIPT, saver, str(tmp_path / "saved")], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        assert hub.errors == []
        files: dict[str, bytes] = {}
        for branch in hub.repo("tester/pushed").branches.values():
            files.update(branch)
    return files


@pytest.mark.parametrize("saver", ["pipeline", "model"])
def test_save_pretrained_with_push_to_hub_pushes_the_task_and_its_code(saver, tmp_path):
    files = pushed_files(saver, tmp_path)
    for name in ("pipeline_grefel.py", "face_detection_grefel.py", "image_input_grefel.py"):
        assert name in files, name
    config = json.loads(files["config.json"])
    assert config.get("custom_pipelines", {}).get(TASK, {}).get("impl") == "pipeline_grefel.FacialExpressionPipeline"
