"""L_rank: ListMLE / ListNet rank distillation from the teachers' similarity rankings,
docs/method.md#rank-distillation-l_rank."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dalr_hf.losses.arc_similarity import pairwise_cosine

__all__ = [
    "RANK_METHODS",
    "RANK_REDUCTIONS",
    "REFERENCE_LISTMLE_EPS",
    "RankDistillationLoss",
    "listmle",
    "listnet",
    "teacher_rank_scores",
]

RANK_METHODS = ("listmle", "listnet")
#: "sum": ListMLE summed over the list positions (the reference; about log(B!) in size, ~205 at B=64);
#: "mean": divided by the list length, so the term is on InfoNCE's scale (about log B) whatever the batch size.
RANK_REDUCTIONS = ("sum", "mean")
#: The constant the reference (RankCSE/allRank) adds inside the log of its ListMLE.
REFERENCE_LISTMLE_EPS = 1e-7


def teacher_rank_scores(features: list[Tensor], weights: list[float], temperature: float = 0.05) -> Tensor:
    """R_ij = Σ_k w_k cos(f_k,i, f_k,j)/τ₂ (float32; the teachers may differ in width)."""
    if temperature <= 0:
        raise ValueError(f"rank teacher temperature must be > 0, got {temperature}")
    if len(features) == 0 or len(features) != len(weights):
        raise ValueError(f"need one weight per teacher feature tensor, got {len(features)} and {len(weights)}")
    if any(f.dim() != 2 for f in features) or len({f.shape[0] for f in features}) != 1:
        raise ValueError(
            f"teacher features must all be (B, d) with the same B, got {[tuple(f.shape) for f in features]}"
        )
    return sum(w * pairwise_cosine(f, f) for w, f in zip(weights, features)) / temperature


def _check_scores(student_scores: Tensor, teacher_scores: Tensor, name: str) -> None:
    if student_scores.dim() != 2 or student_scores.shape != teacher_scores.shape:
        raise ValueError(
            f"{name}: student and teacher scores must be 2-D with the same shape, got {tuple(student_scores.shape)} "
            f"and {tuple(teacher_scores.shape)}"
        )


def listmle(
    student_scores: Tensor,
    teacher_scores: Tensor,
    exact: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """L = (1/B) Σ_i Σ_k [log Σ_{k′≥k} exp(s_i,(k′)) − s_i,(k)], s_i,(k) the student scores in teacher order.

    One random column permutation, shared by all rows, breaks teacher ties; each row is then sorted (stably) by the
    teacher score, descending. ``exact=True`` takes the suffix log-sum-exp with a reversed ``logcumsumexp``;
    ``exact=False`` is the reference formula, log(Σ_{k′≥k} exp(s_(k′) − c) + 1e−7) − (s_(k) − c) with c the row
    maximum, which departs from the true value once a row spans more than ~16 nats. Inputs are not modified.
    """
    _check_scores(student_scores, teacher_scores, "listmle")
    s = student_scores.float()
    r = teacher_scores.float()
    n_cols = s.shape[1]
    if generator is not None:
        perm = torch.randperm(n_cols, generator=generator, device=generator.device).to(s.device)
    else:
        perm = torch.randperm(n_cols, device=s.device)
    s = s[:, perm]
    r = r[:, perm]
    order = torch.sort(r, dim=1, descending=True, stable=True).indices
    s_sorted = s.gather(1, order)
    if exact:
        suffix_lse = torch.logcumsumexp(s_sorted.flip(1), dim=1).flip(1)
        per_row = (suffix_lse - s_sorted).sum(dim=1)
    else:
        shifted = s_sorted - s_sorted.max(dim=1, keepdim=True).values
        suffix_sum = torch.cumsum(shifted.exp().flip(1), dim=1).flip(1)
        per_row = (torch.log(suffix_sum + REFERENCE_LISTMLE_EPS) - shifted).sum(dim=1)
    return per_row.mean()


def listnet(student_scores: Tensor, teacher_scores: Tensor) -> Tensor:
    """L = −(1/B) Σ_i Σ_{j≠i} q_ij log p_ij, p = softmax_{j≠i}(S_ij), q = softmax_{j≠i}(R_ij).

    The diagonal is excluded (−∞) from both distributions, out of place; the excluded entries contribute 0 (no
    NaN). A single column leaves nothing to rank: the loss is then 0 (still attached to the graph).
    """
    _check_scores(student_scores, teacher_scores, "listnet")
    s = student_scores.float()
    r = teacher_scores.float()
    if s.shape[1] < 2:
        return s.sum() * 0.0
    diagonal = torch.eye(s.shape[0], s.shape[1], dtype=torch.bool, device=s.device)
    log_p = F.log_softmax(s.masked_fill(diagonal, float("-inf")), dim=-1)
    q = torch.softmax(r.masked_fill(diagonal, float("-inf")), dim=-1)
    cross = q * log_p.masked_fill(diagonal, 0.0)
    return -cross.sum(dim=-1).mean()


class RankDistillationLoss(nn.Module):
    """L_rank = γ · ListMLE(T, R) (or ListNet) on the student logits T and the teacher scores R."""

    def __init__(self, method: str = "listmle", exact: bool = True, gamma: float = 1.0, reduction: str = "sum") -> None:
        super().__init__()
        if method not in RANK_METHODS:
            raise ValueError(f"unknown rank distillation method {method!r}; expected one of {RANK_METHODS}")
        if reduction not in RANK_REDUCTIONS:
            raise ValueError(f"unknown rank reduction {reduction!r}; expected one of {RANK_REDUCTIONS}")
        self.reduction = reduction
        self.method = method
        self.exact = bool(exact)
        self.gamma = float(gamma)

    def forward(
        self, student_logits: Tensor, teacher_scores: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        if self.method == "listmle":
            loss = listmle(student_logits, teacher_scores, exact=self.exact, generator=generator)
            if self.reduction == "mean":
                loss = loss / student_logits.shape[1]
        else:
            loss = listnet(student_logits, teacher_scores)
        return self.gamma * loss

    def extra_repr(self) -> str:
        return f"method={self.method!r}, exact={self.exact}, gamma={self.gamma}, reduction={self.reduction!r}"
