"""STS protocol: published all-MiniLM-L6-v2 figures, aggregations, one encoding per sentence, NaN handling."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from dalr_hf.evaluation import evaluate_model, evaluate_sts
from dalr_hf.evaluation.data import STS_TASKS, DataReport, STSData, load_sts_task
from dalr_hf.evaluation.results import simcse_average
from dalr_hf.evaluation.sts import score_sts

# all-MiniLM-L6-v2 as published in MTEB's results repository
# (results/sentence-transformers__all-MiniLM-L6-v2/8b3219a92973c328a8e22fadcfa821b5dc75636a/<task>.json,
# cosine_spearman x 100). MTEB's STS12-16 pool all pairs of a year, i.e. the "all" aggregation.
PUBLISHED = {"STSBenchmark": 82.03, "STS12": 72.37, "STS13": 80.60, "STS15": 85.39, "STS16": 78.99}
# No published figure on these exact sets: MTEB's SICK-R scores all 9,927 SICK pairs (published 77.58, which this
# suite's reader reproduces on SICK train + trial + test), SentEval scores the 4,927-pair test split; no STS14
# figure was available. These are this suite's measurements, kept as regression values.
MEASURED = {"STS14": 75.59, "SICKRelatedness": 77.15}


@pytest.fixture(scope="session")
def minilm_sts(minilm):
    """The whole STS suite for all-MiniLM-L6-v2 as shipped (mean pooling), encoded once for all tests."""
    rows = []
    # sentence-transformers calls BertModel.forward directly (no module hooks); its embedding layer runs per batch
    handle = minilm[0].auto_model.embeddings.register_forward_hook(lambda mod, args, out: rows.append(len(out)))
    try:
        report = evaluate_model(minilm, tasks="sts")
    finally:
        handle.remove()
    return report, sum(rows)


@pytest.mark.slow
def test_all_minilm_reproduces_its_published_stsb_test_score(minilm_sts):
    report, _ = minilm_sts
    stsb = next(r for r in report.sts if r.task == "STSBenchmark")
    assert stsb.ok and stsb.n_pairs == 1379
    assert stsb.spearman == pytest.approx(82.03, abs=0.05)


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(PUBLISHED))
def test_all_minilm_matches_published_sts_scores(minilm_sts, task):
    report, _ = minilm_sts
    result = next(r for r in report.sts if r.task == task)
    assert result.aggregation == "all"
    assert result.spearman == pytest.approx(PUBLISHED[task], abs=0.05)


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(MEASURED))
def test_all_minilm_measured_scores_are_stable(minilm_sts, task):
    report, _ = minilm_sts
    result = next(r for r in report.sts if r.task == task)
    assert result.spearman == pytest.approx(MEASURED[task], abs=0.05)


@pytest.mark.slow
def test_suite_encodes_each_unique_sentence_once(minilm_sts):
    report, encoded_rows = minilm_sts
    unique = set()
    for task in STS_TASKS:
        unique.update(load_sts_task(task).sentences())
    assert report.n_unique_sentences == len(unique)
    assert encoded_rows == len(unique)  # sentences that went through the transformer


@pytest.mark.slow
def test_report_table_json_and_average(minilm_sts, tmp_path):
    report, _ = minilm_sts
    assert [r.task for r in report.sts] == list(STS_TASKS)
    assert report.sts_avg == pytest.approx(np.mean([round(r.spearman, 2) for r in report.sts]))
    table = report.to_markdown()
    assert "| STS12 | STS13 | STS14 | STS15 | STS16 | STS-B | SICK-R | Avg. |" in table
    assert f"| {report.sts[0].spearman:.2f} |" in table and "'all' aggregation" in table
    data = json.loads(report.save_json(tmp_path / "r.json").read_text())
    assert data["sts"]["tasks"]["STSBenchmark"]["spearman"] == pytest.approx(82.03, abs=0.05)
    assert data["sts"]["tasks"]["STS16"]["data"]["empty_gold_dropped"] == 7997
    assert data["sts"]["tasks"]["STS12"]["data"]["malformed_lines"] == 0
    assert data["ok"] is True and "wmean" in json.dumps(data["sts"]["tasks"]["STS12"])
    sts12 = report.sts[0]
    weights = [s["n_pairs"] for s in sts12.subsets.values()]
    assert sts12.spearman_wmean == pytest.approx(
        np.average([s["spearman"] for s in sts12.subsets.values()], weights=weights)
    )
    assert abs(sts12.spearman_wmean - sts12.spearman_all) > 0.1  # the two aggregations really differ


def _toy_sts() -> STSData:
    gold = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 0.5, 4.5, 2.5])
    data = STSData(
        "STS12",
        "test",
        [f"a{i}" for i in range(9)],
        [f"b{i}" for i in range(9)],
        gold,
        [("first", 0, 6), ("second", 6, 9)],
        DataReport("STS12"),
    )
    return data


def test_all_and_wmean_aggregations():
    data = _toy_sts()
    system = np.array([0.1, 0.3, 0.2, 0.6, 0.5, 0.9, 0.95, 0.2, 0.4])
    pooled = score_sts(data, system, "all")
    assert pooled.spearman == pytest.approx(100 * spearmanr(system, data.scores)[0])
    first = spearmanr(system[:6], data.scores[:6])[0]
    second = spearmanr(system[6:], data.scores[6:])[0]
    weighted = score_sts(data, system, "wmean")
    assert weighted.aggregation == "wmean"
    assert weighted.spearman == pytest.approx(100 * (6 * first + 3 * second) / 9)
    assert weighted.spearman_all == pooled.spearman and pooled.spearman_wmean == weighted.spearman
    assert pooled.spearman_mean == pytest.approx(100 * (first + second) / 2)
    partly_constant = score_sts(data, np.concatenate([system[:6], np.ones(3)]), "all")
    assert partly_constant.ok and partly_constant.subsets["second"]["spearman"] is None
    assert partly_constant.spearman_wmean is None and partly_constant.spearman is not None
    json.dumps(partly_constant.to_dict(), allow_nan=False)
    constant = score_sts(data, np.ones(9), "all")
    assert not constant.ok and "same similarity" in constant.error
    with pytest.raises(ValueError, match="aggregation"):
        score_sts(data, system, "mean")


def test_simcse_average_rounds_first():
    assert simcse_average([70.004, 80.006]) == pytest.approx((70.00 + 80.01) / 2)


def test_nan_embeddings_are_reported_not_scored(nan_model_dir, small_sts_dir, tmp_path):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(nan_model_dir)
    [result] = evaluate_sts(model, tasks=["STSBenchmark-dev"], data_dir=small_sts_dir)
    assert result.status == "failed" and result.spearman is None
    assert "NaN/Inf embeddings" in result.error and "refusing to score" in result.error
    report = evaluate_model(
        model, tasks="STSBenchmark,STSBenchmark-dev", data_dir=small_sts_dir, output_path=tmp_path / "nan.json"
    )
    assert not report.ok and report.sts_avg is None
    data = json.loads((tmp_path / "nan.json").read_text())
    assert data["ok"] is False and data["sts"]["tasks"]["STSBenchmark"]["status"] == "failed"
    assert "NaN" in data["sts"]["tasks"]["STSBenchmark"]["error"]
    assert "FAILED" in report.to_markdown()


def test_train_or_eval_mode_is_restored(tiny_student, small_sts_dir):
    tiny_student.train()
    [result] = evaluate_sts(tiny_student, tasks=["STSBenchmark-dev"], data_dir=small_sts_dir)
    assert result.ok and tiny_student.training and tiny_student[0].auto_model.training
    tiny_student.eval()
    evaluate_sts(tiny_student, tasks=["STSBenchmark-dev"], data_dir=small_sts_dir)
    assert not tiny_student.training
