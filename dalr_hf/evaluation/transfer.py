"""Transfer tasks MR, CR, SUBJ, MPQA, SST2, TREC and MRPC: a logistic-regression probe on frozen embeddings.

Splits follow SentEval: nested k-fold cross-validation for MR/CR/SUBJ/MPQA, the fixed train/dev/test splits for
SST2, and k-fold cross-validation on the training set (to choose the L2 penalty) followed by the test split for
TREC and MRPC. The reported number is the test accuracy ``acc`` (as in SimCSE); ``devacc`` is logged next to it.
``mode="test"`` uses the settings behind the papers' numbers, ``mode="fasttest"`` the quicker ones (see
:mod:`dalr_hf.evaluation.probe`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence

import torch
from sentence_transformers import SentenceTransformer
from sklearn.metrics import f1_score
from tqdm.auto import tqdm

from dalr_hf.evaluation.data import TRANSFER_TASKS, TransferData, load_transfer_task, resolve_tasks
from dalr_hf.evaluation.encoding import DEFAULT_BATCH_SIZE, NonFiniteEmbeddingError, SentenceEncoder, eval_mode
from dalr_hf.evaluation.probe import (
    ProbeOutcome,
    ProbeSettings,
    cv_then_test,
    nested_cv,
    probe_settings,
    split_validation,
)
from dalr_hf.evaluation.results import TransferResult

logger = logging.getLogger(__name__)

MRPC_FEATURES = ("senteval", "full")


def pair_features(u: torch.Tensor, v: torch.Tensor, kind: str = "senteval") -> torch.Tensor:
    """Sentence-pair features: SentEval's MRPC uses ``[|u − v|, u * v]``; ``"full"`` is ``[u, v, |u − v|, u * v]``."""
    if kind == "senteval":
        return torch.cat([(u - v).abs(), u * v], dim=1)
    if kind == "full":
        return torch.cat([u, v, (u - v).abs(), u * v], dim=1)
    raise ValueError(f"pair feature kind must be one of {MRPC_FEATURES}, got {kind!r}")


def load_transfer_tasks(
    tasks: str | Sequence[str] = TRANSFER_TASKS, data_dir: str | os.PathLike[str] | None = None
) -> list[TransferData]:
    """Read every selected transfer task first, so that a missing file fails before any encoding."""
    names = resolve_tasks(tasks)
    unknown = [t for t in names if t not in TRANSFER_TASKS]
    if unknown:
        raise ValueError(f"not transfer tasks: {unknown}")
    return [load_transfer_task(name, data_dir) for name in names]


def score_transfer(
    data: TransferData,
    encoder: SentenceEncoder,
    settings: ProbeSettings,
    mode: str,
    mrpc_features: str = "senteval",
) -> TransferResult:
    """Train and score the probe of one task on embeddings from ``encoder``."""
    result = TransferResult(data.task, mode, data=data.report.to_dict())

    def embed(sentences: list[str]) -> torch.Tensor:
        return encoder.embed(sentences, data.task)

    try:
        if data.task == "MRPC":
            result.features = mrpc_features
            train, test = data.splits["train"], data.splits["test"]
            if train.sentences2 is None or test.sentences2 is None:
                raise ValueError("MRPC splits must hold sentence pairs")
            x_train = pair_features(embed(train.sentences1), embed(train.sentences2), mrpc_features)
            x_test = pair_features(embed(test.sentences1), embed(test.sentences2), mrpc_features)
            outcome = cv_then_test((x_train, train.labels), (x_test, test.labels), data.n_classes, settings)
            assert outcome.predictions is not None
            result.f1 = round(100 * float(f1_score(test.labels, outcome.predictions)), 2)
            result.ndev, result.ntest = len(train), len(test)
        elif data.task == "TREC":
            train, test = data.splits["train"], data.splits["test"]
            outcome = cv_then_test(
                (embed(train.sentences1), train.labels), (embed(test.sentences1), test.labels), data.n_classes, settings
            )
            result.ndev, result.ntest = len(train), len(test)
        elif data.task == "SST2":
            train, dev, test = data.splits["train"], data.splits["dev"], data.splits["test"]
            x_train, x_dev, x_test = embed(train.sentences1), embed(dev.sentences1), embed(test.sentences1)
            outcome = split_validation(
                (x_train, train.labels), (x_dev, dev.labels), (x_test, test.labels), data.n_classes, settings
            )
            result.ndev, result.ntest = len(dev), len(test)
        else:
            split = data.splits["all"]
            outcome = nested_cv(embed(split.sentences1), split.labels, data.n_classes, settings)
            result.ndev = result.ntest = len(split)
    except NonFiniteEmbeddingError as exc:
        logger.error("%s", exc)
        result.status, result.error = "failed", str(exc)
        return result
    _fill(result, outcome)
    return result


def _fill(result: TransferResult, outcome: ProbeOutcome) -> None:
    result.acc, result.devacc, result.l2reg = outcome.acc, outcome.devacc, list(outcome.l2reg)


def run_transfer(
    datasets: Sequence[TransferData],
    encoder: SentenceEncoder,
    mode: str | ProbeSettings = "test",
    seed: int | None = None,
    mrpc_features: str = "senteval",
) -> list[TransferResult]:
    """Score already-loaded transfer tasks (all their unique sentences are encoded in one call)."""
    settings = probe_settings(mode, seed)
    mode_name = mode if isinstance(mode, str) else "custom"
    encoder.add(s for data in datasets for s in data.sentences())
    results = []
    # the probes take minutes: one bar over the tasks, shown when the encoder shows its own
    progress = tqdm(datasets, desc="transfer probes", unit="task", disable=not encoder.show_progress_bar)
    for data in progress:
        progress.set_postfix_str(data.task)
        start = time.perf_counter()
        result = score_transfer(data, encoder, settings, mode_name, mrpc_features)
        if result.ok:
            logger.info(
                "%s: acc %.2f, devacc %.2f (%s mode, %.0fs)",
                data.task,
                result.acc,
                result.devacc,
                mode_name,
                time.perf_counter() - start,
            )
        results.append(result)
    return results


def evaluate_transfer(
    model: SentenceTransformer,
    tasks: str | Sequence[str] = TRANSFER_TASKS,
    data_dir: str | os.PathLike[str] | None = None,
    mode: str | ProbeSettings = "test",
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int | None = None,
    encoder: SentenceEncoder | None = None,
    mrpc_features: str = "senteval",
    show_progress_bar: bool = False,
) -> list[TransferResult]:
    """Evaluate ``model`` on transfer tasks (default: all seven) with SentEval's ``test`` or ``fasttest`` settings.

    ``data_dir`` must hold SentEval's transfer folders (they are not bundled with dalr_hf). Seeded and
    deterministic (seed 1111 unless ``seed`` is given). The model's train/eval mode is restored afterwards.
    """
    if mrpc_features not in MRPC_FEATURES:
        raise ValueError(f"mrpc_features must be one of {MRPC_FEATURES}, got {mrpc_features!r}")
    probe_settings(mode, seed)  # validate before loading data
    datasets = load_transfer_tasks(tasks, data_dir)
    if encoder is None:
        encoder = SentenceEncoder(model, batch_size=batch_size, show_progress_bar=show_progress_bar)
    with eval_mode(model):
        return run_transfer(datasets, encoder, mode, seed, mrpc_features)
