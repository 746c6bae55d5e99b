"""Frozen features as data: CLIP image/caption feature stores, KDMCSE import and precomputed teacher embeddings.

- :func:`extract_features` (``dalr-hf extract-features``): open_clip features of Flickr30k / COCO images and
  captions, streamed to a resumable, memory-mapped feature store.
- :func:`import_kdmcse_json` (``dalr-hf import-kdmcse``): the KDMCSE/DALR JSON feature files as a feature store.
- :func:`build_teacher_cache` / :func:`attach_teacher_cache` (``dalr-hf cache-teachers``): each teacher's sentence
  embeddings computed once, refused when the teachers or the corpus differ.
- :func:`load_feature_store` / :func:`save_feature_store`: read (validated) and write feature stores.
"""

from __future__ import annotations

from dalr_hf.features.captions import (
    CAPTION_FORMATS,
    CaptionedImage,
    CaptionIndex,
    detect_caption_format,
    read_captions,
)
from dalr_hf.features.extract import ClipEncoder, extract_features, state_dict_sha256
from dalr_hf.features.kdmcse import import_kdmcse_json, iter_kdmcse_entries
from dalr_hf.features.store import (
    FEATURE_STORE_FORMAT,
    FEATURE_STORE_METADATA,
    FEATURE_STORE_VERSION,
    feature_store_features,
    load_feature_store,
    save_feature_store,
)
from dalr_hf.features.teacher_cache import (
    TEACHER_CACHE_FORMAT,
    TEACHER_CACHE_METADATA,
    attach_teacher_cache,
    build_teacher_cache,
    corpus_fingerprint,
    load_teacher_cache,
    teacher_columns,
)

__all__ = [
    "CAPTION_FORMATS",
    "FEATURE_STORE_FORMAT",
    "FEATURE_STORE_METADATA",
    "FEATURE_STORE_VERSION",
    "TEACHER_CACHE_FORMAT",
    "TEACHER_CACHE_METADATA",
    "CaptionIndex",
    "CaptionedImage",
    "ClipEncoder",
    "attach_teacher_cache",
    "build_teacher_cache",
    "corpus_fingerprint",
    "detect_caption_format",
    "extract_features",
    "feature_store_features",
    "import_kdmcse_json",
    "iter_kdmcse_entries",
    "load_feature_store",
    "load_teacher_cache",
    "read_captions",
    "save_feature_store",
    "state_dict_sha256",
    "teacher_columns",
]
