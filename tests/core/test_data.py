"""Corpus loading and bad input: clear errors, or logged handling; nothing dropped silently."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from datasets import Dataset

from dalr_hf.data import DALRDataCollator, TwoSourceDataset, load_paired_dataset, load_text_corpus


def _pairs(n=6, dim=8, **overrides):
    rng = np.random.default_rng(0)
    data = {
        "image_id": [f"img{i // 2}" for i in range(n)],
        "caption": [f"a caption number {i}" for i in range(n)],
        "image_features": [rng.standard_normal(dim).astype(np.float32).tolist() for _ in range(n)],
    }
    data.update(overrides)
    return Dataset.from_dict(data)


def test_text_corpus_from_file_drops_blank_lines_with_a_logged_count(tmp_path, caplog):
    path = tmp_path / "corpus.txt"
    path.write_text("first sentence .\n\n   \nsecond sentence .\nthird\n")
    with caplog.at_level(logging.WARNING):
        ds = load_text_corpus(str(path))
    assert ds["text"] == ["first sentence .", "second sentence .", "third"]
    assert "removed 2 empty or whitespace-only line(s) of 5" in caplog.text
    assert "[2, 3]" in caplog.text  # the 1-based line numbers


def test_text_corpus_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does-not-exist.txt"):
        load_text_corpus(str(tmp_path / "does-not-exist.txt"))
    only_blank = tmp_path / "blank.txt"
    only_blank.write_text("\n  \n")
    with pytest.raises(ValueError, match="only empty lines"):
        load_text_corpus(str(only_blank))
    with pytest.raises(ValueError, match="column `text` missing"):
        load_text_corpus(Dataset.from_dict({"sentence": ["a"]}))


def test_text_corpus_from_a_dataset_with_another_column():
    ds = load_text_corpus(Dataset.from_dict({"sentence": ["a b", "c d"]}), column="sentence")
    assert ds.column_names == ["text"] and ds["text"] == ["a b", "c d"]


def test_paired_dataset_missing_feature_column():
    ds = _pairs().remove_columns("image_features")
    with pytest.raises(ValueError, match="column `image_features` missing"):
        load_paired_dataset(ds)


def test_paired_dataset_width_mismatch_names_both_widths():
    with pytest.raises(ValueError, match="image feature dim 8 does not match the configured 768"):
        load_paired_dataset(_pairs(dim=8), image_feature_dim=768)


def test_paired_dataset_nan_and_empty_rows_are_named():
    rows = list(_pairs()["image_features"])
    rows[3][2] = float("nan")
    with pytest.raises(ValueError, match=r"row 3 \(image_id 'img1'\): `image_features` holds NaN"):
        load_paired_dataset(_pairs(image_features=rows))
    ragged = list(_pairs()["image_features"])
    ragged[4] = []
    with pytest.raises(ValueError, match=r"row 4 .*has 0 values, expected 8"):
        load_paired_dataset(_pairs(image_features=ragged))


def test_paired_dataset_empty_caption_is_named():
    captions = list(_pairs()["caption"])
    captions[5] = "  "
    with pytest.raises(ValueError, match=r"row 5 \(image_id 'img2'\): empty caption"):
        load_paired_dataset(_pairs(caption=captions))


def test_paired_dataset_missing_path():
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_paired_dataset("nowhere/at/all")


def test_collator_tokenizes_counts_truncation_and_passes_features(tiny_student):
    texts = load_text_corpus(Dataset.from_dict({"text": ["short one", " ".join(["word"] * 50)]}))
    pairs = load_paired_dataset(_pairs())
    source = TwoSourceDataset(texts, pairs)
    collator = DALRDataCollator(tiny_student.tokenizer, max_seq_length=16)
    text_batch = collator(source.__getitems__([0, 1]))
    assert text_batch["input_ids"].shape == (2, 16) and not bool(text_batch["paired"])
    assert int(text_batch["num_truncated"]) == 1 and int(text_batch["num_sentences"]) == 2
    assert not hasattr(collator, "truncated")  # no state: counts travel in the batch (right with any num_workers)
    paired_batch = collator(source.__getitems__([2, 3, 4]))
    assert bool(paired_batch["paired"])
    assert paired_batch["image_features"].shape == (3, 8)
    assert paired_batch["image_features"].dtype.is_floating_point
    # rows 0,1 -> img0 and row 2 -> img1: equal ids mark captions of the same image
    assert paired_batch["image_ids"].tolist()[0] == paired_batch["image_ids"].tolist()[1]
    assert paired_batch["image_ids"].tolist()[1] != paired_batch["image_ids"].tolist()[2]
    with pytest.raises(ValueError, match="mixes"):
        source.__getitems__([1, 2])
