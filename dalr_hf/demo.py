"""Stand-in image features for the offline demo and tests.

No CLIP weights and no images can be had offline, so the demo builds a feature store whose "image features" are a
fixed random projection of a frozen teacher's caption embeddings. They carry the captions' semantics (so the
cross-modal terms have signal to align to), but they are NOT features of images: the store's metadata says
``stand_in: true`` and every consumer logs it. A real run differs only in the feature source
(``dalr-hf extract-features`` or ``dalr-hf import-kdmcse``).
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

STAND_IN_DESCRIPTION = "fixed random Gaussian projection of a frozen teacher's caption embeddings (not image features)"


def read_caption_lines(path: str) -> list[str]:
    """One caption per line; an empty line is an error that names the line (line n is image n)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"captions file {path!r} does not exist (expected one caption per line)")
    with open(path, encoding="utf-8") as f:
        captions = [line.rstrip("\n") for line in f]
    empty = [i + 1 for i, c in enumerate(captions) if not c.strip()]
    if empty:
        raise ValueError(
            f"{path}: {len(empty)} empty caption line(s), first at line(s) {empty[:10]}; every line "
            "is the caption of one image"
        )
    if not captions:
        raise ValueError(f"{path} holds no captions")
    return captions


def stand_in_image_features(caption_embeddings: torch.Tensor, dim: int, seed: int = 0) -> torch.Tensor:
    """``normalize(E · W)`` with ``W ~ N(0, 1/H)`` of shape (H, dim), fixed by ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    hidden = caption_embeddings.size(1)
    projection = torch.randn(hidden, dim, generator=generator) / hidden**0.5
    return F.normalize(caption_embeddings.float().cpu() @ projection, dim=-1)


def stand_in_fingerprint(captions_file: str, teacher, dim: int, seed: int) -> dict:
    """What a stand-in store is made from: the captions' content, the teacher's outputs, the width and the seed."""
    import hashlib

    digest = hashlib.sha256()
    with open(captions_file, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    fingerprint = teacher.fingerprint()
    return {
        "captions_sha256": digest.hexdigest(),
        "teacher": {k: fingerprint.get(k) for k in ("weights_sha256", "pooler", "max_length", "hidden_size")},
        "image_dim": dim,
        "seed": seed,
    }


def build_stand_in_feature_store(
    captions_file: str, teacher, output_dir: str, dim: int = 384, seed: int = 0, batch_size: int = 128
) -> str:
    """Write a feature store (see :mod:`dalr_hf.features`) with stand-in image features; returns its path.

    A store already in ``output_dir`` that was built from the same inputs (captions content, teacher, ``dim``,
    ``seed``) is reused, so a recipe can be rerun or resumed; one built from other inputs is refused. The store is
    built beside ``output_dir`` and moved into place only once it is complete.
    """
    from datasets import Dataset

    from dalr_hf.atomic import replace_folder
    from dalr_hf.features import save_feature_store
    from dalr_hf.features.store import FEATURE_STORE_METADATA

    captions = read_caption_lines(captions_file)
    fingerprint = stand_in_fingerprint(captions_file, teacher, dim, seed)
    metadata_path = os.path.join(output_dir, FEATURE_STORE_METADATA)
    if os.path.isfile(metadata_path):
        import json

        with open(metadata_path, encoding="utf-8") as f:
            existing = json.load(f).get("stand_in_fingerprint")
        if existing == fingerprint:
            logger.warning("reusing the STAND-IN image features in %s (built from the same inputs)", output_dir)
            return output_dir
        changed = sorted(k for k in fingerprint if not isinstance(existing, dict) or existing.get(k) != fingerprint[k])
        raise FileExistsError(
            f"{output_dir} holds stand-in features built from other inputs (different {', '.join(changed)}); "
            "delete that folder to rebuild them, or use another output_dir"
        )
    if os.path.isdir(output_dir) and os.listdir(output_dir):
        raise FileExistsError(
            f"{output_dir} exists but holds no complete feature store; delete it to rebuild the stand-in features"
        )
    embeddings = teacher.encode(captions, batch_size=batch_size)
    features = stand_in_image_features(embeddings, dim, seed).numpy().astype(np.float32)
    dataset = Dataset.from_dict(
        {
            "image_id": [f"image-{i:06d}" for i in range(len(captions))],
            "caption": captions,
            "image_features": list(features),
        }
    )
    metadata = {
        "model": f"stand-in:{teacher.name}",
        "pretrained": None,
        "weights_sha256": teacher.fingerprint()["weights_sha256"],
        "image_dim": dim,
        "caption_dim": None,
        "normalized": True,
        "num_images": len(captions),
        "num_rows": len(captions),
        "source": "stand_in",
        "stand_in": True,
        "stand_in_description": STAND_IN_DESCRIPTION,
        "stand_in_seed": seed,
        "stand_in_fingerprint": fingerprint,
        "captions_file": os.path.basename(captions_file),
    }
    with replace_folder(output_dir) as building:
        save_feature_store(dataset, building, metadata)
    logger.warning(
        "built STAND-IN image features for %d captions in %s: %s", len(captions), output_dir, STAND_IN_DESCRIPTION
    )
    return output_dir
