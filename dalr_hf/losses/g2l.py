"""L_g2l: in-batch global-to-local contrast between the student's sentence vector and teacher token states,
docs/method.md#global-to-local-l_g2l."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dalr_hf.losses._precision import float32_math

__all__ = ["G2L_NORMS", "GlobalToLocalLoss", "global_to_local", "mix_token_states"]

G2L_NORMS = ("token_axis", "feature_axis")


def mix_token_states(states: list[Tensor], weights: list[float]) -> Tensor:
    """M = Σ_k w_k K_k (float32); every K_k is (B, T, H) with the same shape."""
    if len(states) == 0 or len(states) != len(weights):
        raise ValueError(f"need one weight per teacher token-state tensor, got {len(states)} and {len(weights)}")
    shapes = {tuple(s.shape) for s in states}
    if len(shapes) != 1:
        raise ValueError(
            f"teacher token states must share one shape (B, T, H) to be mixed, got {[tuple(s.shape) for s in states]}"
        )
    return sum(w * s.float() for w, s in zip(weights, states))


def global_to_local(
    z: Tensor,
    token_states: Tensor,
    token_mask: Tensor,
    temperature: float = 0.05,
    norm: str = "token_axis",
) -> Tensor:
    """L = (1/B) Σ_i (Σ_k w_ik ℓ_ik)/(Σ_k w_ik), ℓ_ik = −log[e^{e_i(i,k)}/(e^{e_i(i,k)} + Σ_{j≠i,w_jk′} e^{e_i(j,k′)})].

    Scores e_i(j, k) = z_i · m̂_{j,k} / τ with ``z`` (B, H) the unnormalised student vectors and ``token_states``
    (B, T, H) the mixed teacher states at positions 1..L−1. m̂ is L2-normalised over the token axis, pads included
    (``norm="token_axis"``, the reference) or per token over features (``"feature_axis"``). ``token_mask`` (B, T)
    gives w; masking is exact (−∞ / ``masked_fill``) in float32. With B = 1 there are no negatives and ℓ = 0.
    """
    if norm not in G2L_NORMS:
        raise ValueError(f"unknown g2l norm {norm!r}; expected one of {G2L_NORMS}")
    if temperature <= 0:
        raise ValueError(f"g2l temperature must be > 0, got {temperature}")
    if z.dim() != 2 or token_states.dim() != 3:
        raise ValueError(
            f"g2l expects z (B, H) and token_states (B, T, H), got {tuple(z.shape)} and {tuple(token_states.shape)}"
        )
    batch, length, hidden = token_states.shape
    if z.shape[0] != batch:
        raise ValueError(f"g2l: batch sizes differ, z {tuple(z.shape)} vs token_states {tuple(token_states.shape)}")
    if z.shape[1] != hidden:
        raise ValueError(
            f"g2l: teacher hidden size {hidden} does not match the student width {z.shape[1]} "
            "(docs/method.md#coupled-widths); "
            "the teachers' token states are dot-multiplied with the student's vector"
        )
    if tuple(token_mask.shape) != (batch, length):
        raise ValueError(f"g2l: token_mask must have shape {(batch, length)}, got {tuple(token_mask.shape)}")
    valid = token_mask.to(device=token_states.device).bool()
    if not bool(valid.any(dim=1).all()):
        empty = torch.nonzero(~valid.any(dim=1)).flatten().tolist()
        raise ValueError(f"g2l: rows {empty} have no valid token in token_mask")

    states = token_states.float()
    states = F.normalize(states, p=2.0, dim=1 if norm == "token_axis" else -1)
    with float32_math(states.device):
        scores = torch.einsum("ih,jkh->ijk", z.float(), states) / temperature  # [anchor i, sentence j, token k]

    eye = torch.eye(batch, dtype=torch.bool, device=scores.device)
    positive = torch.diagonal(scores, dim1=0, dim2=1).transpose(0, 1)  # (B, T): e_i(i, k)
    # Negatives of anchor i: every valid token of every other sentence (the same set for all of i's tokens).
    negative_mask = ~eye.unsqueeze(-1) & valid.unsqueeze(0)
    has_negative = negative_mask.flatten(1).any(dim=1)
    negative_scores = scores.masked_fill(~negative_mask, float("-inf")).flatten(1)
    # Anchors without negatives (B = 1) would give logsumexp(all −∞) = −∞ with a NaN gradient; route them around it.
    negative_scores = torch.where(has_negative.unsqueeze(1), negative_scores, torch.zeros_like(negative_scores))
    negative_lse = torch.logsumexp(negative_scores, dim=1)
    negative_lse = torch.where(has_negative, negative_lse, torch.full_like(negative_lse, float("-inf")))

    token_loss = torch.logaddexp(positive, negative_lse.unsqueeze(1)) - positive  # (B, T)
    token_loss = torch.where(valid, token_loss, torch.zeros_like(token_loss))
    per_row = token_loss.sum(dim=1) / valid.sum(dim=1).to(token_loss.dtype)
    return per_row.mean()


class GlobalToLocalLoss(nn.Module):
    """L_g2l between the student vector z^(1) and the mixed teacher token states
    (docs/method.md#global-to-local-l_g2l)."""

    def __init__(self, temperature: float = 0.05, norm: str = "token_axis") -> None:
        super().__init__()
        if norm not in G2L_NORMS:
            raise ValueError(f"unknown g2l norm {norm!r}; expected one of {G2L_NORMS}")
        if temperature <= 0:
            raise ValueError(f"g2l temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.norm = norm

    def forward(self, z: Tensor, token_states: Tensor, token_mask: Tensor) -> Tensor:
        return global_to_local(z, token_states, token_mask, self.temperature, self.norm)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, norm={self.norm!r}"
