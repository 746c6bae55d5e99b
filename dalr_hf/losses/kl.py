"""L_CMA and L_IMA: KL from flat teacher distributions to the student's similarity distributions
(docs/method.md#cross-modal-alignment-l_cma, docs/method.md#intra-modal-alignment-l_ima)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dalr_hf.losses._masking import mask_logits, negative_mask_without_diagonal
from dalr_hf.losses.arc_similarity import ARC_MARGIN, arc_similarity, pairwise_cosine

__all__ = [
    "TEACHER_T2T_MODES",
    "CrossModalAlignmentLoss",
    "IntraModalAlignmentLoss",
    "cross_modal_alignment",
    "image_distribution",
    "intra_modal_alignment",
    "kl_batchmean",
    "teacher_text_distribution",
]

TEACHER_T2T_MODES = ("mix_features", "mix_similarities")


def kl_batchmean(log_p: Tensor, q: Tensor) -> Tensor:
    """KL_bm(Q ‖ P) = (1/B) Σ_i Σ_j Q_ij (log Q_ij − log P_ij), with 0·log 0 = 0.

    ``log_p``: student log-probabilities, ``q``: target probabilities, same shape, B = first dim. Entries with
    Q_ij = 0 contribute exactly 0 and no gradient, even where log P_ij = −∞ (excluded columns). Equals
    ``F.kl_div(log_p, q, reduction="batchmean")`` wherever that is finite.
    """
    if log_p.shape != q.shape or log_p.dim() == 0:
        raise ValueError(
            f"kl_batchmean: log_p and q must have the same non-scalar shape, got {tuple(log_p.shape)} "
            f"and {tuple(q.shape)}"
        )
    log_p = log_p.float()
    q = q.float()
    support = q > 0
    safe_q = torch.where(support, q, torch.ones_like(q))
    safe_log_p = torch.where(support, log_p, torch.zeros_like(log_p))
    pointwise = torch.where(support, q * (torch.log(safe_q) - safe_log_p), torch.zeros_like(q))
    return pointwise.sum() / q.shape[0]


def _masked_softmax(logits: Tensor, negative_mask: Tensor | None) -> Tensor:
    return torch.softmax(mask_logits(logits, negative_mask), dim=-1)


def _check_teachers(features: list[Tensor], weights: list[float]) -> None:
    if len(features) == 0:
        raise ValueError("at least one teacher feature tensor is required")
    if len(features) != len(weights):
        raise ValueError(f"got {len(features)} teacher feature tensors but {len(weights)} weights")
    rows = {f.shape[0] for f in features}
    if any(f.dim() != 2 for f in features) or len(rows) != 1:
        raise ValueError(
            f"teacher features must all be (B, d) with the same B, got {[tuple(f.shape) for f in features]}"
        )


def teacher_text_distribution(
    features: list[Tensor],
    weights: list[float],
    temperature: float = 0.5,
    mode: str = "mix_features",
    negative_mask: Tensor | None = None,
) -> Tensor:
    """Q^{t2t}_i = softmax_j(û_i·û_j/τ_t), û = n(Σ_k w_k f_k) ("mix_features") or softmax_j(Σ_k w_k cos_k(i, j)/τ_t).

    ``features``: teacher embeddings f_k (B, d_k); ``weights``: w_k (α, 1 − α). "mix_features" (reference) mixes the
    raw vectors of different models before normalising and needs equal widths; "mix_similarities" mixes the
    cosines. Entries excluded by ``negative_mask`` (bool (B, B), diagonal never excluded) get probability 0 and each
    row is renormalised. Rows sum to 1.
    """
    if temperature <= 0:
        raise ValueError(f"teacher temperature must be > 0, got {temperature}")
    if mode not in TEACHER_T2T_MODES:
        raise ValueError(f"unknown teacher_t2t mode {mode!r}; expected one of {TEACHER_T2T_MODES}")
    _check_teachers(features, weights)
    if mode == "mix_features":
        widths = [f.shape[1] for f in features]
        if len(set(widths)) != 1:
            raise ValueError(
                f"teacher_t2t='mix_features' mixes the raw teacher vectors and needs equal widths, got {widths}; "
                "use teacher_t2t='mix_similarities' for teachers of different widths"
            )
        mixed = sum(w * f.float() for w, f in zip(weights, features))
        sims = pairwise_cosine(mixed, mixed)
    else:
        sims = sum(w * pairwise_cosine(f, f) for w, f in zip(weights, features))
    return _masked_softmax(sims / temperature, negative_mask)


def image_distribution(image_sim: Tensor, temperature: float = 0.5, negative_mask: Tensor | None = None) -> Tensor:
    """Q^{v2v}_j = softmax_k(V_jk/τ_t), entries excluded by ``negative_mask`` set to 0 (row renormalised)."""
    if temperature <= 0:
        raise ValueError(f"teacher temperature must be > 0, got {temperature}")
    if image_sim.dim() != 2 or image_sim.shape[0] != image_sim.shape[1]:
        raise ValueError(f"image_sim must be a square (B, B) matrix, got {tuple(image_sim.shape)}")
    return _masked_softmax(image_sim.float() / temperature, negative_mask)


def _restrict(q: Tensor, negative_mask: Tensor | None) -> Tensor:
    """Zero the excluded entries of a target distribution and renormalise (a no-op for targets built with the mask)."""
    q = q.float()
    if negative_mask is None:
        return q
    mask = negative_mask_without_diagonal(negative_mask, (q.shape[0], q.shape[1]), q.device)
    q = q.masked_fill(mask, 0.0)
    return q / q.sum(dim=-1, keepdim=True)


def cross_modal_alignment(
    student_logits: Tensor,
    q_t2t: Tensor,
    q_v2v: Tensor,
    student_temperature: float = 0.45,
    negative_mask: Tensor | None = None,
) -> Tensor:
    """L_CMA = ½[KL_bm(Q^{v2v} ‖ softmax_rows(Mᵀ/τ_s)) + KL_bm(Q^{t2t} ‖ softmax_rows(M/τ_s))].

    ``student_logits`` M: (B, B) texts × images. ``negative_mask`` (bool (B, B), [text i, image j], diagonal never
    excluded) removes entries from both student softmaxes (transposed for the image rows) and from the targets.
    """
    if student_temperature <= 0:
        raise ValueError(f"student temperature must be > 0, got {student_temperature}")
    m = student_logits.float()
    if m.dim() != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"CMA student logits must be square (texts × images), got {tuple(m.shape)}")
    if q_t2t.shape != m.shape or q_v2v.shape != m.shape:
        raise ValueError(
            f"CMA: teacher distributions must match the student logits {tuple(m.shape)}, got q_t2t "
            f"{tuple(q_t2t.shape)} and q_v2v {tuple(q_v2v.shape)}"
        )
    mask_t = None if negative_mask is None else negative_mask.transpose(0, 1)
    log_p_t2v = F.log_softmax(mask_logits(m / student_temperature, negative_mask), dim=-1)
    log_p_v2t = F.log_softmax(mask_logits(m.transpose(0, 1) / student_temperature, mask_t), dim=-1)
    return 0.5 * (
        kl_batchmean(log_p_v2t, _restrict(q_v2v, mask_t)) + kl_batchmean(log_p_t2v, _restrict(q_t2t, negative_mask))
    )


def intra_modal_alignment(text_logits: Tensor, q_t2t: Tensor, student_temperature: float = 0.45) -> Tensor:
    """L_IMA = KL_bm(Q^{t2t} ‖ softmax_rows(T/τ_s)), T the text–text logits already divided by τ."""
    if student_temperature <= 0:
        raise ValueError(f"student temperature must be > 0, got {student_temperature}")
    if text_logits.shape != q_t2t.shape:
        raise ValueError(f"IMA: q_t2t {tuple(q_t2t.shape)} must match the text logits {tuple(text_logits.shape)}")
    return kl_batchmean(F.log_softmax(text_logits.float() / student_temperature, dim=-1), q_t2t)


class CrossModalAlignmentLoss(nn.Module):
    """L_CMA with student logits M = ArcSim(z^(1), ĉ; m₁ if use_margin else 0, τ) (reference space "mlp_vs_clip")."""

    def __init__(
        self,
        margin: float = ARC_MARGIN,
        temperature: float = 0.05,
        student_temperature: float = 0.45,
        teacher_temperature: float = 0.5,
        use_margin: bool = True,
    ) -> None:
        super().__init__()
        if margin < 0 or temperature <= 0 or student_temperature <= 0 or teacher_temperature <= 0:
            raise ValueError(
                "CrossModalAlignmentLoss needs margin >= 0 and positive temperatures, got "
                f"margin={margin}, temperature={temperature}, student_temperature={student_temperature}, "
                f"teacher_temperature={teacher_temperature}"
            )
        self.margin = float(margin)
        self.temperature = float(temperature)
        self.student_temperature = float(student_temperature)
        self.teacher_temperature = float(teacher_temperature)
        self.use_margin = bool(use_margin)

    def student_logits(self, z1: Tensor, image_features: Tensor) -> Tensor:
        """M = ArcSim(z^(1), ĉ; m, τ), texts × images."""
        if z1.dim() != 2 or image_features.dim() != 2:
            raise ValueError(
                f"CMA expects (B, d) inputs, got text {tuple(z1.shape)} and image {tuple(image_features.shape)}"
            )
        if z1.shape[1] != image_features.shape[1]:
            raise ValueError(
                f"CMA compares the student MLP output (width {z1.shape[1]}) directly with the CLIP image embedding "
                f"(width {image_features.shape[1]}); these widths must match (docs/method.md#coupled-widths). Use "
                "cma_space='grounding' to compare in the learned grounding space instead"
            )
        image_hat = F.normalize(image_features.float(), p=2.0, dim=-1, eps=1e-8)
        margin = self.margin if self.use_margin else 0.0
        return arc_similarity(z1, image_hat, margin, self.temperature)

    def forward(
        self,
        z1: Tensor,
        image_features: Tensor,
        q_t2t: Tensor,
        q_v2v: Tensor | None,
        negative_mask: Tensor | None = None,
    ) -> Tensor:
        """L_CMA; ``q_v2v=None`` builds Q^{v2v} from the images' cosines at ``teacher_temperature``."""
        logits = self.student_logits(z1, image_features)
        if q_v2v is None:
            image_sim = pairwise_cosine(image_features, image_features).detach()
            q_v2v = image_distribution(image_sim, self.teacher_temperature, negative_mask)
        return cross_modal_alignment(logits, q_t2t, q_v2v, self.student_temperature, negative_mask)

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, temperature={self.temperature}, student_temperature={self.student_temperature}, "
            f"teacher_temperature={self.teacher_temperature}, use_margin={self.use_margin}"
        )


class IntraModalAlignmentLoss(nn.Module):
    """L_IMA = KL_bm(Q^{t2t} ‖ softmax_rows(T/τ_s)) on the InfoNCE logits T."""

    def __init__(self, student_temperature: float = 0.45) -> None:
        super().__init__()
        if student_temperature <= 0:
            raise ValueError(f"student temperature must be > 0, got {student_temperature}")
        self.student_temperature = float(student_temperature)

    def forward(self, text_logits: Tensor, q_t2t: Tensor) -> Tensor:
        return intra_modal_alignment(text_logits, q_t2t, self.student_temperature)

    def extra_repr(self) -> str:
        return f"student_temperature={self.student_temperature}"
