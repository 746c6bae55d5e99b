"""CLIP image and caption features with any open_clip model, streamed to a resumable feature store.

Frozen CLIP in eval mode is deterministic, so its outputs are computed once and stored as data (design.md "Data
flow"). Images are processed in shards of ``shard_size`` images; each shard is encoded in batches, written as Arrow
and validated, so memory is bounded by one shard whatever the dataset size, and a rerun of an interrupted job reuses
the complete shards. Batches never straddle shards, so a resumed run computes exactly the batches an uninterrupted
run would, and the features are identical bit for bit.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from datasets import Dataset
from PIL import Image
from torch import Tensor
from tqdm.auto import tqdm

from dalr_hf.features.captions import CaptionedImage, CaptionIndex, read_captions
from dalr_hf.features.store import (
    FEATURE_STORE_FORMAT,
    FEATURE_STORE_METADATA,
    FEATURE_STORE_VERSION,
    ShardedWriter,
    feature_store_features,
    fixed_size_array,
    l2_normalize,
    load_feature_store,
    run_config_entries,
    store_already_made,
)

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16")
MISSING_IMAGE_POLICIES = ("error", "skip")
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# How many skipped file names the metadata lists (the count is always complete).
_MAX_LISTED_SKIPS = 100


def state_dict_sha256(module: torch.nn.Module) -> str:
    """sha256 over a module's state dict (names, dtypes, shapes and raw bytes, in sorted name order)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))
    return digest.hexdigest()


class ClipEncoder:
    """A frozen open_clip model, its inference transform and tokenizer, and the checksum of its weights.

    ``pretrained`` is an open_clip tag (``"openai"``, ``"laion2b_s32b_b82k"``, ``"webli"`` ...), a local weights file,
    or ``None`` for a randomly initialised model (seeded with ``init_seed``, so it is reproducible; nothing is
    downloaded). Outputs are float32 whatever ``precision`` the forward pass runs in.
    """

    def __init__(
        self,
        model_name: str = "ViT-L-14",
        pretrained: str | None = "openai",
        *,
        device: str | torch.device | None = None,
        precision: str = "fp32",
        cache_dir: str | None = None,
        init_seed: int = 0,
    ) -> None:
        import open_clip

        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.model_name = model_name
        self.pretrained = pretrained or None
        self.precision = precision
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.init_seed = init_seed if self.pretrained is None else None
        kwargs: dict[str, Any] = {}
        if self.pretrained is None:
            # open_clip would otherwise fetch base weights for HF-text towers; a random model must stay offline.
            kwargs["pretrained_text"] = False
        hint = (
            "Pretrained weights and some tokenizers come from the Hugging Face Hub: download them once online "
            "(they are cached), or pass a local weights file as `pretrained`."
        )
        # the tokenizer first: it fails fast (e.g. a SigLIP tokenizer not cached while offline), the model is slow
        try:
            self.tokenizer = open_clip.get_tokenizer(model_name, cache_dir=cache_dir)
        except (OSError, RuntimeError, ValueError) as e:
            raise RuntimeError(f"could not load the tokenizer of open_clip model {model_name!r}: {e}. {hint}") from e
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(init_seed)
                model, _, preprocess = open_clip.create_model_and_transforms(
                    model_name, pretrained=self.pretrained, device=self.device, cache_dir=cache_dir, **kwargs
                )
        except (OSError, RuntimeError) as e:
            raise RuntimeError(
                f"could not create open_clip model {model_name!r} with pretrained={self.pretrained!r}: {e}. {hint}"
            ) from e
        model.eval()
        model.requires_grad_(False)
        self.model = model
        self.preprocess = preprocess
        self.weights_sha256 = state_dict_sha256(model)
        self.open_clip_version = getattr(open_clip, "__version__", "unknown")
        self._dims: tuple[int, int] | None = None

    def _autocast(self):
        dtype = _AUTOCAST_DTYPES.get(self.precision)
        return torch.autocast(device_type=self.device.type, dtype=dtype) if dtype is not None else nullcontext()

    def load_image(self, path: str | os.PathLike) -> Tensor:
        """The model's inference transform (resize, centre crop, normalise) of an RGB image file."""
        with Image.open(path) as image:
            return self.preprocess(image.convert("RGB"))

    def encode_images(self, pixels: Tensor) -> Tensor:
        """(N, D) float32 raw (unnormalised) image embeddings."""
        with torch.inference_mode(), self._autocast():
            return self.model.encode_image(pixels.to(self.device)).float().cpu()

    def encode_texts(self, texts: Sequence[str]) -> Tensor:
        """(N, D) float32 raw (unnormalised) text embeddings, with open_clip's tokenizer for this model."""
        tokens = self.tokenizer(list(texts))
        with torch.inference_mode(), self._autocast():
            return self.model.encode_text(tokens.to(self.device)).float().cpu()

    @property
    def dims(self) -> tuple[int, int]:
        """(image dim, text dim), from one forward pass on a blank image and a one-word caption."""
        if self._dims is None:
            blank = self.preprocess(Image.new("RGB", (32, 32)))
            self._dims = (int(self.encode_images(blank[None]).shape[1]), int(self.encode_texts(["a"]).shape[1]))
        return self._dims

    def describe(self) -> dict[str, Any]:
        """Identity of this encoder's outputs, for the store metadata and the resume check."""
        preprocess_cfg = dict(getattr(self.model.visual, "preprocess_cfg", {}) or {})
        return {
            "model": self.model_name,
            "pretrained": self.pretrained,
            "weights_sha256": self.weights_sha256,
            "random_init_seed": self.init_seed,
            "precision": self.precision,
            "device_type": self.device.type,
            "preprocess": {k: list(v) if isinstance(v, tuple) else v for k, v in preprocess_cfg.items()},
            "tokenizer": type(self.tokenizer).__name__,
            "context_length": getattr(self.tokenizer, "context_length", None),
            "open_clip_version": self.open_clip_version,
        }


class _ImageFiles(torch.utils.data.Dataset):
    """Loads and transforms image files; a file that cannot be read yields its error instead of a tensor."""

    def __init__(self, paths: Sequence[Path], transform) -> None:
        self.paths = list(paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, Tensor | None, str | None, bool]:
        try:
            with Image.open(self.paths[index]) as image:
                return index, self.transform(image.convert("RGB")), None, False
        except FileNotFoundError as e:
            return index, None, str(e), True
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            return index, None, f"{type(e).__name__}: {e}", False


def _as_list(batch: list) -> list:
    return batch


def _image_paths(images_dir: Path, items: Iterable[CaptionedImage]) -> list[Path]:
    subdir_exists: dict[str, bool] = {}
    paths = []
    for item in items:
        if item.subdir:
            if item.subdir not in subdir_exists:
                subdir_exists[item.subdir] = (images_dir / item.subdir).is_dir()
            if subdir_exists[item.subdir]:
                paths.append(images_dir / item.subdir / item.file_name)
                continue
        paths.append(images_dir / item.file_name)
    return paths


def _plan_key(items: Sequence[CaptionedImage]) -> str:
    digest = hashlib.sha256()
    for item in items:
        for part in (item.image_id, item.subdir, item.file_name, *item.captions):
            data = part.encode()
            digest.update(len(data).to_bytes(8, "little"))
            digest.update(data)
        digest.update(b"\x00")
    return digest.hexdigest()


def _check_finite(features: np.ndarray, names: Sequence[str], what: str) -> None:
    bad = ~np.isfinite(features).all(axis=1)
    if bad.any():
        culprits = [names[i] for i in np.flatnonzero(bad)[:5]]
        raise ValueError(
            f"the {what} features of {culprits} contain NaN/Inf (fp16 overflow? try precision='bf16' or 'fp32')"
        )


def _extract_shard(
    encoder: ClipEncoder,
    items: Sequence[CaptionedImage],
    paths: Sequence[Path],
    bar,
    *,
    batch_size: int,
    num_workers: int,
    normalize: bool,
    caption_features: bool,
    on_missing_image: str,
) -> tuple[dict[str, Any], dict[str, Any]]:
    image_dim, caption_dim = encoder.dims
    loader = torch.utils.data.DataLoader(
        _ImageFiles(paths, encoder.preprocess),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_as_list,
        shuffle=False,
    )
    kept: list[int] = []
    blocks: list[np.ndarray] = []
    skipped: list[str] = []
    for batch in loader:
        good = []
        for index, tensor, error, missing in batch:
            if error is None:
                good.append((index, tensor))
                continue
            where = f"image file {str(paths[index])!r} (image_id {items[index].image_id!r})"
            if on_missing_image == "error":
                hint = "pass on_missing_image='skip' (--on-missing-image skip) to leave such images out with a count"
                if missing:
                    raise FileNotFoundError(f"{where} does not exist; {hint}")
                raise ValueError(f"{where} cannot be read ({error}); {hint}")
            logger.warning("skipping %s: %s", where, error)
            skipped.append(items[index].file_name)
        if good:
            features = encoder.encode_images(torch.stack([t for _, t in good])).numpy()
            _check_finite(features, [items[i].file_name for i, _ in good], "image")
            blocks.append(features)
            kept.extend(i for i, _ in good)
        bar.update(len(batch))
    image_features = np.concatenate(blocks) if blocks else np.zeros((0, image_dim), np.float32)
    if normalize:
        image_features = l2_normalize(image_features)
    counts = np.array([len(items[i].captions) for i in kept], dtype=np.int64)
    captions = [c for i in kept for c in items[i].captions]
    columns: dict[str, Any] = {
        "image_id": pa.array([items[i].image_id for i in kept for _ in items[i].captions], pa.string()),
        "caption": pa.array(captions, pa.string()),
        "image_features": fixed_size_array(np.repeat(image_features, counts, axis=0)),
    }
    if caption_features:
        text_blocks = []
        for start in range(0, len(captions), batch_size):
            chunk = captions[start : start + batch_size]
            features = encoder.encode_texts(chunk).numpy()
            _check_finite(features, chunk, "caption")
            text_blocks.append(features)
        text = np.concatenate(text_blocks) if text_blocks else np.zeros((0, caption_dim), np.float32)
        columns["caption_features"] = fixed_size_array(l2_normalize(text) if normalize else text)
    return columns, {"num_images": len(kept), "skipped_images": skipped}


def extract_features(
    images_dir: str | os.PathLike,
    captions_file: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    model_name: str = "ViT-L-14",
    pretrained: str | None = "openai",
    caption_format: str = "auto",
    split: str | Sequence[str] | None = "train",
    image_list: str | os.PathLike | Iterable[str] | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    normalize: bool = True,
    caption_features: bool = True,
    shard_size: int = 1024,
    num_workers: int = 0,
    on_missing_image: str = "error",
    on_empty_caption: str = "error",
    overwrite: bool = False,
    progress: bool = True,
    cache_dir: str | None = None,
    init_seed: int = 0,
    encoder: ClipEncoder | None = None,
) -> tuple[Dataset, dict]:
    """Extract CLIP image and caption features into a feature store at ``output_dir``; return ``(dataset, metadata)``.

    One row per (image, caption), every caption of every image. Work is written in shards of ``shard_size`` images
    under ``output_dir/_partial``; rerunning the same call after an interruption reuses the complete shards and
    gives the same store as an uninterrupted run. A complete store made with the same configuration is returned as
    is; one made with another configuration is refused unless ``overwrite``.

    Args:
        images_dir: folder of the image files named by the caption file (Karpathy COCO ``filepath`` subfolders are
            used when they exist under it).
        captions_file, caption_format, split, image_list, on_empty_caption: see :func:`read_captions`.
        model_name, pretrained: any open_clip model and pretrained tag or weights file; ``pretrained=None`` gives a
            random, ``init_seed``-seeded model (tests, benchmarks).
        batch_size: images (and captions) per forward pass.
        device, precision: where and in what precision (``fp32``, ``bf16``, ``fp16`` autocast) CLIP runs.
        normalize: L2-normalise the stored image and caption features (recorded in the metadata).
        caption_features: also store CLIP caption features (DALR's loss does not need them; KDMCSE's does).
        shard_size: images per shard (the unit of resume and the bound on memory).
        num_workers: DataLoader workers decoding images.
        on_missing_image: ``"error"`` (raise naming the file) or ``"skip"`` (leave it out, log, count in metadata).
        encoder: an already loaded :class:`ClipEncoder`; when given, ``model_name``, ``pretrained``, ``device``,
            ``precision``, ``cache_dir`` and ``init_seed`` are taken from it.
    """
    if on_missing_image not in MISSING_IMAGE_POLICIES:
        raise ValueError(f"on_missing_image must be one of {MISSING_IMAGE_POLICIES}, got {on_missing_image!r}")
    if batch_size < 1 or shard_size < 1:
        raise ValueError(f"batch_size and shard_size must be >= 1, got {batch_size} and {shard_size}")
    images_dir, output_dir = Path(images_dir), Path(output_dir)
    if not images_dir.is_dir():
        raise FileNotFoundError(f"image folder {str(images_dir)!r} does not exist")
    index: CaptionIndex = read_captions(captions_file, caption_format, split, image_list, on_empty_caption)
    items = index.images
    if encoder is None:
        encoder = ClipEncoder(
            model_name, pretrained, device=device, precision=precision, cache_dir=cache_dir, init_seed=init_seed
        )
    identity = encoder.describe()
    run_config = {
        "kind": "extract_features",
        **identity,
        "plan_sha256": _plan_key(items),
        "num_planned_images": len(items),
        "normalize": normalize,
        "caption_features": caption_features,
        "shard_size": shard_size,
        "batch_size": batch_size,
        "on_missing_image": on_missing_image,
    }
    if store_already_made(output_dir, FEATURE_STORE_METADATA, run_config, overwrite, "feature store"):
        return load_feature_store(output_dir)
    writer = ShardedWriter(output_dir, run_config, what="feature extraction", overwrite=overwrite)
    writer.open()

    image_dim, caption_dim = encoder.dims
    features = feature_store_features(image_dim, caption_dim if caption_features else None)
    paths = _image_paths(images_dir, items)
    num_shards = (len(items) + shard_size - 1) // shard_size
    manifests: list[dict] = []
    computed_images = 0
    start_time = time.perf_counter()
    with tqdm(total=len(items), unit="img", desc="CLIP features", disable=not progress) as bar:
        for shard in range(num_shards):
            lo, hi = shard * shard_size, min(len(items), (shard + 1) * shard_size)
            key = _plan_key(items[lo:hi])
            manifest = writer.completed(shard, key)
            if manifest is None:
                columns, extra = _extract_shard(
                    encoder,
                    items[lo:hi],
                    paths[lo:hi],
                    bar,
                    batch_size=batch_size,
                    num_workers=num_workers,
                    normalize=normalize,
                    caption_features=caption_features,
                    on_missing_image=on_missing_image,
                )
                manifest = writer.write(shard, key, columns, features, extra)
                computed_images += hi - lo
            else:
                bar.update(hi - lo)
            manifests.append(manifest)
    elapsed = time.perf_counter() - start_time
    logger.info(
        "feature extraction: reused %d shard(s), computed %d (%d images, %.1f images/s)",
        writer.reused,
        writer.written,
        computed_images,
        computed_images / elapsed if elapsed > 0 else float("nan"),
    )

    skipped = [name for m in manifests for name in m["skipped_images"]]
    if skipped:
        logger.warning("%d image(s) could not be read and were left out (on_missing_image='skip')", len(skipped))
    metadata = {
        "format": FEATURE_STORE_FORMAT,
        "version": FEATURE_STORE_VERSION,
        "model": identity["model"],
        "pretrained": identity["pretrained"],
        "weights_sha256": identity["weights_sha256"],
        "image_dim": image_dim,
        "caption_dim": caption_dim if caption_features else None,
        "normalized": normalize,
        "num_images": sum(m["num_images"] for m in manifests),
        "num_rows": sum(m["num_rows"] for m in manifests),
        "source": "open_clip",
        "caption_format": index.caption_format,
        "caption_file": Path(captions_file).name,
        "splits": index.splits,
        "skipped_images": len(skipped),
        "skipped_image_files": skipped[:_MAX_LISTED_SKIPS],
        "empty_captions_skipped": index.stats.get("empty_captions_skipped", 0),
        "images_without_captions": index.stats.get("images_without_captions", 0),
        **run_config_entries(run_config),
        **{
            k: identity[k]
            for k in ("precision", "preprocess", "tokenizer", "context_length", "open_clip_version", "random_init_seed")
        },
    }
    writer.assemble(num_shards, FEATURE_STORE_METADATA, metadata)
    return load_feature_store(output_dir)
