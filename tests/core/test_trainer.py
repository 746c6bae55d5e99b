"""DALRTrainer end to end on tiny random BERTs: every term logged, every trainable parameter updated, teachers
frozen and never saved, and the saved folder reproduces the evaluator's embeddings."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import torch
from safetensors import safe_open
from sentence_transformers import SentenceTransformer

from dalr_hf.losses.dalr import TERMS, DALRLoss
from dalr_hf.student import build_student
from dalr_hf.teachers import TeacherEnsemble
from dalr_hf.trainer import HEADS_FILE, DALRTrainer
from tests.tiny_fixtures import PAIRS_A, PAIRS_B, RecordingEvaluator, tiny_data, tiny_training_args


def _data(n_text=48, n_pairs=24, dim=32, seed=0):
    return tiny_data(n_text=n_text, n_pairs=n_pairs, dim=dim, seed=seed, captions_per_image=3)


@pytest.fixture()
def teachers(tiny_teacher_dir, tiny_bert_dir):
    return TeacherEnsemble.from_configs(
        [
            {"name_or_path": tiny_teacher_dir, "weight": 0.33},
            {"name_or_path": tiny_bert_dir, "weight": 0.67, "pooler": "mean"},
        ]
    )


def test_train_logs_every_term_updates_every_parameter_and_keeps_teachers_frozen(tmp_path, tiny_bert_dir, teachers):
    student = build_student(tiny_bert_dir)
    text, paired = _data()
    trainer = DALRTrainer(
        model=student,
        args=tiny_training_args(tmp_path, preset="reference"),
        text_dataset=text,
        paired_dataset=paired,
        teachers=teachers,
    )
    assert trainer.schedule.paired_steps_per_epoch >= 2
    trainable = {n: p.detach().clone() for n, p in trainer.loss.named_parameters() if p.requires_grad}
    assert any(n.startswith("model.") for n in trainable) and any(n.startswith("grounding.") for n in trainable)
    teacher_state = [{k: v.clone() for k, v in t.model.state_dict().items()} for t in teachers.teachers]

    trainer.train()

    logged = {k for entry in trainer.state.log_history for k in entry}
    assert set(TERMS) <= logged, f"terms not logged: {set(TERMS) - logged}"
    for entry in trainer.state.log_history:
        for term in TERMS:
            if term in entry:
                assert np.isfinite(entry[term])
    unchanged = [n for n, p in trainer.loss.named_parameters() if p.requires_grad and torch.equal(p, trainable[n])]
    assert unchanged == [], f"parameters that never changed: {unchanged}"
    # Teachers: unchanged, in eval mode, not trainable, not in the optimizer, not in the loss module's state.
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    for teacher, before in zip(teachers.teachers, teacher_state):
        assert not teacher.model.training
        assert all(not p.requires_grad for p in teacher.model.parameters())
        assert all(id(p) not in optimized for p in teacher.model.parameters())
        assert all(torch.equal(v, before[k]) for k, v in teacher.model.state_dict().items())
    teacher_params = {id(p) for t in teachers.teachers for p in t.model.parameters()}
    assert all(id(p) not in teacher_params for p in trainer.loss.parameters())
    assert not any("teacher" in k for k in trainer.loss.state_dict())


def test_best_checkpoint_is_saved_and_reproduces_the_evaluator_embeddings(tmp_path, tiny_bert_dir, teachers):
    student = build_student(tiny_bert_dir)
    text, paired = _data()
    evaluator = RecordingEvaluator(peak_step=4)
    args = tiny_training_args(
        tmp_path,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="best",
        load_best_model_at_end=True,
        metric_for_best_model="eval_stsb_spearman",
        save_total_limit=1,
    )
    trainer = DALRTrainer(
        model=student, args=args, text_dataset=text, paired_dataset=paired, teachers=teachers, evaluator=evaluator
    )
    trainer.train()
    best = trainer.state.best_model_checkpoint
    assert best is not None and os.path.isdir(best)
    assert os.path.isfile(os.path.join(best, HEADS_FILE))  # kept for a resumed run...
    best_step = int(best.rsplit("-", 1)[1])
    assert best_step == 4 and trainer.state.global_step > 6
    out = str(tmp_path / "final")
    trainer.save_model(out)
    assert not os.path.exists(os.path.join(out, HEADS_FILE))  # ...but never in the exported model

    reloaded = SentenceTransformer(out)
    embeddings = reloaded.encode(PAIRS_A + PAIRS_B, convert_to_numpy=True)
    np.testing.assert_allclose(embeddings, evaluator.embeddings[best_step], rtol=0, atol=1e-5)
    assert np.abs(embeddings - evaluator.embeddings[6]).max() > 1e-3  # later steps did change the student
    # what is saved is exactly the student: no head, no teacher weights
    with safe_open(os.path.join(out, "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    student_keys = set(student[0].auto_model.state_dict())
    assert set(keys) == student_keys
    assert not any(k.startswith(("mlp", "grounding", "consistency", "pooler")) for k in keys)


@pytest.mark.parametrize("preset", ["paper", "clean"])
def test_presets_train(tmp_path, tiny_bert_dir, teachers, preset):
    student = build_student(tiny_bert_dir)
    text, paired = _data()
    trainer = DALRTrainer(
        model=student,
        args=tiny_training_args(tmp_path, preset=preset, max_steps=3),
        text_dataset=text,
        paired_dataset=paired,
        teachers=teachers,
    )
    trainer.train()
    logged = {k for entry in trainer.state.log_history for k in entry}
    expected = {"L_info", "L_ground", "L_cons", "L_cma", "L_ima", "L_rank"} | (
        {"L_g2l"} if preset == "clean" else set()
    )
    assert expected <= logged
    if preset == "paper":
        assert "L_g2l" not in logged


def test_paired_batch_of_one_skips_consistency_with_a_warning(tmp_path, tiny_bert_dir, teachers, caplog):
    student = build_student(tiny_bert_dir)
    text, paired = _data(n_text=6, n_pairs=3)
    args = tiny_training_args(tmp_path, per_device_train_batch_size=2, paired_batch_size=1, max_steps=4)
    trainer = DALRTrainer(model=student, args=args, text_dataset=text, paired_dataset=paired, teachers=teachers)
    with caplog.at_level(logging.WARNING):
        trainer.train()
    assert trainer.loss.consistency.skipped_batches >= 1
    assert "batch" in caplog.text.lower()
    assert all(np.isfinite(v) for e in trainer.state.log_history for k, v in e.items() if k.startswith("L_"))


def test_bf16_autocast_keeps_loss_math_in_float32(tmp_path, tiny_bert_dir, teachers):
    student = build_student(tiny_bert_dir)
    text, paired = _data()
    trainer = DALRTrainer(
        model=student,
        args=tiny_training_args(tmp_path, bf16=True, max_steps=2, use_cpu=True),
        text_dataset=text,
        paired_dataset=paired,
        teachers=teachers,
    )
    trainer.train()
    batch = next(iter(trainer.get_train_dataloader()))  # step 0 of an epoch is paired
    assert bool(batch["paired"])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = trainer.loss(batch)
    assert set(terms) == set(TERMS)
    assert all(v.dtype == torch.float32 for v in terms.values())


def test_cached_teacher_embeddings_give_the_online_losses(tmp_path, tiny_bert_dir, teachers):
    student = build_student(tiny_bert_dir)
    text, paired = _data()
    args = tiny_training_args(tmp_path, use_g2l=False, mismatch="roll5", teacher_sim_fp16=False)
    same = {"model": student, "args": args, "text_dataset": text}  # the two trainers differ only in their teachers
    online = DALRTrainer(**same, paired_dataset=paired, teachers=teachers)
    cached_embeddings = teachers(list(paired["caption"])).embeddings
    cached_pairs = paired
    for k, emb in enumerate(cached_embeddings):
        cached_pairs = cached_pairs.add_column(f"teacher_emb_{k}", emb.numpy().tolist())
    cached = DALRTrainer(**same, paired_dataset=cached_pairs, teachers=None, teacher_weights=teachers.weights)
    cached.loss.load_state_dict(online.loss.state_dict())
    batch = next(iter(cached.get_train_dataloader()))
    assert "teacher_emb_0" in batch and bool(batch["paired"])
    online_batch = {k: v for k, v in batch.items() if not k.startswith("teacher_emb_")}
    student.eval()  # no dropout: both paths see the same student outputs
    torch.manual_seed(0)
    a = online.loss(online_batch)
    torch.manual_seed(0)
    b = cached.loss(batch)
    assert set(a) == set(b)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)


def test_configuration_errors_are_clear(tmp_path, tiny_bert_dir, teachers, tiny_student):
    text, paired = _data(dim=48)
    with pytest.raises(ValueError, match="same width"):
        DALRTrainer(
            model=tiny_student,
            args=tiny_training_args(tmp_path),
            text_dataset=text,
            paired_dataset=paired,
            teachers=teachers,
        )
    with pytest.raises(ValueError, match="image feature dim 48 does not match the configured 32"):
        DALRTrainer(
            model=tiny_student,
            args=tiny_training_args(tmp_path, image_feature_dim=32),
            text_dataset=text,
            paired_dataset=paired,
            teachers=teachers,
        )
    with pytest.raises(ValueError, match="needs teachers"):
        DALRTrainer(model=tiny_student, args=tiny_training_args(tmp_path), text_dataset=text, paired_dataset=_data()[1])
    with pytest.raises(ValueError, match="no evaluator"):
        DALRTrainer(model=tiny_student, args=tiny_training_args(tmp_path, eval_strategy="steps"), text_dataset=text)
    with pytest.raises(ValueError, match="preset"):
        tiny_training_args(tmp_path, preset="nope")
    # grounding-space CMA works with any image width
    trainer = DALRTrainer(
        model=tiny_student,
        args=tiny_training_args(tmp_path, cma_space="grounding", max_steps=1),
        text_dataset=text,
        paired_dataset=paired,
        teachers=teachers,
    )
    trainer.train()
    assert any("L_cma" in e for e in trainer.state.log_history)


def test_text_only_training_is_simcse(tmp_path, tiny_student):
    text, _ = _data()
    trainer = DALRTrainer(
        model=tiny_student, args=tiny_training_args(tmp_path, arc_margin_text=0.0, max_steps=2), text_dataset=text
    )
    trainer.train()
    logged = {k for entry in trainer.state.log_history for k in entry}
    assert "L_info" in logged and not ({"L_cma", "L_ground", "L_rank"} & logged)
    assert isinstance(trainer.loss, DALRLoss) and not trainer.loss.multimodal
