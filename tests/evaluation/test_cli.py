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


def test_evaluate_prints_table_and_writes_json(tiny_bert_dir, small_sts_dir, tmp_path, capsys):
    output = tmp_path / "out" / "report.json"
    code = main(
        [
            "evaluate",
            tiny_bert_dir,
            "--tasks",
            "STSBenchmark,STSBenchmark-dev",
            "--data-dir",
            str(small_sts_dir),
            "--batch-size",
            "32",
            "--output",
            str(output),
        ]
    )
    printed = capsys.readouterr().out
    assert code == EXIT_OK
    assert "| STS-B | STS-B dev |" in printed and f"JSON report: {output}" in printed
    data = json.loads(output.read_text())
    assert set(data["sts"]["tasks"]) == {"STSBenchmark", "STSBenchmark-dev"}
    assert data["settings"]["batch_size"] == 32 and data["settings"]["aggregation"] == "all"
    assert data["sts"]["tasks"]["STSBenchmark"]["n_pairs"] == 120


def test_progress_bars_by_default_and_quiet_hides_them(tiny_bert_dir, small_sts_dir, tmp_path, capsys):
    args = ["evaluate", tiny_bert_dir, "--tasks", "STSBenchmark", "--data-dir", str(small_sts_dir)]
    assert main([*args, "--output", str(tmp_path / "a.json")]) == EXIT_OK
    shown = capsys.readouterr().err
    assert "Batches" in shown and "%|" in shown  # sentence-transformers' tqdm bar over the encoding
    assert main([*args, "--output", str(tmp_path / "b.json"), "--quiet"]) == EXIT_OK
    quiet = capsys.readouterr().err
    assert "Batches" not in quiet and "%|" not in quiet
    import huggingface_hub.utils
    import transformers

    transformers.utils.logging.enable_progress_bar()  # leave the process as it was for the other tests
    huggingface_hub.utils.enable_progress_bars()


def test_wmean_option_is_labelled(tiny_bert_dir, small_sts_dir, tmp_path, capsys):
    code = main(
        [
            "evaluate",
            tiny_bert_dir,
            "--tasks",
            "STSBenchmark",
            "--data-dir",
            str(small_sts_dir),
            "--aggregation",
            "wmean",
            "--output",
            str(tmp_path / "w.json"),
        ]
    )
    assert code == EXIT_OK
    assert "'wmean' aggregation" in capsys.readouterr().out
    assert json.loads((tmp_path / "w.json").read_text())["sts"]["tasks"]["STSBenchmark"]["aggregation"] == "wmean"


def test_missing_data_exits_2_and_names_the_file(tiny_bert_dir, tmp_path, capsys):
    code = main(
        ["evaluate", tiny_bert_dir, "--tasks", "sts", "--data-dir", str(tmp_path), "--output", str(tmp_path / "x.json")]
    )
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert "dalr-hf evaluate: error: STS12: expected file" in err and "STS.input.MSRpar.txt" in err
    assert not (tmp_path / "x.json").exists()


def test_nan_model_exits_1(nan_model_dir, small_sts_dir, tmp_path, capsys):
    code = main(
        [
            "evaluate",
            nan_model_dir,
            "--tasks",
            "STSBenchmark",
            "--data-dir",
            str(small_sts_dir),
            "--output",
            str(tmp_path / "nan.json"),
        ]
    )
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
