"""benchmarks/eval_speed.py runs and reports both timings and their ratio."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "eval_speed.py"


def test_eval_speed_script_reports_both_timings(tiny_bert_dir, small_sts_dir, tmp_path, capsys):
    namespace = runpy.run_path(str(SCRIPT), run_name="eval_speed")
    out = tmp_path / "speed.json"
    code = namespace["main"](
        [
            "--model",
            tiny_bert_dir,
            "--tasks",
            "STSBenchmark,STSBenchmark-dev",
            "--data-dir",
            str(small_sts_dir),
            "--repeats",
            "2",
            "--json",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0 and "(a) encode unique sentences once" in printed and "ratio (b)/(a)" in printed
    figures = json.loads(out.read_text())
    assert figures["unique_sentences"] <= figures["sentence_occurrences"] == 480
    assert len(figures["encode_runs_s"]) == len(figures["suite_runs_s"]) == 2
    assert figures["ratio"] == figures["sts_suite_s"] / figures["encode_unique_once_s"]
