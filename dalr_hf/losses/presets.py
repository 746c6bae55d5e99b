"""The DALR method settings, defined once: presets, the loss settings dataclass and the effective term weights.

:class:`LossSettings` holds every field that configures :class:`~dalr_hf.losses.dalr.DALRLoss`, each with its help
text. ``DALRLoss(model, preset=..., **settings)`` builds one from keyword arguments, and
:class:`~dalr_hf.training_args.DALRTrainingArguments` inherits the same fields, so they appear (with their help) in
``--help`` and YAML recipes without being written twice. A field left at ``None`` takes its value from the preset
(see ``docs/method.md#presets``); a value set explicitly wins over the preset.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

# The authors' math, with the engineering fixes of docs/method.md#departures-from-the-authors-code that do not
# change it.
_REFERENCE: dict = {
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
    # ---- quality knobs: see docs/quality.md ----
    "student_head": "mlp",
    "rank_reduction": "sum",
    "cma_space": "mlp_vs_clip",
    "teacher_t2t": "mix_features",
    "kl_student_temp": 0.45,
    "kl_teacher_temp": 0.5,
}
# The paper summary's reading: plain cosines, consistency weight 1 with a random derangement, no g2l,
# grounding in the baseline with its own weight.
_PAPER: dict = {
    **_REFERENCE,
    "arc_margin_text": 0.0,
    "arc_margin_ground": 0.0,
    "adaptive_margin_ground": False,
    "cons_weight": 1.0,
    "mismatch": "derangement",
    "use_g2l": False,
    "g2l_norm": "feature_axis",
    "ground_weight_location": "baseline",
    "kl_margin": False,
    "listmle_exact": True,
    "teacher_sim_fp16": False,
}
PRESETS: dict[str, dict] = {
    "reference": _REFERENCE,
    "paper": _PAPER,
    # Reference math with its numerical and data quirks fixed.
    "clean": {
        **_REFERENCE,
        "mismatch": "derangement",
        "g2l_norm": "feature_axis",
        "listmle_exact": True,
        "teacher_sim_fp16": False,
        "drop_last_paired": True,
    },
    # Fine-tuning an already-trained sentence encoder (docs/quality.md): the paper's plain cosines, and the student's
    # own embedding trained (no fresh random MLP head), ListMLE on InfoNCE's scale, the cross-modal KL in the learned
    # grounding space (not against foreign image vectors), teachers of any width.
    "finetune": {
        **_PAPER,
        "drop_last_paired": True,
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

CHOICES: dict[str, tuple] = {
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

DALR_CITATION = """@inproceedings{he2025dalr,
  title         = {{DALR}: Dual-level Alignment Learning for Multimodal Sentence Representation Learning},
  author        = {He, Kang and Ding, Yuzhe and Wang, Haining and Li, Fei and Teng, Chong and Ji, Donghong},
  booktitle     = {Findings of the Association for Computational Linguistics: ACL 2025},
  year          = {2025},
  eprint        = {2506.21096},
  archivePrefix = {arXiv},
  url           = {https://arxiv.org/abs/2506.21096}
}"""


def preset_help(name: str, text: str) -> dict:
    """Field metadata whose help text lists the field's value in every preset."""
    values = ", ".join(f"{p}={v[name]}" for p, v in PRESETS.items() if name in v)
    return {"help": f"{text} Default: from `preset` ({values})."}


def setting(default: Any, help: str) -> Any:
    """A :class:`LossSettings` field with its help text."""
    return field(default=default, metadata={"help": help})


def preset_setting(help: str) -> Any:
    """A :class:`LossSettings` field that the preset fills (default ``None``); :func:`_list_preset_values` adds the
    field's value in every preset to its help."""
    return field(default=None, metadata={"help": help, "from_preset": True})


def _list_preset_values(cls: type) -> type:
    """Complete the help of every :func:`preset_setting` field of the dataclass ``cls`` with its presets' values."""
    for f in fields(cls):
        if f.metadata.get("from_preset"):
            f.metadata = MappingProxyType(preset_help(f.name, f.metadata["help"]))
    return cls


def apply_preset(obj, preset: str) -> None:
    """Fill every field of ``obj`` that is ``None`` and that the preset defines (explicit values win)."""
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r} is not one of {tuple(PRESETS)}")
    for name, value in PRESETS[preset].items():
        if hasattr(obj, name) and getattr(obj, name) is None:
            setattr(obj, name, value)


@_list_preset_values
@dataclass
class LossSettings:
    """Every setting of the DALR objective (after the preset), with its help text. See ``docs/method.md#presets``."""

    preset: str = setting(
        "reference",
        "Defaults for the method fields: reference | paper | clean | finetune (docs/method.md#presets; "
        "finetune: for an already-trained sentence encoder, see docs/quality.md).",
    )
    temperature: float = setting(0.05, "Text InfoNCE temperature tau.")
    temperature_vl: float = setting(0.05, "Text-to-image grounding temperature tau_vl.")
    arc_margin_text: float | None = preset_setting("Angular margin m1 on text-text and CMA logits (0 = plain SimCSE).")
    arc_margin_ground: float | None = preset_setting("Angular margin m2 in the grounding space.")
    adaptive_margin_ground: bool | None = preset_setting("Scale the grounding margin by (1 - image-image cosine).")
    proj_dim: int = setting(256, "Grounding projection width P.")
    sim_dim: int = setting(256, "Consistency tower output width S.")
    cml_weight: float = setting(0.1, "lambda: weight of the cross-modal terms L_CML.")
    iml_weight: float = setting(0.2, "mu: weight of the intra-modal terms L_IML.")
    cons_weight: float | None = preset_setting("Weight of L_cons inside L_CML.")
    cons_margin: float = setting(0.2, "Cosine-embedding margin of L_cons for mismatched pairs.")
    mismatch: str | None = preset_setting(
        "Mismatched images for L_cons: roll5 (reference) or a random derangement avoiding the same image."
    )
    ground_weight_location: str | None = preset_setting(
        "inside_cml: L_ground weighted by lambda; baseline: by ground_weight."
    )
    ground_weight: float | None = preset_setting("Weight of L_ground when ground_weight_location=baseline.")
    ground_use_caption_branch: bool = setting(
        False, "Add KDMCSE's grounding term against CLIP caption features (needs caption_features)."
    )
    cma_space: str | None = preset_setting(
        "Student text-to-image distribution: mlp_vs_clip (reference; needs student width == image width) or grounding.",
    )
    teacher_t2t: str | None = preset_setting(
        "Teacher text-text target: mix_features (reference) or mix_similarities (teachers of any width)."
    )
    kl_margin: bool | None = preset_setting("Apply the angular margin to the KL student logits.")
    kl_student_temp: float | None = preset_setting("tau_s, applied on top of 1/temperature.")
    kl_teacher_temp: float | None = preset_setting("tau_t of the teacher distributions (on cosines).")
    kl_student_temp_total: float | None = setting(
        None,
        "If set, the effective student KL temperature on cosines (overrides kl_student_temp = total / temperature).",
    )
    distillation_loss: str = setting("listmle", "Rank distillation: listmle (DALR scripts) or listnet.")
    listmle_exact: bool | None = preset_setting(
        "Exact ListMLE (log-cumsum-exp) instead of the reference's eps formula."
    )
    rank_weight: float = setting(1.0, "gamma: weight of the rank loss inside L_IML.")
    rank_teacher_temp: float = setting(0.05, "tau2 of the teacher rank scores.")
    use_g2l: bool | None = preset_setting(
        "Use the global-to-local term (needs online teachers of the student's width)."
    )
    g2l_norm: str | None = preset_setting("g2l token normalisation: token_axis (reference bug) or feature_axis.")
    teacher_sim_fp16: bool | None = preset_setting(
        "Round teacher embeddings to fp16 before cosines (the reference's --fp16)."
    )
    mask_same_image_negatives: bool = setting(
        True, "Exclude other captions of the same image from the negatives of the cross-modal terms."
    )
    student_head: str | None = preset_setting(
        "What the text losses see: mlp (SimCSE's fresh training-only MLP over the embedding) or none (the "
        "student's own embedding, for an already-trained encoder).",
    )
    rank_reduction: str | None = preset_setting(
        "ListMLE over the batch list: sum (reference, ~log(B!) in size) or mean (divided by the list length).",
    )

    def __post_init__(self) -> None:
        self.resolve_and_check()

    # -- construction -------------------------------------------------------------------------------------------------
    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The settings' field names (``preset`` included)."""
        return tuple(f.name for f in fields(LossSettings))

    @classmethod
    def from_kwargs(cls, preset: str = "reference", **kwargs) -> LossSettings:
        """Settings from keyword arguments; an unknown keyword is refused with the nearest valid name."""
        valid = cls.names()
        unknown = [k for k in kwargs if k not in valid]
        if unknown:
            hints = []
            for name in unknown:
                close = difflib.get_close_matches(name, valid, n=1)
                hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise TypeError(
                f"DALRLoss got unknown setting(s) {', '.join(hints)}; valid settings: {', '.join(sorted(valid))}"
            )
        return cls(preset=preset, **kwargs)

    def loss_kwargs(self) -> dict:
        """This object's settings as keyword arguments of ``DALRLoss(model, preset=self.preset, **kwargs)``.

        Generic over the fields: a setting added to :class:`LossSettings` flows through without further edits.
        """
        return {name: getattr(self, name) for name in LossSettings.names() if name != "preset"}

    def to_dict(self) -> dict:
        """Every setting, ``preset`` included."""
        return {name: getattr(self, name) for name in LossSettings.names()}

    # -- checks -------------------------------------------------------------------------------------------------------
    def resolve_and_check(self) -> None:
        """Fill the preset's values into unset fields and check every value (idempotent)."""
        apply_preset(self, self.preset)
        for name, allowed in CHOICES.items():
            if hasattr(self, name) and getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} is not one of {allowed}")
        positive = ("temperature", "temperature_vl", "kl_student_temp", "kl_teacher_temp", "rank_teacher_temp")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.kl_student_temp_total is not None:
            if not self.kl_student_temp_total > 0:
                raise ValueError(f"kl_student_temp_total must be > 0, got {self.kl_student_temp_total}")
            self.kl_student_temp = self.kl_student_temp_total / self.temperature
        for name in ("arc_margin_text", "arc_margin_ground"):
            if not 0 <= getattr(self, name) < math.pi:
                raise ValueError(f"{name} is an angle in radians in [0, pi); got {getattr(self, name)}")
        non_negative = ("cml_weight", "iml_weight", "cons_weight", "ground_weight", "rank_weight", "cons_margin")
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("proj_dim", "sim_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def effective_weights(self) -> dict[str, float]:
        """Weight of each term on a paired batch (docs/method.md#totals-and-effective-weights)."""
        return effective_weights(self)


def effective_weights(settings) -> dict[str, float]:
    """Weight of each term on a paired batch, for any object with the :class:`LossSettings` fields."""
    lam, mu = settings.cml_weight, settings.iml_weight
    ground = lam if settings.ground_weight_location == "inside_cml" else settings.ground_weight
    return {
        "L_info": 1.0,
        "L_ground": ground,
        "L_cma": lam,
        "L_cons": lam * settings.cons_weight,
        "L_ima": mu,
        "L_rank": mu * settings.rank_weight,
        "L_g2l": mu if settings.use_g2l else 0.0,
    }
