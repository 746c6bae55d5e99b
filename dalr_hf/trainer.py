"""DALRTrainer: sentence-transformers' trainer with the two-source schedule and the DALR objective.

Only ``compute_loss``, the training dataloader, logging of the loss terms and checkpointing of the training-only
heads are overridden; the training loop, mixed precision, evaluation and best-checkpoint selection are the
``transformers.Trainer``'s own.
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict

import torch
from safetensors.torch import load_file, save_file
from sentence_transformers import SentenceTransformerTrainer
from torch.utils.data import DataLoader
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from dalr_hf.checkpoints import (
    HEADS_FILE,
    LOSS_RNG_KEY,
    last_complete_checkpoint,
    verify_checkpoint,
    write_manifest,
)
from dalr_hf.data import (
    DALRDataCollator,
    TwoSourceBatchSampler,
    TwoSourceDataLoader,
    TwoSourceDataset,
    TwoSourceSchedule,
    load_paired_dataset,
    load_text_corpus,
    paired_feature_dim,
    teacher_columns,
)
from dalr_hf.distributed import world_size
from dalr_hf.lora import apply_lora, has_lora, load_lora_adapter, merged_lora_view, save_lora_adapter
from dalr_hf.losses.dalr import DALRLoss, needs_teachers
from dalr_hf.student import record_no_pooling_layer
from dalr_hf.teachers import TeacherEnsemble
from dalr_hf.training_args import DALRTrainingArguments

logger = logging.getLogger(__name__)


SCHEDULE_FILE = "dalr_schedule.json"


class DALRTrainer(SentenceTransformerTrainer):
    """Train a SentenceTransformer student with DALR.

    Args:
        model: the student (see :func:`dalr_hf.student.build_student`).
        args: :class:`~dalr_hf.training_args.DALRTrainingArguments`.
        text_dataset: text-only corpus: a ``.txt`` path, a saved dataset folder or a ``datasets.Dataset`` with ``text``.
        paired_dataset: image-caption pairs: a feature-store folder or a ``datasets.Dataset`` with ``image_id``,
            ``caption``, ``image_features`` (and optionally ``caption_features``, ``teacher_emb_<k>``).
        teachers: frozen online teachers, or None when the paired dataset carries cached teacher embeddings.
        teacher_weights: teacher weights for cached embeddings (default: the online teachers' weights).
        evaluator: a sentence-transformers evaluator (e.g. STS-B dev) run every ``eval_steps``.
    """

    def __init__(
        self,
        model,
        args: DALRTrainingArguments,
        text_dataset=None,
        paired_dataset=None,
        teachers: TeacherEnsemble | None = None,
        teacher_weights: list[float] | None = None,
        evaluator=None,
        callbacks=None,
        **kwargs,
    ) -> None:
        if not isinstance(args, DALRTrainingArguments):
            raise TypeError(f"args must be DALRTrainingArguments, got {type(args).__name__}")
        if text_dataset is None and paired_dataset is None:
            raise ValueError("DALRTrainer needs a text corpus, image-caption pairs, or both")
        text = load_text_corpus(text_dataset) if text_dataset is not None else None
        paired = None
        image_dim = None
        if paired_dataset is not None:
            paired = load_paired_dataset(
                paired_dataset,
                image_feature_dim=args.image_feature_dim,
                require_caption_features=args.ground_use_caption_branch,
            )
            image_dim = paired_feature_dim(paired)
            cached = teacher_columns(paired)
            if cached:
                if teacher_weights is None and teachers is None:
                    raise ValueError(
                        f"the paired dataset carries cached teacher columns {cached}; pass "
                        "teacher_weights (or the online teachers) so they can be weighted"
                    )
                n_weights = len(teacher_weights) if teacher_weights is not None else len(teachers)
                if n_weights != len(cached):
                    raise ValueError(f"{len(cached)} cached teacher columns but {n_weights} teachers/weights")
                if teachers is not None and not args.use_g2l:
                    logger.info("cached teacher embeddings found: online teachers will not run")
            elif teachers is None and needs_teachers(args):
                raise ValueError(
                    "image-caption training needs teachers: pass `teachers`, or attach a teacher cache "
                    "(dalr_hf.features.attach_teacher_cache) to the paired dataset"
                )
        if args.eval_strategy != "no" and evaluator is None and kwargs.get("eval_dataset") is None:
            raise ValueError(
                "eval_strategy is not 'no' but no evaluator was given; pass e.g. "
                "dalr_hf.evaluation.SentEvalEvaluator() (STS-B dev) or set eval_strategy='no'"
            )

        model.max_seq_length = args.max_seq_length
        self.schedule = TwoSourceSchedule(
            num_text=len(text) if text is not None else 0,
            num_paired=len(paired) if paired is not None else 0,
            # The schedule is over global batches: every process takes its share of each.
            batch_size=args.per_device_train_batch_size * args.world_size,
            paired_batch_size=args.paired_batch_size * args.world_size if args.paired_batch_size else None,
            seed=args.seed,
            drop_last_paired=bool(args.drop_last_paired),
        )
        summary = self.schedule.summary()
        logger.info("DALR schedule: %s", json.dumps(summary))
        if args.lora and not has_lora(model):
            # Before the optimizer exists, so that it holds only the adapters (and the heads); seeded like the heads.
            torch.manual_seed(args.seed)
            apply_lora(model, args.lora_r, args.lora_alpha, args.lora_dropout, args.lora_target_modules)
        torch.manual_seed(args.seed)  # the heads' initialisation is part of the run's identity
        loss = DALRLoss(model, args, image_feature_dim=image_dim, teachers=teachers, teacher_weights=teacher_weights)
        collator = DALRDataCollator(model.tokenizer, max_seq_length=args.max_seq_length)
        super().__init__(
            model=model,
            args=args,
            train_dataset=None,
            loss=loss,
            evaluator=evaluator,
            data_collator=collator,
            callbacks=callbacks,
            **kwargs,
        )
        self.train_dataset = TwoSourceDataset(text, paired)
        self.teachers = teachers
        self._term_sums: dict[str, float] = defaultdict(float)
        self._term_counts: dict[str, int] = defaultdict(int)
        self._paired_steps = 0
        self._steps = 0
        self._identity: dict | None = None
        if self.args.should_save:
            os.makedirs(self.args.output_dir, exist_ok=True)
            with open(os.path.join(self.args.output_dir, SCHEDULE_FILE), "w") as f:
                json.dump(
                    {
                        "schedule": summary,
                        "method": self.args.method_config(),
                        "effective_weights": self.args.effective_weights(),
                    },
                    f,
                    indent=2,
                    default=str,
                )

    # -- data -------------------------------------------------------------------------------------------------------
    def get_train_dataloader(self) -> DataLoader:
        # Not passed through accelerator.prepare: its batch-sampler sharding would give processes different batches
        # (and so different kinds of step). Every process walks the same schedule and takes its share of each batch;
        # the Trainer moves inputs to the device itself.
        sampler = TwoSourceBatchSampler(self.schedule, num_replicas=self.args.world_size, rank=self.args.process_index)
        self._train_dataloader = TwoSourceDataLoader(
            self.train_dataset,
            batch_sampler=sampler,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory and torch.cuda.is_available(),
            persistent_workers=self.args.dataloader_persistent_workers and self.args.dataloader_num_workers > 0,
        )
        return self._train_dataloader

    # -- loss -------------------------------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs: bool = False, num_items_in_batch=None):
        loss_fn = self.loss
        if model is self.model_wrapped and loss_fn.model is not model:
            loss_fn = self.override_model_in_loss(loss_fn, model)
        terms = loss_fn(inputs)
        total = torch.stack(list(terms.values())).sum()
        if model.training:
            self._steps += 1
            self._paired_steps += int(bool(inputs.get("paired", False)))
            for name, value in terms.items():
                self._term_sums[name] += float(value.detach())
                self._term_counts[name] += 1
        return (total, {}) if return_outputs else total

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.accelerator.sync_gradients:
            self._sync_head_gradients()
        return loss

    def _sync_head_gradients(self) -> None:
        """Average the loss heads' gradients over processes: DDP wraps only the student, never the loss module."""
        if world_size() == 1:
            return
        grads = [
            p.grad for name, p in self.loss.named_parameters() if not name.startswith("model.") and p.requires_grad
        ]
        present = [g for g in grads if g is not None]
        if not present:
            return
        flat = torch.cat([g.reshape(-1) for g in present])
        torch.distributed.all_reduce(flat)
        flat /= world_size()
        offset = 0
        for g in present:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._steps:
            logs = dict(logs)
            for name, total in self._term_sums.items():
                # Mean of each weighted term over the steps that computed it (text-only steps have L_info only).
                logs[name] = round(total / self._term_counts[name], 6)
            logs["paired_step_fraction"] = round(self._paired_steps / self._steps, 4)
            self._term_sums.clear()
            self._term_counts.clear()
            self._paired_steps = self._steps = 0
        return super().log(logs, start_time)

    # -- checkpoints ------------------------------------------------------------------------------------------------
    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        folder = output_dir if output_dir is not None else self.args.output_dir
        if has_lora(self.model):
            # LoRA: every saved folder holds the merged, plain weights (loadable without peft, as evaluated); the
            # adapter weights are training state, saved beside them for a resumed run (dalr_hf.lora).
            with merged_lora_view(self.model):
                super()._save(output_dir, state_dict=None)
            save_lora_adapter(self.model, folder)
        else:
            super()._save(output_dir, state_dict)
        record_no_pooling_layer(folder, self.model)

    def training_heads_state_dict(self) -> dict[str, torch.Tensor]:
        """The loss module's state other than the student (MLP pooler, heads, BatchNorm statistics) and its RNG."""
        state = {
            k: v.detach().cpu().contiguous() for k, v in self.loss.state_dict().items() if not k.startswith("model.")
        }
        state[LOSS_RNG_KEY] = self.loss.generator.get_state()
        return state

    def run_identity(self) -> dict:
        """What a checkpoint must share with this run to be resumed by it."""
        if self._identity is None:
            heads = {k: list(v.shape) for k, v in self.training_heads_state_dict().items() if k != LOSS_RNG_KEY}
            backbone = self.model[0].auto_model
            self._identity = json.loads(
                json.dumps(
                    {
                        "method": self.args.method_config(),
                        "schedule": {
                            k: self.schedule.summary()[k]
                            for k in ("num_text", "num_paired", "batch_size", "paired_batch_size", "steps_per_epoch")
                        },
                        "seed": self.args.seed,
                        "student": {
                            "architecture": type(backbone).__name__,
                            "hidden_size": self.loss.hidden_size,
                            "num_parameters": sum(p.numel() for p in backbone.parameters()),
                        },
                        "heads": heads,
                        "teachers": self.teachers.fingerprints() if self.teachers is not None else None,
                    },
                    default=str,
                )
            )
        return self._identity

    def _save_checkpoint(self, model, trial) -> None:
        # The parent rotates old checkpoints as its last act; rotate only once this checkpoint is complete, so that a
        # crash (or a full disk) while saving never costs the previous good checkpoint.
        limit = self.args.save_total_limit
        self.args.save_total_limit = None
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = limit
        run_dir = self._get_output_dir(trial=trial)
        folder = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        if self.args.should_save and os.path.isdir(folder):
            save_file(self.training_heads_state_dict(), os.path.join(folder, HEADS_FILE))
            write_manifest(folder, self.run_identity(), self.state.global_step)
            rotate_checkpoints(
                run_dir, save_total_limit=limit, best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=True
            )
        if world_size() > 1:
            torch.distributed.barrier()

    def _load_from_checkpoint(self, checkpoint_path: str, *args, **kwargs) -> None:
        if has_lora(self.model):
            # The folder's weights are merged; the frozen base weights are already in memory: load only the adapters.
            load_lora_adapter(self.model, checkpoint_path)
        else:
            super()._load_from_checkpoint(checkpoint_path)
        heads = os.path.join(checkpoint_path, HEADS_FILE)
        if not os.path.isfile(heads):
            raise ValueError(f"checkpoint {checkpoint_path} has no {HEADS_FILE}: the training heads cannot be restored")
        state = load_file(heads)
        rng = state.pop(LOSS_RNG_KEY, None)
        missing, unexpected = self.loss.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("model.")]
        if missing or unexpected:
            raise ValueError(f"{heads} does not match this configuration: missing {missing}, unexpected {unexpected}")
        if rng is not None:
            self.loss.generator.set_state(rng)

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        """``Trainer.train`` with checkpoints checked first: ``True`` resumes from the last *complete* checkpoint;
        an incomplete, truncated or foreign checkpoint is refused with an error that says why."""
        if resume_from_checkpoint is True:
            resume_from_checkpoint = last_complete_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(f"no complete checkpoint to resume from in {self.args.output_dir}")
            logger.info("resuming from %s", resume_from_checkpoint)
        if isinstance(resume_from_checkpoint, str):
            verify_checkpoint(resume_from_checkpoint, self.run_identity())
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def truncation_report(self) -> dict:
        collator = self.data_collator
        return {
            "sentences_seen": collator.seen,
            "truncated": collator.truncated,
            "max_seq_length": collator.max_seq_length,
        }
