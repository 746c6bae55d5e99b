"""One call for the papers' table: STS and transfer tasks of one model, each unique sentence encoded once."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sentence_transformers import SentenceTransformer

from dalr_hf.evaluation.data import (
    STS_DEV_TASK,
    STS_TASKS,
    TRANSFER_TASKS,
    STSData,
    TransferData,
    resolve_data_dir,
    resolve_tasks,
)
from dalr_hf.evaluation.encoding import DEFAULT_BATCH_SIZE, SentenceEncoder, eval_mode
from dalr_hf.evaluation.probe import SENTEVAL_SEED, probe_settings
from dalr_hf.evaluation.results import STS_AGGREGATIONS, EvaluationReport
from dalr_hf.evaluation.sts import load_sts_tasks, run_sts
from dalr_hf.evaluation.transfer import MRPC_FEATURES, load_transfer_tasks, run_transfer

logger = logging.getLogger(__name__)


def load_task_data(names: Sequence[str], root: str | os.PathLike[str]) -> tuple[list[STSData], list[TransferData]]:
    """The data of the STS tasks (STS-B dev included) and of the transfer tasks among the resolved task ``names``,
    read from the data folder ``root``; each list keeps the order of ``names``."""
    sts_names = [t for t in names if t in (*STS_TASKS, STS_DEV_TASK)]
    transfer_names = [t for t in names if t in TRANSFER_TASKS]
    sts_data = load_sts_tasks(sts_names, root) if sts_names else []
    transfer_data = load_transfer_tasks(transfer_names, root) if transfer_names else []
    return sts_data, transfer_data


def load_model(
    model: str | os.PathLike[str] | SentenceTransformer,
    device: str | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> SentenceTransformer:
    """A ``SentenceTransformer`` from a folder or a Hub id (returned unchanged if it already is one).

    The model is used as saved: its own modules, pooling and ``max_seq_length`` (no extra truncation).
    """
    if isinstance(model, SentenceTransformer):
        return model
    return SentenceTransformer(str(model), device=device, revision=revision, trust_remote_code=trust_remote_code)


def model_label(model: str | os.PathLike[str] | SentenceTransformer) -> str:
    if isinstance(model, SentenceTransformer):
        card = model.model_card_data
        return card.model_id or card.model_name or card.base_model or type(model).__name__
    return str(model)


def evaluate_model(
    model: str | os.PathLike[str] | SentenceTransformer,
    tasks: str | Sequence[str] = "sts",
    data_dir: str | os.PathLike[str] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    aggregation: str = "all",
    transfer_mode: str = "test",
    seed: int = SENTEVAL_SEED,
    mrpc_features: str = "senteval",
    device: str | None = None,
    output_path: str | os.PathLike[str] | None = None,
    show_progress_bar: bool = False,
) -> EvaluationReport:
    """Evaluate a SentenceTransformer (object, folder or Hub id) on STS and/or transfer tasks.

    ``tasks``: ``"sts"``, ``"transfer"``, ``"all"``, task names or a comma-separated mix. All files are read
    first (a missing file fails before any encoding), then the unique sentences of every selected task are encoded
    in one pass. Tasks whose embeddings contain NaN/Inf are reported as failed, not scored. Writes the JSON report
    to ``output_path`` when given.
    """
    if aggregation not in STS_AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {STS_AGGREGATIONS}, got {aggregation!r}")
    if mrpc_features not in MRPC_FEATURES:
        raise ValueError(f"mrpc_features must be one of {MRPC_FEATURES}, got {mrpc_features!r}")
    probe_settings(transfer_mode)
    names = resolve_tasks(tasks)
    root = resolve_data_dir(data_dir)

    start = time.perf_counter()
    sts_data, transfer_data = load_task_data(names, root)
    load_seconds = time.perf_counter() - start

    st_model = load_model(model, device=device)
    encoder = SentenceEncoder(st_model, batch_size=batch_size, device=device, show_progress_bar=show_progress_bar)
    report = EvaluationReport(
        model_label(model), settings=_settings(root, batch_size, aggregation, transfer_mode, seed, mrpc_features, names)
    )
    with eval_mode(st_model):
        every: list[STSData | TransferData] = [*sts_data, *transfer_data]
        encoder.add(s for data in every for s in data.sentences())
        if sts_data:
            t0 = time.perf_counter()
            report.sts = run_sts(sts_data, encoder, aggregation)
            report.timing["sts_scoring"] = time.perf_counter() - t0
        if transfer_data:
            t0 = time.perf_counter()
            report.transfer = run_transfer(transfer_data, encoder, transfer_mode, seed, mrpc_features)
            report.timing["transfer_probes"] = time.perf_counter() - t0
    report.n_unique_sentences = len(encoder)
    report.timing.update(load_data=load_seconds, encode=encoder.encode_seconds, total=time.perf_counter() - start)
    if output_path is not None:
        path = report.save_json(output_path)
        logger.info("wrote %s", path)
    return report


def _settings(
    root: Path,
    batch_size: int,
    aggregation: str,
    transfer_mode: str,
    seed: int,
    mrpc_features: str,
    tasks: list[str],
) -> dict[str, Any]:
    import dalr_hf

    settings: dict[str, Any] = {
        "tasks": tasks,
        "data_dir": str(root),
        "batch_size": batch_size,
        "aggregation": aggregation,
        "similarity": "cosine",
        "dalr_hf_version": dalr_hf.__version__,
    }
    if any(t in TRANSFER_TASKS for t in tasks):
        probe = probe_settings(transfer_mode, seed)
        settings.update(
            transfer_mode=transfer_mode,
            seed=seed,
            mrpc_features=mrpc_features,
            probe={
                "classifier": "logistic regression (nhid=0)",
                "kfold": probe.kfold,
                "optim": probe.optim,
                "batch_size": probe.batch_size,
                "tenacity": probe.tenacity,
                "epoch_size": probe.epoch_size,
                "max_epoch": probe.max_epoch,
                "l2_grid": list(probe.l2_grid),
            },
        )
    return settings
