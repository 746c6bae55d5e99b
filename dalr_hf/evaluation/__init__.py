"""Evaluation suite: the papers' SentEval protocol (STS and transfer tasks), evaluation during training, and MTEB.

>>> from dalr_hf.evaluation import evaluate_model
>>> report = evaluate_model("path/to/student", tasks="sts")   # bundled STS12-16, STS-B, SICK-R data
>>> print(report.to_markdown())

See docs/evaluation.md for the protocol, the command line and the MTEB leaderboard submission.
"""

from __future__ import annotations

from dalr_hf.evaluation.api import evaluate_model, load_model
from dalr_hf.evaluation.data import (
    ENV_DATA_DIR,
    STS_DEV_TASK,
    STS_TASKS,
    TRANSFER_TASKS,
    DataFileError,
    DataReport,
    FileReport,
    MalformedDataWarning,
    load_sts_task,
    load_transfer_task,
    resolve_data_dir,
    resolve_tasks,
)
from dalr_hf.evaluation.encoding import NonFiniteEmbeddingError, SentenceEncoder
from dalr_hf.evaluation.evaluator import SentEvalEvaluator
from dalr_hf.evaluation.mteb_runner import MTEBRun, build_model_meta, local_sts_tasks, mock_tasks, run_mteb
from dalr_hf.evaluation.probe import PROBE_MODES, ProbeSettings
from dalr_hf.evaluation.results import EvaluationReport, STSResult, TransferResult
from dalr_hf.evaluation.sts import evaluate_sts
from dalr_hf.evaluation.transfer import evaluate_transfer

__all__ = [
    "ENV_DATA_DIR",
    "PROBE_MODES",
    "STS_DEV_TASK",
    "STS_TASKS",
    "TRANSFER_TASKS",
    "DataFileError",
    "DataReport",
    "EvaluationReport",
    "FileReport",
    "MTEBRun",
    "MalformedDataWarning",
    "NonFiniteEmbeddingError",
    "ProbeSettings",
    "STSResult",
    "SentEvalEvaluator",
    "SentenceEncoder",
    "TransferResult",
    "build_model_meta",
    "evaluate_model",
    "evaluate_sts",
    "evaluate_transfer",
    "load_model",
    "load_sts_task",
    "load_transfer_task",
    "local_sts_tasks",
    "mock_tasks",
    "resolve_data_dir",
    "resolve_tasks",
    "run_mteb",
]
