"""DALRTrainer: sentence-transformers' trainer with the two-source schedule and the DALR objective.

Only ``compute_loss``, the training dataloader, logging of the loss terms and checkpointing of the training-only
heads are overridden; the training loop, mixed precision, evaluation and best-checkpoint selection are the
``transformers.Trainer``'s own.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
from collections import defaultdict

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from sentence_transformers import SentenceTransformerTrainer
from torch.utils.data import DataLoader
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, enable_full_determinism, rotate_checkpoints, set_seed

from dalr_hf.checkpoints import (
    HEADS_FILE,
    LOSS_RNG_KEY,
    check_schedule_position,
    resumable_checkpoint,
    verify_checkpoint,
    write_manifest,
)
from dalr_hf.curves import TrainingCurvesCallback
from dalr_hf.data import (
    DALRDataCollator,
    TwoSourceBatchSampler,
    TwoSourceDataLoader,
    TwoSourceDataset,
    TwoSourceSchedule,
    cached_teacher_columns,
    load_paired_dataset,
    load_text_corpus,
    paired_feature_dim,
)
from dalr_hf.distributed import world_size
from dalr_hf.files import SCHEDULE_FILE
from dalr_hf.lora import apply_lora, has_lora, load_lora_adapter, merged_lora_view, save_lora_adapter
from dalr_hf.losses.dalr import DALRLoss, needs_teachers
from dalr_hf.run_guard import read_run_id
from dalr_hf.student import record_no_pooling_layer
from dalr_hf.teachers import CachedTeachers, TeacherEnsemble
from dalr_hf.training_args import DALRTrainingArguments

logger = logging.getLogger(__name__)


SOURCES = ("text", "paired")


def build_train_dataset(text_dataset=None, paired_dataset=None, args: DALRTrainingArguments | None = None):
    """The trainer's ``train_dataset`` from paths or datasets: a ``DatasetDict`` with ``text`` and/or ``paired``.

    ``text_dataset``: a ``.txt`` file (one sentence per line), a saved dataset folder or a ``datasets.Dataset`` with
    ``text``. ``paired_dataset``: a feature-store folder or a ``datasets.Dataset`` with ``image_id``, ``caption``,
    ``image_features`` (and optionally ``caption_features``, ``teacher_emb_<k>``). Both are validated (empty lines
    removed and counted, feature widths and values checked) and stay memory-mapped.
    """
    from datasets import DatasetDict

    if text_dataset is None and paired_dataset is None:
        raise ValueError("DALR training needs a text corpus, image-caption pairs, or both")
    parts = {}
    if text_dataset is not None:
        parts["text"] = load_text_corpus(text_dataset)
    if paired_dataset is not None:
        parts["paired"] = load_paired_dataset(
            paired_dataset,
            image_feature_dim=args.image_feature_dim if args is not None else None,
            require_caption_features=bool(args is not None and args.ground_use_caption_branch),
        )
    return DatasetDict(parts)


def _global_rng_states() -> dict:
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _restore_global_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states:
        torch.cuda.set_rng_state_all(states["cuda"])


def _check_train_dataset(train_dataset):
    from datasets import Dataset, DatasetDict

    if isinstance(train_dataset, dict) and not isinstance(train_dataset, DatasetDict):
        train_dataset = DatasetDict(train_dataset)
    if not isinstance(train_dataset, DatasetDict):
        raise TypeError(
            f"train_dataset must be a datasets.DatasetDict with 'text' and/or 'paired', got "
            f"{type(train_dataset).__name__}; use dalr_hf.trainer.build_train_dataset(text, paired) to build one"
        )
    unknown = sorted(set(train_dataset) - set(SOURCES))
    if unknown or not train_dataset:
        raise ValueError(f"train_dataset must hold 'text' and/or 'paired' datasets; got keys {sorted(train_dataset)}")
    for name, ds in train_dataset.items():
        if not isinstance(ds, Dataset):
            raise TypeError(f"train_dataset[{name!r}] must be a datasets.Dataset, got {type(ds).__name__}")
    return train_dataset


class DALRTrainer(SentenceTransformerTrainer):
    """Train a SentenceTransformer student with DALR.

    The usual form takes ready parts::

        loss = DALRLoss(student, teachers, preset="clean", image_feature_dim=768)
        trainer = DALRTrainer(model=student, args=args, loss=loss,
                              train_dataset=DatasetDict(text=text_ds, paired=paired_ds), evaluator=evaluator)

    Args:
        model: the student (see :func:`dalr_hf.student.build_student`).
        args: :class:`~dalr_hf.training_args.DALRTrainingArguments`.
        train_dataset: a ``datasets.DatasetDict`` with ``text`` (column ``text``) and/or ``paired`` (``image_id``,
            ``caption``, ``image_features``, optionally ``caption_features`` and ``teacher_emb_<k>``).
        loss: a :class:`~dalr_hf.losses.dalr.DALRLoss` built on ``model``. When None, it is built from ``args``
            (:meth:`DALRLoss.from_training_args`) with ``teachers``/``teacher_weights`` and the data's image width.
        evaluator: a sentence-transformers evaluator (e.g. STS-B dev) run every ``eval_steps``.
        text_dataset, paired_dataset: convenience instead of ``train_dataset``: paths or datasets, loaded and
            validated by :func:`build_train_dataset` into the same ``DatasetDict``.
        teachers, teacher_weights: used only when ``loss`` is None (the loss carries its teachers otherwise).

    Constructing the trainer has no side effects on disk, on the objects passed in or on the global random state.
    When training starts (:meth:`train`), the global RNGs are seeded with ``args.seed``, the student's
    ``max_seq_length`` is set to ``args.max_seq_length``, LoRA adapters are injected
    when ``args.lora`` is set (seeded by ``args.seed``), and ``dalr_schedule.json`` is written to ``output_dir``.
    """

    def __init__(
        self,
        model=None,
        args: DALRTrainingArguments | None = None,
        train_dataset=None,
        eval_dataset=None,
        loss: DALRLoss | None = None,
        evaluator=None,
        callbacks=None,
        *,
        text_dataset=None,
        paired_dataset=None,
        teachers: TeacherEnsemble | CachedTeachers | None = None,
        teacher_weights: list[float] | None = None,
        **kwargs,
    ) -> None:
        if not isinstance(args, DALRTrainingArguments):
            raise TypeError(f"args must be DALRTrainingArguments, got {type(args).__name__}")
        if model is None:
            raise ValueError("DALRTrainer needs the student model (model=...)")
        if train_dataset is not None:
            if text_dataset is not None or paired_dataset is not None:
                raise ValueError("pass either train_dataset (a DatasetDict) or text_dataset/paired_dataset, not both")
            train_dataset = _check_train_dataset(train_dataset)
            train_dataset = build_train_dataset(train_dataset.get("text"), train_dataset.get("paired"), args)
        else:
            train_dataset = build_train_dataset(text_dataset, paired_dataset, args)
        text, paired = train_dataset.get("text"), train_dataset.get("paired")
        image_dim = paired_feature_dim(paired) if paired is not None else None

        if loss is None:
            if paired is not None and teachers is None and teacher_weights is None and needs_teachers(args):
                hint = (
                    "pass `teachers` (or teacher_weights for its cached teacher columns)"
                    if cached_teacher_columns(paired)
                    else "pass `teachers`, or attach a teacher cache (dalr_hf.features.attach_teacher_cache) to the "
                    "paired dataset"
                )
                raise ValueError(f"image-caption training needs teachers: {hint}")
            loss = DALRLoss.from_training_args(
                model, args, teachers, image_feature_dim=image_dim, teacher_weights=teacher_weights
            )
        else:
            if not isinstance(loss, DALRLoss):
                raise TypeError(f"loss must be a DALRLoss, got {type(loss).__name__}")
            if teachers is not None or teacher_weights is not None:
                raise ValueError("teachers/teacher_weights are for building the loss; the given loss carries its own")
            if loss.model is not model:
                raise ValueError("the loss was built on another model than the one passed as model=")
            differ = {
                name: (getattr(args, name), value)
                for name, value in loss.settings.to_dict().items()
                if getattr(args, name) != value
            }
            if differ:
                logger.info(
                    "the given loss's settings differ from the training arguments' loss fields %s (args, loss): the "
                    "loss's settings are the ones trained and recorded",
                    differ,
                )
            if paired is not None and loss.image_feature_dim != image_dim:
                raise ValueError(
                    f"the paired dataset's image features are {image_dim}-d but the loss was built with "
                    f"image_feature_dim={loss.image_feature_dim}"
                )
        if paired is not None:
            cached = cached_teacher_columns(paired)
            if cached:
                if len(cached) != len(loss.teacher_weights):
                    raise ValueError(
                        f"the paired dataset carries {len(cached)} cached teacher columns {cached} but the loss has "
                        f"{len(loss.teacher_weights)} teacher weights"
                    )
                has_tokens = "teacher_tokens" in paired.column_names
                if loss.settings.use_g2l and loss.teachers is None and not has_tokens:
                    raise ValueError(
                        "use_g2l needs teacher token states: the attached teacher cache has none and no online "
                        "teachers were given; rebuild the cache with token states (dalr-hf cache-teachers), pass "
                        "the teachers, or set use_g2l=False"
                    )
                if loss.settings.use_g2l and has_tokens:
                    width = getattr(paired.features["teacher_tokens"].feature, "length", None)
                    if width != loss.hidden_size:
                        raise ValueError(
                            f"the g2l term dots the student's {loss.hidden_size}-d vector with the cached teacher "
                            f"token states, which are {width}-d; use teachers of the student's width or use_g2l=False"
                        )
                if loss.teachers is not None and (not loss.settings.use_g2l or has_tokens):
                    logger.info("cached teacher outputs cover every term: online teachers will not run")
            elif loss.teachers is None and loss.needs_teachers:
                raise ValueError(
                    "the paired dataset has no cached teacher_emb_<k> columns and the loss has no online teachers; "
                    "pass teachers, or attach a teacher cache (dalr_hf.features.attach_teacher_cache)"
                )
        if args.eval_strategy != "no" and evaluator is None and eval_dataset is None:
            raise ValueError(
                "eval_strategy is not 'no' but no evaluator was given; pass e.g. "
                "dalr_hf.evaluation.SentEvalEvaluator() (STS-B dev) or set eval_strategy='no'"
            )

        self.schedule = TwoSourceSchedule(
            num_text=len(text) if text is not None else 0,
            num_paired=len(paired) if paired is not None else 0,
            # The schedule is over global batches: every process takes its share of each.
            batch_size=args.per_device_train_batch_size * args.world_size,
            paired_batch_size=args.paired_batch_size * args.world_size if args.paired_batch_size else None,
            seed=args.seed,
            drop_last_paired=bool(args.drop_last_paired),
        )
        collator = DALRDataCollator(model.tokenizer, max_seq_length=args.max_seq_length)
        output_dir_existed = os.path.exists(args.output_dir)
        rng_states = _global_rng_states()  # transformers.Trainer seeds the global RNGs in its constructor
        super().__init__(
            model,
            args,
            train_dataset=None,
            eval_dataset=eval_dataset,
            loss=loss,
            evaluator=evaluator,
            data_collator=collator,
            callbacks=[*(callbacks or []), TrainingCurvesCallback()],
            **kwargs,
        )
        _restore_global_rng_states(rng_states)  # seeding happens when training starts (prepare_for_training)
        if not output_dir_existed and os.path.isdir(args.output_dir) and not os.listdir(args.output_dir):
            # transformers.Trainer creates output_dir in its constructor; nothing is written until training starts
            os.rmdir(args.output_dir)
        self.train_dataset = train_dataset
        self._term_sums: dict[str, torch.Tensor | float] = {}
        self._term_counts: dict[str, int] = defaultdict(int)
        self._paired_steps = 0
        self._steps = 0
        self._source_steps = {"text": 0, "paired": 0}
        self._truncation = {"num_truncated": 0, "num_sentences": 0}
        self._identity: dict | None = None

    @property
    def teachers(self) -> TeacherEnsemble | None:
        """The loss's online teachers (None when training from cached teacher embeddings)."""
        return self.loss.teachers

    def method_config(self) -> dict:
        """The run's method fields: the training arguments' own, with the loss settings as the loss has them."""
        return {**self.args.method_config(), **self.loss.settings.to_dict()}

    def teacher_fingerprints(self) -> list[dict] | None:
        """The identity of the teachers (online or cached), as recorded in checkpoints and the model card."""
        return self.loss.teacher_fingerprints

    # -- start of training ------------------------------------------------------------------------------------------
    def prepare_for_training(self) -> None:
        """What training changes before its first step (called by :meth:`train`; safe to call twice).

        Seeds the global RNGs with ``args.seed`` (as ``transformers.Trainer`` does in its constructor); sets the
        student's ``max_seq_length``; with ``args.lora``, injects LoRA adapters into the student's backbone
        (seeded by ``args.seed`` on a forked RNG, before the optimizer exists so that it holds only the adapters and
        the heads); writes ``dalr_schedule.json`` (the schedule, the loss settings and the term weights).
        """
        # transformers.Trainer seeds in its constructor; here it happens when training starts instead
        enable_full_determinism(self.args.seed) if self.args.full_determinism else set_seed(self.args.seed)
        self.model.max_seq_length = self.args.max_seq_length
        self._apply_lora_from_args()
        summary = self.schedule.summary()
        logger.info("DALR schedule: %s", json.dumps(summary))
        if self.args.should_save:
            os.makedirs(self.args.output_dir, exist_ok=True)
            with open(os.path.join(self.args.output_dir, SCHEDULE_FILE), "w") as f:
                json.dump(
                    {
                        "schedule": summary,
                        "method": self.method_config(),
                        "loss": self.loss.get_config_dict(),
                        "effective_weights": self.loss.weights,
                    },
                    f,
                    indent=2,
                    default=str,
                )

    def _apply_lora_from_args(self) -> None:
        if not self.args.lora or has_lora(self.model):
            return
        if self.optimizer is not None:
            raise ValueError("args.lora: the optimizer already exists; LoRA must be applied before it is created")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.args.seed)
            apply_lora(
                self.model,
                self.args.lora_r,
                self.args.lora_alpha,
                self.args.lora_dropout,
                self.args.lora_target_modules,
            )

    # -- data -------------------------------------------------------------------------------------------------------
    def get_multi_dataset_batch_sampler(self, dataset, batch_samplers=None, generator=None, seed=0):
        """The two-source schedule (:class:`~dalr_hf.data.TwoSourceBatchSampler`) for this process.

        DALR's interleaving of the ``text`` and ``paired`` datasets is part of the method, so it takes the place of
        ``args.multi_dataset_batch_sampler``; the per-dataset ``batch_samplers`` are not used.
        """
        return TwoSourceBatchSampler(
            dataset, self.schedule, num_replicas=self.args.world_size, rank=self.args.process_index
        )

    def get_train_dataloader(self) -> DataLoader:
        # Not passed through accelerator.prepare: its batch-sampler sharding would give processes different batches
        # (and so different kinds of step). Every process walks the same schedule and takes its share of each batch;
        # the Trainer moves inputs to the device itself.
        dataset = TwoSourceDataset(self.train_dataset.get("text"), self.train_dataset.get("paired"))
        sampler = self.get_multi_dataset_batch_sampler(dataset, seed=self.args.seed)
        self._train_dataloader = TwoSourceDataLoader(
            dataset,
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
        counts = {k: inputs.pop(k) for k in DALRDataCollator.COUNT_KEYS if k in inputs}
        terms = loss_fn(inputs)
        total = torch.stack(list(terms.values())).sum()
        if model.training:
            paired = bool(inputs.get("paired", False))
            self._steps += 1
            self._paired_steps += int(paired)
            self._source_steps["paired" if paired else "text"] += 1
            for key, value in counts.items():
                self._truncation[key] += int(value)
            # summed on the device and read once per logging step (no host synchronisation per term and step)
            for name, value in terms.items():
                self._term_sums[name] = self._term_sums.get(name, 0.0) + value.detach()
                self._term_counts[name] += 1
            # the total of each kind of step apart: the logged `loss` mixes them in the schedule's proportion
            kind = "loss_paired" if inputs.get("paired", False) else "loss_text"
            self._term_sums[kind] = self._term_sums.get(kind, 0.0) + total.detach()
            self._term_counts[kind] += 1
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
                # Mean of each weighted term over the steps that computed it (text-only steps have L_info only), and
                # of the total over text steps (loss_text) and image-caption steps (loss_paired).
                logs[name] = round(float(total) / self._term_counts[name], 6)
            logs["paired_step_fraction"] = round(self._paired_steps / self._steps, 4)
            self._term_sums.clear()
            self._term_counts.clear()
            self._paired_steps = self._steps = 0
        return super().log(logs, start_time)

    # -- checkpoints ------------------------------------------------------------------------------------------------
    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        if not self.args.should_save:
            # transformers 5 calls _save on every process; sentence-transformers' _save would write the whole model
            # (README.md included) from each of them, racing the main process's checkpoint manifest.
            return
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
                        "method": self.method_config(),
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
                        "teachers": self.teacher_fingerprints(),
                        # the run that owns output_dir (dalr_hf.run_guard): a checkpoint resumes only its own run
                        "run_id": read_run_id(self.args.output_dir),
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
        self._apply_lora_from_args()  # a LoRA checkpoint is loaded into the adapters
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
            # the newest complete and intact checkpoint: a corrupted newer one is skipped with a warning
            resume_from_checkpoint = resumable_checkpoint(self.args.output_dir, self.run_identity())
            if resume_from_checkpoint is None:
                raise ValueError(f"no complete checkpoint to resume from in {self.args.output_dir}")
            logger.info("resuming from %s", resume_from_checkpoint)
        self.prepare_for_training()
        if isinstance(resume_from_checkpoint, str):
            manifest = verify_checkpoint(resume_from_checkpoint, self.run_identity())
            total = self.args.max_steps
            if total is None or total <= 0:
                per_epoch = math.ceil(self.schedule.steps_per_epoch / max(1, self.args.gradient_accumulation_steps))
                total = int(math.ceil(per_epoch * self.args.num_train_epochs))
            check_schedule_position(resume_from_checkpoint, manifest, total)
        output = super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        if world_size() > 1:
            # Every process counted its own share of each batch: sum the shares (all processes reach this point).
            counts = torch.tensor(
                [self._truncation["num_truncated"], self._truncation["num_sentences"]], device=self.args.device
            )
            torch.distributed.all_reduce(counts)
            self._truncation = {"num_truncated": int(counts[0]), "num_sentences": int(counts[1])}
        logger.info(
            "DALR training took %d text-only and %d image-caption steps (schedule: %s interleaving)",
            self._source_steps["text"],
            self._source_steps["paired"],
            self.schedule.interleave,
        )
        return output

    def source_steps(self) -> dict[str, int]:
        """Optimizer steps taken from each source in this process's training so far (after a resume: since it)."""
        return dict(self._source_steps)

    def truncation_report(self) -> dict:
        """Sentences seen in training and how many were truncated to ``max_seq_length`` (all processes)."""
        return {
            "sentences_seen": self._truncation["num_sentences"],
            "truncated": self._truncation["num_truncated"],
            "max_seq_length": self.data_collator.max_seq_length,
        }
