"""Evaluation during training: SentEval tasks as a sentence-transformers evaluator.

``SentEvalEvaluator()`` scores STS-B dev (Spearman × 100 of cosine similarities) and returns
``{"stsb_spearman": ...}``; the trainer reports it as ``eval_stsb_spearman``, so
``metric_for_best_model="eval_stsb_spearman"`` with ``load_best_model_at_end=True`` keeps the best checkpoint, as
the reference keeps the best STS-B-dev model (docs/method.md#evaluation-protocol). Only the files of the selected tasks
are read (once, at construction) and only their sentences are encoded (once per call): STS-B train and test are never
touched.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from typing import Any

from sentence_transformers import SentenceTransformer
from sentence_transformers.base.evaluation import SentenceEvaluator

from dalr_hf.evaluation.api import load_task_data
from dalr_hf.evaluation.data import STS_DEV_TASK, TRANSFER_TASKS, STSData, TransferData, resolve_data_dir, resolve_tasks
from dalr_hf.evaluation.encoding import DEFAULT_BATCH_SIZE, NonFiniteEmbeddingError, SentenceEncoder, eval_mode
from dalr_hf.evaluation.probe import SENTEVAL_SEED, probe_settings
from dalr_hf.evaluation.results import STS_AGGREGATIONS, simcse_average
from dalr_hf.evaluation.sts import run_sts
from dalr_hf.evaluation.transfer import run_transfer

logger = logging.getLogger(__name__)

METRIC_KEYS: dict[str, str] = {
    STS_DEV_TASK: "stsb_spearman",
    "STSBenchmark": "stsb_test_spearman",
    "SICKRelatedness": "sickr_spearman",
    **{f"STS{y}": f"sts{y}_spearman" for y in range(12, 17)},
    **{t: f"{t.lower()}_acc" for t in TRANSFER_TASKS},
}


def _score(value: float | None) -> float:
    """A score of a task that succeeded (failed tasks raise before their scores are read)."""
    if value is None:
        raise NonFiniteEmbeddingError("a task without a score was reported as successful")
    return float(value)


class SentEvalEvaluator(SentenceEvaluator):
    """Sentence-transformers evaluator over a selection of this suite's tasks.

    Args:
        tasks: task names (``"STSBenchmark-dev"`` by default; any of STS12–16, ``STSBenchmark`` (test),
            ``SICKRelatedness`` and the transfer tasks, or the groups ``"sts"``/``"transfer"``).
        data_dir: SentEval ``downstream`` folder (default: ``$DALR_SENTEVAL_DIR`` or the bundled STS data).
        batch_size: encoding batch size.
        primary_metric: key used for model selection (default ``stsb_spearman`` when STS-B dev is selected,
            otherwise the first task's metric). Must be one of the returned keys.
        aggregation: ``"all"`` (default) or ``"wmean"`` for STS12–16.
        transfer_mode: ``"fasttest"`` (default, cheap enough to run during training) or ``"test"``.
        name: optional prefix of every key (``{name}_stsb_spearman``).
        write_csv: append the metrics to ``senteval_evaluation[_{name}]_results.csv`` in ``output_path``.

    Returned keys: ``<task>_spearman`` (×100) for STS tasks, ``<task>_acc`` and ``<task>_devacc`` for transfer
    tasks, plus ``sts_avg``/``transfer_avg`` when several tasks of a kind are selected. A model producing NaN/Inf
    embeddings raises :class:`~dalr_hf.evaluation.encoding.NonFiniteEmbeddingError` instead of returning a score.
    """

    def __init__(
        self,
        tasks: str | Sequence[str] = (STS_DEV_TASK,),
        data_dir: str | os.PathLike[str] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        primary_metric: str | None = None,
        aggregation: str = "all",
        transfer_mode: str = "fasttest",
        seed: int = SENTEVAL_SEED,
        name: str = "",
        write_csv: bool = True,
        show_progress_bar: bool = False,
    ) -> None:
        super().__init__()
        if aggregation not in STS_AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {STS_AGGREGATIONS}, got {aggregation!r}")
        probe_settings(transfer_mode)
        self.tasks = resolve_tasks(tasks)
        self.data_dir = resolve_data_dir(data_dir)
        self.batch_size = batch_size
        self.aggregation = aggregation
        self.transfer_mode = transfer_mode
        self.seed = seed
        self.name = name
        self.write_csv = write_csv
        self.show_progress_bar = show_progress_bar
        self._sts_data, self._transfer_data = load_task_data(self.tasks, self.data_dir)
        self.metric_keys = self._metric_keys([d.task for d in self._sts_data], [d.task for d in self._transfer_data])
        default = METRIC_KEYS[STS_DEV_TASK] if STS_DEV_TASK in self.tasks else METRIC_KEYS[self.tasks[0]]
        chosen = primary_metric or default
        if chosen not in self.metric_keys:
            raise ValueError(
                f"primary_metric {chosen!r} is not produced by this evaluator; choose one of {self.metric_keys}"
            )
        self.primary_metric = chosen
        self.greater_is_better = True
        self.csv_file = "senteval_evaluation" + (f"_{name}" if name else "") + "_results.csv"

    @staticmethod
    def _metric_keys(sts_names: list[str], transfer_names: list[str]) -> list[str]:
        keys = [METRIC_KEYS[t] for t in sts_names]
        if len([t for t in sts_names if t != STS_DEV_TASK]) > 1:
            keys.append("sts_avg")
        for task in transfer_names:
            keys += [METRIC_KEYS[task], f"{task.lower()}_devacc"]
        if len(transfer_names) > 1:
            keys.append("transfer_avg")
        return keys

    def __call__(  # type: ignore[override]  # scores SentenceTransformer students only
        self, model: SentenceTransformer, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        where = f" after epoch {epoch}" if steps == -1 else f" in epoch {epoch} after {steps} steps"
        logger.info("SentEvalEvaluator: %s%s", ", ".join(self.tasks), where if epoch != -1 else "")
        encoder = SentenceEncoder(model, batch_size=self.batch_size, show_progress_bar=self.show_progress_bar)
        metrics: dict[str, float] = {}
        with eval_mode(model):
            every: list[STSData | TransferData] = [*self._sts_data, *self._transfer_data]
            encoder.add(s for data in every for s in data.sentences())
            if self._sts_data:
                results = run_sts(self._sts_data, encoder, self.aggregation)
                failed = [r for r in results if not r.ok]
                if failed:
                    raise NonFiniteEmbeddingError("; ".join(f"{r.name}: {r.error}" for r in failed))
                for r in results:
                    metrics[METRIC_KEYS[r.task]] = _score(r.spearman)
                test_sets = [r for r in results if r.task != STS_DEV_TASK]
                if len(test_sets) > 1:
                    metrics["sts_avg"] = simcse_average([_score(r.spearman) for r in test_sets])
            if self._transfer_data:
                transfer = run_transfer(self._transfer_data, encoder, self.transfer_mode, self.seed)
                failed_t = [r for r in transfer if not r.ok]
                if failed_t:
                    raise NonFiniteEmbeddingError("; ".join(f"{r.name}: {r.error}" for r in failed_t))
                for t in transfer:
                    metrics[METRIC_KEYS[t.task]] = _score(t.acc)
                    metrics[f"{t.task.lower()}_devacc"] = _score(t.devacc)
                if len(transfer) > 1:
                    metrics["transfer_avg"] = simcse_average([_score(t.acc) for t in transfer])
        metrics = {key: metrics[key] for key in self.metric_keys}
        if output_path is not None and self.write_csv:
            self._write_csv(output_path, epoch, steps, metrics)
        metrics = self.prefix_name_to_metrics(metrics, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

    def _write_csv(self, output_path: str, epoch: int, steps: int, metrics: dict[str, float]) -> None:
        os.makedirs(output_path, exist_ok=True)
        path = os.path.join(output_path, self.csv_file)
        new = not os.path.isfile(path)
        with open(path, "a" if not new else "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(["epoch", "steps", *metrics])
            writer.writerow([epoch, steps, *metrics.values()])

    @property
    def description(self) -> str:
        return "SentEval"

    def get_config_dict(self) -> dict[str, Any]:
        config: dict[str, Any] = {"tasks": self.tasks, "aggregation": self.aggregation}
        if self._transfer_data:
            config["transfer_mode"] = self.transfer_mode
        return config
