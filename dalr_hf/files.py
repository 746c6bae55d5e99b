"""Facts about the files dalr_hf writes, defined once: their names, the checkpoint folder pattern, SHA-256 and
atomic JSON writing. Every module that reads or writes these files imports them from here."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

# Training state kept beside the model in output and checkpoint folders; never part of a published model.
HEADS_FILE = "dalr_training_heads.safetensors"
MANIFEST_FILE = "dalr_checkpoint.json"
LORA_ADAPTER_FILE = "dalr_lora_adapter.safetensors"
LORA_CONFIG_FILE = "dalr_lora_config.json"
SCHEDULE_FILE = "dalr_schedule.json"
RUN_REPORT_FILE = "dalr_run_report.json"
CARD_DATA_FILE = "dalr_card_data.json"
TRAINING_ONLY_FILES = (
    HEADS_FILE,
    MANIFEST_FILE,
    LORA_ADAPTER_FILE,
    LORA_CONFIG_FILE,
    SCHEDULE_FILE,
    RUN_REPORT_FILE,
    CARD_DATA_FILE,
)

# transformers' checkpoint folders: checkpoint-<global step>
CHECKPOINT_DIR_RE = re.compile(r"^checkpoint-(\d+)$")


def json_sha256(value: Any) -> str:
    """sha256 of a JSON value with sorted keys (a stable identity for configurations)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def file_sha256(path: str | os.PathLike, chunk_size: int = 1 << 22) -> str:
    """sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json_atomic(path: str | os.PathLike, value: Any, indent: int = 2) -> None:
    """Write JSON to ``path`` via a temporary file, fsync and ``os.replace``, so readers never see half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=indent, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
