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


def build_stand_in_feature_store(
    captions_file: str, teacher, output_dir: str, dim: int = 384, seed: int = 0, batch_size: int = 128
) -> str:
    """Write a feature store (see :mod:`dalr_hf.features`) with stand-in image features; returns its path."""
    from datasets import Dataset

    from dalr_hf.features import save_feature_store

    captions = read_caption_lines(captions_file)
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
        "captions_file": os.path.basename(captions_file),
    }
    save_feature_store(dataset, output_dir, metadata)
    logger.warning(
        "built STAND-IN image features for %d captions in %s: %s", len(captions), output_dir, STAND_IN_DESCRIPTION
    )
    return output_dir
