"""Precomputed teacher embeddings: each frozen teacher's sentence embedding stored once per corpus row.

Teachers run in eval mode under ``inference_mode``, so their pooled embeddings are a function of the sentence (and
the teacher's weights, pooler and max length): computing them once is exact up to the padding of the batch they
were computed in (padding to another length changes float32 round-off, ~1e-6) and, for ``float16`` storage, fp16
rounding. Training with the cache runs no teacher forward pass.

A cache folder holds one fixed-length list column per teacher, ``teacher_emb_0``, ``teacher_emb_1``, ..., rows
aligned 1:1 with the corpus, and ``dalr_teacher_cache.json`` with each teacher's fingerprint and weight, the dtype,
the row count and a sha256 over the ordered sentences. :func:`attach_teacher_cache` refuses a cache whose teachers,
pooler, max length, row count or sentences differ from what training uses, naming the field and both values.

Token states (what the g2l term needs, on by default): the weight-mixed teacher token states
``sum_k w_k last_hidden_state_k[:, 1:]`` of every row, computed with the row padded to the teachers' ``max_length``
and stored for all ``max_length - 1`` positions in ``teacher_tokens`` (a fixed ``(max_length - 1, H)`` list column),
with the row's valid-token count in ``teacher_token_len``. Online training pads each batch to its longest sentence
and the reference g2l normalises over the token axis *pads included*, so a batch's padding matters: the trainer
slices the stored positions to the batch's own padded length. This is exact because a pad position's state in
these encoders does not depend on how many pads follow it (pads are masked as attention keys); the build checks
that on the first batch of the corpus for every teacher and refuses a teacher for which it does not hold. The token
states depend on the teachers' weights, tokenizer and precision besides their weights checksum and max length: all
of it is in the token fingerprint, and a cache whose token fingerprint differs is refused when token states are used.
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
import pyarrow as pa
import torch
from datasets import Dataset, Features, Value, concatenate_datasets
from tqdm.auto import tqdm

from dalr_hf.features.store import (
    ListFeature,
    ShardedWriter,
    check_file_sizes,
    check_fixed_float_column,
    fixed_size_array,
    float_list_feature,
    load_dataset_folder,
    read_json,
    run_config_entries,
    store_already_made,
)
from dalr_hf.teachers import Teacher, TeacherConfig, TeacherEnsemble

logger = logging.getLogger(__name__)

TEACHER_CACHE_FORMAT = "dalr_hf.teacher_cache"
TEACHER_CACHE_VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1: embeddings only
TOKEN_COLUMN = "teacher_tokens"
TOKEN_LENGTH_COLUMN = "teacher_token_len"
# A pad position's state may differ by float round-off between paddings; more than this refuses the token cache.
PAD_PROBE_TOLERANCE = 1e-5
# With teachers under bf16/fp16 autocast: a difference above this fraction of the largest state is not rounding.
PAD_PROBE_RELATIVE_LOW_PRECISION = 0.05
# Rows per shard when token states are stored: about this many bytes of float32 token states per shard.
TOKEN_CHUNK_BYTES = 256 * 2**20
TEACHER_CACHE_METADATA = "dalr_teacher_cache.json"
CACHE_DTYPES = ("float16", "float32")
# The fields of Teacher.fingerprint() that determine the embeddings; a difference in any of them refuses the cache.
# The weights checksum comes last: another pooler (cls loads BERT's pooler weights) is reported as the pooler.
FINGERPRINT_FIELDS = ("name_or_path", "revision", "pooler", "max_length", "hidden_size", "weights_sha256")


def teacher_columns(num_teachers: int) -> list[str]:
    """``["teacher_emb_0", ..., "teacher_emb_{n-1}"]``."""
    return [f"teacher_emb_{k}" for k in range(num_teachers)]


def _iter_sentences(
    source: Dataset | Sequence[str], text_column: str, chunk_size: int
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


def _expected_fingerprints(
    teachers: TeacherEnsemble | Sequence[Teacher | TeacherConfig | Mapping[str, Any]],
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
            raise TypeError(
                f"teachers must be a TeacherEnsemble or a list of Teacher, TeacherConfig or fingerprint "
                f"dicts, got {type(teacher).__name__}"
            )
    return expected


def _encode_length_sorted(
    teacher: Teacher, sentences: list[str], batch_size: int, device: str | torch.device | None
) -> np.ndarray:
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
        state = (
            "is unfinished (rerun the same command to resume it)"
            if (folder / "_partial").is_dir()
            else "is not a dalr_hf teacher cache"
        )
        raise FileNotFoundError(f"{where}: {TEACHER_CACHE_METADATA!r} is missing; the folder {state}")
    metadata = read_json(meta_path, "teacher-cache metadata")
    if not isinstance(metadata, dict) or metadata.get("format") != TEACHER_CACHE_FORMAT:
        raise ValueError(f"{where}: {TEACHER_CACHE_METADATA!r} is not a {TEACHER_CACHE_FORMAT!r} file")
    if metadata.get("version") not in READABLE_VERSIONS:
        raise ValueError(
            f"{where}: cache version {metadata.get('version')!r} is not supported "
            f"(this dalr_hf reads versions {READABLE_VERSIONS}); rebuild the cache"
        )
    missing = [
        k for k in ("teachers", "columns", "dims", "dtype", "num_rows", "corpus_sha256", "files") if k not in metadata
    ]
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
        raise ValueError(
            f"{where}: {len(dataset)} rows on disk, but the metadata says {metadata['num_rows']}; "
            "the cache is truncated or stale"
        )
    tokens = metadata.get("token_states")
    if tokens:
        feature = dataset.features.get(TOKEN_COLUMN)
        want = (int(tokens["positions"]), int(tokens["hidden_size"]), metadata["dtype"])
        have = None
        if isinstance(feature, ListFeature) and isinstance(feature.feature, ListFeature):
            have = (feature.length, feature.feature.length, getattr(feature.feature.feature, "dtype", None))
        if have != want:
            raise ValueError(
                f"{where}: column {TOKEN_COLUMN!r} should hold (positions, hidden, dtype) {want}, "
                f"found {have if have else feature}"
            )
        if TOKEN_LENGTH_COLUMN not in dataset.column_names:
            raise ValueError(f"{where}: column {TOKEN_LENGTH_COLUMN!r} is missing")
    return dataset, metadata


def token_fingerprint(teachers: TeacherEnsemble) -> dict:
    """What the mixed token states depend on beyond each teacher's fingerprint: weights, tokenizer, precision."""
    return {
        "weights": [float(t.weight) for t in teachers.teachers],
        "vocab_sha256": [t.vocab_fingerprint() for t in teachers.teachers],
        "autocast": [str(t.autocast_dtype) if t.autocast_dtype is not None else None for t in teachers.teachers],
        "max_length": [int(t.config.max_length) for t in teachers.teachers],
        "layout": "sum_k w_k * last_hidden_state_k[:, 1:max_length], each row padded to max_length",
    }


def check_token_cacheable(teachers: TeacherEnsemble) -> tuple[int, int]:
    """``(positions, hidden)`` of the mixed token states; raises when the teachers' states cannot be mixed."""
    widths = {t.name: t.hidden_size for t in teachers.teachers}
    lengths = {t.name: t.config.max_length for t in teachers.teachers}
    problems = []
    if len(set(widths.values())) != 1:
        problems.append(f"their hidden sizes differ ({widths})")
    if len(set(lengths.values())) != 1:
        problems.append(f"their max lengths differ ({lengths})")
    if len({t.vocab_fingerprint() for t in teachers.teachers}) != 1:
        problems.append("they do not share one tokenizer")
    if problems:
        raise ValueError(
            "token states (for the g2l term) mix the teachers' states position by position, but "
            + " and ".join(problems)
            + "; build the cache without token states (token_states=False, "
            "--no-token-states) and train with use_g2l: false"
        )
    return int(next(iter(lengths.values()))) - 1, int(next(iter(widths.values())))


def _probe_padding(teacher: Teacher, sentences: list[str], device) -> float:
    """Max |difference| between a batch's token states padded to its longest row and to max_length (sliced)."""
    _, short, mask = teacher.encode_with_tokens(sentences, device=device)
    _, full, _ = teacher.encode_with_tokens(sentences, device=device, padding="max_length")
    diff = float((short - full[:, : short.size(1)]).abs().max()) if short.numel() else 0.0
    tolerance = PAD_PROBE_TOLERANCE
    if teacher.autocast_dtype is not None:
        # A reduced-precision forward rounds differently for another padded length, online too (the same sentence
        # in two batches gets states that differ by that rounding): allow it, but not a real dependence on pads.
        tolerance = max(tolerance, PAD_PROBE_RELATIVE_LOW_PRECISION * float(short.abs().max()))
        logger.warning(
            "teacher %s runs under %s autocast: its token states depend on a batch's padded length by that "
            "precision's rounding (%.2e here), online as well as cached, so cached g2l terms match online ones to "
            "that rounding, not to float32 round-off; run the teachers in fp32 for an exact cache",
            teacher.name,
            teacher.autocast_dtype,
            diff,
        )
    if not diff <= tolerance:
        raise ValueError(
            f"teacher {teacher.name!r}: its token states at the same positions differ by {diff:.2e} (more than "
            f"{tolerance:.2g}) between a batch padded to its longest sentence and the same batch padded to "
            f"max_length {teacher.config.max_length}, so cached token states would not reproduce online training's "
            "g2l term (which normalises over padded positions too); build the cache without token states "
            "(--no-token-states) and keep the teachers online for g2l"
        )
    return diff


def _encode_chunk_with_tokens(
    teachers: TeacherEnsemble, sentences: list[str], batch_size: int, device, positions: int, hidden: int
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Pooled embeddings per teacher, the weight-mixed token states (N, positions, H) and valid counts (N,)."""
    n = len(sentences)
    embeddings = [np.empty((n, t.hidden_size), dtype=np.float32) for t in teachers.teachers]
    mixed = np.empty((n, positions, hidden), dtype=np.float32)
    counts = np.empty(n, dtype=np.int32)
    for start in range(0, n, batch_size):
        batch = sentences[start : start + batch_size]
        states = None
        for k, teacher in enumerate(teachers.teachers):
            pooled, tokens, mask = teacher.encode_with_tokens(batch, device=device, padding="max_length")
            # the same float32 expression, in the same order, as TeacherEnsemble.__call__ online
            weighted = teacher.weight * tokens
            states = weighted if states is None else states + weighted
            embeddings[k][start : start + len(batch)] = pooled.cpu().numpy()
            counts[start : start + len(batch)] = mask.sum(dim=1).cpu().numpy()
        assert states is not None  # an ensemble has at least one teacher
        mixed[start : start + len(batch)] = states.cpu().numpy()
    return embeddings, mixed, counts


def build_teacher_cache(
    teachers: TeacherEnsemble,
    dataset_or_sentences: Dataset | Sequence[str],
    output_dir: str | os.PathLike,
    text_column: str = "caption",
    dtype: str = "float16",
    batch_size: int = 128,
    device: str | torch.device | None = None,
    *,
    chunk_size: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    token_states: bool = True,
) -> tuple[Dataset, dict]:
    """Encode every sentence with every teacher once and store the embeddings; return ``(cache, metadata)``.

    ``dataset_or_sentences`` is a ``Dataset`` (its ``text_column``: ``"caption"`` for a feature store, ``"text"``
    for a text corpus) or a list of sentences. Rows of the cache are aligned 1:1 with it. Work is written in chunks
    of ``chunk_size`` sentences (default 16384, or about 256 MiB of float32 token states with ``token_states``), so
    memory is bounded by one chunk and an interrupted build resumes from the last complete chunk. ``dtype`` is the
    storage type (``float16`` halves the size; ``float32`` keeps the teachers' outputs exactly). ``token_states``
    also stores the mixed token states the g2l term needs (see the module docstring); it needs teachers of one
    width, max length and tokenizer. A complete cache with the same teachers, corpus and settings is returned as is.
    """
    if dtype not in CACHE_DTYPES:
        raise ValueError(f"dtype must be one of {CACHE_DTYPES}, got {dtype!r}")
    if not isinstance(teachers, TeacherEnsemble):
        raise TypeError(f"teachers must be a TeacherEnsemble, got {type(teachers).__name__}")
    positions = hidden = 0
    if token_states:
        positions, hidden = check_token_cacheable(teachers)
    if chunk_size is None:
        chunk_size = max(64, min(16384, TOKEN_CHUNK_BYTES // (4 * positions * hidden))) if token_states else 16384
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
    tokens_fingerprint = token_fingerprint(teachers) if token_states else None
    run_config = {
        "kind": "teacher_cache",
        "teachers": fingerprints,
        "dtype": dtype,
        "corpus_sha256": corpus_sha256,
        "num_rows": num_rows,
        "text_column": text_column,
        "teacher_autocast": [
            str(t.autocast_dtype) if t.autocast_dtype is not None else None for t in teachers.teachers
        ],
        "chunk_size": chunk_size,
        "batch_size": batch_size,
        "token_states": tokens_fingerprint,
    }
    if store_already_made(output_dir, TEACHER_CACHE_METADATA, run_config, overwrite, "teacher cache"):
        return load_teacher_cache(output_dir)
    probe = None
    if token_states:
        _, first = next(_iter_sentences(dataset_or_sentences, text_column, min(batch_size, 64)))
        probe = max(_probe_padding(t, first, device) for t in teachers.teachers)
    writer = ShardedWriter(output_dir, run_config, what="teacher cache", overwrite=overwrite)
    writer.open()
    features = {c: float_list_feature(d, dtype) for c, d in zip(columns, dims)}
    if token_states:
        features[TOKEN_COLUMN] = ListFeature(float_list_feature(hidden, dtype), length=positions)
        features[TOKEN_LENGTH_COLUMN] = Value("int32")
    features = Features(features)
    np_dtype = np.float16 if dtype == "float16" else np.float32
    num_chunks = 0

    def check_finite(stored: np.ndarray, start: int, sentences: list[str], what: str) -> None:
        bad = ~np.isfinite(stored.reshape(len(stored), -1)).all(axis=1)
        if bad.any():
            row = start + int(np.argmax(bad))
            raise ValueError(
                f"{what} is non-finite in {dtype} for row {row} ({sentences[row - start][:80]!r}); "
                "store float32 if it overflows float16"
            )

    with tqdm(total=num_rows, unit="sent", desc="teacher embeddings", disable=not progress) as bar:
        for chunk, (start, sentences) in enumerate(_iter_sentences(dataset_or_sentences, text_column, chunk_size)):
            num_chunks += 1
            key = f"{start}:{len(sentences)}"
            if writer.completed(chunk, key) is None:
                data = {}
                if token_states:
                    embeddings, mixed, counts = _encode_chunk_with_tokens(
                        teachers, sentences, batch_size, device, positions, hidden
                    )
                else:
                    embeddings = [_encode_length_sorted(t, sentences, batch_size, device) for t in teachers.teachers]
                for column, teacher, matrix in zip(columns, teachers.teachers, embeddings):
                    stored = matrix.astype(np_dtype)
                    check_finite(stored, start, sentences, f"teacher {teacher.name!r}'s embedding")
                    data[column] = fixed_size_array(stored, np_dtype)
                if token_states:
                    stored = mixed.astype(np_dtype)
                    del mixed
                    check_finite(stored, start, sentences, "the mixed token states")
                    inner = fixed_size_array(stored.reshape(-1, hidden), np_dtype)
                    data[TOKEN_COLUMN] = pa.FixedSizeListArray.from_arrays(inner, positions)
                    data[TOKEN_LENGTH_COLUMN] = pa.array(counts, pa.int32())
                writer.write(chunk, key, data, features)
                del data
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
        **run_config_entries(run_config),
        "token_states": None
        if not token_states
        else {
            "column": TOKEN_COLUMN,
            "length_column": TOKEN_LENGTH_COLUMN,
            "positions": positions,
            "hidden_size": hidden,
            "fingerprint": tokens_fingerprint,
            "pad_probe_max_abs_diff": probe,
        },
    }
    writer.assemble(num_chunks, TEACHER_CACHE_METADATA, metadata)
    return load_teacher_cache(output_dir)


def check_teacher_fingerprints(
    cached: Sequence[Mapping[str, Any]], expected: Sequence[Mapping[str, Any]], where: str
) -> None:
    """Raise ``ValueError`` naming the teacher, the field and both values at the first difference.

    Fields absent from ``expected`` are not compared (a list of ``TeacherConfig`` has no weights checksum); a
    missing weights checksum is logged, because then only the name, revision, pooler and length are verified.
    """
    if len(cached) != len(expected):
        raise ValueError(
            f"{where} holds embeddings of {len(cached)} teacher(s) "
            f"({[t.get('name_or_path') for t in cached]}), but {len(expected)} are configured "
            f"({[t.get('name_or_path') for t in expected]})"
        )
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
            logger.warning(
                "%s: teacher %d (%s) given without a weights checksum; only its name, revision, pooler "
                "and max length were verified",
                where,
                k,
                want.get("name_or_path"),
            )


def attach_teacher_cache(
    dataset: Dataset,
    cache_dir: str | os.PathLike,
    teachers: TeacherEnsemble | Sequence[Teacher | TeacherConfig | Mapping[str, Any]],
    text_column: str = "caption",
    token_states: bool = True,
) -> Dataset:
    """``dataset`` with the cache's ``teacher_emb_k`` columns added (memory-mapped column concatenation).

    Verifies, in this order, the teacher fingerprints (model, revision, weights checksum, pooler, max length), the
    row count and the corpus fingerprint of ``dataset[text_column]``; any mismatch raises ``ValueError`` naming the
    field and both values. With ``token_states`` (and a cache that has them) the ``teacher_tokens`` and
    ``teacher_token_len`` columns are attached too, after checking the token fingerprint (teacher weights,
    tokenizers, precision, max length): the g2l term then runs without teachers.
    """
    cache, metadata = load_teacher_cache(cache_dir)
    where = f"teacher cache {str(cache_dir)!r}"
    check_teacher_fingerprints(metadata["teachers"], _expected_fingerprints(teachers), where)
    if len(dataset) != metadata["num_rows"]:
        raise ValueError(
            f"{where} has {metadata['num_rows']} rows but the dataset has {len(dataset)}: it was built "
            "for another corpus"
        )
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
    attach = list(metadata["columns"])
    if token_states and metadata.get("token_states"):
        check_token_fingerprint(metadata["token_states"]["fingerprint"], teachers, where)
        attach += [TOKEN_COLUMN, TOKEN_LENGTH_COLUMN]
    return concatenate_datasets([dataset, cache.select_columns(attach)], axis=1)


def check_token_fingerprint(
    cached: Mapping[str, Any],
    teachers: TeacherEnsemble | Sequence[Teacher | TeacherConfig | Mapping[str, Any]],
    where: str,
) -> None:
    """Raise ``ValueError`` when the cached token states were mixed with other weights, tokenizers or precision.

    A list of ``TeacherConfig`` or fingerprint dicts has no tokenizer or precision: then only the weights and max
    lengths are compared.
    """
    if isinstance(teachers, TeacherEnsemble):
        expected = token_fingerprint(teachers)
    elif teachers and all(isinstance(t, Teacher) for t in teachers):
        expected = token_fingerprint(TeacherEnsemble(list(teachers)))
    else:
        configs = [t if isinstance(t, Mapping) else asdict(t) for t in teachers]
        expected = {
            "weights": [float(c.get("weight", 1.0)) for c in configs],
            "max_length": [int(c.get("max_length", 32)) for c in configs],
        }
    for field in ("weights", "max_length", "vocab_sha256", "autocast", "layout"):
        if field not in expected:
            continue
        have, want = cached.get(field), expected[field]
        if field == "weights" and have is not None and len(have) == len(want):
            same = all(abs(a - b) <= 1e-12 for a, b in zip(have, want))
        else:
            same = have == want
        if not same:
            raise ValueError(
                f"{where}: its token states (for the g2l term) were built with teacher {field} {have!r}, but the "
                f"configured teachers have {want!r}; the mixed token states depend on it. Rebuild the cache with "
                "these teachers (dalr-hf cache-teachers) or train with use_g2l: false"
            )
