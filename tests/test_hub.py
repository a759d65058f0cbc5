"""Publishing to the Hub (scripts/push_to_hub.py, emotionnet.hub, emotionnet.model_card), all offline.

The script runs as a subprocess, as a user would run it. Uploads go to `tests/hub_server.FakeHub`, a local HTTP
server, through the real huggingface_hub client (HF_ENDPOINT points at it); those runs cannot set HF_HUB_OFFLINE,
which blocks every request, but nothing leaves 127.0.0.1. Dry runs and model loading run with HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from huggingface_hub import ModelCard, SpaceCard

from emotionnet import run_folder
from emotionnet.model_card import GREFEL_BIBTEX, TrainingRun, evaluation_commands
from tests.hub_server import FakeHub
from tests.load_script import load_script

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "push_to_hub.py"
REPO_ID = "tester/grefel-tiny"
SECRET = "hf_trainingSecretToken123"

ALL_RESULTS = {
    "dataset": "ferplus",
    "num_classes": 8,
    "eval_split": "validation",
    "eval_accuracy": 0.8125,
    "eval_balanced_accuracy": 0.6843,
    "eval_macro_f1": 0.6517,
    "eval_ece": 0.041,
    "eval_per_class_recall": {
        "neutral": 0.9,
        "happiness": 0.95,
        "surprise": 0.8,
        "sadness": 0.6,
        "anger": 0.7,
        "disgust": 0.3,
        "fear": 0.4,
        "contempt": 0.1,
    },
    "eval_corrected_accuracy": 0.8201,
    "eval_corrected_balanced_accuracy": 0.7,
    "eval_corrected_macro_f1": 0.66,
    "test_split": "test",
    "test_accuracy": 0.7993,
    "test_balanced_accuracy": 0.6712,
    "test_macro_f1": 0.6409,
    "train_runtime_s": 12.5,
    "train_samples_per_second": 40.0,
    "epochs": 2,
    "global_step": 20,
    "synthetic": False,
}
TRAINING_CONFIG = {
    "recipe": "ferplus",
    "command": f"python scripts/train.py --dataset ferplus --data_dir /data/ferplus --hub_token {SECRET}",
    "dataset": "ferplus",
    "data_dir": "/data/ferplus",
    "learning_rate": 1e-4,
    "seed": 7,
    "image_column": "image",
    "hub_token": SECRET,
}
MODEL_INDEX_KEYS = {"accuracy": "accuracy", "balanced_accuracy": "balanced_accuracy", "f1": "macro_f1"}


def _write_training_output(folder: Path, model_dir: Path) -> None:
    from PIL import Image

    shutil.copytree(model_dir, folder)
    (folder / run_folder.RESULTS).write_text(json.dumps(ALL_RESULTS))
    (folder / run_folder.TRAINING_CONFIG).write_text(json.dumps(TRAINING_CONFIG))
    labels = list(ALL_RESULTS["eval_per_class_recall"])
    matrix = [[5 if i == j else 1 for j in range(8)] for i in range(8)]
    (folder / run_folder.CONFUSION_MATRIX).write_text(json.dumps({"labels": labels, "matrix": matrix}))
    Image.new("RGB", (16, 16), (200, 30, 30)).save(folder / run_folder.CONFUSION_MATRIX_IMAGE)
    # The best checkpoint the run also writes; it must not be uploaded.
    shutil.copytree(model_dir, folder / "best")


@pytest.fixture(scope="module")
def training_output(tiny_model_dir, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("run") / "output"
    _write_training_output(folder, tiny_model_dir)
    return folder


@pytest.fixture(scope="module")
def synthetic_output(training_output, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("synthetic") / "output"
    shutil.copytree(training_output, folder)
    results = {**ALL_RESULTS, "dataset": "synthetic-faces", "synthetic": True}
    (folder / run_folder.RESULTS).write_text(json.dumps(results))
    return folder


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    # No HF_* from the outer environment: no real token, endpoint or cache may leak into the run.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE"))}
    env.update(
        HF_HOME=str(tmp_path / "hf_home"),
        HF_HUB_DISABLE_XET="1",  # the legacy LFS path that FakeHub implements, even where hf_xet is installed
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        OMP_NUM_THREADS="1",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


def run_push(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


@pytest.fixture(scope="module")
def dry_run_dir(training_output, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("dry")
    target = tmp / "upload"
    result = run_push(
        [str(training_output), "--repo_id", REPO_ID, "--dry_run", "--dry_run_dir", str(target)],
        _env(tmp, HF_HUB_OFFLINE="1"),
    )
    assert result.returncode == 0, result.stderr
    return target


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# Dry run: the folder that would be uploaded


def test_dry_run_writes_model_code_results_and_card(dry_run_dir):
    names = set(_files(dry_run_dir))
    assert {
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "README.md",
        run_folder.CONFUSION_MATRIX_IMAGE,
        run_folder.RESULTS,
        run_folder.TRAINING_CONFIG,
        run_folder.CONFUSION_MATRIX,
    } <= names
    assert {"configuration_grefel.py", "modeling_grefel.py"} <= names
    assert not any(name.startswith("best/") for name in names)


def test_dry_run_defaults_to_hub_upload_inside_output_dir(training_output, tmp_path):
    copy = tmp_path / "output"
    shutil.copytree(training_output, copy)
    result = run_push([str(copy), "--repo_id", REPO_ID, "--dry_run"], _env(tmp_path, HF_HUB_OFFLINE="1"))
    assert result.returncode == 0, result.stderr
    assert (copy / "hub_upload" / "README.md").is_file()
    assert "nothing was uploaded" in result.stdout


def test_dry_run_refuses_to_replace_a_non_empty_folder(training_output, tmp_path):
    target = tmp_path / "upload"
    target.mkdir()
    (target / "keep.txt").write_text("user data")
    args = [str(training_output), "--repo_id", REPO_ID, "--dry_run", "--dry_run_dir", str(target)]
    result = run_push(args, _env(tmp_path, HF_HUB_OFFLINE="1"))
    assert result.returncode == 1
    assert "--overwrite" in result.stderr
    assert (target / "keep.txt").read_text() == "user data"


def test_published_training_config_has_secrets_redacted(dry_run_dir):
    for name in (run_folder.TRAINING_CONFIG, "README.md"):
        assert SECRET not in (dry_run_dir / name).read_text()
    assert json.loads((dry_run_dir / run_folder.TRAINING_CONFIG).read_text())["hub_token"] == "<redacted>"


def test_output_without_auto_map_is_rejected(training_output, tmp_path):
    copy = tmp_path / "output"
    shutil.copytree(training_output, copy)
    config = json.loads((copy / "config.json").read_text())
    del config["auto_map"]
    (copy / "config.json").write_text(json.dumps(config))
    result = run_push([str(copy), "--repo_id", REPO_ID, "--dry_run"], _env(tmp_path, HF_HUB_OFFLINE="1"))
    assert result.returncode == 1
    assert "auto_map" in result.stderr and "Traceback" not in result.stderr


def test_repo_id_without_namespace_is_rejected(training_output, tmp_path):
    result = run_push([str(training_output), "--repo_id", "grefel", "--dry_run"], _env(tmp_path, HF_HUB_OFFLINE="1"))
    assert result.returncode == 1
    assert "namespace/name" in result.stderr


_LOAD_SCRIPT = """
import json, sys
import numpy as np, torch
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification, pipeline
folder = sys.argv[1]
config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True).eval()
image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 80, 3), dtype=np.uint8))
with torch.no_grad():
    logits = model(**processor(images=image, return_tensors="pt")).logits
predictions = pipeline("image-classification", model=folder, trust_remote_code=True)(image, top_k=len(config.id2label))
print(json.dumps({"module": type(model).__module__, "shape": list(logits.shape),
                  "auto_top": config.id2label[int(logits.argmax())], "labels": [p["label"] for p in predictions]}))
"""


def test_dry_run_folder_loads_with_auto_classes_and_pipeline_offline(dry_run_dir, tmp_path):
    # A fresh interpreter in an unrelated folder: the model code must come from the upload folder itself.
    env = _env(tmp_path, HF_HUB_OFFLINE="1")
    del env["PYTHONPATH"]
    result = subprocess.run(
        [sys.executable, "-c", _LOAD_SCRIPT, str(dry_run_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["module"].startswith("transformers_modules")
    assert loaded["shape"] == [1, 8]
    assert sorted(loaded["labels"]) == sorted(ALL_RESULTS["eval_per_class_recall"])
    assert loaded["labels"][0] == loaded["auto_top"]


# The model card


def test_card_metadata_parses_with_the_hub_schema(dry_run_dir):
    data = ModelCard.load(dry_run_dir / "README.md").data
    assert data.library_name == "transformers"
    assert data.pipeline_tag == "image-classification"
    assert data.license == "apache-2.0"
    assert {"facial-expression-recognition", "grefel"} <= set(data.tags)
    assert data.datasets == ["ferplus"]


def test_card_model_index_equals_all_results(dry_run_dir):
    results = ModelCard.load(dry_run_dir / "README.md").data.eval_results
    reported = {(r.dataset_split, r.metric_type): r.metric_value for r in results}
    expected = {
        (ALL_RESULTS[f"{prefix}_split"], metric_type): ALL_RESULTS[f"{prefix}_{key}"]
        for prefix in ("eval", "test")
        for metric_type, key in MODEL_INDEX_KEYS.items()
    }
    assert reported == expected
    assert {r.dataset_type for r in results} == {"ferplus"}


def test_card_references_the_confusion_matrix_image(dry_run_dir):
    assert "](confusion_matrix.png)" in (dry_run_dir / "README.md").read_text()


def test_card_prints_the_reproducing_evaluation_command(dry_run_dir):
    text = (dry_run_dir / "README.md").read_text()
    command = f"python scripts/evaluate_model.py --model {REPO_ID} --dataset ferplus --data_dir /data/ferplus --split"
    assert f"{command} validation --seed 7\n" in text
    assert f"{command} test --seed 7\n" in text


def test_card_has_recipe_command_usage_classes_and_citation(dry_run_dir):
    text = (dry_run_dir / "README.md").read_text()
    assert "python scripts/train.py --dataset ferplus" in text
    assert f'AutoModelForImageClassification.from_pretrained("{REPO_ID}", trust_remote_code=True)' in text
    assert f'pipeline("image-classification", model="{REPO_ID}", trust_remote_code=True)' in text
    assert "| 7 | contempt |" in text
    assert GREFEL_BIBTEX in text and "2410.15927" in GREFEL_BIBTEX


def test_real_data_card_has_no_synthetic_warning(dry_run_dir):
    assert "synthetic" not in ModelCard.load(dry_run_dir / "README.md").text.lower()


def test_synthetic_run_card_warns_at_the_top(synthetic_output, tmp_path):
    target = tmp_path / "upload"
    args = [str(synthetic_output), "--repo_id", REPO_ID, "--dry_run", "--dry_run_dir", str(target)]
    assert run_push(args, _env(tmp_path, HF_HUB_OFFLINE="1")).returncode == 0
    card = ModelCard.load(target / "README.md")
    assert card.text.lstrip().startswith("> [!WARNING]\n> **Trained and evaluated on synthetic data.**")
    assert "synthetic-data" in card.data.tags and not card.data.datasets


@pytest.mark.parametrize("results", [None, {"dataset": "ferplus", "epochs": 2, "global_step": 20}],
                         ids=["no-all-results", "no-eval-metrics"])
def test_dry_run_without_evaluation_results_warns_and_the_card_says_so(training_output, tmp_path, results):
    """An interrupted run's output once published a card with an empty results table and no warning."""
    output = tmp_path / "output"
    shutil.copytree(training_output, output)
    (output / run_folder.RESULTS).unlink()
    if results is not None:
        (output / run_folder.RESULTS).write_text(json.dumps(results))
    target = tmp_path / "upload"
    result = run_push([str(output), "--repo_id", REPO_ID, "--dry_run", "--dry_run_dir", str(target)],
                      _env(tmp_path, HF_HUB_OFFLINE="1"))
    assert result.returncode == 0, result.stderr
    assert "Warning:" in result.stdout and "holds no evaluation results" in result.stdout
    card = ModelCard.load(target / "README.md")
    assert "this card reports no evaluation numbers" in card.text and "| validation |" not in card.text
    assert not card.data.eval_results


def test_base_model_and_revision_reach_the_card(training_output, tmp_path):
    target = tmp_path / "upload"
    args = [
        str(training_output),
        "--repo_id",
        REPO_ID,
        "--dry_run",
        "--dry_run_dir",
        str(target),
        "--base_model",
        "someone/poster-v2-rafdb",
        "--revision",
        "v1",
    ]
    assert run_push(args, _env(tmp_path, HF_HUB_OFFLINE="1")).returncode == 0
    card = ModelCard.load(target / "README.md")
    assert card.data.base_model == "someone/poster-v2-rafdb"
    assert f'from_pretrained("{REPO_ID}", revision="v1", trust_remote_code=True)' in card.text
    assert "--split validation --revision v1 --seed 7" in card.text


# Uploads against the local fake Hub


@pytest.fixture
def space_dir(tmp_path) -> Path:
    folder = tmp_path / "space"
    folder.mkdir()
    (folder / "app.py").write_text("import os\nMODEL = os.environ['EMOTIONNET_MODEL']\n")
    (folder / "README.md").write_text(
        "---\ntitle: EmotionNet\nemoji: 🙂\nsdk: gradio\napp_file: app.py\n---\n\n# Demo\n"
    )
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    return folder


def test_upload_sends_the_dry_run_folder_in_one_commit(training_output, dry_run_dir, tmp_path):
    with FakeHub() as hub:
        args = [
            str(training_output),
            "--repo_id",
            REPO_ID,
            "--private",
            "--revision",
            "dev",
            "--commit_message",
            "First tiny upload",
        ]
        result = run_push(args, _env(tmp_path, HF_ENDPOINT=hub.url, HF_TOKEN=hub.token))
    assert result.returncode == 0, result.stderr
    assert hub.errors == []
    repo = hub.repo(REPO_ID)
    assert repo.create_payload["visibility"] == "private"
    assert [(c["summary"], c["revision"]) for c in repo.commits] == [("First tiny upload", "dev")]
    dry = _files(dry_run_dir)
    committed = {k: v for k, v in repo.branches["dev"].items() if k != ".gitattributes"}
    assert set(committed) == set(dry)
    # Byte for byte, except the card, whose snippets name the branch (--revision dev) that the dry run lacked.
    assert {k: v for k, v in committed.items() if k != "README.md"} == {
        k: v for k, v in dry.items() if k != "README.md"
    }
    assert b'revision="dev"' in committed["README.md"]
    assert "Uploaded" in result.stdout and "commit/" in result.stdout


def test_upload_uses_the_hub_routes_in_order(training_output, tmp_path):
    with FakeHub() as hub:
        args = [str(training_output), "--repo_id", REPO_ID, "--revision", "dev"]
        assert run_push(args, _env(tmp_path, HF_ENDPOINT=hub.url, HF_TOKEN=hub.token)).returncode == 0
    routes = hub.routes()
    expected = [
        "GET /api/whoami-v2",
        "POST /api/repos/create",
        f"POST /api/models/{REPO_ID}/branch/dev",
        "POST /api/validate-yaml",
        f"POST /api/models/{REPO_ID}/preupload/dev",
        f"POST /{REPO_ID}.git/info/lfs/objects/batch",
        f"POST /api/models/{REPO_ID}/commit/dev",
    ]
    assert [route for route in routes if route in expected] == expected
    uploaded = {r.path for r in hub.requests if r.method == "PUT"}
    assert len(uploaded) == 2  # model.safetensors and confusion_matrix.png go through LFS


def test_space_upload_points_the_demo_at_the_model(training_output, space_dir, tmp_path):
    with FakeHub() as hub:
        args = [
            str(training_output),
            "--repo_id",
            REPO_ID,
            "--revision",
            "dev",
            "--space",
            "tester/grefel-demo",
            "--space_dir",
            str(space_dir),
        ]
        result = run_push(args, _env(tmp_path, HF_ENDPOINT=hub.url, HF_TOKEN=hub.token))
    assert result.returncode == 0, result.stderr
    assert hub.errors == []
    space = hub.repo("tester/grefel-demo", "space")
    assert (space.create_payload["type"], space.create_payload["sdk"]) == ("space", "gradio")
    assert space.variables == {"EMOTIONNET_MODEL": REPO_ID, "EMOTIONNET_MODEL_REVISION": "dev"}
    files = space.branches["main"]
    assert files["app.py"] == (space_dir / "app.py").read_bytes()
    assert not any("__pycache__" in name for name in files)
    readme = tmp_path / "space_readme.md"
    readme.write_bytes(files["README.md"])
    assert SpaceCard.load(readme).data.models == [REPO_ID]
    assert SpaceCard.load(readme).data.title == "EmotionNet"


def test_space_dry_run_writes_the_space_folder_next_to_the_model_folder(training_output, space_dir, tmp_path):
    target = tmp_path / "upload"
    args = [
        str(training_output),
        "--repo_id",
        REPO_ID,
        "--dry_run",
        "--dry_run_dir",
        str(target),
        "--space",
        "tester/grefel-demo",
        "--space_dir",
        str(space_dir),
    ]
    assert run_push(args, _env(tmp_path, HF_HUB_OFFLINE="1")).returncode == 0
    assert SpaceCard.load(tmp_path / "upload_space" / "README.md").data.models == [REPO_ID]


# Failures: a clear message, a non-zero exit, nothing claimed as done


def test_missing_token_fails_before_any_request(training_output, tmp_path):
    with FakeHub() as hub:
        result = run_push([str(training_output), "--repo_id", REPO_ID], _env(tmp_path, HF_ENDPOINT=hub.url))
    assert result.returncode == 1
    assert "HF_TOKEN" in result.stderr and "hf auth login" in result.stderr
    assert hub.requests == []


def test_invalid_token_fails_at_the_whoami_check(training_output, tmp_path):
    with FakeHub() as hub:
        result = run_push(
            [str(training_output), "--repo_id", REPO_ID], _env(tmp_path, HF_ENDPOINT=hub.url, HF_TOKEN="hf_wrong")
        )
    assert result.returncode == 1
    assert "HTTP 401" in result.stderr and "token" in result.stderr
    assert hub.routes() == ["GET /api/whoami-v2"]


def test_unreachable_endpoint_fails_fast(training_output, tmp_path):
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.monotonic()
    env = _env(tmp_path, HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_TOKEN="hf_any")
    result = run_push([str(training_output), "--repo_id", REPO_ID], env, timeout=60)
    elapsed = time.monotonic() - start
    assert result.returncode == 1
    assert "could not be reached" in result.stderr and "Traceback" not in result.stderr
    assert elapsed < 15
    assert "Uploaded" not in result.stdout


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(403, "Nothing from this upload was committed"), (500, "all of them, never a part")],
)
def test_rejected_commit_fails_and_leaves_the_repo_without_files(training_output, tmp_path, status, outcome):
    with FakeHub(commit_status=status) as hub:
        result = run_push(
            [str(training_output), "--repo_id", REPO_ID], _env(tmp_path, HF_ENDPOINT=hub.url, HF_TOKEN=hub.token)
        )
    assert result.returncode == 1
    assert f"HTTP {status}" in result.stderr and outcome in result.stderr
    assert "Uploaded" not in result.stdout
    assert set(hub.repo(REPO_ID).branches["main"]) == {".gitattributes"}


def test_evaluation_command_names_the_dataset_as_training_took_it(tmp_path):
    run = TrainingRun(
        output_dir=tmp_path,
        model_config={},
        results={"dataset": "synthetic-faces", "synthetic": True, "eval_accuracy": 0.5},
        training_config={"dataset": "synthetic", "data_dir": None, "seed": 42},
    )
    assert evaluation_commands(run, "a/b") == [
        "python scripts/evaluate_model.py --model a/b --dataset synthetic --split validation --seed 42"
    ]


def test_evaluation_command_passes_the_training_seed_even_when_it_is_the_evaluation_default(tmp_path):
    """The card once left out a seed of 42, taking it for evaluate_model.py's default, which is 0."""
    evaluate_script = load_script(ROOT / "scripts" / "evaluate_model.py")
    default_seed = evaluate_script.parse_args(["--model", "m", "--dataset", "d"]).seed
    run = TrainingRun(
        output_dir=tmp_path,
        model_config={},
        results={"dataset": "synthetic-faces", "eval_accuracy": 0.5},
        training_config={"dataset": "synthetic", "seed": default_seed},
    )
    assert evaluation_commands(run, "a/b")[0].endswith(f"--split validation --seed {default_seed}")


def test_left_out_evaluation_arguments_are_the_evaluation_scripts_defaults():
    # The card drops a data option whose value is the evaluation script's default; that only reproduces the
    # numbers while the defaults written in model_card.py are the ones the script's parser really has.
    from emotionnet.model_card import _EVALUATION_ARGUMENTS

    defaults = load_script(ROOT / "scripts" / "evaluate_model.py").parse_args(["--model", "m", "--dataset", "d"])
    for _, flag, default in _EVALUATION_ARGUMENTS:
        assert getattr(defaults, flag.removeprefix("--")) == default, flag


def test_card_snippets_run_as_written_on_an_image_file(training_output, dry_run_dir, tmp_path):
    # The snippets hand the processor and the pipeline the file path, never Image.open(...).convert("RGB"), which
    # clips 16-bit images; run them as a user would, in a fresh offline process, against the uploaded folder.
    import re

    import numpy as np
    from PIL import Image

    from emotionnet.model_card import build_model_card

    card = build_model_card(training_output, str(dry_run_dir))
    assert "Image.open" not in card.text
    snippets = re.findall(r"```python\n(.*?)```", card.text, flags=re.DOTALL)
    assert len(snippets) == 2
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 80, 3), dtype=np.uint8)).save(tmp_path / "face.jpg")
    env = _env(tmp_path, HF_HUB_OFFLINE="1")
    del env["PYTHONPATH"]
    for snippet in snippets:
        result = subprocess.run(
            [sys.executable, "-c", snippet], env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert any(name in result.stdout for name in ALL_RESULTS["eval_per_class_recall"]), result.stdout
