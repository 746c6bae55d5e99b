"""Helpers of the publishing tests: tiny training data, a recording evaluator and a stand-in for the Hub's HTTP API.

The stand-in implements just the endpoints ``HfApi.create_repo`` and ``HfApi.upload_folder`` call (repository
creation, the README metadata check, the ``preupload`` query and the NDJSON ``commit``), answers every file as a
regular (non-LFS) upload so that its content travels inside the commit, and records every request. It listens on
127.0.0.1 only.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import sysconfig
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tests.tiny_fixtures import PAIRS_A, PAIRS_B, tiny_data  # noqa: F401  (re-exported for the publish tests)
from tests.tiny_fixtures import RecordingEvaluator as SharedRecordingEvaluator

# Longer than max_seq_length on purpose: truncation must behave the same before and after export.
PROBE_SENTENCES = PAIRS_A + PAIRS_B + [" ".join(["a very long sentence about nothing in particular"] * 8)]


class RecordingEvaluator(SharedRecordingEvaluator):
    """The shared recording evaluator over the probe sentences (including one longer than max_seq_length)."""

    def __init__(self) -> None:
        super().__init__(sentences=PROBE_SENTENCES)


def load_without_peft(folders: list[Path], work_dir: Path, sentences: list[str]) -> list[np.ndarray]:
    """Load each folder with ``SentenceTransformer`` in a fresh Python where peft is NOT installed; encode.

    The fresh interpreter runs without ``site`` (``-S``) on a copy of the virtualenv's site-packages made of symlinks,
    minus peft, so transformers and sentence-transformers see no peft at all (as on a user's machine without it). It
    also runs offline and with ``trust_remote_code=False``.
    """
    site_dir = work_dir / "site-without-peft"
    site_dir.mkdir(parents=True, exist_ok=True)
    for root in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}:
        for name in os.listdir(root):
            target = site_dir / name
            if name == "peft" or name.startswith("peft-") or target.exists():
                continue
            target.symlink_to(Path(root) / name)
    outputs = [work_dir / f"embeddings_{i}.npy" for i in range(len(folders))]
    code = (
        "import importlib.util, sys, numpy as np\n"
        "assert importlib.util.find_spec('peft') is None\n"
        "from sentence_transformers import SentenceTransformer\n"
        f"for folder, out in zip({[str(f) for f in folders]!r}, {[str(o) for o in outputs]!r}):\n"
        "    model = SentenceTransformer(folder, device='cpu', trust_remote_code=False)\n"
        "    assert model[0].auto_model.pooler is None\n"
        f"    np.save(out, model.encode({list(sentences)!r}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site_dir), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-S", "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "MISSING" not in proc.stderr, proc.stderr[-4000:]  # no weight newly initialised by the loader
    return [np.load(out) for out in outputs]


# ---------------------------------------------------------------------------------------------------------------------
# the Hub stand-in
# ---------------------------------------------------------------------------------------------------------------------
@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class HubStandIn:
    """A running stand-in server: its base URL, the requests it received and the files committed per repository."""

    url: str
    requests: list[RecordedRequest] = field(default_factory=list)
    telemetry: list[str] = field(default_factory=list)  # huggingface_hub's best-effort registry lookups
    repos: dict[str, dict[str, Any]] = field(default_factory=dict)
    commits: list[dict[str, Any]] = field(default_factory=list)

    def paths(self) -> list[tuple[str, str]]:
        return [(r.method, r.path) for r in self.requests]


def _handler(hub: HubStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # keep the test output clean
            return

        def _read_body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _reply(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _record(self, body: Any) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            hub.requests.append(RecordedRequest(self.command, self.path, headers, body))

        def do_GET(self) -> None:
            self._read_body()
            if self.path.split("?", 1)[0] == "/api/agent-harnesses":
                # huggingface_hub 2.4 looks up this registry once per process (for its progress display); it is
                # best effort and not part of publishing, so it is answered empty and kept apart
                hub.telemetry.append(self.path)
                self._reply(200, {})
                return
            self._record(None)
            self._reply(404, {"error": f"stand-in Hub: GET {self.path} is not implemented"})

        def do_POST(self) -> None:
            raw = self._read_body()
            path = self.path.split("?", 1)[0]
            if path == "/api/repos/create":
                body = json.loads(raw)
                self._record(body)
                repo_id = f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
                hub.repos[repo_id] = {"private": body.get("visibility") == "private", "files": {}}
                self._reply(200, {"url": f"{hub.url}/{repo_id}", "name": repo_id, "id": "0" * 24})
                return
            if path == "/api/validate-yaml":
                # huggingface_hub checks a README's metadata before uploading anything: parse it as the Hub would
                body = json.loads(raw)
                self._record(body)
                errors = []
                content = body.get("content", "")
                if content.startswith("---\n"):
                    try:
                        meta = yaml.safe_load(content.split("---\n", 2)[1])
                        if not isinstance(meta, dict):
                            errors.append({"message": "metadata is not a mapping"})
                    except yaml.YAMLError as exc:
                        errors.append({"message": f"invalid YAML: {exc}"})
                self._reply(400 if errors else 200, {"errors": errors, "warnings": []})
                return
            parts = path.split("/")
            # /api/models/<namespace>/<name>/<preupload|commit>/<revision>
            if len(parts) == 7 and parts[:3] == ["", "api", "models"] and parts[5] in ("preupload", "commit"):
                repo_id = f"{parts[3]}/{parts[4]}"
                if repo_id not in hub.repos:
                    self._record(raw.decode(errors="replace"))
                    self._reply(404, {"error": f"Repository {repo_id} not found"})
                    return
                if parts[5] == "preupload":
                    body = json.loads(raw)
                    self._record(body)
                    files = [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                        for f in body["files"]
                    ]
                    self._reply(200, {"files": files, "commitOid": "0" * 40})
                    return
                lines = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
                self._record(lines)
                commit = {"repo_id": repo_id, "revision": parts[6], "header": None, "files": {}, "other": []}
                for line in lines:
                    if line["key"] == "header":
                        commit["header"] = line["value"]
                    elif line["key"] == "file" and line["value"].get("encoding") == "base64":
                        commit["files"][line["value"]["path"]] = base64.b64decode(line["value"]["content"])
                    else:
                        commit["other"].append(line)
                hub.commits.append(commit)
                hub.repos[repo_id]["files"].update(commit["files"])
                oid = f"{len(hub.commits):040x}"
                self._reply(200, {"commitUrl": f"{hub.url}/{repo_id}/commit/{oid}", "commitOid": oid, "success": True})
                return
            self._record(raw.decode(errors="replace"))
            self._reply(404, {"error": f"stand-in Hub: POST {self.path} is not implemented"})

    return Handler


class RunningHub:
    """Context manager: start the stand-in on a free port of 127.0.0.1 in a thread, stop it on exit."""

    def __enter__(self) -> HubStandIn:
        self.hub = HubStandIn(url="")
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.hub))
        self.hub.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self.hub

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
