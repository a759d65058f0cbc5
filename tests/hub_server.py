"""A local stand-in for the Hugging Face Hub HTTP API, for offline upload tests.

It implements only the routes that huggingface_hub 2.x's `whoami`, `create_repo`, `create_branch`,
`create_commit` (README validation, preupload, LFS batch + basic transfer + verify, NDJSON commit) and
`add_space_variable` call, as read from huggingface_hub's hf_api.py, _commit_api.py and lfs.py. It keeps the
repositories in memory and records every request, so a test can check what the real client sent.

Example:
    >>> with FakeHub() as hub:  # doctest: +SKIP
    ...     env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": hub.token}
    ...     # run the upload with env, then inspect hub.requests and hub.repos
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import traceback
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

# Files the real Hub stores in LFS by its default .gitattributes; the rest are committed inline.
LFS_SUFFIXES = (".safetensors", ".bin", ".png", ".jpg", ".onnx", ".pt")
_REPO = r"(?P<repo_id>[^/]+/[^/]+)"
_TYPE = r"(?P<repo_type>models|datasets|spaces)"


@dataclass
class RecordedRequest:
    """One request the fake Hub received: method, path (query string removed), parsed JSON body if any."""

    method: str
    path: str
    body: Any = None


@dataclass
class FakeRepo:
    """A repository: its type, creation payload, branches (name -> {path: bytes}) and commits (header dicts)."""

    repo_type: str
    create_payload: dict[str, Any]
    branches: dict[str, dict[str, bytes]] = field(default_factory=lambda: {"main": {".gitattributes": b"*.bin lfs\n"}})
    commits: list[dict[str, Any]] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)


class FakeHub:
    """A threaded HTTP server speaking the subset of the Hub API that uploads use.

    Args:
        token: The only token accepted (as `Authorization: Bearer <token>`).
        user: The name `whoami-v2` answers with.
        commit_status: When set, every commit request is answered with this HTTP status and an error, as the Hub
            does for a rejected commit; nothing is stored.
    """

    def __init__(self, *, token: str = "hf_fake_test_token", user: str = "tester", commit_status: int | None = None):
        self.token = token
        self.user = user
        self.commit_status = commit_status
        self.requests: list[RecordedRequest] = []
        self.repos: dict[tuple[str, str], FakeRepo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.validated_readmes: list[str] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The endpoint to put in HF_ENDPOINT."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        """Start serving in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def routes(self) -> list[str]:
        """The requests received so far as "METHOD path" strings, in order."""
        return [f"{r.method} {r.path}" for r in self.requests]

    def repo(self, repo_id: str, repo_type: str = "model") -> FakeRepo:
        """The stored repository `repo_id` of `repo_type` (KeyError when it was never created)."""
        return self.repos[(repo_type, repo_id)]

    # Route handlers: each takes the match groups and the parsed body, returns (status, JSON-able body).

    def handle(self, method: str, path: str, body: bytes, headers) -> tuple[int, Any]:
        """Dispatch one request; unknown routes answer 404 and are listed in `errors`."""
        parsed = _parse_json(body, headers)
        with self._lock:
            self.requests.append(RecordedRequest(method, path, parsed))
        if method == "PUT" and (match := re.fullmatch(r"/lfs-upload/(?P<oid>[0-9a-f]{64})", path)):
            return self._lfs_upload(match["oid"], body)
        if headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"error": "Invalid credentials in Authorization header"}
        for pattern, verb, handler in (
            (r"/api/whoami-v2", "GET", self._whoami),
            (r"/api/repos/create", "POST", self._create_repo),
            (r"/api/validate-yaml", "POST", self._validate_yaml),
            (rf"/api/{_TYPE}/{_REPO}/branch/(?P<branch>[^/]+)", "POST", self._create_branch),
            (rf"/api/{_TYPE}/{_REPO}/preupload/(?P<revision>[^/]+)", "POST", self._preupload),
            (rf"/api/{_TYPE}/{_REPO}/commit/(?P<revision>[^/]+)", "POST", self._commit),
            (rf"/api/spaces/{_REPO}/variables", "POST", self._add_variable),
            (rf"/(?P<prefix>spaces/|datasets/)?{_REPO}\.git/info/lfs/objects/batch", "POST", self._lfs_batch),
            (r"/lfs-verify", "POST", self._lfs_verify),
        ):
            if method == verb and (match := re.fullmatch(pattern, path)):
                groups = {key: unquote(value) for key, value in match.groupdict().items() if value is not None}
                return handler(parsed, raw=body, **groups)
        self.errors.append(f"unhandled route {method} {path}")
        return 404, {"error": f"fake hub has no route {method} {path}"}

    def _whoami(self, body, raw) -> tuple[int, Any]:
        return 200, {"type": "user", "name": self.user, "auth": {"accessToken": {"role": "write"}}}

    def _create_repo(self, body, raw) -> tuple[int, Any]:
        repo_type = body.get("type") or "model"
        repo_id = f"{body.get('organization') or self.user}/{body['name']}"
        if (repo_type, repo_id) in self.repos:
            return 409, {"error": "You already created this repo", "url": self._repo_url(repo_type, repo_id)}
        self.repos[(repo_type, repo_id)] = FakeRepo(repo_type=repo_type, create_payload=body)
        return 200, {"url": self._repo_url(repo_type, repo_id), "name": repo_id}

    def _validate_yaml(self, body, raw) -> tuple[int, Any]:
        self.validated_readmes.append(body["content"])
        return 200, {"errors": [], "warnings": []}

    def _create_branch(self, body, raw, repo_type, repo_id, branch) -> tuple[int, Any]:
        repo = self.repos.get((repo_type[:-1], repo_id))
        if repo is None:
            return 404, {"error": "Repository not found"}
        if branch in repo.branches:
            return 409, {"error": "Reference already exists"}
        repo.branches[branch] = dict(repo.branches[body.get("startingPoint") or "main"])
        return 200, {}

    def _preupload(self, body, raw, repo_type, repo_id, revision) -> tuple[int, Any]:
        repo = self.repos.get((repo_type[:-1], repo_id))
        if repo is None or revision not in repo.branches:
            return 404, {"error": "Repository or revision not found"}
        files = [
            {
                "path": item["path"],
                "uploadMode": "lfs" if item["path"].endswith(LFS_SUFFIXES) else "regular",
                "shouldIgnore": False,
                "oid": None,
            }
            for item in body["files"]
        ]
        return 200, {"files": files, "commitOid": "0" * 40}

    def _lfs_batch(self, body, raw, repo_id, prefix="") -> tuple[int, Any]:
        objects = []
        for item in body["objects"]:
            actions = {
                "upload": {"href": f"{self.url}/lfs-upload/{item['oid']}"},
                "verify": {"href": f"{self.url}/lfs-verify"},
            }
            objects.append({"oid": item["oid"], "size": item["size"], "authenticated": True, "actions": actions})
        return 200, {"transfer": "basic", "objects": objects}

    def _lfs_upload(self, oid: str, raw: bytes) -> tuple[int, Any]:
        if hashlib.sha256(raw).hexdigest() != oid:
            return 400, {"error": "uploaded content does not match its sha256"}
        self.lfs_objects[oid] = raw
        return 200, {}

    def _lfs_verify(self, body, raw) -> tuple[int, Any]:
        stored = self.lfs_objects.get(body["oid"])
        if stored is None or len(stored) != body["size"]:
            return 404, {"error": "object not uploaded"}
        return 200, {}

    def _commit(self, body, raw, repo_type, repo_id, revision) -> tuple[int, Any]:
        if self.commit_status is not None:
            return self.commit_status, {"error": f"commit rejected by the fake hub (status {self.commit_status})"}
        repo = self.repos.get((repo_type[:-1], repo_id))
        if repo is None or revision not in repo.branches:
            return 404, {"error": "Repository or revision not found"}
        lines = [json.loads(line) for line in raw.splitlines() if line.strip()]
        header, files = lines[0]["value"], {}
        for line in lines[1:]:
            value = line["value"]
            if line["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif line["key"] == "lfsFile":
                if value["oid"] not in self.lfs_objects:
                    return 422, {"error": f"LFS object of {value['path']} was never uploaded"}
                files[value["path"]] = self.lfs_objects[value["oid"]]
            else:
                return 400, {"error": f"fake hub does not support commit operation {line['key']}"}
        # Stored only once every line checked out: a commit is all or nothing, as on the Hub.
        repo.branches[revision].update(files)
        oid = hashlib.sha1(raw).hexdigest()
        repo.commits.append({**header, "revision": revision, "files": sorted(files), "oid": oid})
        url = f"{self._repo_url(repo.repo_type, repo_id)}/commit/{oid}"
        return 200, {"success": True, "commitOid": oid, "commitUrl": url, "pullRequestUrl": None}

    def _add_variable(self, body, raw, repo_id) -> tuple[int, Any]:
        repo = self.repos.get(("space", repo_id))
        if repo is None:
            return 404, {"error": "Space not found"}
        repo.variables[body["key"]] = body["value"]
        return 200, {
            key: {"value": value, "updatedAt": "2024-01-01T00:00:00.000Z"} for key, value in repo.variables.items()
        }

    def _repo_url(self, repo_type: str, repo_id: str) -> str:
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        return f"{self.url}/{prefix}{repo_id}"


def _parse_json(body: bytes, headers) -> Any:
    content_type = headers.get("Content-Type", "")
    if body and "json" in content_type and "ndjson" not in content_type:
        return json.loads(body)
    return None


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    # Streamed uploads (a file object as body) may arrive chunked rather than with a Content-Length.
    if "chunked" in handler.headers.get("Transfer-Encoding", "").lower():
        chunks = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                handler.rfile.readline()
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))


def _make_handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            body = _read_body(self)
            path = urlsplit(self.path).path
            try:
                status, payload = hub.handle(self.command, path, body, self.headers)
            except Exception:  # a bug in the fake must show up in the test, not as a hung client
                hub.errors.append(traceback.format_exc())
                status, payload = 500, {"error": "fake hub crashed"}
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status >= 400:
                self.send_header("X-Error-Message", payload.get("error", ""))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = _serve

        def log_message(self, format, *args) -> None:  # noqa: A002 - silence the per-request stderr lines
            return

    return Handler


__all__ = ["LFS_SUFFIXES", "FakeHub", "FakeRepo", "RecordedRequest"]
