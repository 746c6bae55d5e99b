"""Precomputed teacher embeddings: same embeddings and losses as online teachers; stale caches are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from datasets.table import MemoryMappedTable

from dalr_hf.features import attach_teacher_cache, build_teacher_cache, load_teacher_cache, save_feature_store
from dalr_hf.teachers import Teacher, TeacherConfig, TeacherEnsemble
from tests.features.feature_helpers import STAND_IN_META

ALPHA = 0.33
SENTENCES = [
    "a dog runs on the beach",
    "two young guys with shaggy hair look at their hands while hanging out in the yard",
    "a child in a pink dress is climbing up a set of stairs",
    "a man sleeps",
    "several people stand in front of a building waiting for the bus to arrive",
    "a cat",
    "the girl is riding a bicycle down the street",
    "an old man plays the guitar on a busy corner of the city while people pass",
    "kids play football",
    "a woman with a red umbrella walks through the rain",
    "a brown dog catches a frisbee in mid air",
    "people",
]


@pytest.fixture(scope="module")
def ensemble(tiny_bert_dir, tiny_teacher_dir) -> TeacherEnsemble:
    return TeacherEnsemble.from_configs(
        [
            {"name_or_path": tiny_bert_dir, "weight": ALPHA},
            {"name_or_path": tiny_teacher_dir, "weight": 1 - ALPHA},
        ]
    )


@pytest.fixture(scope="module")
def paired(tmp_path_factory) -> Dataset:
    """A small feature store (the cache is keyed on its caption column)."""
    rng = np.random.default_rng(0)
    image = rng.normal(size=(len(SENTENCES), 8)).astype(np.float32)
    image /= np.linalg.norm(image, axis=1, keepdims=True)
    return save_feature_store(
        {"image_id": [str(i // 2) for i in range(len(SENTENCES))], "caption": SENTENCES, "image_features": image},
        tmp_path_factory.mktemp("paired") / "store",
        STAND_IN_META,
    )


def _teacher_losses(
    embeddings: list[torch.Tensor], weights: list[float], student_logits: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The teacher-dependent targets of DALR (docs/method.md#cross-modal-alignment-l_cma,
    docs/method.md#rank-distillation-l_rank, docs/method.md#intra-modal-alignment-l_ima) and the KL a student pays
    against them."""
    mixed = F.normalize(sum(w * e for w, e in zip(weights, embeddings)), dim=-1)
    q_t2t = torch.softmax(mixed @ mixed.T / 0.5, dim=-1)
    rank_targets = sum(w * F.cosine_similarity(e[:, None], e[None], dim=-1) / 0.05 for w, e in zip(weights, embeddings))
    kl = F.kl_div(torch.log_softmax(student_logits / 0.45, dim=-1), q_t2t, reduction="batchmean")
    return {"q_t2t": q_t2t, "rank_targets": rank_targets, "kl": kl}


def _cached(dataset: Dataset, rows: list[int], n: int) -> list[torch.Tensor]:
    batch = dataset.with_format("torch")[rows]
    return [batch[f"teacher_emb_{k}"].float() for k in range(n)]


def test_float32_cache_gives_the_online_embeddings_and_losses(tmp_path, ensemble, paired):
    cache, metadata = build_teacher_cache(
        ensemble, paired, tmp_path / "cache", dtype="float32", batch_size=4, progress=False
    )
    assert cache.column_names == ["teacher_emb_0", "teacher_emb_1", "teacher_tokens", "teacher_token_len"]
    assert len(cache) == len(SENTENCES)
    assert metadata["teachers"] == ensemble.fingerprints() and metadata["dtype"] == "float32"
    assert metadata["dims"] == [32, 32] and metadata["num_rows"] == len(SENTENCES)

    dataset = attach_teacher_cache(paired, tmp_path / "cache", ensemble)
    assert dataset.column_names == [
        "image_id",
        "caption",
        "image_features",
        "teacher_emb_0",
        "teacher_emb_1",
        "teacher_tokens",
        "teacher_token_len",
    ]
    # column concatenation over the two memory-mapped folders, no copy
    assert {Path(f["filename"]).parent for f in dataset.cache_files} == {
        Path(paired.cache_files[0]["filename"]).parent,
        tmp_path / "cache",
    }
    blocks = [b for row in dataset.data.blocks for b in row]
    assert blocks and all(isinstance(b, MemoryMappedTable) for b in blocks)
    rows = [7, 1, 10, 3, 0, 5]  # a shuffled training batch
    captions = [SENTENCES[i] for i in rows]
    online = ensemble(captions)
    cached = _cached(dataset, rows, 2)
    for k in range(2):
        assert cached[k].dtype == torch.float32
        # batch padding differs (online: one batch of these 6; cache: batches of 4 padded to max_length), so float32
        # round-off may differ in the last bits
        torch.testing.assert_close(cached[k], online.embeddings[k], rtol=0, atol=1e-5)
    student = torch.randn(len(rows), len(rows), generator=torch.Generator().manual_seed(0)) / 0.05
    expected = _teacher_losses(online.embeddings, online.weights, student)
    got = _teacher_losses(cached, ensemble.weights, student)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-5, msg=name)
    assert torch.equal(got["rank_targets"].argsort(dim=-1), expected["rank_targets"].argsort(dim=-1))


def test_float16_cache_differs_by_fp16_rounding_only(tmp_path, ensemble, paired):
    build_teacher_cache(ensemble, paired, tmp_path / "cache16", dtype="float16", batch_size=4, progress=False)
    cache, _ = load_teacher_cache(tmp_path / "cache16")
    assert str(cache.features["teacher_emb_0"]) == "List(Value('float16'), length=32)"
    dataset = attach_teacher_cache(paired, tmp_path / "cache16", ensemble.fingerprints())
    rows = list(range(len(SENTENCES)))
    online = ensemble(SENTENCES)
    cached = _cached(dataset, rows, 2)
    for k in range(2):
        reference = online.embeddings[k]
        # fp16 has an 11-bit significand: relative rounding error <= 2**-11
        assert torch.all((cached[k] - reference).abs() <= reference.abs() * 2**-11 + 1e-7)
        assert not torch.equal(cached[k], reference)
    student = torch.randn(len(rows), len(rows), generator=torch.Generator().manual_seed(1)) / 0.05
    kl_online = _teacher_losses(online.embeddings, online.weights, student)["kl"]
    kl_cached = _teacher_losses(cached, ensemble.weights, student)["kl"]
    torch.testing.assert_close(kl_cached, kl_online, rtol=1e-3, atol=1e-4)


def test_stale_caches_are_refused_naming_the_field(tmp_path, ensemble, paired, tiny_bert_dir, tiny_teacher_dir):
    build_teacher_cache(ensemble, paired, tmp_path / "cache", dtype="float32", progress=False)
    fingerprints = ensemble.fingerprints()

    swapped = fingerprints[::-1]
    with pytest.raises(ValueError, match="teacher 0: name_or_path is .* in the cache but"):
        attach_teacher_cache(paired, tmp_path / "cache", swapped)
    with pytest.raises(ValueError, match="teacher 1: pooler is 'cls_before_pooler' in the cache but 'mean'"):
        attach_teacher_cache(paired, tmp_path / "cache", [fingerprints[0], dict(fingerprints[1], pooler="mean")])
    with pytest.raises(ValueError, match="max_length is 32 in the cache but 64"):
        attach_teacher_cache(paired, tmp_path / "cache", [dict(fingerprints[0], max_length=64), fingerprints[1]])
    with pytest.raises(ValueError, match="weights_sha256 is '[0-9a-f]{64}' in the cache but 'feed'"):
        attach_teacher_cache(
            paired, tmp_path / "cache", [dict(fingerprints[0], weights_sha256="feed"), fingerprints[1]]
        )
    with pytest.raises(ValueError, match="revision is None in the cache but 'v2'"):
        attach_teacher_cache(paired, tmp_path / "cache", [TeacherConfig(tiny_bert_dir, revision="v2"), fingerprints[1]])
    with pytest.raises(ValueError, match="holds embeddings of 2 teacher"):
        attach_teacher_cache(paired, tmp_path / "cache", fingerprints[:1])
    # a real teacher with the same folder but another pooler
    mean_teacher = Teacher({"name_or_path": tiny_teacher_dir, "pooler": "mean", "weight": 1 - ALPHA})
    with pytest.raises(ValueError, match="pooler"):
        attach_teacher_cache(paired, tmp_path / "cache", [ensemble.teachers[0], mean_teacher])

    edited = paired.map(lambda row, i: {"caption": row["caption"] + ("!" if i == 4 else "")}, with_indices=True)
    with pytest.raises(ValueError, match="another corpus: corpus_sha256"):
        attach_teacher_cache(edited, tmp_path / "cache", ensemble)
    with pytest.raises(ValueError, match=f"{len(SENTENCES)} rows but the dataset has 5"):
        attach_teacher_cache(paired.select(range(5)), tmp_path / "cache", ensemble)
    attached = attach_teacher_cache(paired, tmp_path / "cache", ensemble)
    with pytest.raises(ValueError, match="already has column"):
        attach_teacher_cache(attached, tmp_path / "cache", ensemble)
    # TeacherConfigs carry no weights checksum: name, revision, pooler and length are still checked
    configs = [t.config for t in ensemble.teachers]
    assert len(attach_teacher_cache(paired, tmp_path / "cache", configs)) == len(SENTENCES)


def test_text_corpus_sentence_lists_and_rebuilds(tmp_path, ensemble):
    corpus = Dataset.from_dict({"text": SENTENCES})
    cache, metadata = build_teacher_cache(
        ensemble, corpus, tmp_path / "wiki", text_column="text", chunk_size=5, progress=False
    )
    assert metadata["text_column"] == "text" and len(cache) == len(SENTENCES)
    # a plain list of the same sentences has the same corpus fingerprint and gives the same cache
    from_list, list_meta = build_teacher_cache(ensemble, SENTENCES, tmp_path / "list", chunk_size=5, progress=False)
    assert list_meta["corpus_sha256"] == metadata["corpus_sha256"]
    for k in range(2):
        np.testing.assert_array_equal(
            np.asarray(from_list.with_format("numpy")[f"teacher_emb_{k}"]),
            np.asarray(cache.with_format("numpy")[f"teacher_emb_{k}"]),
        )
    attached = attach_teacher_cache(corpus, tmp_path / "wiki", ensemble, text_column="text")
    assert attached.column_names == ["text", "teacher_emb_0", "teacher_emb_1", "teacher_tokens", "teacher_token_len"]
    embeddings_only = attach_teacher_cache(corpus, tmp_path / "wiki", ensemble, text_column="text", token_states=False)
    assert embeddings_only.column_names == ["text", "teacher_emb_0", "teacher_emb_1"]
    with pytest.raises(ValueError, match="column 'caption' missing"):
        attach_teacher_cache(corpus, tmp_path / "wiki", ensemble)

    # the same build again is a no-op; another dtype needs overwrite
    arrow = next((tmp_path / "wiki").glob("*.arrow"))
    before = arrow.stat().st_mtime_ns
    build_teacher_cache(ensemble, corpus, tmp_path / "wiki", text_column="text", chunk_size=5, progress=False)
    assert arrow.stat().st_mtime_ns == before
    with pytest.raises(FileExistsError, match="dtype"):
        build_teacher_cache(
            ensemble, corpus, tmp_path / "wiki", text_column="text", dtype="float32", chunk_size=5, progress=False
        )
    rebuilt, meta = build_teacher_cache(
        ensemble,
        corpus,
        tmp_path / "wiki",
        text_column="text",
        dtype="float32",
        chunk_size=5,
        overwrite=True,
        progress=False,
    )
    assert meta["dtype"] == "float32" and str(rebuilt.features["teacher_emb_1"].feature.dtype) == "float32"


def test_truncated_or_incomplete_cache_is_refused(tmp_path, ensemble):
    build_teacher_cache(ensemble, SENTENCES, tmp_path / "cache", progress=False)
    arrow = next((tmp_path / "cache").glob("*.arrow"))
    data = arrow.read_bytes()
    arrow.write_bytes(data[:-64])
    with pytest.raises(ValueError, match="truncated"):
        load_teacher_cache(tmp_path / "cache")
    arrow.write_bytes(data)
    meta_path = tmp_path / "cache" / "dalr_teacher_cache.json"
    metadata = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps(dict(metadata, num_rows=99)))
    with pytest.raises(ValueError, match="12 rows on disk, but the metadata says 99"):
        load_teacher_cache(tmp_path / "cache")
    meta_path.write_text(json.dumps(dict(metadata, dtype="float32")))
    with pytest.raises(ValueError, match="holds float16, the metadata says float32"):
        load_teacher_cache(tmp_path / "cache")
    meta_path.unlink()
    with pytest.raises(FileNotFoundError, match="dalr_teacher_cache.json"):
        load_teacher_cache(tmp_path / "cache")
