"""Checkpoint integrity: a manifest written last, verified before a resume.

A checkpoint folder is complete when ``dalr_checkpoint.json`` exists: it is written atomically after every other
file, and lists each file's size and SHA-256 together with the run's identity (method configuration, schedule,
student and heads shapes, teachers). A folder without it was interrupted while saving (a crash, a full disk); a
folder whose files do not match it was truncated or altered; a folder whose identity differs belongs to another
configuration. All three are refused with an error that says which, never half-loaded.
"""

from __future__ import annotations

import json
import logging
import os

from dalr_hf.files import CHECKPOINT_DIR_RE, HEADS_FILE, MANIFEST_FILE, file_sha256, write_json_atomic

__all__ = [
    "HEADS_FILE",
    "LOSS_RNG_KEY",
    "MANIFEST_FILE",
    "CheckpointError",
    "last_complete_checkpoint",
    "verify_checkpoint",
    "write_manifest",
]

logger = logging.getLogger(__name__)

LOSS_RNG_KEY = "__loss_rng_state__"


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from: incomplete, truncated, altered, or from another configuration."""


def _files(folder: str) -> list[str]:
    found = []
    for root, _, names in os.walk(folder):
        for name in names:
            rel = os.path.relpath(os.path.join(root, name), folder)
            if rel != MANIFEST_FILE and not rel.endswith(".tmp"):
                found.append(rel)
    return sorted(found)


def write_manifest(folder: str, identity: dict, global_step: int) -> str:
    """Record every file of ``folder`` (size, SHA-256) and the run identity; atomic (write, fsync, rename)."""
    files = {}
    for rel in _files(folder):
        path = os.path.join(folder, rel)
        files[rel] = {"size": os.path.getsize(path), "sha256": file_sha256(path)}
    manifest = {
        "format": "dalr_hf.checkpoint",
        "version": 1,
        "global_step": global_step,
        "identity": identity,
        "files": files,
    }
    target = os.path.join(folder, MANIFEST_FILE)
    write_json_atomic(target, manifest, indent=1)
    return target


def _differences(expected, actual, prefix: str = "") -> list[str]:
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = []
        for key in sorted(set(expected) | set(actual)):
            out += _differences(expected.get(key), actual.get(key), f"{prefix}{key}.")
        return out
    if expected != actual:
        return [f"{prefix.rstrip('.')}: this run has {expected!r}, the checkpoint {actual!r}"]
    return []


def verify_checkpoint(folder: str, identity: dict | None = None, check_hashes: bool = True) -> dict:
    """Return the manifest of a complete, intact checkpoint of this configuration; raise CheckpointError otherwise."""
    if not os.path.isdir(folder):
        raise CheckpointError(f"checkpoint {folder} does not exist")
    path = os.path.join(folder, MANIFEST_FILE)
    if not os.path.isfile(path):
        raise CheckpointError(
            f"checkpoint {folder} is incomplete: {MANIFEST_FILE} is missing, so saving it never finished (a crash or a "
            "full disk); resume from an earlier checkpoint"
        )
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint {folder}: {MANIFEST_FILE} is unreadable ({exc})") from exc
    for rel, expected in manifest.get("files", {}).items():
        file_path = os.path.join(folder, rel)
        if not os.path.isfile(file_path):
            raise CheckpointError(f"checkpoint {folder} is damaged: {rel} is missing")
        size = os.path.getsize(file_path)
        if size != expected["size"]:
            raise CheckpointError(
                f"checkpoint {folder} is truncated or altered: {rel} has {size} bytes, the manifest says "
                f"{expected['size']}"
            )
        if check_hashes and file_sha256(file_path) != expected["sha256"]:
            raise CheckpointError(f"checkpoint {folder} is corrupt: {rel} does not match its SHA-256 in the manifest")
    if identity is not None:
        differences = _differences(identity, manifest.get("identity", {}))
        if differences:
            raise CheckpointError(
                f"checkpoint {folder} comes from another configuration:\n  " + "\n  ".join(differences[:20])
            )
    return manifest


def _checkpoint_names_newest_first(output_dir: str) -> list[str]:
    """The ``checkpoint-N`` folder names of ``output_dir`` (none if it does not exist), highest step first."""
    if not os.path.isdir(output_dir):
        return []
    steps = sorted(
        ((int(m.group(1)), name) for name in os.listdir(output_dir) if (m := CHECKPOINT_DIR_RE.match(name))),
        reverse=True,
    )
    return [name for _, name in steps]


def last_complete_checkpoint(output_dir: str) -> str | None:
    """The highest-step ``checkpoint-N`` folder of ``output_dir`` whose manifest verifies (sizes only); logs skips."""
    for name in _checkpoint_names_newest_first(output_dir):
        folder = os.path.join(output_dir, name)
        try:
            verify_checkpoint(folder, check_hashes=False)
        except CheckpointError as exc:
            logger.warning("skipping %s", exc)
            continue
        return folder
    return None


def resumable_checkpoint(output_dir: str, identity: dict | None) -> str | None:
    """The newest ``checkpoint-N`` of ``output_dir`` that is complete and intact (sizes and SHA-256), with a warning
    for every newer one skipped. A checkpoint of another run or configuration is not skipped: it is refused."""
    for name in _checkpoint_names_newest_first(output_dir):
        folder = os.path.join(output_dir, name)
        try:
            verify_checkpoint(folder)
        except CheckpointError as exc:
            logger.warning("not resuming from %s: %s; trying the previous checkpoint", name, exc)
            continue
        verify_checkpoint(folder, identity, check_hashes=False)
        return folder
    return None


def check_schedule_position(folder: str, manifest: dict, total_steps: int | None) -> None:
    """A checkpoint resumes a run at its step: the folder name, the manifest and the trainer state must agree, and
    the step must lie before the end of this run's schedule."""
    step = manifest.get("global_step")
    match = CHECKPOINT_DIR_RE.match(os.path.basename(os.path.normpath(folder)))
    if match and step is not None and int(match.group(1)) != step:
        raise CheckpointError(f"checkpoint {folder} holds step {step} according to its manifest, not {match.group(1)}")
    state_path = os.path.join(folder, "trainer_state.json")
    if os.path.isfile(state_path):
        with open(state_path) as f:
            state_step = json.load(f).get("global_step")
        if step is not None and state_step != step:
            raise CheckpointError(
                f"checkpoint {folder}: trainer_state.json is at step {state_step}, the manifest at step {step}"
            )
    if total_steps is not None and step is not None and total_steps > 0 and step >= total_steps:
        raise CheckpointError(
            f"checkpoint {folder} is at step {step}, at or past the end of this run's schedule ({total_steps} steps): "
            "that run has finished; there is nothing to resume"
        )
