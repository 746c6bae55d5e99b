"""DALR loss terms: one module per term, each with its math in a plain-tensor function (method.md §1)."""

from __future__ import annotations

from dalr_hf.losses._checks import check_finite
from dalr_hf.losses.arc_similarity import (
    ArcSimilarity,
    arc_margin_from_cosine,
    arc_margin_from_cosine_arccos,
    arc_similarity,
    arc_similarity_arccos,
    pairwise_cosine,
)
from dalr_hf.losses.consistency import (
    MISMATCH_MODES,
    ConsistencyLoss,
    consistency_loss,
    embedding_cosine,
    sample_mismatch,
)
from dalr_hf.losses.dalr import TERMS, DALRLoss, MLPPooler
from dalr_hf.losses.g2l import G2L_NORMS, GlobalToLocalLoss, global_to_local, mix_token_states
from dalr_hf.losses.grounding import GroundingLoss, grounding_contrastive
from dalr_hf.losses.info_nce import InfoNCELoss, info_nce
from dalr_hf.losses.kl import (
    TEACHER_T2T_MODES,
    CrossModalAlignmentLoss,
    IntraModalAlignmentLoss,
    cross_modal_alignment,
    image_distribution,
    intra_modal_alignment,
    kl_batchmean,
    teacher_text_distribution,
)
from dalr_hf.losses.rank import RANK_METHODS, RankDistillationLoss, listmle, listnet, teacher_rank_scores

__all__ = [
    "G2L_NORMS",
    "MISMATCH_MODES",
    "RANK_METHODS",
    "TEACHER_T2T_MODES",
    "TERMS",
    "ArcSimilarity",
    "ConsistencyLoss",
    "CrossModalAlignmentLoss",
    "DALRLoss",
    "GlobalToLocalLoss",
    "GroundingLoss",
    "InfoNCELoss",
    "IntraModalAlignmentLoss",
    "MLPPooler",
    "RankDistillationLoss",
    "arc_margin_from_cosine",
    "arc_margin_from_cosine_arccos",
    "arc_similarity",
    "arc_similarity_arccos",
    "check_finite",
    "consistency_loss",
    "cross_modal_alignment",
    "embedding_cosine",
    "global_to_local",
    "grounding_contrastive",
    "image_distribution",
    "info_nce",
    "intra_modal_alignment",
    "kl_batchmean",
    "listmle",
    "listnet",
    "mix_token_states",
    "pairwise_cosine",
    "sample_mismatch",
    "teacher_rank_scores",
    "teacher_text_distribution",
]
