"""DALRTrainingArguments: sentence-transformers' training arguments plus every DALR hyper-parameter.

Method fields default to ``None`` and are filled from the chosen ``preset`` (method.md §1.8) in ``__post_init__``;
any field set explicitly wins over the preset. Trainer defaults that the reference changes (AdamW eps 1e-6, no
warmup, no weight decay, evaluation every 125 steps on STS-B dev, best checkpoint kept) are the defaults here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from sentence_transformers import SentenceTransformerTrainingArguments

PRESETS: dict[str, dict] = {
    # The authors' math, with the engineering fixes of method.md §7 that do not change it.
    "reference": {
        "arc_margin_text": 0.18,
        "arc_margin_ground": 0.18,
        "adaptive_margin_ground": True,
        "cons_weight": 0.01,
        "mismatch": "roll5",
        "use_g2l": True,
        "g2l_norm": "token_axis",
        "ground_weight_location": "inside_cml",
        "ground_weight": 0.1,
        "kl_margin": True,
        "listmle_exact": False,
        "teacher_sim_fp16": True,
        "drop_last_paired": False,
        # ---- quality knobs (issue 9) ----
        "student_head": "mlp",
        "rank_reduction": "sum",
        "cma_space": "mlp_vs_clip",
        "teacher_t2t": "mix_features",
        "kl_student_temp": 0.45,
        "kl_teacher_temp": 0.5,
    },
    # The paper summary's reading: plain cosines, consistency weight 1 with a random derangement, no g2l,
    # grounding in the baseline with its own weight.
    "paper": {
        "arc_margin_text": 0.0,
        "arc_margin_ground": 0.0,
        "adaptive_margin_ground": False,
        "cons_weight": 1.0,
        "mismatch": "derangement",
        "use_g2l": False,
        "g2l_norm": "feature_axis",
        "ground_weight_location": "baseline",
        "ground_weight": 0.1,
        "kl_margin": False,
        "listmle_exact": True,
        "teacher_sim_fp16": False,
        "drop_last_paired": False,
        # ---- quality knobs (issue 9) ----
        "student_head": "mlp",
        "rank_reduction": "sum",
        "cma_space": "mlp_vs_clip",
        "teacher_t2t": "mix_features",
        "kl_student_temp": 0.45,
        "kl_teacher_temp": 0.5,
    },
    # Reference math with its numerical and data quirks fixed.
    "clean": {
        "arc_margin_text": 0.18,
        "arc_margin_ground": 0.18,
        "adaptive_margin_ground": True,
        "cons_weight": 0.01,
        "mismatch": "derangement",
        "use_g2l": True,
        "g2l_norm": "feature_axis",
        "ground_weight_location": "inside_cml",
        "ground_weight": 0.1,
        "kl_margin": True,
        "listmle_exact": True,
        "teacher_sim_fp16": False,
        "drop_last_paired": True,
        # ---- quality knobs (issue 9) ----
        "student_head": "mlp",
        "rank_reduction": "sum",
        "cma_space": "mlp_vs_clip",
        "teacher_t2t": "mix_features",
        "kl_student_temp": 0.45,
        "kl_teacher_temp": 0.5,
    },
    # Fine-tuning an already-trained sentence encoder (docs/quality.md): the student's own embedding is trained
    # (no fresh random MLP head), no angular margins on its already-calibrated logits, ListMLE on InfoNCE's scale,
    # the cross-modal KL in the learned grounding space (not against foreign image vectors), teachers of any width.
    "finetune": {
        "arc_margin_text": 0.0,
        "arc_margin_ground": 0.0,
        "adaptive_margin_ground": False,
        "cons_weight": 1.0,
        "mismatch": "derangement",
        "use_g2l": False,
        "g2l_norm": "feature_axis",
        "ground_weight_location": "baseline",
        "ground_weight": 0.1,
        "kl_margin": False,
        "listmle_exact": True,
        "teacher_sim_fp16": False,
        "drop_last_paired": True,
        # ---- quality knobs (issue 9) ----
        "student_head": "none",
        "rank_reduction": "mean",
        "cma_space": "grounding",
        "teacher_t2t": "mix_similarities",
        # matched KL temperatures: the student's distribution at 0.05 on cosines (1.0 on top of 1/temperature), as
        # sharp as the teacher's, instead of a flat target (0.5) against a sharp student (0.0225)
        "kl_student_temp": 1.0,
        "kl_teacher_temp": 0.05,
    },
}

_CHOICES = {
    "preset": tuple(PRESETS),
    "mismatch": ("roll5", "derangement"),
    "g2l_norm": ("token_axis", "feature_axis"),
    "ground_weight_location": ("inside_cml", "baseline"),
    "cma_space": ("mlp_vs_clip", "grounding"),
    "teacher_t2t": ("mix_features", "mix_similarities"),
    "distillation_loss": ("listmle", "listnet"),
    "student_head": ("mlp", "none"),
    "rank_reduction": ("sum", "mean"),
}


def _preset_help(name: str, text: str) -> dict:
    return {"help": f"{text} Default: from `preset` ({', '.join(f'{p}={v[name]}' for p, v in PRESETS.items())})."}


@dataclass
class DALRTrainingArguments(SentenceTransformerTrainingArguments):
    """Training arguments for :class:`~dalr_hf.trainer.DALRTrainer` (method.md §1, §3)."""

    # ---- reference optimisation defaults (method.md §3) ----
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

    # ---- method ----
    preset: str = field(
        default="reference",
        metadata={
            "help": "Defaults for the method fields: reference | paper | clean | finetune (docs/method.md; finetune: "
            "for an already-trained sentence encoder, see docs/quality.md)."
        },
    )
    paired_batch_size: int | None = field(
        default=None, metadata={"help": "Pairs per image-caption batch (default: the text batch size)."}
    )
    max_seq_length: int = field(
        default=32, metadata={"help": "Student token length; longer sentences are truncated and counted."}
    )
    temperature: float = field(default=0.05, metadata={"help": "Text InfoNCE temperature tau."})
    temperature_vl: float = field(default=0.05, metadata={"help": "Text-to-image grounding temperature tau_vl."})
    arc_margin_text: float | None = field(
        default=None,
        metadata=_preset_help("arc_margin_text", "Angular margin m1 on text-text and CMA logits (0 = plain SimCSE)."),
    )
    arc_margin_ground: float | None = field(
        default=None, metadata=_preset_help("arc_margin_ground", "Angular margin m2 in the grounding space.")
    )
    adaptive_margin_ground: bool | None = field(
        default=None,
        metadata=_preset_help("adaptive_margin_ground", "Scale the grounding margin by (1 - image-image cosine)."),
    )
    proj_dim: int = field(default=256, metadata={"help": "Grounding projection width P."})
    sim_dim: int = field(default=256, metadata={"help": "Consistency tower output width S."})
    cml_weight: float = field(default=0.1, metadata={"help": "lambda: weight of the cross-modal terms L_CML."})
    iml_weight: float = field(default=0.2, metadata={"help": "mu: weight of the intra-modal terms L_IML."})
    cons_weight: float | None = field(
        default=None, metadata=_preset_help("cons_weight", "Weight of L_cons inside L_CML.")
    )
    cons_margin: float = field(
        default=0.2, metadata={"help": "Cosine-embedding margin of L_cons for mismatched pairs."}
    )
    mismatch: str | None = field(
        default=None,
        metadata=_preset_help(
            "mismatch",
            "Mismatched images for L_cons: roll5 (reference) or a random derangement avoiding the same image.",
        ),
    )
    ground_weight_location: str | None = field(
        default=None,
        metadata=_preset_help(
            "ground_weight_location", "inside_cml: L_ground weighted by lambda; baseline: by ground_weight."
        ),
    )
    ground_weight: float | None = field(
        default=None, metadata=_preset_help("ground_weight", "Weight of L_ground when ground_weight_location=baseline.")
    )
    ground_use_caption_branch: bool = field(
        default=False,
        metadata={"help": "Add KDMCSE's grounding term against CLIP caption features (needs caption_features)."},
    )
    cma_space: str | None = field(
        default=None,
        metadata=_preset_help(
            "cma_space",
            "Student text-to-image distribution: mlp_vs_clip (reference; needs student width == image width) or "
            "grounding.",
        ),
    )
    teacher_t2t: str | None = field(
        default=None,
        metadata=_preset_help(
            "teacher_t2t",
            "Teacher text-text target: mix_features (reference) or mix_similarities (teachers of any width).",
        ),
    )
    kl_margin: bool | None = field(
        default=None, metadata=_preset_help("kl_margin", "Apply the angular margin to the KL student logits.")
    )
    kl_student_temp: float | None = field(
        default=None, metadata=_preset_help("kl_student_temp", "tau_s, applied on top of 1/temperature.")
    )
    kl_teacher_temp: float | None = field(
        default=None, metadata=_preset_help("kl_teacher_temp", "tau_t of the teacher distributions (on cosines).")
    )
    kl_student_temp_total: float | None = field(
        default=None,
        metadata={
            "help": "If set, the effective student KL temperature on cosines (overrides kl_student_temp = total / temperature)."
        },
    )
    distillation_loss: str = field(
        default="listmle", metadata={"help": "Rank distillation: listmle (DALR scripts) or listnet."}
    )
    listmle_exact: bool | None = field(
        default=None,
        metadata=_preset_help(
            "listmle_exact", "Exact ListMLE (log-cumsum-exp) instead of the reference's eps formula."
        ),
    )
    rank_weight: float = field(default=1.0, metadata={"help": "gamma: weight of the rank loss inside L_IML."})
    rank_teacher_temp: float = field(default=0.05, metadata={"help": "tau2 of the teacher rank scores."})
    use_g2l: bool | None = field(
        default=None,
        metadata=_preset_help(
            "use_g2l", "Use the global-to-local term (needs online teachers of the student's width)."
        ),
    )
    g2l_norm: str | None = field(
        default=None,
        metadata=_preset_help("g2l_norm", "g2l token normalisation: token_axis (reference bug) or feature_axis."),
    )
    teacher_sim_fp16: bool | None = field(
        default=None,
        metadata=_preset_help(
            "teacher_sim_fp16", "Round teacher embeddings to fp16 before cosines (the reference's --fp16)."
        ),
    )
    mask_same_image_negatives: bool = field(
        default=True,
        metadata={"help": "Exclude other captions of the same image from the negatives of the cross-modal terms."},
    )
    drop_last_paired: bool | None = field(
        default=None,
        metadata=_preset_help(
            "drop_last_paired", "Drop the last partial image-caption batch (tiny BatchNorm batches)."
        ),
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

    # ---- quality knobs (issue 9): see docs/quality.md ----
    student_head: str | None = field(
        default=None,
        metadata=_preset_help(
            "student_head",
            "What the text losses see: mlp (SimCSE's fresh training-only MLP over the embedding) or none (the "
            "student's own embedding, for an already-trained encoder).",
        ),
    )
    rank_reduction: str | None = field(
        default=None,
        metadata=_preset_help(
            "rank_reduction",
            "ListMLE over the batch list: sum (reference, ~log(B!) in size) or mean (divided by the list length).",
        ),
    )
    # ---- end of quality knobs ----

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.preset not in PRESETS:
            raise ValueError(f"preset={self.preset!r} is not one of {tuple(PRESETS)}")
        for name, value in PRESETS[self.preset].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        for name in _CHOICES:
            if getattr(self, name) not in _CHOICES[name]:
                raise ValueError(f"{name}={getattr(self, name)!r} is not one of {_CHOICES[name]}")
        positive = ("temperature", "temperature_vl", "kl_student_temp", "kl_teacher_temp", "rank_teacher_temp")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.kl_student_temp_total is not None:
            if not self.kl_student_temp_total > 0:
                raise ValueError(f"kl_student_temp_total must be > 0, got {self.kl_student_temp_total}")
            self.kl_student_temp = self.kl_student_temp_total / self.temperature
        for name in ("arc_margin_text", "arc_margin_ground"):
            if not 0 <= getattr(self, name) < 3.14159:
                raise ValueError(f"{name} is an angle in radians in [0, pi); got {getattr(self, name)}")
        non_negative = ("cml_weight", "iml_weight", "cons_weight", "ground_weight", "rank_weight", "cons_margin")
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("proj_dim", "sim_dim", "max_seq_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
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

    def effective_weights(self) -> dict[str, float]:
        """Weight of each term on a paired batch (method.md §1.8)."""
        lam, mu = self.cml_weight, self.iml_weight
        ground = lam if self.ground_weight_location == "inside_cml" else self.ground_weight
        return {
            "L_info": 1.0,
            "L_ground": ground,
            "L_cma": lam,
            "L_cons": lam * self.cons_weight,
            "L_ima": mu,
            "L_rank": mu * self.rank_weight,
            "L_g2l": mu if self.use_g2l else 0.0,
        }
