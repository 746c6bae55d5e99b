"""Tiny random BERTs, input files, stand-in recipes and feature stores on disk.

What the recipe-level tests train on (through the fixtures of tests/conftest.py) and what
benchmarks/robustness_matrix.py builds its cases from. Light to import: the libraries are imported where used.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def save_tiny_bert(path: str, tokenizer_source: str, hidden: int = 32, layers: int = 2, seed: int = 0) -> str:
    """A randomly initialised BERT (``seed``) with the tokenizer of ``tokenizer_source``, saved to ``path``."""
    import torch
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


def _write_head(source: Path, target: Path, lines: int) -> Path:
    """The first ``lines`` lines of the shipped file ``source`` (relative to data/), written to ``target``."""
    head = (REPO_ROOT / "data" / source).read_text(encoding="utf-8").splitlines()[:lines]
    target.write_text("\n".join(head) + "\n", encoding="utf-8")
    return target


def write_inputs(folder: Path, corpus_lines: int = 24, caption_lines: int = 12, sts_lines: int = 40) -> dict[str, Path]:
    """Slices of the shipped data in ``folder``: the Wikipedia corpus, Flickr30k captions and an STS-B dev set
    (``downstream/STS/STSBenchmark/sts-dev.csv``, its header and the first pairs). Returns their paths by name:
    ``corpus``, ``captions`` and ``downstream`` (the folder to pass as ``eval_data_dir``)."""
    sts_dir = folder / "downstream" / "STS" / "STSBenchmark"
    sts_dir.mkdir(parents=True, exist_ok=True)
    _write_head(
        Path("senteval", "downstream", "STS", "STSBenchmark", "sts-dev.csv"), sts_dir / "sts-dev.csv", sts_lines
    )
    return {
        "corpus": _write_head(Path("demo", "wiki1m_slice.txt"), folder / "wiki1m_slice.txt", corpus_lines),
        "captions": _write_head(Path("demo", "flickr30k_captions_slice.txt"), folder / "captions.txt", caption_lines),
        "downstream": folder / "downstream",
    }


def stand_in_recipe(student: str, teacher: str, inputs: dict[str, Path], output_dir: Path, **overrides) -> dict:
    """A short CPU recipe (4 steps of batch 4, an STS-B dev evaluation and a checkpoint every 2 steps, no export)
    training ``student`` with ``teacher`` on ``inputs`` (see :func:`write_inputs`) and STAND-IN image features of
    the captions; ``overrides`` replace or add keys."""
    config = {
        "student_model": student,
        "teachers": [teacher],
        "teacher_weights": [1.0],
        "text_corpus": str(inputs["corpus"]),
        "stand_in_captions": str(inputs["captions"]),
        "stand_in_dim": 32,
        "eval_data_dir": str(inputs["downstream"]),
        "output_dir": str(output_dir),
        "per_device_train_batch_size": 4,
        "max_steps": 4,
        "eval_steps": 2,
        "save_strategy": "steps",
        "save_steps": 2,
        "load_best_model_at_end": False,
        "save_total_limit": None,
        "logging_steps": 1,
        "report_to": "none",
        "export_dir": "none",
        "use_cpu": True,
    }
    config.update(overrides)
    return config


def save_tiny_feature_store(folder: Path, features, captions_per_image: int = 1) -> str:
    """A feature store of the given image features (one row each), ``captions_per_image`` rows per image id and a
    numbered caption per row, without CLIP behind it; returns its folder."""
    from dalr_hf.features import save_feature_store

    n = len(features)
    save_feature_store(
        {
            "image_id": [f"i{k // captions_per_image}" for k in range(n)],
            "caption": [f"a caption {k}" for k in range(n)],
            "image_features": features,
        },
        folder,
        {"model": "test", "pretrained": None, "weights_sha256": None, "normalized": False, "source": "test"},
    )
    return str(folder)
