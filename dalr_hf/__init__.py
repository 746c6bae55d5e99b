"""dalr_hf: DALR sentence-representation training on transformers, sentence-transformers and accelerate.

Public names are imported lazily, so ``import dalr_hf.data`` does not pull in the trainer or the evaluation suite.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "DALRDataCollator": "dalr_hf.data",
    "TwoSourceBatchSampler": "dalr_hf.data",
    "TwoSourceDataset": "dalr_hf.data",
    "TwoSourceSchedule": "dalr_hf.data",
    "load_paired_dataset": "dalr_hf.data",
    "load_text_corpus": "dalr_hf.data",
    "SentEvalEvaluator": "dalr_hf.evaluation",
    "DALRLoss": "dalr_hf.losses.dalr",
    "LossSettings": "dalr_hf.losses.presets",
    "PRESETS": "dalr_hf.losses.presets",
    "build_student": "dalr_hf.student",
    "resolve_model_path": "dalr_hf.student",
    "Teacher": "dalr_hf.teachers",
    "CachedTeachers": "dalr_hf.teachers",
    "TeacherConfig": "dalr_hf.teachers",
    "TeacherEnsemble": "dalr_hf.teachers",
    "TeacherOutput": "dalr_hf.teachers",
    "DALRTrainer": "dalr_hf.trainer",
    "build_train_dataset": "dalr_hf.trainer",
    "DALRTrainingArguments": "dalr_hf.training_args",
    "export_model": "dalr_hf.publish.export",
    "push_to_hub": "dalr_hf.publish.hub",
    "apply_lora": "dalr_hf.lora",
    "merge_lora": "dalr_hf.lora",
    "collect_card_data": "dalr_hf.publish.card.collect",
    "DALRModelCardData": "dalr_hf.publish.card.render",
}

__all__ = [
    "CachedTeachers",
    "DALRDataCollator",
    "DALRModelCardData",
    "DALRLoss",
    "DALRTrainer",
    "DALRTrainingArguments",
    "LossSettings",
    "PRESETS",
    "SentEvalEvaluator",
    "Teacher",
    "TeacherConfig",
    "TeacherEnsemble",
    "TeacherOutput",
    "TwoSourceBatchSampler",
    "TwoSourceDataset",
    "TwoSourceSchedule",
    "apply_lora",
    "build_student",
    "build_train_dataset",
    "collect_card_data",
    "export_model",
    "load_paired_dataset",
    "load_text_corpus",
    "merge_lora",
    "push_to_hub",
    "resolve_model_path",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dalr_hf' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)


if TYPE_CHECKING:  # pragma: no cover
    from dalr_hf.data import (
        DALRDataCollator,
        TwoSourceBatchSampler,
        TwoSourceDataset,
        TwoSourceSchedule,
        load_paired_dataset,
        load_text_corpus,
    )
    from dalr_hf.evaluation import SentEvalEvaluator
    from dalr_hf.lora import apply_lora, merge_lora
    from dalr_hf.losses.dalr import DALRLoss
    from dalr_hf.losses.presets import PRESETS, LossSettings
    from dalr_hf.publish.card.collect import collect_card_data
    from dalr_hf.publish.card.render import DALRModelCardData
    from dalr_hf.publish.export import export_model
    from dalr_hf.publish.hub import push_to_hub
    from dalr_hf.student import build_student, resolve_model_path
    from dalr_hf.teachers import CachedTeachers, Teacher, TeacherConfig, TeacherEnsemble, TeacherOutput
    from dalr_hf.trainer import DALRTrainer, build_train_dataset
    from dalr_hf.training_args import DALRTrainingArguments
