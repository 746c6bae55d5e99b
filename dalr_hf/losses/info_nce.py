"""L_info: the SimCSE text InfoNCE over the two dropout views, docs/method.md#text-infonce-l_info."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dalr_hf.losses.arc_similarity import ARC_MARGIN, arc_similarity

__all__ = ["InfoNCELoss", "info_nce"]


def info_nce(logits: Tensor) -> Tensor:
    """L = −(1/B) Σ_i log softmax_j(T_ij)[j = i].

    ``logits``: (B, N) with N >= B; row i's positive is column i. Computed in float32 with log-sum-exp.
    """
    if logits.dim() != 2 or logits.shape[1] < logits.shape[0]:
        raise ValueError(
            f"info_nce expects (B, N) logits with N >= B (positive of row i in column i), got {tuple(logits.shape)}"
        )
    targets = torch.arange(logits.shape[0], device=logits.device)
    return F.cross_entropy(logits.float(), targets)


class InfoNCELoss(nn.Module):
    """Text InfoNCE on T = ArcSim(z^(1), z^(2); m₁, τ); returns the loss and T (with its graph, reused by L_rank
    and L_IMA)."""

    def __init__(self, margin: float = ARC_MARGIN, temperature: float = 0.05) -> None:
        super().__init__()
        if margin < 0 or temperature <= 0:
            raise ValueError(f"InfoNCELoss needs margin >= 0 and temperature > 0, got {margin} and {temperature}")
        self.margin = float(margin)
        self.temperature = float(temperature)

    def forward(self, z1: Tensor, z2: Tensor) -> tuple[Tensor, Tensor]:
        logits = arc_similarity(z1, z2, self.margin, self.temperature)
        return info_nce(logits), logits

    def extra_repr(self) -> str:
        return f"margin={self.margin}, temperature={self.temperature}"
