"""The DALR objective: the composite :class:`DALRLoss`, its presets and settings, and one module per term.

Each term is a thin ``nn.Module`` over a plain-tensor function holding its math (see ``docs/method.md#terms``, Loss
terms). Helpers used by the terms (finiteness checks, mismatch sampling, teacher distributions, ...) stay in their
submodules.
"""

from __future__ import annotations

from dalr_hf.losses.arc_similarity import ArcSimilarity, arc_similarity
from dalr_hf.losses.consistency import MISMATCH_MODES, ConsistencyLoss, consistency_loss
from dalr_hf.losses.dalr import TERMS, DALRLoss, MLPPooler
from dalr_hf.losses.g2l import G2L_NORMS, GlobalToLocalLoss, global_to_local
from dalr_hf.losses.grounding import GroundingLoss, grounding_contrastive
from dalr_hf.losses.info_nce import InfoNCELoss, info_nce
from dalr_hf.losses.kl import (
    TEACHER_T2T_MODES,
    CrossModalAlignmentLoss,
    IntraModalAlignmentLoss,
    cross_modal_alignment,
    intra_modal_alignment,
)
from dalr_hf.losses.presets import PRESETS, LossSettings, effective_weights
from dalr_hf.losses.rank import RANK_METHODS, RankDistillationLoss, listmle, listnet

__all__ = [
    "G2L_NORMS",
    "MISMATCH_MODES",
    "PRESETS",
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
    "LossSettings",
    "MLPPooler",
    "RankDistillationLoss",
    "arc_similarity",
    "consistency_loss",
    "cross_modal_alignment",
    "effective_weights",
    "global_to_local",
    "grounding_contrastive",
    "info_nce",
    "intra_modal_alignment",
    "listmle",
    "listnet",
]
