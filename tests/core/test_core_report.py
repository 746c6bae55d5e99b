"""The run report compares the trained student with its base model AS SHIPPED, on the STS test sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from sentence_transformers import SentenceTransformer

from dalr_hf.evaluation import SentEvalEvaluator
from dalr_hf.report import build_comparison, format_comparison, model_settings, sts_test_scores
from dalr_hf.scripts.train import main as train_main

REPO_ROOT = Path(__file__).resolve().parents[2]


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


def _dev_dir(tmp_path: Path) -> Path:
    downstream = tmp_path / "downstream"
    sts_dir = downstream / "STS" / "STSBenchmark"
    sts_dir.mkdir(parents=True)
    dev = (REPO_ROOT / "data" / "senteval" / "downstream" / "STS" / "STSBenchmark" / "sts-dev.csv").read_text(
        encoding="utf-8"
    )
    (sts_dir / "sts-dev.csv").write_text("\n".join(dev.splitlines()[:60]) + "\n", encoding="utf-8")
    return downstream


def test_recipe_report_compares_with_the_base_as_shipped(tmp_path, tiny_bert_dir, tiny_teacher_dir, capsys):
    corpus = tmp_path / "corpus.txt"
    lines = (REPO_ROOT / "data" / "demo" / "wiki1m_slice.txt").read_text(encoding="utf-8").splitlines()
    corpus.write_text("\n".join(lines[:24]) + "\n", encoding="utf-8")
    captions = tmp_path / "captions.txt"
    lines = (REPO_ROOT / "data" / "demo" / "flickr30k_captions_slice.txt").read_text(encoding="utf-8").splitlines()
    captions.write_text("\n".join(lines[:12]) + "\n", encoding="utf-8")
    config = {
        "student_model": tiny_bert_dir,
        "student_pooling": "cls",  # re-pooled: the base as shipped (plain SentenceTransformer) uses mean pooling
        "teachers": [tiny_teacher_dir],
        "teacher_weights": [1.0],
        "text_corpus": str(corpus),
        "stand_in_captions": str(captions),
        "stand_in_dim": 32,
        "eval_data_dir": str(_dev_dir(tmp_path)),
        "sts_test_tasks": ["STSBenchmark", "SICKRelatedness"],
        "output_dir": str(tmp_path / "out"),
        "per_device_train_batch_size": 4,
        "max_steps": 3,
        "eval_steps": 3,
        "save_total_limit": 1,
        "logging_steps": 1,
        "report_to": "none",
        "export_dir": "none",
        "cml_weight": 0.0,
        "iml_weight": 0.0,
    }
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
