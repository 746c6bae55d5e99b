"""SentEvalEvaluator: evaluation during training and best-checkpoint selection."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from dalr_hf.evaluation import NonFiniteEmbeddingError, SentEvalEvaluator, evaluate_sts
from dalr_hf.evaluation.data import bundled_data_dir


@pytest.fixture(scope="module")
def dev_only_small(tmp_path_factory) -> Path:
    """A data dir with nothing but the first 300 lines of STS-B dev."""
    root = tmp_path_factory.mktemp("dev_only_small")
    (root / "STS" / "STSBenchmark").mkdir(parents=True)
    lines = (bundled_data_dir() / "STS" / "STSBenchmark" / "sts-dev.csv").read_bytes().split(b"\n")[:300]
    (root / "STS" / "STSBenchmark" / "sts-dev.csv").write_bytes(b"\n".join(lines) + b"\n")
    return root


def test_default_is_stsb_dev_and_needs_only_that_file(tiny_student, dev_only_small, tmp_path):
    evaluator = SentEvalEvaluator(data_dir=dev_only_small, batch_size=64)
    assert evaluator.tasks == ["STSBenchmark-dev"] and evaluator.primary_metric == "stsb_spearman"
    assert evaluator.greater_is_better
    tiny_student.train()
    first = evaluator(tiny_student, output_path=str(tmp_path), epoch=1, steps=125)
    assert tiny_student.training  # train mode restored
    second = evaluator(tiny_student, output_path=str(tmp_path), epoch=1, steps=250)
    assert list(first) == ["stsb_spearman"] and first == second  # deterministic
    [reference] = evaluate_sts(tiny_student, tasks=["STSBenchmark-dev"], data_dir=dev_only_small)
    assert first["stsb_spearman"] == pytest.approx(reference.spearman)
    rows = list(csv.reader((tmp_path / "senteval_evaluation_results.csv").open()))
    assert rows[0] == ["epoch", "steps", "stsb_spearman"] and [r[1] for r in rows[1:]] == ["125", "250"]


def test_selectable_tasks_metric_choice_and_prefix(tiny_student, transfer_dir, small_sts_dir, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(transfer_dir, root)
    shutil.copytree(small_sts_dir / "STS", root / "STS")
    evaluator = SentEvalEvaluator(
        tasks=["STSBenchmark-dev", "STSBenchmark", "TREC", "MPQA"], data_dir=root, primary_metric="trec_acc", name="dev"
    )
    assert evaluator.metric_keys == [
        "stsb_spearman",
        "stsb_test_spearman",
        "trec_acc",
        "trec_devacc",
        "mpqa_acc",
        "mpqa_devacc",
        "transfer_avg",
    ]
    metrics = evaluator(tiny_student)
    assert set(metrics) == {f"dev_{k}" for k in evaluator.metric_keys}
    assert evaluator.primary_metric == "dev_trec_acc"
    assert 0 <= metrics["dev_trec_acc"] <= 100
    assert metrics["dev_transfer_avg"] == pytest.approx(
        (round(metrics["dev_trec_acc"], 2) + round(metrics["dev_mpqa_acc"], 2)) / 2
    )
    with pytest.raises(ValueError, match="primary_metric 'sts12_spearman' is not produced"):
        SentEvalEvaluator(data_dir=small_sts_dir, primary_metric="sts12_spearman")
    with pytest.raises(FileNotFoundError, match=r"STS12-en-test/STS\.input\.MSRpar\.txt"):
        SentEvalEvaluator(tasks="STS12", data_dir=small_sts_dir)


def test_nan_model_raises_instead_of_scoring(nan_model_dir, small_sts_dir):
    from sentence_transformers import SentenceTransformer

    evaluator = SentEvalEvaluator(data_dir=small_sts_dir)
    with pytest.raises(NonFiniteEmbeddingError, match="NaN/Inf"):
        evaluator(SentenceTransformer(nan_model_dir))


def test_trainer_keeps_the_best_checkpoint_by_stsb_dev(tiny_bert_dir, dev_only_small, tmp_path):
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from dalr_hf.student import build_student

    model = build_student(tiny_bert_dir, pooling="cls", max_seq_length=32)
    pairs = Dataset.from_dict(
        {
            "anchor": [f"a person is doing thing number {i} ." for i in range(32)],
            "positive": [f"someone does the {i}th thing ." for i in range(32)],
        }
    )
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "run"),
        max_steps=4,
        per_device_train_batch_size=8,
        learning_rate=5e-4,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="steps",
        save_steps=2,
        load_best_model_at_end=True,
        metric_for_best_model="eval_stsb_spearman",
        greater_is_better=True,
        report_to="none",
        use_cpu=True,
        seed=0,
        logging_steps=1,
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=pairs,
        loss=MultipleNegativesRankingLoss(model),
        evaluator=SentEvalEvaluator(data_dir=dev_only_small),
    )
    trainer.train()
    scores = [entry["eval_stsb_spearman"] for entry in trainer.state.log_history if "eval_stsb_spearman" in entry]
    assert len(scores) == 2
    assert trainer.state.best_metric == pytest.approx(max(scores))
    assert trainer.state.best_model_checkpoint.endswith(f"checkpoint-{2 * (1 + scores.index(max(scores)))}")
    assert (tmp_path / "run" / "eval" / "senteval_evaluation_results.csv").is_file()
