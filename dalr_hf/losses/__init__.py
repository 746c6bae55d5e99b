"""DALR loss terms: one module per term, each with its math in a plain-tensor function (method.md §1)."""

from __future__ import annotations

from ._checks import check_finite
from .arc_similarity import (
    ArcSimilarity,
    arc_margin_from_cosine,
    arc_margin_from_cosine_arccos,
    arc_similarity,
    arc_similarity_arccos,
    pairwise_cosine,
)
from .consistency import MISMATCH_MODES, ConsistencyLoss, consistency_loss, embedding_cosine, sample_mismatch
from .g2l import G2L_NORMS, GlobalToLocalLoss, global_to_local, mix_token_states
from .grounding import GroundingLoss, grounding_contrastive
from .info_nce import InfoNCELoss, info_nce
from .kl import (
    TEACHER_T2T_MODES,
    CrossModalAlignmentLoss,
    IntraModalAlignmentLoss,
    cross_modal_alignment,
    image_distribution,
    intra_modal_alignment,
    kl_batchmean,
    teacher_text_distribution,
)
from .rank import RANK_METHODS, RankDistillationLoss, listmle, listnet, teacher_rank_scores

__all__ = [
    "G2L_NORMS",
    "MISMATCH_MODES",
    "RANK_METHODS",
    "TEACHER_T2T_MODES",
    "ArcSimilarity",
    "ConsistencyLoss",
    "CrossModalAlignmentLoss",
    "GlobalToLocalLoss",
    "GroundingLoss",
    "InfoNCELoss",
    "IntraModalAlignmentLoss",
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

# ---------------------------------------------------------------------------------------------------------------
# Composite loss: `DALRLoss` (dalr_hf/losses/dalr.py) is re-exported here by its author, below this line.
# ---------------------------------------------------------------------------------------------------------------
from .dalr import TERMS, DALRLoss, MLPPooler  # noqa: E402

__all__ += ["DALRLoss", "MLPPooler", "TERMS"]
