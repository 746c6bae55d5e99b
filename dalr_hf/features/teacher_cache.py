"""Precomputed teacher embeddings: each frozen teacher's sentence embedding stored once per corpus row.

Teachers run in eval mode under ``inference_mode``, so their pooled embeddings are a function of the sentence (and
the teacher's weights, pooler and max length): computing them once is exact up to the padding of the batch they
were computed in (padding to another length changes float32 round-off, ~1e-6) and, for ``float16`` storage, fp16
rounding. Training with the cache runs no teacher forward pass.

A cache folder holds one fixed-length list column per teacher, ``teacher_emb_0``, ``teacher_emb_1``, ..., rows
aligned 1:1 with the corpus, and ``dalr_teacher_cache.json`` with each teacher's fingerprint and weight, the dtype,
the row count and a sha256 over the ordered sentences. :func:`attach_teacher_cache` refuses a cache whose teachers,
pooler, max length, row count or sentences differ from what training uses, naming the field and both values.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset, Features, concatenate_datasets
from tqdm.auto import tqdm

from dalr_hf.features.store import (
    ShardedWriter,
    check_file_sizes,
    check_fixed_float_column,
    check_output_folder,
    describe_differences,
    fixed_size_array,
    float_list_feature,
    json_sha256,
    load_dataset_folder,
    read_json,
    remove_store_files,
)
from dalr_hf.teachers import Teacher, TeacherConfig, TeacherEnsemble

logger = logging.getLogger(__name__)

TEACHER_CACHE_FORMAT = "dalr_hf.teacher_cache"
TEACHER_CACHE_VERSION = 1
TEACHER_CACHE_METADATA = "dalr_teacher_cache.json"
CACHE_DTYPES = ("float16", "float32")
# The fields of Teacher.fingerprint() that determine the embeddings; a difference in any of them refuses the cache.
# The weights checksum comes last: another pooler (cls loads BERT's pooler weights) is reported as the pooler.
FINGERPRINT_FIELDS = ("name_or_path", "revision", "pooler", "max_length", "hidden_size", "weights_sha256")


def teacher_columns(num_teachers: int) -> list[str]:
    """``["teacher_emb_0", ..., "teacher_emb_{n-1}"]``."""
    return [f"teacher_emb_{k}" for k in range(num_teachers)]


def _iter_sentences(source: Dataset | Sequence[str], text_column: str, chunk_size: int
                    ) -> Iterator[tuple[int, list[str]]]:
    """(start row, sentences) chunks, read from the memory-mapped column for a Dataset."""
    if isinstance(source, Dataset):
        if text_column not in source.column_names:
            raise ValueError(f"column {text_column!r} missing (columns: {source.column_names}); pass text_column")
        column = source.select_columns([text_column])
        for start in range(0, len(source), chunk_size):
            yield start, list(column[start : start + chunk_size][text_column])
    else:
        for start in range(0, len(source), chunk_size):
            yield start, list(source[start : start + chunk_size])


def corpus_fingerprint(dataset_or_sentences: Dataset | Sequence[str], text_column: str = "caption") -> str:
    """sha256 over the ordered sentences (each length-prefixed, so the boundaries count)."""
    digest = hashlib.sha256()
    for start, sentences in _iter_sentences(dataset_or_sentences, text_column, 65536):
        for offset, sentence in enumerate(sentences):
            if not isinstance(sentence, str):
                raise ValueError(f"row {start + offset} of column {text_column!r} is {sentence!r}, not a string")
            data = sentence.encode()
            digest.update(len(data).to_bytes(8, "little"))
            digest.update(data)
    return digest.hexdigest()


def _expected_fingerprints(teachers: TeacherEnsemble | Sequence[Teacher | TeacherConfig | Mapping[str, Any]]
                           ) -> list[dict]:
    if isinstance(teachers, TeacherEnsemble):
        return teachers.fingerprints()
    expected = []
    for teacher in teachers:
        if isinstance(teacher, Teacher):
            expected.append(dict(teacher.fingerprint(), weight=teacher.weight))
        elif isinstance(teacher, TeacherConfig):
            expected.append(asdict(teacher))
        elif isinstance(teacher, Mapping):
            expected.append(dict(teacher))
        else:
            raise TypeError(f"teachers must be a TeacherEnsemble or a list of Teacher, TeacherConfig or fingerprint "
                            f"dicts, got {type(teacher).__name__}")
    return expected


def _encode_length_sorted(teacher: Teacher, sentences: list[str], batch_size: int,
                          device: str | torch.device | None) -> np.ndarray:
    """Encode in batches of similar length (less padding), returned in the input order."""
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    embeddings = teacher.encode([sentences[i] for i in order], batch_size=batch_size, device=device).numpy()
    out = np.empty_like(embeddings)
    out[np.asarray(order, dtype=np.int64)] = embeddings
    return out


def load_teacher_cache(cache_dir: str | os.PathLike) -> tuple[Dataset, dict]:
    """Open a teacher cache, memory-mapped, after checking its files, columns and row count against its metadata."""
    folder = Path(cache_dir)
    where = f"teacher cache {str(folder)!r}"
    if not folder.is_dir():
        raise FileNotFoundError(f"{where} does not exist (build it with build_teacher_cache / dalr-hf cache-teachers)")
    meta_path = folder / TEACHER_CACHE_METADATA
    if not meta_path.is_file():
        state = "is unfinished (rerun the same command to resume it)" if (folder / "_partial").is_dir() else \
            "is not a dalr_hf teacher cache"
        raise FileNotFoundError(f"{where}: {TEACHER_CACHE_METADATA!r} is missing; the folder {state}")
    metadata = read_json(meta_path, "teacher-cache metadata")
    if not isinstance(metadata, dict) or metadata.get("format") != TEACHER_CACHE_FORMAT:
        raise ValueError(f"{where}: {TEACHER_CACHE_METADATA!r} is not a {TEACHER_CACHE_FORMAT!r} file")
    if metadata.get("version") != TEACHER_CACHE_VERSION:
        raise ValueError(f"{where}: cache version {metadata.get('version')!r} is not supported "
                         f"(this dalr_hf reads version {TEACHER_CACHE_VERSION}); rebuild the cache")
    missing = [k for k in ("teachers", "columns", "dims", "dtype", "num_rows", "corpus_sha256", "files")
               if k not in metadata]
    if missing:
        raise ValueError(f"{where}: metadata lacks {missing}")
    check_file_sizes(folder, metadata["files"], "teacher cache")
    dataset = load_dataset_folder(folder, "teacher cache")
    for column, dim in zip(metadata["columns"], metadata["dims"]):
        check_fixed_float_column(dataset, column, int(dim), where)
        stored = dataset.features[column].feature.dtype
        if stored != metadata["dtype"]:
            raise ValueError(f"{where}: column {column!r} holds {stored}, the metadata says {metadata['dtype']}")
    if len(dataset) != metadata["num_rows"]:
        raise ValueError(f"{where}: {len(dataset)} rows on disk, but the metadata says {metadata['num_rows']}; "
                         "the cache is truncated or stale")
    return dataset, metadata


def build_teacher_cache(teachers: TeacherEnsemble, dataset_or_sentences: Dataset | Sequence[str],
                        output_dir: str | os.PathLike, text_column: str = "caption", dtype: str = "float16",
                        batch_size: int = 128, device: str | torch.device | None = None, *,
                        chunk_size: int = 16384, overwrite: bool = False, progress: bool = True
                        ) -> tuple[Dataset, dict]:
    """Encode every sentence with every teacher once and store the embeddings; return ``(cache, metadata)``.

    ``dataset_or_sentences`` is a ``Dataset`` (its ``text_column``: ``"caption"`` for a feature store, ``"text"``
    for a text corpus) or a list of sentences. Rows of the cache are aligned 1:1 with it. Work is written in chunks
    of ``chunk_size`` sentences, so memory is bounded by one chunk and an interrupted build resumes from the last
    complete chunk. ``dtype`` is the storage type (``float16`` halves the size; ``float32`` keeps the teachers'
    outputs exactly). A complete cache with the same teachers, corpus and settings is returned as is.
    """
    if dtype not in CACHE_DTYPES:
        raise ValueError(f"dtype must be one of {CACHE_DTYPES}, got {dtype!r}")
    if not isinstance(teachers, TeacherEnsemble):
        raise TypeError(f"teachers must be a TeacherEnsemble, got {type(teachers).__name__}")
    if batch_size < 1 or chunk_size < 1:
        raise ValueError(f"batch_size and chunk_size must be >= 1, got {batch_size} and {chunk_size}")
    output_dir = Path(output_dir)
    num_rows = len(dataset_or_sentences)
    if num_rows == 0:
        raise ValueError("build_teacher_cache: the corpus is empty")
    fingerprints = teachers.fingerprints()
    corpus_sha256 = corpus_fingerprint(dataset_or_sentences, text_column)
    columns = teacher_columns(len(teachers))
    dims = [t.hidden_size for t in teachers.teachers]
    run_config = {
        "kind": "teacher_cache",
        "teachers": fingerprints,
        "dtype": dtype,
        "corpus_sha256": corpus_sha256,
        "num_rows": num_rows,
        "text_column": text_column,
        "teacher_autocast": [str(t.autocast_dtype) if t.autocast_dtype is not None else None
                             for t in teachers.teachers],
        "chunk_size": chunk_size,
        "batch_size": batch_size,
    }
    config_sha256 = json_sha256(run_config)
    existing = check_output_folder(output_dir, TEACHER_CACHE_METADATA, overwrite, "teacher cache")
    if existing is not None:
        if existing.get("config_sha256") == config_sha256 and not overwrite:
            logger.info("%s already holds this teacher cache; loading it", output_dir)
            return load_teacher_cache(output_dir)
        if not overwrite:
            diffs = describe_differences(existing.get("run_config", {}), run_config)
            raise FileExistsError(f"{str(output_dir)!r} already holds a teacher cache made with another "
                                  f"configuration ({'; '.join(diffs)}); pass overwrite=True (--overwrite) to "
                                  "replace it")
        remove_store_files(output_dir, TEACHER_CACHE_METADATA)
    writer = ShardedWriter(output_dir, run_config, what="teacher cache", overwrite=overwrite)
    writer.open()
    features = Features({c: float_list_feature(d, dtype) for c, d in zip(columns, dims)})
    np_dtype = np.float16 if dtype == "float16" else np.float32
    num_chunks = 0
    with tqdm(total=num_rows, unit="sent", desc="teacher embeddings", disable=not progress) as bar:
        for chunk, (start, sentences) in enumerate(_iter_sentences(dataset_or_sentences, text_column, chunk_size)):
            num_chunks += 1
            key = f"{start}:{len(sentences)}"
            if writer.completed(chunk, key) is None:
                data = {}
                for column, teacher in zip(columns, teachers.teachers):
                    embeddings = _encode_length_sorted(teacher, sentences, batch_size, device)
                    stored = embeddings.astype(np_dtype)
                    bad = ~np.isfinite(stored).all(axis=1)
                    if bad.any():
                        row = start + int(np.argmax(bad))
                        raise ValueError(f"teacher {teacher.name!r} gives a non-finite {dtype} embedding for row {row} "
                                         f"({sentences[row - start][:80]!r}); store float32 if it overflows float16")
                    data[column] = fixed_size_array(stored, np_dtype)
                writer.write(chunk, key, data, features)
            bar.update(len(sentences))
    metadata = {
        "format": TEACHER_CACHE_FORMAT,
        "version": TEACHER_CACHE_VERSION,
        "teachers": fingerprints,
        "columns": columns,
        "dims": dims,
        "dtype": dtype,
        "num_rows": num_rows,
        "corpus_sha256": corpus_sha256,
        "text_column": text_column,
        "teacher_autocast": run_config["teacher_autocast"],
        "config_sha256": config_sha256,
        "run_config": run_config,
    }
    writer.assemble(num_chunks, TEACHER_CACHE_METADATA, metadata)
    return load_teacher_cache(output_dir)


def check_teacher_fingerprints(cached: Sequence[Mapping[str, Any]], expected: Sequence[Mapping[str, Any]],
                               where: str) -> None:
    """Raise ``ValueError`` naming the teacher, the field and both values at the first difference.

    Fields absent from ``expected`` are not compared (a list of ``TeacherConfig`` has no weights checksum); a
    missing weights checksum is logged, because then only the name, revision, pooler and length are verified.
    """
    if len(cached) != len(expected):
        raise ValueError(f"{where} holds embeddings of {len(cached)} teacher(s) "
                         f"({[t.get('name_or_path') for t in cached]}), but {len(expected)} are configured "
                         f"({[t.get('name_or_path') for t in expected]})")
    for k, (have, want) in enumerate(zip(cached, expected)):
        for name in FINGERPRINT_FIELDS:
            if name not in want or (name == "weights_sha256" and want[name] is None):
                continue
            if have.get(name) != want[name]:
                raise ValueError(
                    f"{where} was built with another teacher {k}: {name} is {have.get(name)!r} in the cache but "
                    f"{want[name]!r} in the configured teacher; rebuild it with build_teacher_cache "
                    "(dalr-hf cache-teachers) or use online teachers"
                )
        if want.get("weights_sha256") is None:
            logger.warning("%s: teacher %d (%s) given without a weights checksum; only its name, revision, pooler "
                           "and max length were verified", where, k, want.get("name_or_path"))


def attach_teacher_cache(dataset: Dataset, cache_dir: str | os.PathLike,
                         teachers: TeacherEnsemble | Sequence[Teacher | TeacherConfig | Mapping[str, Any]],
                         text_column: str = "caption") -> Dataset:
    """``dataset`` with the cache's ``teacher_emb_k`` columns added (memory-mapped column concatenation).

    Verifies, in this order, the teacher fingerprints (model, revision, weights checksum, pooler, max length), the
    row count and the corpus fingerprint of ``dataset[text_column]``; any mismatch raises ``ValueError`` naming the
    field and both values.
    """
    cache, metadata = load_teacher_cache(cache_dir)
    where = f"teacher cache {str(cache_dir)!r}"
    check_teacher_fingerprints(metadata["teachers"], _expected_fingerprints(teachers), where)
    if len(dataset) != metadata["num_rows"]:
        raise ValueError(f"{where} has {metadata['num_rows']} rows but the dataset has {len(dataset)}: it was built "
                         "for another corpus")
    corpus = corpus_fingerprint(dataset, text_column)
    if corpus != metadata["corpus_sha256"]:
        raise ValueError(
            f"{where} was built for another corpus: corpus_sha256 is {metadata['corpus_sha256']!r} in the cache "
            f"(column {metadata.get('text_column')!r}) but {corpus!r} for this dataset's column {text_column!r} "
            "(same row count, different sentences or order)"
        )
    clash = [c for c in metadata["columns"] if c in dataset.column_names]
    if clash:
        raise ValueError(f"the dataset already has column(s) {clash}; remove them before attaching a teacher cache")
    return concatenate_datasets([dataset, cache.select_columns(metadata["columns"])], axis=1)
