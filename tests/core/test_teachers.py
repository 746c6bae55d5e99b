"""Frozen teachers: poolers against the backbone's own outputs, frozen state, fingerprints, ensemble and checks."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from dalr_hf.teachers import CachedTeachers, Teacher, TeacherConfig, TeacherEnsemble

SENTENCES = ["a man sings at night", "the blue car", "two dogs run over the hill in the city"]


def _reference_states(folder: str, max_length: int = 32):
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder, add_pooling_layer=False).eval()
    batch = tokenizer(SENTENCES, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    return hidden, batch["attention_mask"]


def test_cls_before_pooler_and_mean_match_the_backbone(tiny_teacher_dir):
    hidden, mask = _reference_states(tiny_teacher_dir)
    cls = Teacher(tiny_teacher_dir).encode(SENTENCES)
    torch.testing.assert_close(cls, hidden[:, 0], rtol=1e-5, atol=1e-6)
    mean = Teacher({"name_or_path": tiny_teacher_dir, "pooler": "mean"}).encode(SENTENCES, batch_size=2)
    m = mask.unsqueeze(-1).float()
    torch.testing.assert_close(mean, (hidden * m).sum(1) / m.sum(1), rtol=1e-5, atol=1e-6)
    assert cls.dtype == torch.float32 and not cls.requires_grad


def test_teacher_stays_frozen_and_in_eval_mode(tiny_teacher_dir):
    teacher = Teacher(tiny_teacher_dir)
    teacher.train()
    assert not teacher.model.training
    assert all(not p.requires_grad for p in teacher.model.parameters())
    a, b = teacher.encode(SENTENCES), teacher.encode(SENTENCES)
    assert torch.equal(a, b)  # no dropout


def test_tokens_exclude_cls_and_keep_the_mask(tiny_teacher_dir):
    hidden, mask = _reference_states(tiny_teacher_dir, max_length=6)
    teacher = Teacher({"name_or_path": tiny_teacher_dir, "max_length": 6})
    pooled, tokens, token_mask = teacher.encode_with_tokens(SENTENCES)
    torch.testing.assert_close(tokens, hidden[:, 1:], rtol=1e-5, atol=1e-6)
    assert torch.equal(token_mask, mask[:, 1:]) and tokens.shape[1] == 5
    torch.testing.assert_close(pooled, hidden[:, 0], rtol=1e-5, atol=1e-6)


def test_fingerprint_identifies_the_weights(tiny_teacher_dir, tiny_bert_dir):
    a, a_again, b = Teacher(tiny_teacher_dir), Teacher(tiny_teacher_dir), Teacher(tiny_bert_dir)
    assert a.fingerprint() == a_again.fingerprint()
    assert a.fingerprint()["weights_sha256"] != b.fingerprint()["weights_sha256"]
    assert a.fingerprint()["hidden_size"] == 32 and a.fingerprint()["pooler"] == "cls_before_pooler"


def test_ensemble_outputs_weights_and_mixed_tokens(tiny_teacher_dir, tiny_bert_dir):
    ensemble = TeacherEnsemble.from_configs(
        [{"name_or_path": tiny_teacher_dir, "weight": 0.25}, {"name_or_path": tiny_bert_dir, "weight": 0.75}]
    )
    out = ensemble(SENTENCES)
    assert len(ensemble) == 2 and out.weights == [0.25, 0.75] and out.token_states is None
    assert [e.shape for e in out.embeddings] == [(3, 32), (3, 32)]
    with_tokens = ensemble(SENTENCES, with_tokens=True)
    single = [t.encode_with_tokens(SENTENCES)[1] for t in ensemble.teachers]
    torch.testing.assert_close(with_tokens.token_states, 0.25 * single[0] + 0.75 * single[1])
    ensemble.check_token_mixing(32)
    with pytest.raises(ValueError, match="hidden size to equal the student's \\(64\\)"):
        ensemble.check_token_mixing(64)
    cached = ensemble.cached()
    assert isinstance(cached, CachedTeachers) and cached.weights == [0.25, 0.75]
    assert cached.fingerprints == ensemble.fingerprints() and len(cached) == 2


def test_configuration_errors_name_the_teacher(tiny_teacher_dir):
    with pytest.raises(ValueError, match="pooler 'max' is not one of"):
        TeacherConfig(name_or_path="t", pooler="max")
    with pytest.raises(ValueError, match="weight must be > 0"):
        TeacherConfig(name_or_path="t", weight=0)
    with pytest.raises(ValueError, match="unknown teacher option"):
        TeacherConfig.from_any({"name_or_path": "t", "pooling": "mean"})
    with pytest.raises(ValueError, match="needs a trained pooling layer"):
        Teacher({"name_or_path": tiny_teacher_dir, "pooler": "cls"})
    with pytest.raises(ValueError, match="at least one teacher"):
        TeacherEnsemble([])


def test_sentence_transformer_folder_is_read_from_its_transformer_module(tmp_path, tiny_teacher_dir):
    from dalr_hf.student import build_student

    folder = str(tmp_path / "st")
    build_student(tiny_teacher_dir).save(folder)
    assert torch.allclose(Teacher(folder).encode(SENTENCES), Teacher(tiny_teacher_dir).encode(SENTENCES), atol=1e-6)
