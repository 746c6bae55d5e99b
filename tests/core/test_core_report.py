"""The run report compares the trained student with its base model AS SHIPPED, on the STS test sets."""

from __future__ import annotations

import json

import pytest
import yaml
from sentence_transformers import SentenceTransformer

from dalr_hf.evaluation import SentEvalEvaluator
from dalr_hf.report import build_comparison, format_comparison, model_settings, sts_test_scores
from dalr_hf.scripts.train import main as train_main
from tests.recipe_fixtures import stand_in_recipe, write_inputs


def test_comparison_says_plainly_when_the_student_ends_below_its_base():
    base = {"STS12": 70.0, "STSBenchmark": 80.0}
    student = {"STS12": 71.0, "STSBenchmark": 77.0}
    c = build_comparison(
        "my/base",
        {"pooling": "mean", "max_seq_length": 256},
        {"pooling": "mean", "max_seq_length": 256},
        dev_base=86.0,
        dev_student=87.0,  # a dev gain must not make a test loss look like an improvement
        test_base=base,
        test_student=student,
    )
    assert c["test"]["STS12"] == {"base": 70.0, "student": 71.0, "delta": 1.0}
    assert c["test"]["avg"] == {"base": 75.0, "student": 74.0, "delta": -1.0}
    assert c["improved"] is False and c["improved_on"] == "sts_test_avg"
    assert "BELOW its base model as shipped" in c["verdict"] and "STSBenchmark" in c["verdict"]
    text = format_comparison(c)
    assert "STSBenchmark" in text and "-3.00" in text and "+1.00" in text and "BELOW" in text
    above = build_comparison(
        "my/base",
        {"pooling": "mean", "max_seq_length": 256},
        {"pooling": "mean", "max_seq_length": 256},
        86.0,
        85.0,
        test_base=base,
        test_student={"STS12": 72.0, "STSBenchmark": 79.0},
    )
    assert (
        above["improved"] is True and "ABOVE" in above["verdict"] and "1 of 2 sets (STSBenchmark)" in above["verdict"]
    )
    skipped = build_comparison(
        "b", {"pooling": "mean", "max_seq_length": 8}, {"pooling": "cls", "max_seq_length": 8}, 80.0, 79.0
    )
    assert skipped["test"] is None and skipped["test_skipped"] is True and skipped["improved"] is False
    assert "skipped" in skipped["verdict"]


def test_recipe_report_compares_with_the_base_as_shipped(tmp_path, tiny_bert_dir, tiny_teacher_dir, capsys):
    config = stand_in_recipe(
        tiny_bert_dir,
        tiny_teacher_dir,
        write_inputs(tmp_path, sts_lines=60),
        tmp_path / "out",
        student_pooling="cls",  # re-pooled: the base as shipped (plain SentenceTransformer) uses mean pooling
        sts_test_tasks=["STSBenchmark", "SICKRelatedness"],
        max_steps=3,
        eval_steps=3,
        save_strategy="best",  # the trainer's defaults, not the stand-in recipe's: keep the best, end with it
        load_best_model_at_end=True,
        save_total_limit=1,
        cml_weight=0.0,
        iml_weight=0.0,
    )
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    report = train_main(["--config", str(path)])
    saved = json.loads((tmp_path / "out" / "dalr_run_report.json").read_text())
    c = saved["comparison"]
    assert c == report["comparison"]

    base = SentenceTransformer(tiny_bert_dir, device="cpu")
    assert c["base_model"] == tiny_bert_dir
    assert c["base_as_shipped"] == model_settings(base) and c["base_as_shipped"]["pooling"] == "mean"
    assert c["student"] == {"pooling": "cls", "max_seq_length": 32}
    assert c["repooled_start"]["pooling"] == "cls" and c["repooled_start"]["max_seq_length"] == 32
    evaluator = SentEvalEvaluator(data_dir=str(tmp_path / "downstream"))
    assert c["dev"]["metric"] == "eval_stsb_spearman"
    assert c["dev"]["base"] == pytest.approx(evaluator(base)["stsb_spearman"], abs=1e-6)
    assert c["repooled_start"]["dev"] != pytest.approx(c["dev"]["base"], abs=1e-6)

    expected_base = sts_test_scores(base, ["STSBenchmark", "SICKRelatedness"])
    trained = sts_test_scores(
        SentenceTransformer(str(tmp_path / "out"), device="cpu"), ["STSBenchmark", "SICKRelatedness"]
    )
    assert list(c["test"]) == ["STSBenchmark", "SICKRelatedness", "avg"]
    for task in ("STSBenchmark", "SICKRelatedness"):
        assert c["test"][task]["base"] == pytest.approx(expected_base[task], abs=1e-6)
        assert c["test"][task]["student"] == pytest.approx(trained[task], abs=1e-6)
    avg = c["test"]["avg"]
    assert avg["delta"] == pytest.approx(avg["student"] - avg["base"])
    assert c["improved"] is (avg["student"] > avg["base"])
    assert ("ABOVE" if c["improved"] else "BELOW") in c["verdict"]
    assert (c["verdict"] in saved["warnings"]) is (not c["improved"])
    out = capsys.readouterr().out
    assert "RE-CONFIGURED copy of the base (pooling cls, max_seq_length 32" in out
    assert "SICKRelatedness" in out and c["verdict"] in out
