"""Publish a trained EmotionNet model (and optionally its Gradio demo Space) to the Hugging Face Hub.

The upload folder is built locally first, exactly as it will appear in the repository: the safetensors weights,
`config.json` with its `auto_map`, the image processor config, the remote code (`*.py`), the run's result files, the
confusion-matrix image and a generated model card. A dry run stops there. A real upload checks the token with
`whoami` (which also fails fast when the endpoint cannot be reached), creates the repository and branch, and sends
every file in ONE commit, so a failure leaves the repository without any of this upload rather than half of it.

The Space gets the model id twice: in its README's `models:` metadata (which links the two on the Hub) and as the
Space variable `EMOTIONNET_MODEL` (set through the Space variables API), which the demo reads from its environment.

Example:
    >>> result = publish("outputs/ferplus", "me/grefel-ferplus", dry_run=True)  # doctest: +SKIP
    >>> result.upload_dir  # doctest: +SKIP
    PosixPath('outputs/ferplus/hub_upload')
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from huggingface_hub import CommitOperationAdd, HfApi, SpaceCard, SpaceCardData, get_token
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, OfflineModeIsEnabled
from huggingface_hub.utils import validate_repo_id

from .model_card import (
    DEFAULT_LICENSE,
    build_model_card,
    load_training_run,
)
from .run_folder import CONFUSION_MATRIX, CONFUSION_MATRIX_IMAGE, RESULTS, TRAINING_CONFIG

MODEL_VARIABLE = "EMOTIONNET_MODEL"
MODEL_REVISION_VARIABLE = "EMOTIONNET_MODEL_REVISION"
DEFAULT_BRANCH = "main"
# Result files of the run published next to the weights, so anyone can check the card against them.
RESULT_FILES = (RESULTS, CONFUSION_MATRIX, CONFUSION_MATRIX_IMAGE)
# Files of a Space folder that are build or editor leftovers, never part of the demo.
SPACE_IGNORED_NAMES = ("__pycache__", ".git", ".DS_Store", ".ipynb_checkpoints", ".pytest_cache")

# The HTTP library's own error base (httpx2 under huggingface_hub 2.x, httpx under 1.x): HfHubHTTPError derives
# from it, and so do the connection errors raised before any response exists (refused, DNS, timeouts).
_HTTP_ERRORS = (HfHubHTTPError.__mro__[1], OfflineModeIsEnabled)

T = TypeVar("T")


class HubPublishError(RuntimeError):
    """A publish step failed; the message says which step, why, and what to do."""


@dataclass(frozen=True)
class PublishResult:
    """What `publish` produced.

    Attributes:
        upload_dir: The model upload folder (kept for a dry run; a removed temporary folder otherwise).
        files: Paths of the model files, relative to `upload_dir`, sorted.
        commit_url: The model commit's URL, or None for a dry run.
        space_upload_dir: The Space upload folder, or None without `space_id`.
        space_files: Paths of the Space files, relative to `space_upload_dir`, sorted.
        space_commit_url: The Space commit's URL, or None for a dry run or without `space_id`.
    """

    upload_dir: Path
    files: tuple[str, ...]
    commit_url: str | None = None
    space_upload_dir: Path | None = None
    space_files: tuple[str, ...] = ()
    space_commit_url: str | None = None


def _check_repo_id(repo_id: str, argument: str) -> None:
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise HubPublishError(f"{argument} {repo_id!r} is not a valid Hub repository id ({err}).") from err
    if repo_id.count("/") != 1:
        raise HubPublishError(
            f"{argument} {repo_id!r} must be 'namespace/name' (your user or organisation, a slash, the repository "
            "name), so the card and the evaluation command name the model exactly."
        )


def model_files(output_dir: str | Path) -> list[Path]:
    """The files of a training output folder that make the loadable model: config, weights, processor, remote code.

    Raises:
        HubPublishError: the folder is missing a file the Hub model needs, or config.json has no usable `auto_map`.
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise HubPublishError(f"OUTPUT_DIR {output_dir} is not a folder; pass the output folder of scripts/train.py.")
    for name in ("config.json", "preprocessor_config.json"):
        if not (output_dir / name).is_file():
            raise HubPublishError(
                f"{output_dir / name} does not exist; a publishable training output holds the model saved with "
                "save_pretrained and its image processor. Re-run training or save them there."
            )
    index = output_dir / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(_read_json(index).get("weight_map", {}).values()))
        weights = [index, *(output_dir / shard for shard in shards)]
    else:
        weights = [output_dir / "model.safetensors"]
    missing = [str(path) for path in weights if not path.is_file()]
    if missing:
        raise HubPublishError(
            f"{', '.join(missing)} does not exist; the Hub upload takes safetensors weights only. Save the model "
            "with save_pretrained(..., safe_serialization=True)."
        )
    config = _read_json(output_dir / "config.json")
    auto_map = config.get("auto_map") or {}
    if "AutoModelForImageClassification" not in auto_map:
        raise HubPublishError(
            f"{output_dir / 'config.json'} has no auto_map entry for AutoModelForImageClassification, so the Hub "
            "copy could not be loaded with trust_remote_code; save the model from the modeling_grefel classes."
        )
    code = sorted(output_dir.glob("*.py"))
    modules = {reference.split("--")[-1].split(".")[0] for reference in _flatten(auto_map.values())}
    absent = sorted(module for module in modules if not (output_dir / f"{module}.py").is_file())
    if absent:
        raise HubPublishError(
            f"{output_dir} lacks {', '.join(m + '.py' for m in absent)}, named in config.json's auto_map; "
            "save_pretrained copies the remote code there, so re-save the model."
        )
    return [output_dir / "config.json", output_dir / "preprocessor_config.json", *weights, *code]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise HubPublishError(f"{path} line {err.lineno}: not valid JSON ({err.msg}); re-save the model.") from err


def _flatten(values) -> list[str]:
    # auto_map values are "module.Class" or, for tokenizers, [slow, fast] pairs that may hold None.
    flat = []
    for value in values:
        flat += [v for v in value if v] if isinstance(value, list | tuple) else [value]
    return flat


def _prepare_target(target: Path, overwrite: bool, flag: str) -> None:
    if target.exists() and any(target.iterdir()):
        if not overwrite:
            raise HubPublishError(
                f"{target} already exists and is not empty; pass --overwrite to replace it or choose another {flag}."
            )
        shutil.rmtree(target)
    target.mkdir(parents=True, exist_ok=True)


def _relative_files(folder: Path) -> tuple[str, ...]:
    return tuple(sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()))


def build_upload_folder(
    output_dir: str | Path,
    upload_dir: str | Path,
    *,
    repo_id: str,
    base_model: str | None = None,
    license: str = DEFAULT_LICENSE,
    dataset_ids: Sequence[str] | None = None,
    revision: str | None = None,
    overwrite: bool = False,
) -> tuple[str, ...]:
    """Write the exact folder a model upload sends: model files, result files and the generated README.md.

    Args:
        output_dir: The training output folder.
        upload_dir: Where to write the folder; must be absent or empty unless `overwrite`.
        repo_id: The Hub model id ("namespace/name") the card names.
        base_model: Hub id of the checkpoint the model was converted or fine-tuned from, for the card.
        license: Licence identifier for the card metadata.
        dataset_ids: Hub dataset ids for the card metadata (see `build_model_card`).
        revision: Branch the upload goes to, for the card's snippets.
        overwrite: Replace a non-empty `upload_dir`.

    Returns:
        The written files, relative to `upload_dir`, sorted.
    """
    _check_repo_id(repo_id, "--repo_id")
    output_dir, upload_dir = Path(output_dir), Path(upload_dir)
    files = model_files(output_dir)
    _prepare_target(upload_dir, overwrite, "--dry_run_dir")
    for path in files:
        shutil.copy2(path, upload_dir / path.name)
    for name in RESULT_FILES:
        if (output_dir / name).is_file():
            shutil.copy2(output_dir / name, upload_dir / name)
    try:
        run = load_training_run(output_dir, [path for path in files if path.suffix == ".safetensors"])
    except (FileNotFoundError, ValueError) as err:
        raise HubPublishError(str(err)) from err
    if run.training_config:
        # Written from the run's redacted copy, not copied: a token passed to training must not be published.
        (upload_dir / TRAINING_CONFIG).write_text(
            json.dumps(run.training_config, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
    card = build_model_card(
        run,
        repo_id,
        base_model=base_model,
        license=license,
        dataset_ids=dataset_ids,
        revision=revision if revision and revision != DEFAULT_BRANCH else None,
    )
    card.save(upload_dir / "README.md")
    return _relative_files(upload_dir)


def build_space_folder(
    space_dir: str | Path, upload_dir: str | Path, *, model_id: str, overwrite: bool = False
) -> tuple[str, ...]:
    """Write the exact folder a Space upload sends: `space_dir` with its README's metadata pointed at `model_id`.

    The README keeps its own metadata (title, emoji, sdk_version, ...); `sdk` is set to gradio when absent and
    `models` gets `model_id` first. Without a README a minimal one is written.

    Raises:
        HubPublishError: `space_dir` is missing, its README names another SDK, or its app file is absent.
    """
    _check_repo_id(model_id, "--repo_id")
    space_dir, upload_dir = Path(space_dir), Path(upload_dir)
    if not space_dir.is_dir():
        raise HubPublishError(f"--space_dir {space_dir} is not a folder; pass the folder holding the demo's app.py.")
    readme = space_dir / "README.md"
    if readme.is_file():
        card = SpaceCard.load(readme)
    else:
        card = SpaceCard(
            f"---\n{SpaceCardData(title='EmotionNet demo', sdk='gradio', app_file='app.py').to_yaml()}\n---\n\n"
            f"# EmotionNet demo\n\nFacial expression recognition with [{model_id}](https://huggingface.co/{model_id}).\n"
        )
    sdk = card.data.get("sdk") or "gradio"
    if sdk != "gradio":
        raise HubPublishError(f"{readme} sets sdk: {sdk}, but --space publishes a Gradio Space; set sdk: gradio.")
    app_file = card.data.get("app_file") or "app.py"
    if not (space_dir / app_file).is_file():
        raise HubPublishError(
            f"{space_dir / app_file} does not exist; a Gradio Space runs the app file its README names."
        )
    card.data.sdk = "gradio"
    card.data.models = [model_id, *(m for m in (card.data.get("models") or []) if m != model_id)]
    _prepare_target(upload_dir, overwrite, "--dry_run_dir")
    shutil.copytree(
        space_dir, upload_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*SPACE_IGNORED_NAMES, "*.pyc")
    )
    card.save(upload_dir / "README.md")
    return _relative_files(upload_dir)


def resolve_token() -> str:
    """The Hub token from HF_TOKEN or the saved login (`hf auth login`).

    Raises:
        HubPublishError: neither holds a token.
    """
    token = get_token()
    if not token:
        raise HubPublishError(
            "No Hugging Face token found: set the HF_TOKEN environment variable to a token with write access or run "
            "`hf auth login` once, then re-run."
        )
    return token


def _explain(err: BaseException) -> str:
    if isinstance(err, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE is set, so huggingface_hub refuses to connect; unset it to upload"
    status = _status(err)
    if status is None:
        return f"the Hub endpoint could not be reached ({type(err).__name__}: {err}); check the network and HF_ENDPOINT"
    detail = (getattr(err, "server_message", None) or str(err).splitlines()[0]).strip().rstrip(".")
    hint = {
        401: "the token is invalid or expired; create a new one with write access",
        403: "the token lacks write access to this namespace or repository",
        404: "the repository or branch does not exist or the token cannot see it",
    }.get(status, "the Hub had a server error; try again later" if status >= 500 else "the Hub refused the request")
    return f"HTTP {status}: {detail}; {hint}"


def _status(err: BaseException) -> int | None:
    return getattr(getattr(err, "response", None), "status_code", None)


def _hub_step(description: str, action: Callable[[], T], aftermath: Callable[[int | None], str] | None = None) -> T:
    """Run one Hub call, turning library and network errors into a HubPublishError naming the step.

    `aftermath` receives the HTTP status (None without a response) and returns what the failure left behind.
    """
    try:
        return action()
    except (*_HTTP_ERRORS, OSError, ValueError) as err:
        reason = _explain(err) if isinstance(err, _HTTP_ERRORS) else str(err)
        after = aftermath(_status(err)) if aftermath else ""
        raise HubPublishError(f"{description} failed: {reason}.{after}") from err


def _commit_aftermath(status: int | None) -> str:
    if status is not None and status < 500:
        return " Nothing from this upload was committed; the repository holds none of these files."
    # Without a clear refusal the Hub may have stored the commit before failing; a commit is still all or nothing.
    return (
        " The upload is a single commit, so the repository holds either none of these files or, if the Hub failed "
        "after storing it, all of them, never a part; check its history before re-running."
    )


def check_access(api: HfApi, token: str) -> str:
    """Ask the Hub who the token belongs to (one request, no retries) and return the user name.

    Doing this first turns an unreachable endpoint or a bad token into one quick, clear error instead of the
    retries with back-off that the upload calls make.
    """
    identity = _hub_step(f"Checking the token against {api.endpoint}", lambda: api.whoami(token=token))
    return str(identity.get("name", "?"))


def _commit_folder(
    api: HfApi,
    folder: Path,
    repo_id: str,
    *,
    repo_type: str,
    token: str,
    revision: str,
    commit_message: str,
) -> str:
    # One create_commit rather than upload_folder: with hf_xet installed upload_folder may split a folder over
    # several commits, and a failure half-way would leave a half-published model.
    operations = [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name)) for name in _relative_files(folder)
    ]
    commit = _hub_step(
        f"Committing {len(operations)} files to {repo_type} {repo_id} (branch {revision})",
        lambda: api.create_commit(
            repo_id,
            operations,
            commit_message=commit_message,
            repo_type=repo_type,
            revision=revision,
            token=token,
        ),
        _commit_aftermath,
    )
    return str(commit.commit_url)


def upload_model(
    api: HfApi,
    upload_dir: Path,
    repo_id: str,
    *,
    token: str,
    private: bool = False,
    revision: str | None = None,
    commit_message: str,
) -> str:
    """Create the model repository (and branch) if missing and commit `upload_dir` in one commit; return its URL."""
    _hub_step(
        f"Creating model repository {repo_id}",
        lambda: api.create_repo(repo_id, token=token, private=private, exist_ok=True),
    )
    branch = revision or DEFAULT_BRANCH
    if branch != DEFAULT_BRANCH:
        _hub_step(
            f"Creating branch {branch} of {repo_id}",
            lambda: api.create_branch(repo_id, branch=branch, token=token, exist_ok=True),
        )
    return _commit_folder(
        api, upload_dir, repo_id, repo_type="model", token=token, revision=branch, commit_message=commit_message
    )


def upload_space(
    api: HfApi,
    upload_dir: Path,
    space_id: str,
    *,
    model_id: str,
    model_revision: str | None = None,
    token: str,
    private: bool = False,
    commit_message: str,
) -> str:
    """Create the Gradio Space if missing, set its model variables, and commit `upload_dir`; return the commit URL.

    The variables are set before the files so the Space's first build already finds the model.
    """
    _hub_step(
        f"Creating Space {space_id}",
        lambda: api.create_repo(
            space_id, token=token, private=private, repo_type="space", space_sdk="gradio", exist_ok=True
        ),
    )
    variables = {MODEL_VARIABLE: model_id}
    if model_revision and model_revision != DEFAULT_BRANCH:
        variables[MODEL_REVISION_VARIABLE] = model_revision
    for key, value in variables.items():
        _hub_step(
            f"Setting Space variable {key} of {space_id}",
            lambda key=key, value=value: api.add_space_variable(
                space_id, key, value, description="Model repository the EmotionNet demo loads", token=token
            ),
        )
    return _commit_folder(
        api,
        upload_dir,
        space_id,
        repo_type="space",
        token=token,
        revision=DEFAULT_BRANCH,
        commit_message=commit_message,
    )


def publish(
    output_dir: str | Path,
    repo_id: str,
    *,
    space_id: str | None = None,
    space_dir: str | Path | None = None,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    base_model: str | None = None,
    license: str = DEFAULT_LICENSE,
    dataset_ids: Sequence[str] | None = None,
    dry_run: bool = False,
    dry_run_dir: str | Path | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> PublishResult:
    """Build the upload folder(s) from a training output and, unless `dry_run`, push them to the Hub.

    Args:
        output_dir: The training output folder (scripts/train.py's --output_dir).
        repo_id: The Hub model id, "namespace/name".
        space_id: Also publish the Gradio demo Space under this id, pointed at `repo_id`.
        space_dir: The Space's source folder (required with `space_id`).
        private: Create the repositories private (an existing repository keeps its visibility).
        revision: Branch to commit the model to; created from main when missing.
        commit_message: Commit message of the model commit (a default names the output folder).
        base_model: Hub id of the checkpoint the model was converted or fine-tuned from, for the card.
        license: Licence identifier for the card metadata.
        dataset_ids: Hub dataset ids for the card metadata.
        dry_run: Write the upload folder(s) and upload nothing.
        dry_run_dir: Where a dry run writes the model folder (default OUTPUT_DIR/hub_upload); the Space folder
            goes next to it, with "_space" appended to its name.
        overwrite: Replace non-empty dry-run folders.
        log: Receives one line per finished step.

    Raises:
        HubPublishError: a file, argument, token or Hub call was wrong; the message says which and what to do.
    """
    output_dir = Path(output_dir)
    _check_repo_id(repo_id, "--repo_id")
    if space_id is not None:
        _check_repo_id(space_id, "--space")
        if space_dir is None:
            raise HubPublishError("--space needs the Space's source folder; pass --space_dir.")
    if dry_run:
        model_dir = Path(dry_run_dir) if dry_run_dir is not None else output_dir / "hub_upload"
        return _build_all(
            output_dir,
            model_dir,
            repo_id,
            space_id,
            space_dir,
            base_model,
            license,
            dataset_ids,
            revision,
            overwrite,
            log,
            uploading=False,
        )
    with tempfile.TemporaryDirectory(prefix="emotionnet-hub-") as scratch:
        built = _build_all(
            output_dir,
            Path(scratch) / "model",
            repo_id,
            space_id,
            space_dir,
            base_model,
            license,
            dataset_ids,
            revision,
            overwrite=False,
            log=log,
            uploading=True,
        )
        token = resolve_token()
        api = HfApi(token=token)
        user = check_access(api, token)
        log(f"Logged in to {api.endpoint} as {user}.")
        commit_url = upload_model(
            api,
            built.upload_dir,
            repo_id,
            token=token,
            private=private,
            revision=revision,
            commit_message=commit_message or f"Upload GReFEL model from training output {output_dir.name}",
        )
        log(f"Uploaded {len(built.files)} files to {repo_id} (branch {revision or DEFAULT_BRANCH}): {commit_url}")
        space_commit_url = None
        if space_id is not None and built.space_upload_dir is not None:
            try:
                space_commit_url = upload_space(
                    api,
                    built.space_upload_dir,
                    space_id,
                    model_id=repo_id,
                    model_revision=revision,
                    token=token,
                    private=private,
                    commit_message=f"Point the EmotionNet demo at {repo_id}",
                )
            except HubPublishError as err:
                raise HubPublishError(f"{err} The model itself was published: {commit_url}") from err
            log(f"Uploaded {len(built.space_files)} files to Space {space_id}: {space_commit_url}")
        return PublishResult(
            upload_dir=built.upload_dir,
            files=built.files,
            commit_url=commit_url,
            space_upload_dir=built.space_upload_dir,
            space_files=built.space_files,
            space_commit_url=space_commit_url,
        )


def _build_all(
    output_dir: Path,
    model_dir: Path,
    repo_id: str,
    space_id: str | None,
    space_dir: str | Path | None,
    base_model: str | None,
    license: str,
    dataset_ids: Sequence[str] | None,
    revision: str | None,
    overwrite: bool,
    log: Callable[[str], None],
    *,
    uploading: bool,
) -> PublishResult:
    files = build_upload_folder(
        output_dir,
        model_dir,
        repo_id=repo_id,
        base_model=base_model,
        license=license,
        dataset_ids=dataset_ids,
        revision=revision,
        overwrite=overwrite,
    )
    if not load_training_run(output_dir).has_evaluation:
        log(
            f"Warning: {output_dir} holds no evaluation results (all_results.json is missing or has no eval_* "
            "metrics: a converted checkpoint, or a run that did not finish), so the model card reports none. "
            "Finish the run (--resume_from_checkpoint latest) or evaluate it with scripts/evaluate_model.py first."
        )
    space_upload_dir, space_files = None, ()
    if space_id is not None and space_dir is not None:
        space_upload_dir = model_dir.with_name(model_dir.name + "_space")
        space_files = build_space_folder(space_dir, space_upload_dir, model_id=repo_id, overwrite=overwrite)
    if not uploading:
        log(f"Dry run: nothing was uploaded. {repo_id} would receive {len(files)} files, written to {model_dir}:")
        for name in files:
            log(f"  {name} ({(model_dir / name).stat().st_size} bytes)")
        if space_upload_dir is not None:
            log(f"Space {space_id} would receive {len(space_files)} files, written to {space_upload_dir}.")
    return PublishResult(upload_dir=model_dir, files=files, space_upload_dir=space_upload_dir, space_files=space_files)


__all__ = [
    "MODEL_REVISION_VARIABLE",
    "MODEL_VARIABLE",
    "HubPublishError",
    "PublishResult",
    "build_space_folder",
    "build_upload_folder",
    "check_access",
    "model_files",
    "publish",
    "resolve_token",
    "upload_model",
    "upload_space",
]
