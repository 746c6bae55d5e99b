"""The ``evaluate`` and ``mteb`` subcommands (argparse ``register`` + standalone ``main``)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from dalr_hf.evaluation.cli import EXIT_BAD_INPUT, EXIT_OK, EXIT_TASK_FAILED, main, register

REPO = Path(__file__).resolve().parents[2]


def _evaluate(model: str, tasks: str, data_dir, output, *options: str) -> int:
    """``dalr-hf evaluate MODEL --tasks TASKS --data-dir DATA_DIR --output OUTPUT [OPTIONS]``; the exit code."""
    return main(["evaluate", model, "--tasks", tasks, "--data-dir", str(data_dir), "--output", str(output), *options])


def test_evaluate_prints_table_and_writes_json(tiny_bert_dir, small_sts_dir, tmp_path, capsys):
    output = tmp_path / "out" / "report.json"
    code = _evaluate(tiny_bert_dir, "STSBenchmark,STSBenchmark-dev", small_sts_dir, output, "--batch-size", "32")
    printed = capsys.readouterr().out
    assert code == EXIT_OK
    assert "| STS-B | STS-B dev |" in printed and f"JSON report: {output}" in printed
    data = json.loads(output.read_text())
    assert set(data["sts"]["tasks"]) == {"STSBenchmark", "STSBenchmark-dev"}
    assert data["settings"]["batch_size"] == 32 and data["settings"]["aggregation"] == "all"
    assert data["sts"]["tasks"]["STSBenchmark"]["n_pairs"] == 120


def test_progress_bars_by_default_and_quiet_hides_them(tiny_bert_dir, small_sts_dir, tmp_path, capsys):
    assert _evaluate(tiny_bert_dir, "STSBenchmark", small_sts_dir, tmp_path / "a.json") == EXIT_OK
    shown = capsys.readouterr().err
    assert "Batches" in shown and "%|" in shown  # sentence-transformers' tqdm bar over the encoding
    assert _evaluate(tiny_bert_dir, "STSBenchmark", small_sts_dir, tmp_path / "b.json", "--quiet") == EXIT_OK
    quiet = capsys.readouterr().err
    assert "Batches" not in quiet and "%|" not in quiet
    import huggingface_hub.utils
    import transformers

    transformers.utils.logging.enable_progress_bar()  # leave the process as it was for the other tests
    huggingface_hub.utils.enable_progress_bars()


def test_wmean_option_is_labelled(tiny_bert_dir, small_sts_dir, tmp_path, capsys):
    code = _evaluate(tiny_bert_dir, "STSBenchmark", small_sts_dir, tmp_path / "w.json", "--aggregation", "wmean")
    assert code == EXIT_OK
    assert "'wmean' aggregation" in capsys.readouterr().out
    assert json.loads((tmp_path / "w.json").read_text())["sts"]["tasks"]["STSBenchmark"]["aggregation"] == "wmean"


def test_missing_data_exits_2_and_names_the_file(tiny_bert_dir, tmp_path, capsys):
    code = _evaluate(tiny_bert_dir, "sts", tmp_path, tmp_path / "x.json")
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert "dalr-hf evaluate: error: STS12: expected file" in err and "STS.input.MSRpar.txt" in err
    assert not (tmp_path / "x.json").exists()


def test_nan_model_exits_1(nan_model_dir, small_sts_dir, tmp_path, capsys):
    code = _evaluate(nan_model_dir, "STSBenchmark", small_sts_dir, tmp_path / "nan.json")
    assert code == EXIT_TASK_FAILED
    assert "FAILED" in capsys.readouterr().out
    assert json.loads((tmp_path / "nan.json").read_text())["ok"] is False


def test_register_into_a_host_parser(tiny_bert_dir, tmp_path):
    parser = argparse.ArgumentParser(prog="dalr-hf")
    subparsers = parser.add_subparsers(dest="command", required=True)
    register(subparsers)
    args = parser.parse_args(
        [
            "mteb",
            tiny_bert_dir,
            "--tasks",
            "mock",
            "--output-dir",
            str(tmp_path),
            "--model-name",
            "my-org/tiny-dalr",
            "--revision",
            "0123abc",
        ]
    )
    assert args.func(args) == EXIT_OK
    folder = tmp_path / "results" / "my-org__tiny-dalr" / "0123abc"
    assert (folder / "MockSTSTask.json").is_file() and (folder / "model_meta.json").is_file()
    evaluate = parser.parse_args(["evaluate", "m"])
    assert evaluate.tasks == "sts" and evaluate.transfer_mode == "test" and evaluate.batch_size == 128


def test_module_entry_point(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "dalr_hf.evaluation.cli", "evaluate", "--help"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0
    assert "--transfer-mode" in done.stdout and "--aggregation" in done.stdout
