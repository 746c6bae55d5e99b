"""A tiny but real training recipe (tiny random BERTs, shipped text and captions, 40 STS-B dev pairs)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def write_inputs(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "wiki1m_slice.txt"
    lines = (REPO_ROOT / "data" / "demo" / "wiki1m_slice.txt").read_text(encoding="utf-8").splitlines()
    corpus.write_text("\n".join(lines[:24]) + "\n", encoding="utf-8")
    captions = folder / "captions.txt"
    lines = (REPO_ROOT / "data" / "demo" / "flickr30k_captions_slice.txt").read_text(encoding="utf-8").splitlines()
    captions.write_text("\n".join(lines[:12]) + "\n", encoding="utf-8")
    sts_dir = folder / "downstream" / "STS" / "STSBenchmark"
    sts_dir.mkdir(parents=True, exist_ok=True)
    dev = (REPO_ROOT / "data" / "senteval" / "downstream" / "STS" / "STSBenchmark" / "sts-dev.csv").read_text(
        encoding="utf-8"
    )
    (sts_dir / "sts-dev.csv").write_text("\n".join(dev.splitlines()[:40]) + "\n", encoding="utf-8")
    return {"corpus": corpus, "captions": captions, "downstream": folder / "downstream"}


@pytest.fixture()
def recipe(tmp_path, tiny_bert_dir, tiny_teacher_dir):
    """``recipe(**overrides)`` writes a tiny stand-in recipe YAML and returns ``["--config", path]``."""
    inputs = write_inputs(tmp_path / "inputs")
    counter = iter(range(1000))

    def make(**overrides) -> list[str]:
        config = {
            "student_model": tiny_bert_dir,
            "teachers": [tiny_teacher_dir],
            "teacher_weights": [1.0],
            "text_corpus": str(inputs["corpus"]),
            "stand_in_captions": str(inputs["captions"]),
            "stand_in_dim": 32,
            "eval_data_dir": str(inputs["downstream"]),
            "output_dir": str(tmp_path / "out"),
            "per_device_train_batch_size": 4,
            "max_steps": 4,
            "eval_steps": 2,
            "save_steps": 2,
            "save_strategy": "steps",
            "load_best_model_at_end": False,
            "save_total_limit": None,
            "logging_steps": 1,
            "report_to": "none",
            "export_dir": "none",
            "use_cpu": True,
        }
        config.update(overrides)
        config = {k: v for k, v in config.items() if v is not ...}
        path = tmp_path / f"recipe{next(counter)}.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        return ["--config", str(path)]

    make.inputs = inputs
    make.output_dir = tmp_path / "out"
    return make
