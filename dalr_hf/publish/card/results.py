"""Evaluation results as the card shows them: task names in the papers' order, score tables, and the Hub's
``model-index`` entries for the STS test figures."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from dalr_hf.evaluation.data import ALL_STS_TASKS, DISPLAY_NAMES, TRANSFER_TASKS, canonical_task_name
from dalr_hf.publish.card.collect import ModelCardError

# Evaluation tables: canonical task order and display names, as dalr_hf.evaluation defines them.
STS_ORDER = ALL_STS_TASKS
TRANSFER_ORDER = TRANSFER_TASKS
SECTION_VALUE_KEYS = {"sts": ("spearman", "main_score", "score"), "transfer": ("acc", "main_score", "score")}
AVERAGE_KEYS = ("avg", "average", "mean")
SECTION_METRICS = {
    "sts": "Spearman's rank correlation × 100 between cosine similarities and gold scores",
    "transfer": "test accuracy × 100 of a logistic-regression probe on the frozen embeddings (SentEval)",
    "mteb": "main score × 100 of each MTEB task",
}

# The Hub datasets MTEB evaluates the STS test sets on: what a card's model-index names for each task.
STS_HUB_DATASETS = {
    "STS12": "mteb/sts12-sts",
    "STS13": "mteb/sts13-sts",
    "STS14": "mteb/sts14-sts",
    "STS15": "mteb/sts15-sts",
    "STS16": "mteb/sts16-sts",
    "STSBenchmark": "mteb/stsbenchmark-sts",
    "SICKRelatedness": "mteb/sickr-sts",
}


# ---------------------------------------------------------------------------------------------------------------------
def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)) and math.isfinite(float(value)):
        return float(value)
    return None


def _task_value(entry: Any, keys: Sequence[str]) -> tuple[float | None, bool]:
    """``(value, failed)`` of one task entry: a number, or a mapping with a status and one of ``keys``."""
    if isinstance(entry, Mapping):
        failed = entry.get("status", "ok") != "ok"
        for key in keys:
            if key in entry:
                return _number(entry[key]), failed
        return None, failed
    return _number(entry), False


def _canonical(name: str) -> str:
    return canonical_task_name(name)


def _section(raw: Any, name: str) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ModelCardError(
            f"evaluation section {name!r} must be a mapping of task -> score, got {type(raw).__name__}"
        )
    if name == "mteb" and isinstance(raw.get("scores"), Mapping):
        # dalr_hf.evaluation's dalr_mteb_run.json: main scores on MTEB's 0-1 scale, failed tasks under "errors"
        scores = {task: 100.0 * float(v) for task, v in raw["scores"].items() if _number(v) is not None}
        errors = raw["errors"] if isinstance(raw.get("errors"), Mapping) else {}
        raw = {**scores, **{task: {"status": "failed"} for task in errors}}
    tasks = raw.get("tasks") if isinstance(raw.get("tasks"), Mapping) else raw
    keys = SECTION_VALUE_KEYS.get(name, ("main_score", "score"))
    rows: list[dict[str, Any]] = []
    average: float | None = None
    for key, entry in tasks.items():
        if str(key).lower() in AVERAGE_KEYS:
            average = _number(entry)
            continue
        if key in ("metric", "tasks"):
            continue
        value, failed = _task_value(entry, keys)
        if value is None and not failed:
            if isinstance(entry, Mapping) and not any(k in entry for k in keys):
                raise ModelCardError(
                    f"evaluation section {name!r}, task {key!r}: no score found (expected a number or one of {keys})"
                )
        task = _canonical(str(key))
        rows.append({"task": task, "name": DISPLAY_NAMES.get(task, task), "value": value, "failed": failed})
    for key in AVERAGE_KEYS:
        if tasks is not raw and key in raw:
            average = _number(raw[key])
    if not rows:
        return None
    order = {"sts": STS_ORDER, "transfer": TRANSFER_ORDER}.get(name, ())
    rank = {task: i for i, task in enumerate(order)}
    rows.sort(key=lambda r: rank.get(r["task"], len(order)))
    counted = [r["value"] for r in rows if r["task"] != "STSBenchmark-dev"]
    if average is None and len(counted) > 1 and all(v is not None for v in counted):
        # as SimCSE's script prints it: the mean of the values rounded to two decimals
        average = sum(round(v, 2) for v in counted) / len(counted)
    metric = raw.get("metric") if isinstance(raw.get("metric"), str) else SECTION_METRICS.get(name, "score")
    return {"rows": rows, "average": average, "metric": metric, "table": _horizontal_table(rows, average)}


def _horizontal_table(rows: list[dict[str, Any]], average: float | None) -> list[str]:
    """The papers' layout: one column per task (and the average), one row of scores."""
    header = [_cell(r["name"]) for r in rows]
    values = ["FAILED" if r["failed"] else _score(r["value"]) for r in rows]
    if average is not None:
        header.append("Avg.")
        values.append(f"**{_score(average)}**")
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), "| " + " | ".join(values) + " |"]


def normalize_eval_results(results: Any) -> dict[str, dict[str, Any]]:
    """Evaluation results as card tables: ``{"sts"|"transfer"|"mteb": {"rows", "average", "metric"}}``.

    Accepts a mapping (or a JSON file path, or an object with ``to_dict()`` such as the evaluation suite's report)
    with any of the sections ``sts``, ``transfer``, ``mteb``. A section maps task names to scores (×100), either
    plainly (``{"STS12": 71.2, ..., "avg": 76.3}``) or as the evaluation suite writes it (``{"tasks": {"STS12":
    {"spearman": 71.2, "status": "ok"}}, "avg": 76.3}``); MTEB entries may be numbers or ``{"main_score": ...}``.
    Sections that are absent or empty are left out; None gives no sections.
    """
    if results is None:
        return {}
    if isinstance(results, (str, os.PathLike)):
        with open(results, encoding="utf-8") as f:
            results = json.load(f)
    if hasattr(results, "to_dict") and not isinstance(results, Mapping):
        results = results.to_dict()
    if not isinstance(results, Mapping):
        raise ModelCardError(f"evaluation results must be a mapping, got {type(results).__name__}")
    unknown = sorted(
        set(results) - {"sts", "transfer", "mteb"} - {"model", "settings", "n_unique_sentences", "timing_s", "ok"}
    )
    if unknown:
        raise ModelCardError(f"unknown evaluation section(s) {unknown}; expected sts, transfer and/or mteb")
    out: dict[str, dict[str, Any]] = {}
    for name in ("sts", "transfer", "mteb"):
        section = _section(results.get(name), name)
        if section is not None:
            out[name] = section
    return out


# ---------------------------------------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    """A markdown table cell: numbers with up to 4 significant decimals, pipes and newlines escaped."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, (list, tuple)):
        text = ", ".join(str(v) for v in value) if value else "[]"
    elif isinstance(value, Mapping):
        text = json.dumps(value, sort_keys=True, default=str)
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _score(value: Any) -> str:
    return "–" if value is None else f"{value:.2f}"


def sts_model_index_results(
    model_name: str, sts_scores: Mapping[str, float | None], dev_score: float | None = None
) -> list[dict[str, Any]]:
    """``model-index`` entries (Hub model card metadata) for STS test scores, Spearman × 100 per task, and the STS-B
    development score (``dev_score``, the validation split) that selected the checkpoint.

    Built with huggingface_hub's :class:`~huggingface_hub.EvalResult`, the Hub's own representation of a card's
    evaluation results, so the Hub shows them as this model's scores on the named datasets.
    """
    from huggingface_hub import EvalResult
    from huggingface_hub.repocard_data import eval_results_to_model_index

    results = []
    for task, value in sts_scores.items():
        task = _canonical(task)
        if task not in STS_HUB_DATASETS or value is None:
            continue
        results.append(
            EvalResult(
                task_type="sentence-similarity",
                task_name="Semantic Textual Similarity",
                dataset_type=STS_HUB_DATASETS[task],
                dataset_name=DISPLAY_NAMES.get(task, task),
                dataset_split="test",
                metric_type="spearman_cosine",
                metric_name="Spearman correlation of cosine similarities × 100",
                metric_value=round(float(value), 2),
            )
        )
    if dev_score is not None:
        results.append(
            EvalResult(
                task_type="sentence-similarity",
                task_name="Semantic Textual Similarity",
                dataset_type=STS_HUB_DATASETS["STSBenchmark"],
                dataset_name="STS-B dev (model selection)",
                dataset_split="validation",
                metric_type="spearman_cosine",
                metric_name="Spearman correlation of cosine similarities × 100",
                metric_value=round(float(dev_score), 2),
            )
        )
    return eval_results_to_model_index(model_name, results) if results else []
