"""Fixtures of the publishing tests: one tiny DALR run (checkpoints, best-model reload, export and card data),
shared by the export, card and Hub tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from dalr_hf.publish.export import export_after_training
from dalr_hf.student import build_student
from dalr_hf.teachers import TeacherEnsemble
from dalr_hf.trainer import DALRTrainer
from dalr_hf.training_args import DALRTrainingArguments
from tests.publish.publish_helpers import PROBE_SENTENCES, HubStandIn, RecordingEvaluator, RunningHub, tiny_data

# both session runs: 4 steps of 8, STS evaluation every 2 steps, the best checkpoint kept and reloaded at the end
BEST_CHECKPOINT_RUN = dict(
    per_device_train_batch_size=8,
    max_steps=4,
    eval_strategy="steps",
    eval_steps=2,
    save_strategy="best",
    load_best_model_at_end=True,
    save_total_limit=1,
    logging_steps=1,
)
TEACHER_NAMES = ["princeton-nlp/unsup-simcse-bert-base-uncased", "voidism/diffcse-bert-base-uncased-sts"]


@pytest.fixture()
def hub(monkeypatch) -> HubStandIn:
    """The Hub stand-in, with huggingface_hub pointed at it (its default endpoint, as HF_ENDPOINT would set it) and
    out of offline mode (tests/conftest.py sets HF_HUB_OFFLINE=1) for this test only: every request the client makes
    goes to 127.0.0.1. huggingface_hub reads both variables once, at import, hence the patched constants."""
    import huggingface_hub

    with RunningHub() as server:
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", server.url)
        yield server


@dataclass
class TrainedRun:
    trainer: DALRTrainer
    output_dir: Path
    export_dir: Path
    evaluator: RecordingEvaluator
    export_summary: dict
    embeddings: np.ndarray  # the trained (best) model's embeddings of PROBE_SENTENCES, before any export


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_bert_dir, tiny_teacher_dir) -> TrainedRun:
    """A 4-step DALR run on tiny BERTs with STS evaluation every 2 steps, best checkpoint reloaded at the end,
    saved, then exported with its card data as the training script does."""
    output_dir = tmp_path_factory.mktemp("publish_run") / "out"
    student = build_student(tiny_bert_dir, max_seq_length=16)
    teachers = TeacherEnsemble.from_configs(
        [
            {"name_or_path": tiny_teacher_dir, "weight": 0.33},
            {"name_or_path": tiny_bert_dir, "weight": 0.67, "pooler": "mean"},
        ]
    )
    text, paired = tiny_data()
    evaluator = RecordingEvaluator()
    args = DALRTrainingArguments(
        output_dir=str(output_dir),
        preset="clean",
        cons_weight=0.5,
        max_seq_length=16,
        **BEST_CHECKPOINT_RUN,
        learning_rate=1e-3,
        report_to="tensorboard",  # event files, as the recipes write them
    )
    trainer = DALRTrainer(
        model=student, args=args, text_dataset=text, paired_dataset=paired, teachers=teachers, evaluator=evaluator
    )
    trainer.train()
    trainer.save_model(str(output_dir))
    embeddings = trainer.model.encode(PROBE_SENTENCES, convert_to_numpy=True)
    summary = export_after_training(
        trainer,
        output_dir / "export",
        card_inputs={
            "base_model": "bert-base-uncased",
            "teacher_names": TEACHER_NAMES,
            "text_corpus": "data/wiki1m_for_simcse.txt",
            "run_report": {
                "metric": "eval_stsb_spearman",
                "before": 10.0,
                "after": 20.0,
                "best_checkpoint": trainer.state.best_model_checkpoint,
            },
        },
    ).to_dict()
    return TrainedRun(trainer, output_dir, output_dir / "export", evaluator, summary, embeddings)


@dataclass
class LoraRun:
    trainer: DALRTrainer
    output_dir: Path
    evaluator: RecordingEvaluator
    base_state: dict  # the backbone's weights before training
    lora_before: dict  # adapter weights after injection, before training
    heads_before: dict  # training heads of the loss module, before training


@pytest.fixture(scope="session")
def lora_run(tmp_path_factory, tiny_bert_dir, tiny_teacher_dir) -> LoraRun:
    """A 4-step LoRA run (DALRTrainer applies the adapters from the arguments when training starts), best checkpoint
    reloaded."""
    output_dir = tmp_path_factory.mktemp("lora_run") / "out"
    student = build_student(tiny_bert_dir)
    base_state = {k: v.detach().clone() for k, v in student[0].auto_model.state_dict().items()}
    teachers = TeacherEnsemble.from_configs([{"name_or_path": tiny_teacher_dir, "weight": 1.0}])
    text, paired = tiny_data()
    evaluator = RecordingEvaluator()
    args = DALRTrainingArguments(
        output_dir=str(output_dir),
        lora=True,
        lora_r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        lora_target_modules=["query", "value"],
        **BEST_CHECKPOINT_RUN,
        learning_rate=5e-3,
        report_to="none",
    )
    trainer = DALRTrainer(
        model=student, args=args, text_dataset=text, paired_dataset=paired, teachers=teachers, evaluator=evaluator
    )
    assert not any(".lora_" in n for n, _ in student.named_parameters())  # constructing changes nothing
    trainer.prepare_for_training()  # what train() does first: here, inject the adapters from the arguments
    lora_before = {n: p.detach().clone() for n, p in student.named_parameters() if ".lora_" in n}
    heads_before = {n: p.detach().clone() for n, p in trainer.loss.named_parameters() if not n.startswith("model.")}
    trainer.train()
    trainer.save_model(str(output_dir))
    return LoraRun(trainer, output_dir, evaluator, base_state, lora_before, heads_before)
