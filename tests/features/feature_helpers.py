"""Helpers of the frozen-feature tests: small generated images and caption files in every supported format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

# Six images, three captions each (the third image has its captions listed out of order in the token file).
IMAGES = [f"{1000 + i}.jpg" for i in range(6)]
CAPTIONS = {name: [f"photo {i} caption {k} with a dog" for k in range(3)] for i, name in enumerate(IMAGES)}
# The metadata of a stand-in feature store (random unit-norm features in open_clip's layout, no CLIP model behind them).
STAND_IN_META = {
    "model": "stand-in",
    "pretrained": None,
    "weights_sha256": None,
    "normalized": True,
    "source": "open_clip",
    "stand_in": True,
}
SMALLEST_BUILTIN_CLIP = "ViT-S-32-alt"  # the smallest built-in open_clip config (~43M parameters)
# A 2-layer CLIP of open_clip's own architecture (CLIP class, SimpleTokenizer), loaded through open_clip's
# 'local-dir:' schema: a folder with open_clip_config.json and no weights gives a random (seeded) model, offline.
TINY_CLIP_CONFIG = {
    "model_cfg": {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
        "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    },
    "preprocess_cfg": {},
}


def write_tiny_clip(folder: Path) -> str:
    """A tiny open_clip model folder; returns its open_clip model name ('local-dir:<folder>')."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps(TINY_CLIP_CONFIG), encoding="utf-8")
    return f"local-dir:{folder}"


def write_images(folder: Path, names=IMAGES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, name in enumerate(names):
        size = (32, 32) if i % 2 == 0 else (48, 32)
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name, format="JPEG" if name.endswith(".jpg") else "PNG")
    return folder


def write_flickr_token(path: Path, captions=CAPTIONS) -> Path:
    lines = []
    for i, (name, caps) in enumerate(captions.items()):
        order = [2, 0, 1] if i == 2 else range(len(caps))
        lines += [f"{name}#{k}\t{caps[k]}" for k in order]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_karpathy(path: Path, captions=CAPTIONS, split_of=None, coco: bool = False) -> Path:
    images = []
    for i, (name, caps) in enumerate(captions.items()):
        entry = {
            "filename": name,
            "imgid": i,
            "split": (split_of or {}).get(name, "train"),
            "sentences": [{"raw": c, "tokens": c.split()} for c in caps],
        }
        if coco:
            entry.update({"filepath": "train2014", "cocoid": 500 + i})
        images.append(entry)
    path.write_text(json.dumps({"images": images, "dataset": "coco" if coco else "flickr30k"}), encoding="utf-8")
    return path


def write_coco(path: Path, captions=CAPTIONS) -> Path:
    images, annotations = [], []
    for i, (name, caps) in enumerate(captions.items()):
        images.append({"id": 500 + i, "file_name": name, "width": 32, "height": 32})
        annotations += [{"image_id": 500 + i, "id": 10 * i + k, "caption": c + " \n"} for k, c in enumerate(caps)]
    path.write_text(json.dumps({"info": {}, "images": images, "annotations": annotations}), encoding="utf-8")
    return path


def kdmcse_entries(n: int = 3, dim: int = 4, seed: int = 0) -> dict:
    """A small KDMCSE-format feature file's content: ``n`` images, two captions each, random features."""
    rng = np.random.default_rng(seed)
    return {
        f"k{i}": {
            "image": f"{i}.jpg",
            "image_feat": rng.normal(size=dim).tolist(),
            "captions": ["one", "two"],
            "lang_feat": rng.normal(size=(2, dim)).tolist(),
        }
        for i in range(n)
    }
