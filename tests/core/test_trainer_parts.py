"""DALRTrainer from ready parts: a DALRLoss and a DatasetDict; constructing has no side effects; the schedule is a
sentence-transformers batch sampler; truncation is counted right with DataLoader workers."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict
from sentence_transformers.base.sampler import MultiDatasetDefaultBatchSampler

from dalr_hf.data import TwoSourceBatchSampler
from dalr_hf.losses.dalr import DALRLoss
from dalr_hf.student import build_student
from dalr_hf.teachers import TeacherEnsemble
from dalr_hf.trainer import SCHEDULE_FILE, DALRTrainer, build_train_dataset
from tests.tiny_fixtures import WORDS, tiny_data, tiny_training_args


@pytest.fixture()
def teachers(tiny_teacher_dir):
    return TeacherEnsemble.from_configs([{"name_or_path": tiny_teacher_dir, "weight": 1.0}])


def test_trainer_from_a_loss_and_a_dataset_dict_trains(tmp_path, tiny_bert_dir, teachers):
    student = build_student(tiny_bert_dir, max_seq_length=64)
    text, paired = tiny_data(n_text=40, n_pairs=16, dim=32)
    args = tiny_training_args(tmp_path, lora=True, lora_r=2, max_seq_length=16)
    loss = DALRLoss(student, teachers, "clean", image_feature_dim=32, use_g2l=False, seed=3)
    rng_before = torch.random.get_rng_state()

    trainer = DALRTrainer(model=student, args=args, loss=loss, train_dataset=DatasetDict(text=text, paired=paired))

    # constructing: nothing on disk, the caller's model and the global RNG untouched
    assert not os.path.exists(args.output_dir)
    assert not any(".lora_" in n for n, _ in student.named_parameters())
    assert student.max_seq_length == 64
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    assert trainer.loss is loss and trainer.teachers is teachers

    trainer.train()

    schedule = json.loads(open(os.path.join(args.output_dir, SCHEDULE_FILE)).read())
    assert schedule["schedule"]["interleave"] == "k_rule" and schedule["loss"]["preset"] == "clean"
    assert schedule["effective_weights"]["L_g2l"] == 0.0
    assert any(".lora_" in n for n, _ in student.named_parameters()) and student.max_seq_length == 16
    steps = trainer.source_steps()
    assert steps == {"text": trainer.schedule.text_steps_per_epoch, "paired": trainer.schedule.paired_steps_per_epoch}
    assert steps["text"] > 0 and steps["paired"] > 0
    logged = {k for entry in trainer.state.log_history for k in entry}
    assert {"L_info", "L_cma", "L_rank"} <= logged


def test_the_schedule_is_a_sentence_transformers_multi_dataset_batch_sampler(tmp_path, tiny_student, teachers):
    text, paired = tiny_data(n_text=24, n_pairs=24, dim=32)
    trainer = DALRTrainer(
        model=tiny_student,
        args=tiny_training_args(tmp_path, use_g2l=False),
        train_dataset=DatasetDict(text=text, paired=paired),
        teachers=teachers,
    )
    loader = trainer.get_train_dataloader()
    assert isinstance(loader.batch_sampler, TwoSourceBatchSampler)
    assert isinstance(loader.batch_sampler, MultiDatasetDefaultBatchSampler)
    # equal sizes: the reference's k = 1 would never read the text; both sources are used, evenly
    assert trainer.schedule.interleave == "even"
    kinds = ["paired" if bool(b["paired"]) else "text" for b in loader]
    assert kinds == ["paired", "text"] * 3


def test_path_convenience_builds_the_same_datasets(tmp_path, tiny_student):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("a dog runs\n\nthe red car\n   \nblue city at night\n")
    built = build_train_dataset(str(corpus))
    assert list(built) == ["text"] and built["text"]["text"] == ["a dog runs", "the red car", "blue city at night"]
    trainer = DALRTrainer(model=tiny_student, args=tiny_training_args(tmp_path), text_dataset=str(corpus))
    assert trainer.train_dataset["text"]["text"] == built["text"]["text"]
    with pytest.raises(ValueError, match="either train_dataset"):
        DALRTrainer(
            model=tiny_student, args=tiny_training_args(tmp_path), train_dataset=built, text_dataset=str(corpus)
        )
    with pytest.raises(ValueError, match=r"'text' and/or 'paired'.*\['captions'\]"):
        DALRTrainer(
            model=tiny_student, args=tiny_training_args(tmp_path), train_dataset=DatasetDict(captions=built["text"])
        )
    with pytest.raises(TypeError, match="DatasetDict"):
        DALRTrainer(model=tiny_student, args=tiny_training_args(tmp_path), train_dataset=built["text"])


def test_a_given_loss_must_match_the_model_and_the_data(tmp_path, tiny_student, tiny_bert_dir, teachers):
    text, paired = tiny_data(n_text=16, n_pairs=8, dim=32)
    data = DatasetDict(text=text, paired=paired)
    text_only = DALRLoss(tiny_student)
    with pytest.raises(ValueError, match="image features are 32-d but the loss was built with image_feature_dim=None"):
        DALRTrainer(model=tiny_student, args=tiny_training_args(tmp_path), loss=text_only, train_dataset=data)
    other = DALRLoss(build_student(tiny_bert_dir), teachers, image_feature_dim=32, use_g2l=False)
    with pytest.raises(ValueError, match="another model"):
        DALRTrainer(model=tiny_student, args=tiny_training_args(tmp_path), loss=other, train_dataset=data)
    loss = DALRLoss(tiny_student, teachers, image_feature_dim=32, use_g2l=False)
    with pytest.raises(ValueError, match="carries its own"):
        DALRTrainer(
            model=tiny_student, args=tiny_training_args(tmp_path), loss=loss, train_dataset=data, teachers=teachers
        )


def test_truncation_is_counted_once_and_right_with_two_workers(tmp_path, tiny_student):
    rng = np.random.default_rng(0)
    # 40 sentences; every fourth is 40 words long (more than max_seq_length 12 tokens), the others 3 words
    sentences = [" ".join(rng.choice(WORDS, size=40 if i % 4 == 0 else 3)) for i in range(40)]
    lengths = tiny_student.tokenizer(sentences, truncation=False)["input_ids"]
    expected = sum(1 for ids in lengths if len(ids) > 12)
    assert expected == 10
    args = tiny_training_args(tmp_path, max_seq_length=12, dataloader_num_workers=2, num_train_epochs=2)
    trainer = DALRTrainer(
        model=tiny_student, args=args, train_dataset=DatasetDict(text=Dataset.from_dict({"text": sentences}))
    )
    trainer.train()
    report = trainer.truncation_report()
    assert report == {"sentences_seen": 80, "truncated": 2 * expected, "max_seq_length": 12}
