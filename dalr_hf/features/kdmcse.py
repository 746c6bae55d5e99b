"""Import of KDMCSE/DALR precomputed CLIP feature files (``flickr30k_ViT_L14.json``, ``train_coco_ViT_L14.json``).

The file maps an image key to ``{"image": file name, "image_feat": [D], "captions": [~5 str], "lang_feat": [~5 x D]}``
(docs/method.md#two-source-schedule). It is turned into a feature store with one row per caption: ``image_features =
image_feat`` and ``caption_features = lang_feat[k]``.

These files are hundreds of MB of JSON numbers; ``json.load`` would hold every value as a Python float (~10x the
file size in RAM). The reader here decodes one image entry at a time from a rolling text buffer
(``json.JSONDecoder.raw_decode``), and rows go to disk in shards, so memory stays at one shard.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from datasets import Dataset
from tqdm.auto import tqdm

from dalr_hf.features.captions import EMPTY_CAPTION_POLICIES
from dalr_hf.features.store import (
    FEATURE_STORE_FORMAT,
    FEATURE_STORE_METADATA,
    FEATURE_STORE_VERSION,
    ShardedWriter,
    check_output_folder,
    feature_store_features,
    file_sha256,
    fixed_size_array,
    l2_normalize,
    load_feature_store,
    remove_store_files,
)

logger = logging.getLogger(__name__)

_WHITESPACE = " \t\n\r"


class _JsonEntryReader:
    """Yields ``(key, value)`` for each entry of a top-level JSON object (or ``(index, value)`` of an array),
    decoding one value at a time from a rolling buffer so the whole document is never in memory."""

    def __init__(self, path: Path, chunk_chars: int = 1 << 22) -> None:
        self.path = path
        self.chunk_chars = chunk_chars
        self.decoder = json.JSONDecoder()

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        with open(self.path, encoding="utf-8") as f:
            self._file = f
            self._buf = ""
            self._pos = 0
            self._eof = False
            opening = self._next_char()
            if opening not in "{[":
                raise ValueError(
                    f"{str(self.path)!r}: expected a JSON object mapping image keys to entries, got "
                    f"{opening!r} at the start"
                )
            closing = "}" if opening == "{" else "]"
            self._pos += 1
            index = 0
            if self._next_char() == closing:
                return
            while True:
                if opening == "{":
                    key = self._decode("an image key")
                    if not isinstance(key, str):
                        raise ValueError(f"{str(self.path)!r}: expected a string key, got {key!r}")
                    if self._next_char() != ":":
                        raise ValueError(f"{str(self.path)!r}: expected ':' after key {key!r}")
                    self._pos += 1
                else:
                    key = str(index)
                value = self._decode(f"the entry of key {key!r}")
                yield key, value
                index += 1
                sep = self._next_char()
                self._pos += 1
                if sep == closing:
                    return
                if sep != ",":
                    raise ValueError(
                        f"{str(self.path)!r}: expected ',' or {closing!r} after the entry of key {key!r}, got {sep!r}"
                    )

    def _fill(self) -> bool:
        chunk = self._file.read(self.chunk_chars)
        if not chunk:
            self._eof = True
            return False
        self._buf = self._buf[self._pos :] + chunk
        self._pos = 0
        return True

    def _next_char(self) -> str:
        while True:
            while self._pos < len(self._buf) and self._buf[self._pos] in _WHITESPACE:
                self._pos += 1
            if self._pos < len(self._buf):
                return self._buf[self._pos]
            if not self._fill():
                raise ValueError(f"{str(self.path)!r} ends unexpectedly (truncated file?)")

    def _decode(self, what: str) -> Any:
        self._next_char()
        while True:
            try:
                value, end = self.decoder.raw_decode(self._buf, self._pos)
            except json.JSONDecodeError as e:
                # The value may simply continue past the buffer; only a failure with the whole rest is an error.
                if self._fill():
                    continue
                raise ValueError(f"{str(self.path)!r}: invalid JSON in {what}: {e.msg} (truncated file?)") from e
            if end == len(self._buf) and not self._eof:
                # A number ending exactly at the buffer end may have more digits in the next chunk.
                if self._fill():
                    continue
            self._pos = end
            return value


def iter_kdmcse_entries(path: str | os.PathLike, chunk_chars: int = 1 << 22) -> Iterator[tuple[str, dict]]:
    """Stream ``(image key, entry)`` pairs of a KDMCSE feature file, reading ``chunk_chars`` characters at a time."""
    for key, value in _JsonEntryReader(Path(path), chunk_chars):
        if not isinstance(value, dict):
            raise ValueError(
                f"{str(path)!r}: entry {key!r} is a {type(value).__name__}, expected an object with "
                "'image', 'image_feat', 'captions', 'lang_feat'"
            )
        yield key, value


def _entry_arrays(key: str, entry: dict, dim: int | None, path: Path) -> tuple[np.ndarray, list[str], np.ndarray]:
    where = f"{str(path)!r} entry {key!r}"
    missing = [k for k in ("image_feat", "captions", "lang_feat") if k not in entry]
    if missing:
        raise ValueError(f"{where} lacks {missing} (expected 'image', 'image_feat', 'captions', 'lang_feat')")
    try:
        image = np.asarray(entry["image_feat"], dtype=np.float32)
        lang = np.asarray(entry["lang_feat"], dtype=np.float32)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{where}: 'image_feat'/'lang_feat' are not numeric arrays ({e})") from e
    if image.ndim == 2 and image.shape[0] == 1:
        image = image[0]  # some exports keep CLIP's (1, D) batch shape
    if image.ndim != 1:
        raise ValueError(f"{where}: 'image_feat' must be a list of D numbers, got shape {image.shape}")
    captions = entry["captions"]
    if isinstance(captions, str) or not isinstance(captions, list):
        raise ValueError(f"{where}: 'captions' must be a list of strings, got {type(captions).__name__}")
    if lang.ndim != 2 or lang.shape[0] != len(captions):
        raise ValueError(
            f"{where}: 'lang_feat' must hold one D-vector per caption ({len(captions)} captions), "
            f"got shape {lang.shape}"
        )
    expected = dim if dim is not None else image.shape[0]
    if image.shape[0] != expected or lang.shape[1] != expected:
        raise ValueError(
            f"{where}: feature dims differ (image_feat {image.shape[0]}, lang_feat {lang.shape[1]}, "
            f"expected {expected} as in the first entry)"
        )
    if not (np.isfinite(image).all() and np.isfinite(lang).all()):
        raise ValueError(f"{where}: 'image_feat' or 'lang_feat' contains NaN/Inf")
    return image, captions, lang


def import_kdmcse_json(
    json_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    model: str = "ViT-L-14",
    pretrained: str | None = "openai",
    normalize: bool = True,
    rows_per_shard: int = 20000,
    on_empty_caption: str = "error",
    overwrite: bool = False,
    progress: bool = True,
) -> tuple[Dataset, dict]:
    """Convert a KDMCSE/DALR JSON feature file into a feature store; return ``(dataset, metadata)``.

    ``model``/``pretrained`` record which CLIP made the file (KDMCSE's are OpenAI CLIP ViT-L/14); its weights
    checksum is unknown (``null``); the sha256 of the JSON file is recorded instead. ``normalize`` L2-normalises
    image and caption features as extraction does (the file's own normalisation is recorded as
    ``source_normalized``). Dimension mismatches, a caption count that differs from ``lang_feat``'s, NaN/Inf values
    and empty captions (unless ``on_empty_caption="skip"``) raise an error naming the image key.
    """
    path, output_dir = Path(json_path), Path(output_dir)
    if not path.is_file():
        raise FileNotFoundError(f"KDMCSE feature file {str(path)!r} does not exist")
    if on_empty_caption not in EMPTY_CAPTION_POLICIES:
        raise ValueError(f"on_empty_caption must be one of {EMPTY_CAPTION_POLICIES}, got {on_empty_caption!r}")
    if check_output_folder(output_dir, FEATURE_STORE_METADATA, overwrite, "feature store") is not None:
        if not overwrite:
            raise FileExistsError(
                f"{str(output_dir)!r} already holds a feature store; pass overwrite=True (--overwrite) to replace it"
            )
        remove_store_files(output_dir, FEATURE_STORE_METADATA)
    source_sha256 = file_sha256(path)
    run_config = {
        "kind": "import_kdmcse",
        "source_sha256": source_sha256,
        "normalize": normalize,
        "rows_per_shard": rows_per_shard,
        "on_empty_caption": on_empty_caption,
    }
    # An import is parse-bound and quick to redo, so it always starts afresh rather than resuming.
    writer = ShardedWriter(output_dir, run_config, what="KDMCSE import", resume=False, overwrite=True)
    writer.open()

    dim: int | None = None
    features = None
    ids: list[str] = []
    captions: list[str] = []
    image_rows: list[np.ndarray] = []
    lang_rows: list[np.ndarray] = []
    num_shards = num_images = empty_skipped = 0
    all_unit = True
    seen: set[str] = set()

    def flush() -> None:
        nonlocal num_shards, ids, captions, image_rows, lang_rows
        if not ids:
            return
        image = np.stack(image_rows)
        lang = np.stack(lang_rows)
        columns = {
            "image_id": pa.array(ids, pa.string()),
            "caption": pa.array(captions, pa.string()),
            "image_features": fixed_size_array(l2_normalize(image) if normalize else image),
            "caption_features": fixed_size_array(l2_normalize(lang) if normalize else lang),
        }
        writer.write(num_shards, str(num_shards), columns, features)
        num_shards += 1
        ids, captions, image_rows, lang_rows = [], [], [], []

    with tqdm(unit="img", desc="KDMCSE import", disable=not progress) as bar:
        for key, entry in iter_kdmcse_entries(path):
            if key in seen:
                raise ValueError(f"{str(path)!r}: image key {key!r} appears twice")
            seen.add(key)
            image, entry_captions, lang = _entry_arrays(key, entry, dim, path)
            if dim is None:
                dim = int(image.shape[0])
                features = feature_store_features(dim, dim)
            image_norm = float(np.linalg.norm(image))
            lang_norms = np.linalg.norm(lang, axis=1)
            all_unit = all_unit and abs(image_norm - 1) < 1e-3 and bool(np.all(np.abs(lang_norms - 1) < 1e-3))
            kept = 0
            for k, caption in enumerate(entry_captions):
                if not isinstance(caption, str) or not caption.strip():
                    if on_empty_caption == "error":
                        raise ValueError(
                            f"{str(path)!r} entry {key!r}: caption {k} is empty; pass "
                            "on_empty_caption='skip' (--on-empty-caption skip) to drop it with a count"
                        )
                    empty_skipped += 1
                    continue
                ids.append(key)
                captions.append(caption.strip())
                image_rows.append(image)
                lang_rows.append(lang[k])
                kept += 1
            num_images += kept > 0
            if len(ids) >= rows_per_shard:
                flush()
            bar.update(1)
        flush()
    if dim is None or num_shards == 0:
        raise ValueError(f"{str(path)!r} holds no image entry with a caption")
    if empty_skipped:
        logger.warning("skipped %d empty caption(s) in %s", empty_skipped, path)
    metadata = {
        "format": FEATURE_STORE_FORMAT,
        "version": FEATURE_STORE_VERSION,
        "model": model,
        "pretrained": pretrained,
        "weights_sha256": None,
        "image_dim": dim,
        "caption_dim": dim,
        "normalized": normalize or all_unit,
        "source_normalized": all_unit,
        "num_images": num_images,
        "source": "kdmcse_json",
        "source_file": path.name,
        "source_sha256": source_sha256,
        "empty_captions_skipped": empty_skipped,
    }
    writer.assemble(num_shards, FEATURE_STORE_METADATA, metadata)
    return load_feature_store(output_dir)
