"""DALRTrainingArguments: sentence-transformers' training arguments plus the DALR loss settings.

The loss settings are defined once, in :class:`dalr_hf.losses.presets.LossSettings`, and inherited here; fields left
at ``None`` are filled from the chosen ``preset`` in ``__post_init__``, and any field set explicitly wins over it. Trainer defaults that the reference changes (AdamW eps 1e-6, no
warmup, no weight decay, evaluation every 125 steps on STS-B dev, best checkpoint kept) are the defaults here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from sentence_transformers import SentenceTransformerTrainingArguments

from dalr_hf.losses.presets import PRESETS, LossSettings, preset_help

__all__ = ["PRESETS", "DALRTrainingArguments"]


@dataclass
class DALRTrainingArguments(SentenceTransformerTrainingArguments, LossSettings):
    """Training arguments for :class:`~dalr_hf.trainer.DALRTrainer`.

    The loss settings (``preset``, temperatures, margins, weights, ...) are the fields of
    :class:`~dalr_hf.losses.presets.LossSettings`, inherited here so that one YAML file or command line configures
    both; :meth:`loss_kwargs` hands them to :class:`~dalr_hf.losses.dalr.DALRLoss`. The fields below are what the
    Trainer, the data pipeline and LoRA need.
    """

    # ---- reference optimisation defaults (docs/method.md#hyper-parameters) ----
    learning_rate: float = field(
        default=2e-5, metadata={"help": "Peak learning rate (reference: 2e-5 Flickr, 1e-5 COCO)."}
    )
    adam_epsilon: float = field(
        default=1e-6, metadata={"help": "AdamW epsilon; the reference's transformers.AdamW uses 1e-6."}
    )
    weight_decay: float = field(default=0.0, metadata={"help": "Weight decay (reference: 0)."})
    warmup_steps: float = field(default=0, metadata={"help": "Warmup steps (reference: none; linear decay to 0)."})
    per_device_train_batch_size: int = field(default=128, metadata={"help": "Sentences per text-only batch (B)."})
    num_train_epochs: float = field(
        default=4.0, metadata={"help": "Epochs as defined by the two-source schedule (reference: 4 Flickr, 3 COCO)."}
    )
    seed: int = field(
        default=1, metadata={"help": "Seed for the model heads, dropout and the batch schedule (reference: 1)."}
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Must stay False: feature columns are model inputs."}
    )
    eval_strategy: str = field(
        default="steps", metadata={"help": "When to evaluate (reference: every `eval_steps` steps)."}
    )
    eval_steps: float = field(default=125, metadata={"help": "Evaluate every N steps (reference: 125)."})
    save_strategy: str = field(
        default="best", metadata={"help": "'best' saves a checkpoint only when the selection metric improves."}
    )
    metric_for_best_model: str | None = field(
        default="eval_stsb_spearman", metadata={"help": "Checkpoint selection metric (STS-B dev Spearman)."}
    )
    greater_is_better: bool | None = field(
        default=True, metadata={"help": "Whether a larger selection metric is better."}
    )
    load_best_model_at_end: bool = field(
        default=True, metadata={"help": "Reload the best checkpoint at the end (it is what gets saved)."}
    )
    save_total_limit: int | None = field(
        default=2, metadata={"help": "Checkpoints kept on disk (the best is never deleted)."}
    )
    logging_steps: float = field(default=25, metadata={"help": "Log every N steps (each loss term separately)."})

    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Start afresh in an output_dir that holds an earlier run, deleting that run's checkpoints and "
            "saved model first. Without it such a folder is refused (resume it with --resume_from_checkpoint last)."
        },
    )

    # ---- data and schedule ----
    paired_batch_size: int | None = field(
        default=None, metadata={"help": "Pairs per image-caption batch (default: the text batch size)."}
    )
    max_seq_length: int = field(
        default=32, metadata={"help": "Student token length; longer sentences are truncated and counted."}
    )
    drop_last_paired: bool | None = field(
        default=None,
        metadata=preset_help("drop_last_paired", "Drop the last partial image-caption batch (tiny BatchNorm batches)."),
    )
    image_feature_dim: int | None = field(
        default=None,
        metadata={"help": "Expected image feature width; checked against the data (default: taken from the data)."},
    )
    gather_across_devices: bool = field(
        default=False,
        metadata={
            "help": "Multi-process: all-gather embeddings (with gradient), image features and teacher outputs so "
            "that every in-batch term sees the global batch (exactly the loss of one process with the global batch)."
        },
    )
    lora: bool = field(
        default=False,
        metadata={
            "help": "Train LoRA adapters (peft) on the student's backbone instead of all its weights; merged into the base weights in every saved folder."
        },
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank r (with `lora`)."})
    lora_alpha: float = field(
        default=16.0, metadata={"help": "LoRA scaling alpha; the update is scaled by alpha / r (with `lora`)."}
    )
    lora_dropout: float = field(
        default=0.1, metadata={"help": "Dropout on the LoRA branch's input, in [0, 1) (with `lora`)."}
    )
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "Module-name suffixes to adapt, e.g. query value (default: peft's choice for the architecture; BERT/RoBERTa: query value)."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.resolve_and_check()  # the loss settings: preset values, choices and ranges
        if self.max_seq_length < 2:
            raise ValueError("max_seq_length must leave room for [CLS] and [SEP]")
        if self.paired_batch_size is not None and self.paired_batch_size < 1:
            raise ValueError(f"paired_batch_size must be >= 1, got {self.paired_batch_size}")
        if self.remove_unused_columns:
            raise ValueError("remove_unused_columns must be False: image features and teacher columns are inputs")
        if self.lora_r < 1:
            raise ValueError(f"lora_r must be >= 1, got {self.lora_r}")
        if not self.lora_alpha > 0:
            raise ValueError(f"lora_alpha must be > 0, got {self.lora_alpha}")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.lora_target_modules is not None:
            if isinstance(self.lora_target_modules, str):
                self.lora_target_modules = [self.lora_target_modules]
            if not self.lora_target_modules or not all(isinstance(m, str) and m for m in self.lora_target_modules):
                raise ValueError(
                    f"lora_target_modules must be a non-empty list of module names, got {self.lora_target_modules!r}"
                )

    def method_config(self) -> dict:
        """The method fields (after presets), e.g. for logging and the model card."""
        own = {f.name for f in fields(DALRTrainingArguments)} - {
            f.name for f in fields(SentenceTransformerTrainingArguments)
        }
        return {name: getattr(self, name) for name in sorted(own)}
