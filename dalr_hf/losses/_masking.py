"""Exclusion masks for in-batch negatives (e.g. two captions of the same image)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["mask_logits", "negative_mask_without_diagonal"]


def negative_mask_without_diagonal(negative_mask: Tensor, shape: tuple[int, int], device: torch.device) -> Tensor:
    """M'_ij = M_ij ∧ (i ≠ j): the bool exclusion mask, validated, with the positives (diagonal) never excluded."""
    if tuple(negative_mask.shape) != tuple(shape):
        raise ValueError(f"negative_mask must have shape {tuple(shape)}, got {tuple(negative_mask.shape)}")
    mask = negative_mask.to(device=device, dtype=torch.bool)
    eye = torch.eye(shape[0], shape[1], dtype=torch.bool, device=device)
    return mask & ~eye


def mask_logits(logits: Tensor, negative_mask: Tensor | None) -> Tensor:
    """L'_ij = −∞ where M_ij ∧ i ≠ j, else L_ij (float32, out of place)."""
    logits = logits.float()
    if negative_mask is None:
        return logits
    mask = negative_mask_without_diagonal(negative_mask, (logits.shape[0], logits.shape[1]), logits.device)
    return logits.masked_fill(mask, float("-inf"))
