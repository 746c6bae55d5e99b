"""Result containers of the evaluation suite, their JSON form and the markdown tables."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from dalr_hf.evaluation.data import STS_TASKS, TRANSFER_TASKS, display_name

STS_AGGREGATIONS = ("all", "wmean")


def simcse_average(values: list[float]) -> float:
    """Average as SimCSE's evaluation script prints it: the mean of the values rounded to two decimals."""
    return sum(round(v, 2) for v in values) / len(values)


class _TaskResultMixin:
    """What every per-task result offers: its display ``name``, ``ok`` and its JSON form (``name`` plus the fields)."""

    task: str
    status: str

    @property
    def name(self) -> str:
        return display_name(self.task)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **asdict(cast(Any, self))}  # the mixin is only used on dataclasses


@dataclass
class STSResult(_TaskResultMixin):
    """One STS task. Scores are ×100; ``spearman``/``pearson`` follow ``aggregation``.

    ``aggregation="all"`` (the default, as everywhere in the suite: SimCSE's protocol, the papers' numbers) pools
    the pairs of all subsets of a year into one correlation; ``"wmean"`` averages per-subset correlations weighted by
    their number of pairs. STS-B and SICK-R have a single subset, so both coincide for them.
    """

    task: str
    split: str
    aggregation: str = "all"
    status: str = "ok"
    error: str | None = None
    spearman: float | None = None
    pearson: float | None = None
    spearman_all: float | None = None
    spearman_wmean: float | None = None
    spearman_mean: float | None = None
    pearson_all: float | None = None
    pearson_wmean: float | None = None
    pearson_mean: float | None = None
    n_pairs: int = 0
    subsets: dict[str, dict[str, float | int | None]] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class TransferResult(_TaskResultMixin):
    """One transfer task: test accuracy ``acc`` (the reported number) and the model-selection accuracy ``devacc``
    (mean best inner-CV accuracy for MR/CR/SUBJ/MPQA, CV accuracy on train for TREC/MRPC, dev accuracy for SST2)."""

    task: str
    mode: str
    status: str = "ok"
    error: str | None = None
    acc: float | None = None
    devacc: float | None = None
    f1: float | None = None
    ndev: int = 0
    ntest: int = 0
    l2reg: list[float] = field(default_factory=list)
    features: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


def _average(results: list[STSResult] | list[TransferResult], attr: str) -> float | None:
    if not results or not all(r.ok for r in results):
        return None
    return simcse_average([getattr(r, attr) for r in results])


@dataclass
class EvaluationReport:
    """Everything one ``evaluate_model`` call produced."""

    model: str
    sts: list[STSResult] = field(default_factory=list)
    transfer: list[TransferResult] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)
    n_unique_sentences: int = 0

    @property
    def sts_avg(self) -> float | None:
        """SimCSE-style average over the STS tasks evaluated (``None`` if one failed)."""
        return _average([r for r in self.sts if r.task != "STSBenchmark-dev"], "spearman")

    @property
    def transfer_avg(self) -> float | None:
        return _average(self.transfer, "acc")

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.sts) and all(r.ok for r in self.transfer)

    def to_dict(self) -> dict[str, Any]:
        aggregation = self.settings.get("aggregation", "all")
        return {
            "model": self.model,
            "settings": self.settings,
            "sts": {
                "metric": f"Spearman x 100 of cosine similarities, '{aggregation}' aggregation for STS12-16",
                "tasks": {r.task: r.to_dict() for r in self.sts},
                "avg": self.sts_avg,
            },
            "transfer": {
                "metric": "test accuracy x 100 of a logistic-regression probe on frozen embeddings",
                "tasks": {r.task: r.to_dict() for r in self.transfer},
                "avg": self.transfer_avg,
            },
            "n_unique_sentences": self.n_unique_sentences,
            "timing_s": self.timing,
            "ok": self.ok,
        }

    def save_json(self, path: str | os.PathLike[str]) -> Path:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n", encoding="utf-8")
        return target

    def to_markdown(self) -> str:
        return format_markdown(self)


def _cell(value: float | None, ok: bool) -> str:
    if not ok:
        return "FAILED"
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.2f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _ordered(results: list, order: tuple[str, ...]) -> list:
    rank = {name: i for i, name in enumerate(order)}
    return sorted(results, key=lambda r: rank.get(r.task, len(order)))


def format_markdown(report: EvaluationReport) -> str:
    """The comparison table of the papers (SimCSE/MCSE/KDMCSE/DALR layout), plus failures and data issues."""
    lines: list[str] = [f"## {report.model}", ""]
    if report.sts:
        aggregation = report.settings.get("aggregation", "all")
        sts = _ordered(report.sts, (*STS_TASKS, "STSBenchmark-dev"))
        lines.append(f"STS — Spearman × 100 (cosine; STS12–16 with the '{aggregation}' aggregation)")
        lines.append("")
        header = [r.name for r in sts]
        row = [_cell(r.spearman, r.ok) for r in sts]
        if len([r for r in sts if r.task != "STSBenchmark-dev"]) > 1:
            header.append("Avg.")
            row.append(_cell(report.sts_avg, report.sts_avg is not None))
        lines += _table(header, [row])
        lines.append("")
    if report.transfer:
        mode = report.settings.get("transfer_mode", "test")
        transfer = _ordered(report.transfer, TRANSFER_TASKS)
        lines.append(f"Transfer — accuracy × 100 (logistic-regression probe, SentEval '{mode}' settings)")
        lines.append("")
        header = ["", *[r.name for r in transfer]]
        acc = ["acc (test)", *[_cell(r.acc, r.ok) for r in transfer]]
        dev = ["devacc", *[_cell(r.devacc, r.ok) for r in transfer]]
        if len(transfer) > 1:
            header.append("Avg.")
            acc.append(_cell(report.transfer_avg, report.transfer_avg is not None))
            devs = [r.devacc for r in transfer]
            dev.append(_cell(simcse_average(devs), True) if all(r.ok for r in transfer) else "FAILED")
        lines += _table(header, [acc, dev])
        lines.append("")
    notes = []
    every: list[STSResult | TransferResult] = [*report.sts, *report.transfer]
    for r in every:
        if not r.ok:
            notes.append(f"- {r.name}: FAILED — {r.error}")
        malformed = r.data.get("malformed_lines", 0)
        if malformed:
            notes.append(f"- {r.name}: {malformed} malformed line(s) left out (see the JSON for line numbers)")
    if notes:
        lines += ["Notes:", *notes, ""]
    return "\n".join(lines).rstrip() + "\n"
