"""Guards shared by the loss terms."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["check_finite", "check_terms_finite"]


def check_finite(name: str, value: Tensor) -> Tensor:
    """value if every entry of value is finite, else FloatingPointError naming the term ``name``.

    The composite loss calls this once per term, so a diverging run stops with the name of the term that blew up
    instead of a silent NaN in the logged total.
    """
    finite = torch.isfinite(value)
    if bool(finite.all()):
        return value
    detached = value.detach()
    n_nan = int(torch.isnan(detached).sum())
    n_inf = int(torch.isinf(detached).sum())
    if detached.numel() == 1:
        detail = f"value {detached.item()}"
    else:
        detail = f"shape {tuple(detached.shape)}, {n_nan} NaN and {n_inf} Inf entries"
    raise FloatingPointError(
        f"DALR loss term {name!r} is NaN/Inf ({detail}); check the learning rate, the temperatures and the inputs "
        "of this term"
    )


def check_terms_finite(terms: dict[str, Tensor]) -> dict[str, Tensor]:
    """``terms`` if every entry of every term is finite, else :func:`check_finite`'s error for the first term that is
    not. One device synchronisation for all the terms of a step (not one per term)."""
    if terms and bool(torch.isfinite(torch.cat([v.detach().reshape(-1) for v in terms.values()])).all()):
        return terms
    for name, value in terms.items():
        check_finite(name, value)
    return terms
