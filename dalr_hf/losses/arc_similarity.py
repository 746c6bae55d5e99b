"""Angular-margin similarity ("ArcSim", KDMCSE), docs/method.md#angular-margin-similarity-arcsim.

Off-diagonal pairs whose angle exceeds the margin get their angle reduced by the (possibly per-entry) margin, which
raises their logit and turns them into harder negatives; the diagonal (the positive) is never touched.

The reference computes ``cos(arccos(C) - m)``. Its gradient is zero (with a clamp) or NaN (without) at |C| = 1, so
the default here is the closed form ``C cos m + sqrt(1 - C^2) sin m``; :func:`arc_similarity_arccos` keeps the literal
form for tests and fidelity checks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dalr_hf.losses._precision import float32_math

__all__ = [
    "ARC_MARGIN",
    "COSINE_EPS",
    "SQRT_EPS",
    "ArcSimilarity",
    "arc_margin_from_cosine",
    "arc_margin_from_cosine_arccos",
    "arc_similarity",
    "arc_similarity_arccos",
    "pairwise_cosine",
]

#: The authors' angular margin (radians): the default of every ArcSim-based term (the reference preset's m1 and m2).
ARC_MARGIN = 0.18
#: Norm floor of the cosine, as in ``torch.nn.CosineSimilarity``.
COSINE_EPS = 1e-8
#: Floor of ``1 - C^2`` under the square root: keeps the gradient finite at C = -1 (error <= 1e-6 * sin m).
SQRT_EPS = 1e-12


def pairwise_cosine(x: Tensor, y: Tensor, eps: float = COSINE_EPS) -> Tensor:
    """C_ij = x_i·y_j / (max(‖x_i‖, eps)·max(‖y_j‖, eps)), in float32.

    ``x``: (N, d), ``y``: (M, d); returns (N, M). Each vector is divided by its own norm floored at ``eps``, which is
    how ``torch.nn.CosineSimilarity`` treats near-zero vectors.
    """
    if x.dim() != 2 or y.dim() != 2:
        raise ValueError(f"pairwise_cosine expects two 2-D tensors, got shapes {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"pairwise_cosine: feature dims differ, x has shape {tuple(x.shape)} and y has shape {tuple(y.shape)}"
        )
    with float32_math(x.device):
        x_hat = F.normalize(x.float(), p=2.0, dim=-1, eps=eps)
        y_hat = F.normalize(y.float(), p=2.0, dim=-1, eps=eps)
        return x_hat @ y_hat.transpose(0, 1)


def _validate_margin_temperature(margin: float, temperature: float) -> None:
    if margin < 0:
        raise ValueError(f"ArcSim margin must be >= 0, got {margin}")
    if temperature <= 0:
        raise ValueError(f"ArcSim temperature must be > 0, got {temperature}")


def _validate_pair(x: Tensor, y: Tensor, sim: Tensor | None) -> None:
    if x.dim() != 2 or y.dim() != 2:
        raise ValueError(f"ArcSim expects two 2-D tensors, got shapes {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            "ArcSim needs a square similarity matrix (the positive of row i is column i): x has shape "
            f"{tuple(x.shape)} but y has shape {tuple(y.shape)}"
        )
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"ArcSim: feature dims differ, x has shape {tuple(x.shape)} and y has shape {tuple(y.shape)}")
    if sim is not None and tuple(sim.shape) != (x.shape[0], x.shape[0]):
        raise ValueError(
            f"ArcSim: sim must have shape {(x.shape[0], x.shape[0])} for a batch of {x.shape[0]} rows, "
            f"got {tuple(sim.shape)}"
        )


def _selection(cos: Tensor, margin: float) -> Tensor:
    """Off-diagonal entries whose angle exceeds the base margin (θ > m  ⇔  C < cos m)."""
    n = cos.shape[0]
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=cos.device)
    return off_diagonal & (cos < math.cos(margin))


def _entry_margin(margin: float, sim: Tensor | None) -> Tensor | float:
    if sim is None:
        return margin
    return (1.0 - sim.float()) * margin


def arc_margin_from_cosine(cos: Tensor, margin: float, temperature: float, sim: Tensor | None = None) -> Tensor:
    """O_ij = [C_ij cos m_ij + sqrt(max(1 − C_ij², ε)) sin m_ij]/t if i≠j and C_ij < cos m, else C_ij/t.

    ``cos``: square (B, B) cosine matrix C. ``m_ij = m``, or ``(1 − sim_ij)·m`` when ``sim`` is given (adaptive
    margin); the selection test always uses the base margin m. Computed in float32.
    """
    _validate_margin_temperature(margin, temperature)
    if cos.dim() != 2 or cos.shape[0] != cos.shape[1]:
        raise ValueError(f"ArcSim needs a square cosine matrix, got shape {tuple(cos.shape)}")
    if sim is not None and sim.shape != cos.shape:
        raise ValueError(f"ArcSim: sim must have shape {tuple(cos.shape)}, got {tuple(sim.shape)}")
    cos = cos.float()
    if margin == 0.0:
        # cos(θ - 0) = C: plain SimCSE logits, bit for bit.
        return cos / temperature
    m = _entry_margin(margin, sim)
    if isinstance(m, Tensor):
        cos_m, sin_m = torch.cos(m), torch.sin(m)
    else:
        cos_m, sin_m = math.cos(m), math.sin(m)
    sine = torch.sqrt(torch.clamp(1.0 - cos * cos, min=SQRT_EPS))
    shifted = cos * cos_m + sine * sin_m
    return torch.where(_selection(cos, margin), shifted, cos) / temperature


def arc_margin_from_cosine_arccos(cos: Tensor, margin: float, temperature: float, sim: Tensor | None = None) -> Tensor:
    """O_ij = cos(arccos(clip(C_ij, −1, 1)) − m_ij)/t if i≠j and arccos(C_ij) > m, else cos(arccos(C_ij))/t.

    The literal reference form, kept as a reference for tests: its gradient is 0 or NaN where |C| = 1.
    """
    _validate_margin_temperature(margin, temperature)
    if cos.dim() != 2 or cos.shape[0] != cos.shape[1]:
        raise ValueError(f"ArcSim needs a square cosine matrix, got shape {tuple(cos.shape)}")
    cos = cos.float()
    theta = torch.acos(torch.clamp(cos, -1.0, 1.0))
    n = cos.shape[0]
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=cos.device)
    selected = off_diagonal & (theta > margin)
    final_theta = torch.where(selected, theta - _entry_margin(margin, sim), theta)
    return torch.cos(final_theta) / temperature


def arc_similarity(x: Tensor, y: Tensor, margin: float, temperature: float, sim: Tensor | None = None) -> Tensor:
    """O = [C cos m_ij + sqrt(max(1 − C², ε)) sin m_ij]/t where i≠j and C < cos m, else C/t; C_ij = cos(x_i, y_j).

    ``x``, ``y``: (B, d); ``sim``: optional (B, B) similarity Σ giving the adaptive margin m_ij = (1 − Σ_ij)·m
    (otherwise m_ij = m). Returns the (B, B) float32 logits; ``margin = 0`` gives exactly C/t (plain SimCSE).
    """
    _validate_pair(x, y, sim)
    return arc_margin_from_cosine(pairwise_cosine(x, y), margin, temperature, sim)


def arc_similarity_arccos(x: Tensor, y: Tensor, margin: float, temperature: float, sim: Tensor | None = None) -> Tensor:
    """O = cos(arccos(C) − m_ij)/t where i≠j and arccos(C) > m, else cos(arccos(C))/t; C_ij = cos(x_i, y_j).

    The reference (arccos) form of :func:`arc_similarity`, same arguments; use it only to check the closed form.
    """
    _validate_pair(x, y, sim)
    return arc_margin_from_cosine_arccos(pairwise_cosine(x, y), margin, temperature, sim)


class ArcSimilarity(nn.Module):
    """Angular-margin similarity logits (docs/method.md#angular-margin-similarity-arcsim) with a fixed margin and
    temperature."""

    def __init__(self, margin: float = ARC_MARGIN, temperature: float = 0.05) -> None:
        super().__init__()
        _validate_margin_temperature(margin, temperature)
        self.margin = float(margin)
        self.temperature = float(temperature)

    def forward(self, x: Tensor, y: Tensor, sim: Tensor | None = None) -> Tensor:
        return arc_similarity(x, y, self.margin, self.temperature, sim)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, temperature={self.temperature}"
