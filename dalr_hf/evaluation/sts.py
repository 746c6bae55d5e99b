"""STS12–16, STS-B and SICK-R as in SimCSE's SentEval protocol (docs/method.md#evaluation-protocol).

Similarity is the cosine of the two sentence embeddings; the metric is Spearman's ρ × 100 against the gold scores.
STS12–16 use the ``"all"`` aggregation by default (all subsets of a year pooled into one correlation,
``results[task]['all']['spearman']['all']`` in SentEval); ``"wmean"`` (per-subset correlations averaged with the
number of pairs as weights) is available and labelled as such. STS-B and SICK-R are scored on their test splits with
no regressor.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from scipy.stats import pearsonr, spearmanr
from sentence_transformers import SentenceTransformer

from dalr_hf.evaluation.data import STS_TASKS, STSData, load_sts_task, resolve_tasks
from dalr_hf.evaluation.encoding import DEFAULT_BATCH_SIZE, NonFiniteEmbeddingError, SentenceEncoder, eval_mode
from dalr_hf.evaluation.results import STS_AGGREGATIONS, STSResult

logger = logging.getLogger(__name__)


def cosine_scores(embeddings1: torch.Tensor, embeddings2: torch.Tensor) -> np.ndarray:
    """Row-wise cosine similarity in float64 (a zero vector scores 0, like ``torch.cosine_similarity``'s eps)."""
    a = embeddings1.to(torch.float64)
    b = embeddings2.to(torch.float64)
    return torch.nn.functional.cosine_similarity(a, b, dim=1, eps=1e-8).numpy()


def _correlations(system: np.ndarray, gold: np.ndarray) -> tuple[float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on constant input; the NaN is handled by the caller
        rho = float(spearmanr(system, gold)[0]) if len(gold) > 1 else float("nan")
        r = float(pearsonr(system, gold)[0]) if len(gold) > 1 else float("nan")
    return rho, r


def score_sts(data: STSData, system: np.ndarray, aggregation: str = "all") -> STSResult:
    """Correlations (×100) of cosine scores ``system`` (aligned with ``data``'s pairs) with the gold scores."""
    if aggregation not in STS_AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {STS_AGGREGATIONS}, got {aggregation!r}")
    result = STSResult(data.task, data.split, aggregation, n_pairs=data.n_pairs, data=data.report.to_dict())
    per_subset: list[tuple[int, float, float]] = []
    for name, start, end in data.subsets:
        rho, r = _correlations(system[start:end], data.scores[start:end])
        per_subset.append((end - start, rho, r))
        result.subsets[name] = {
            "n_pairs": end - start,
            "spearman": 100 * rho if np.isfinite(rho) else None,  # None: constant scores within the subset
            "pearson": 100 * r if np.isfinite(r) else None,
        }
    rho_all, r_all = _correlations(system, data.scores)
    if not np.isfinite(rho_all):
        result.status = "failed"
        result.error = "correlation undefined: the model gives every pair the same similarity"
        result.subsets = {}
        return result
    weights = np.array([n for n, _, _ in per_subset], dtype=np.float64)
    rhos = np.array([rho for _, rho, _ in per_subset])
    rs = np.array([r for _, _, r in per_subset])
    result.spearman_all, result.pearson_all = 100 * rho_all, 100 * r_all
    result.spearman_mean, result.pearson_mean = 100 * float(np.mean(rhos)), 100 * float(np.mean(rs))
    result.spearman_wmean = 100 * float(np.average(rhos, weights=weights))
    result.pearson_wmean = 100 * float(np.average(rs, weights=weights))
    if aggregation == "all":
        result.spearman, result.pearson = result.spearman_all, result.pearson_all
    else:
        result.spearman, result.pearson = result.spearman_wmean, result.pearson_wmean
    for key in ("spearman_mean", "pearson_mean", "spearman_wmean", "pearson_wmean"):
        if not np.isfinite(getattr(result, key)):
            setattr(result, key, None)  # a subset with constant scores; "all" is still defined
    return result


def load_sts_tasks(
    tasks: str | Sequence[str] = STS_TASKS, data_dir: str | os.PathLike[str] | None = None
) -> list[STSData]:
    """Read every selected STS task first, so that a missing file fails before any encoding."""
    names = resolve_tasks(tasks)
    non_sts = [t for t in names if t not in (*STS_TASKS, "STSBenchmark-dev")]
    if non_sts:
        raise ValueError(f"not STS tasks: {non_sts}")
    return [load_sts_task(name, data_dir) for name in names]


def run_sts(datasets: Sequence[STSData], encoder: SentenceEncoder, aggregation: str = "all") -> list[STSResult]:
    """Score already-loaded STS tasks with ``encoder`` (all their unique sentences are encoded in one call)."""
    encoder.add(s for data in datasets for s in data.sentences())
    return [_embed_and_score(data, encoder, aggregation) for data in datasets]


def _embed_and_score(data: STSData, encoder: SentenceEncoder, aggregation: str) -> STSResult:
    """One task's result; embeddings with NaN/Inf give a failed result, never a score."""
    try:
        e1 = encoder.embed(data.sentences1, data.task)
        e2 = encoder.embed(data.sentences2, data.task)
    except NonFiniteEmbeddingError as exc:
        logger.error("%s", exc)
        return STSResult(
            data.task,
            data.split,
            aggregation,
            "failed",
            str(exc),
            n_pairs=data.n_pairs,
            data=data.report.to_dict(),
        )
    result = score_sts(data, cosine_scores(e1, e2), aggregation)
    if result.ok:
        logger.info("%s: Spearman %.2f (%s)", result.name, result.spearman, aggregation)
    else:
        logger.error("%s: %s", result.name, result.error)
    return result


def evaluate_sts(
    model: SentenceTransformer,
    tasks: str | Sequence[str] = STS_TASKS,
    data_dir: str | os.PathLike[str] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    aggregation: str = "all",
    encoder: SentenceEncoder | None = None,
    show_progress_bar: bool = False,
) -> list[STSResult]:
    """Evaluate ``model`` on STS tasks (default: STS12–16, STS-B test, SICK-R test).

    Each unique sentence is encoded once; a task whose embeddings contain NaN/Inf is returned with
    ``status="failed"`` and the reason, never scored. The model's train/eval mode is restored afterwards.
    """
    if aggregation not in STS_AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {STS_AGGREGATIONS}, got {aggregation!r}")
    datasets = load_sts_tasks(tasks, data_dir)
    if encoder is None:
        encoder = SentenceEncoder(model, batch_size=batch_size, show_progress_bar=show_progress_bar)
    with eval_mode(model):
        return run_sts(datasets, encoder, aggregation)
