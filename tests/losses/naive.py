"""Naive reference formulas for the loss tests: plain Python loops over float64 numbers, no library helpers.

The tests get this module as the ``naive`` fixture (``naive.cos_matrix(...)``).
"""

from __future__ import annotations

import math

import torch


def to_lists(t: torch.Tensor) -> list:
    return t.detach().double().cpu().tolist()


def cos_matrix(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-8) -> list[list[float]]:
    """cos(x_i, y_j) with each norm floored at eps (torch.nn.CosineSimilarity's convention)."""
    xs, ys = to_lists(x), to_lists(y)
    out = []
    for a in xs:
        na = max(math.sqrt(sum(v * v for v in a)), eps)
        row = []
        for b in ys:
            nb = max(math.sqrt(sum(v * v for v in b)), eps)
            row.append(sum(u * v for u, v in zip(a, b)) / (na * nb))
        out.append(row)
    return out


def arcsim(
    x: torch.Tensor, y: torch.Tensor, margin: float, temperature: float, sim: torch.Tensor | None = None
) -> list[list[float]]:
    """The literal arccos definition of docs/method.md#angular-margin-similarity-arcsim, entry by entry."""
    cos = cos_matrix(x, y)
    s = to_lists(sim) if sim is not None else None
    out = []
    for i, row in enumerate(cos):
        new_row = []
        for j, c in enumerate(row):
            theta = math.acos(min(1.0, max(-1.0, c)))
            if i != j and theta > margin:
                m = margin if s is None else (1.0 - s[i][j]) * margin
                new_row.append(math.cos(theta - m) / temperature)
            else:
                new_row.append(c / temperature)
        out.append(new_row)
    return out


def log_softmax_row(row: list[float], excluded: set[int] | None = None) -> list[float]:
    """log softmax over the entries not in ``excluded`` (those get -inf)."""
    excluded = excluded or set()
    kept = [v for j, v in enumerate(row) if j not in excluded]
    top = max(kept)
    log_z = top + math.log(sum(math.exp(v - top) for v in kept))
    return [(-math.inf if j in excluded else v - log_z) for j, v in enumerate(row)]


def softmax_row(row: list[float], excluded: set[int] | None = None) -> list[float]:
    return [0.0 if v == -math.inf else math.exp(v) for v in log_softmax_row(row, excluded)]


def row_ce(logits: list[list[float]], mask: torch.Tensor | None = None) -> float:
    """mean_i −log softmax(row i)[i], with mask[i][j] (j != i) columns skipped."""
    m = to_lists(mask) if mask is not None else None
    total = 0.0
    for i, row in enumerate(logits):
        excluded = {j for j in range(len(row)) if m is not None and j != i and m[i][j]}
        total -= log_softmax_row(row, excluded)[i]
    return total / len(logits)


def kl_batchmean(log_p: list[list[float]], q: list[list[float]]) -> float:
    total = 0.0
    for lp_row, q_row in zip(log_p, q):
        for lp, qq in zip(lp_row, q_row):
            if qq > 0:
                total += qq * (math.log(qq) - lp)
    return total / len(q)


def transpose(m: list[list[float]]) -> list[list[float]]:
    return [list(col) for col in zip(*m)]
