"""DALRLoss: the composite objective over one batch, as a dict of named, weighted terms.

See docs/method.md#totals-and-effective-weights.

Text-only batch: ``{"L_info"}``. Image-caption batch:
``L_info + λ·[c·L_cons + L_CMA (+ L_ground)] + μ·[L_IMA + γ·L_rank + L_g2l]`` (+ ``w_g·L_ground`` when grounding sits
in the baseline). The student is the SentenceTransformer itself (CLS state ``h``); the training-only MLP pooler and
every head live here, so they are trained (the Trainer optimizes the loss module's parameters) but never saved with
the student. Teachers are held as a plain attribute: never registered, never in the optimizer or ``state_dict``.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dalr_hf.distributed import gather_padded_tokens, gather_rows, world_size
from dalr_hf.losses._checks import check_finite, check_terms_finite
from dalr_hf.losses.arc_similarity import arc_similarity
from dalr_hf.losses.consistency import ConsistencyLoss
from dalr_hf.losses.g2l import GlobalToLocalLoss
from dalr_hf.losses.grounding import GroundingLoss
from dalr_hf.losses.info_nce import InfoNCELoss
from dalr_hf.losses.kl import (
    CrossModalAlignmentLoss,
    IntraModalAlignmentLoss,
    cross_modal_alignment,
    image_distribution,
    teacher_text_distribution,
)
from dalr_hf.losses.presets import DALR_CITATION, LossSettings
from dalr_hf.losses.rank import RankDistillationLoss, teacher_rank_scores
from dalr_hf.teachers import CachedTeachers, TeacherEnsemble, TeacherOutput

logger = logging.getLogger(__name__)

TERMS = ("L_info", "L_ground", "L_cons", "L_cma", "L_ima", "L_rank", "L_g2l")
#: The terms that read the teachers' outputs; without one of them no teacher runs.
TEACHER_TERMS = frozenset({"L_cma", "L_ima", "L_rank", "L_g2l"})


def needs_teachers(args, multimodal: bool = True) -> bool:
    """Whether a run with these arguments reads teacher outputs: some teacher term has a weight above 0."""
    if not multimodal:
        return False
    weights = args.effective_weights()
    return any(weights.get(term, 0.0) > 0 for term in TEACHER_TERMS)


class MLPPooler(nn.Module):
    """``z = tanh(W h + b)``: SimCSE's training-only MLP over the CLS state, initialised N(0, 0.02), zero bias."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        nn.init.normal_(self.dense.weight, std=0.02)
        nn.init.zeros_(self.dense.bias)

    def forward(self, h: Tensor) -> Tensor:
        return torch.tanh(self.dense(h))


class DALRLoss(nn.Module):
    """The full DALR objective, configured by keyword arguments like sentence-transformers' losses.

    ``forward(batch)`` returns ``{term: weighted value}`` (float32 scalars); the Trainer sums them.

    Args:
        model: the student SentenceTransformer.
        teachers: frozen online :class:`~dalr_hf.teachers.TeacherEnsemble`; or
            :class:`~dalr_hf.teachers.CachedTeachers` (weights and fingerprints only) when every paired batch carries
            cached ``teacher_emb_<k>`` columns; or None for text-only training (SimCSE).
        preset: ``"reference"``, ``"paper"`` or ``"clean"``: the defaults of the settings left unset
            (``dalr_hf.losses.presets.PRESETS``).
        image_feature_dim: width D of the image features, or None for text-only training.
        teacher_weights: the teachers' weights (alpha) when only cached embeddings are used and ``teachers`` is None.
        seed: seeds the heads' initialisation (without touching the global RNG) and the loss's own generator.
        gather_across_devices: multi-process: every in-batch term sees the global batch.
        **settings: any field of :class:`~dalr_hf.losses.presets.LossSettings` (``cml_weight``, ``iml_weight``,
            ``cons_weight``, ``arc_margin_text``, ``use_g2l``, ``mismatch``, ...); an unknown name is refused with the
            nearest valid one.

    The resolved settings are ``loss.settings`` (one :class:`~dalr_hf.losses.presets.LossSettings`); the weight of
    each term is ``loss.weights``.

    Example::

        loss = DALRLoss(student, teachers, preset="clean", image_feature_dim=768, cml_weight=0.05, use_g2l=False)
    """

    citation = DALR_CITATION

    def __init__(
        self,
        model,
        teachers: TeacherEnsemble | CachedTeachers | None = None,
        preset: str = "reference",
        *,
        image_feature_dim: int | None = None,
        teacher_weights: list[float] | None = None,
        seed: int = 1,
        gather_across_devices: bool = False,
        **settings,
    ) -> None:
        super().__init__()
        if hasattr(teachers, "loss_kwargs") or hasattr(preset, "loss_kwargs"):
            raise TypeError(
                "DALRLoss is configured by keyword arguments, not by training arguments: use "
                "DALRLoss.from_training_args(model, args, ...) or "
                "DALRLoss(model, teachers, args.preset, **args.loss_kwargs())"
            )
        self.settings = LossSettings.from_kwargs(preset=preset, **settings)
        self.model = model
        self.seed = int(seed)
        self.gather_across_devices = bool(gather_across_devices)
        hidden = int(model[0].get_embedding_dimension())
        self.hidden_size = hidden
        self.image_feature_dim = image_feature_dim
        self.weights = self.settings.effective_weights()
        # Online teachers are held as a plain attribute, not registered as a submodule on purpose: see the module
        # docstring. Cached teachers contribute only their weights and fingerprints.
        online = teachers if isinstance(teachers, TeacherEnsemble) else None
        if teachers is not None and online is None and not isinstance(teachers, CachedTeachers):
            raise TypeError(
                f"teachers must be a TeacherEnsemble, CachedTeachers or None, got {type(teachers).__name__}"
            )
        self.teachers = online
        self.teacher_weights: list[float] | None
        self.teacher_fingerprints: list[dict] | None
        if teacher_weights is not None:
            self.teacher_weights = [float(w) for w in teacher_weights]
        elif teachers is not None:
            self.teacher_weights = list(teachers.weights)
        else:
            self.teacher_weights = None
        if online is not None:
            self.teacher_fingerprints = online.fingerprints()
        elif isinstance(teachers, CachedTeachers):
            self.teacher_fingerprints = [dict(f) for f in teachers.fingerprints]
        else:
            self.teacher_fingerprints = None
        if self.teacher_weights is not None and teachers is not None and len(self.teacher_weights) != len(teachers):
            raise ValueError(f"{len(self.teacher_weights)} teacher_weights for {len(teachers)} teachers")
        # The loss's own randomness (mismatch derangement, ListMLE tie-breaking) comes from this generator: seeded
        # alike on every process, advanced alike, and saved with the training heads, so runs gather and resume exactly.
        self.generator = torch.Generator().manual_seed(self.seed)
        self.multimodal = image_feature_dim is not None
        # Terms whose weight is 0 are neither built nor computed; teachers run only for a term that needs them.
        paired_terms = ("L_ground", "L_cons", "L_cma", "L_ima", "L_rank", "L_g2l")
        self.active_terms = {"L_info"} | {t for t in paired_terms if self.multimodal and self.weights.get(t, 0.0) > 0}
        self.needs_teachers = bool(self.active_terms & TEACHER_TERMS)
        # The heads' initialisation is part of the run's identity: seeded here, on a forked RNG, so that building a
        # loss never changes the caller's global random state.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self._build_heads(hidden, teachers, online)

    @classmethod
    def from_training_args(
        cls,
        model,
        args,
        teachers: TeacherEnsemble | CachedTeachers | None = None,
        *,
        image_feature_dim: int | None = None,
        teacher_weights: list[float] | None = None,
    ) -> DALRLoss:
        """The loss configured by a :class:`~dalr_hf.training_args.DALRTrainingArguments` (every loss setting,
        ``seed``, ``gather_across_devices`` and ``image_feature_dim`` when not given)."""
        return cls(
            model,
            teachers,
            args.preset,
            image_feature_dim=image_feature_dim if image_feature_dim is not None else args.image_feature_dim,
            teacher_weights=teacher_weights,
            seed=args.seed,
            gather_across_devices=args.gather_across_devices,
            **args.loss_kwargs(),
        )

    def get_config_dict(self) -> dict:
        """The loss's configuration, as sentence-transformers' losses report it (e.g. in model cards)."""
        return {
            **self.settings.to_dict(),
            "image_feature_dim": self.image_feature_dim,
            "teacher_weights": self.teacher_weights,
            "seed": self.seed,
            "gather_across_devices": self.gather_across_devices,
        }

    def _build_heads(self, hidden: int, teachers, online: TeacherEnsemble | None) -> None:
        args = self.settings
        image_feature_dim = self.image_feature_dim
        # student_head "none": the losses see the student's own embedding (an already-trained encoder)
        self.mlp = MLPPooler(hidden) if args.student_head != "none" else None
        self.info_nce = InfoNCELoss(margin=args.arc_margin_text, temperature=args.temperature)
        if not self.multimodal:
            return
        if self.needs_teachers and self.teacher_weights is None:
            raise ValueError(
                "image-caption training with teacher terms (L_cma, L_ima, L_rank, L_g2l) needs teachers: pass online "
                "teachers, CachedTeachers or teacher_weights, or set cml_weight and iml_weight to 0 (MCSE: InfoNCE + "
                "grounding)"
            )
        if "L_cma" in self.active_terms and args.cma_space == "mlp_vs_clip" and hidden != image_feature_dim:
            raise ValueError(
                f"cma_space='mlp_vs_clip' compares the student's {hidden}-d MLP output with the {image_feature_dim}-d "
                "image features directly (docs/method.md#coupled-widths); they must have the same width. Use "
                "cma_space='grounding' or image features of the student's width."
            )
        if "L_g2l" in self.active_terms and online is not None:
            online.check_token_mixing(hidden)
        # Without online teachers, g2l reads cached token states from every paired batch (teacher_token_states,
        # teacher_token_mask, from a teacher cache built with token states); a batch without them is refused.
        if self.needs_teachers and args.teacher_t2t == "mix_features":
            widths = {t.hidden_size for t in online.teachers} if online is not None else None
            if widths is not None and len(widths) != 1:
                raise ValueError(
                    f"teacher_t2t='mix_features' averages raw teacher vectors, so all teachers need one "
                    f"width; got {sorted(widths)}. Use teacher_t2t='mix_similarities'."
                )
        self.grounding = self.consistency = self.cma = self.ima = self.rank = self.g2l = None
        if "L_ground" in self.active_terms or ("L_cma" in self.active_terms and args.cma_space == "grounding"):
            self.grounding = GroundingLoss(
                text_dim=hidden,
                image_dim=image_feature_dim,
                proj_dim=args.proj_dim,
                margin=args.arc_margin_ground,
                temperature=args.temperature_vl,
                adaptive_margin=args.adaptive_margin_ground,
                use_caption_branch=args.ground_use_caption_branch,
            )
        if "L_cons" in self.active_terms:
            self.consistency = ConsistencyLoss(
                text_dim=hidden,
                image_dim=image_feature_dim,
                sim_dim=args.sim_dim,
                margin=args.cons_margin,
                mismatch=args.mismatch,
                drop_same_image=args.mask_same_image_negatives,
            )
        if "L_cma" in self.active_terms:
            self.cma = CrossModalAlignmentLoss(
                margin=args.arc_margin_text,
                temperature=args.temperature,
                student_temperature=args.kl_student_temp,
                teacher_temperature=args.kl_teacher_temp,
                use_margin=args.kl_margin,
            )
        if "L_ima" in self.active_terms:
            self.ima = IntraModalAlignmentLoss(student_temperature=args.kl_student_temp)
        if "L_rank" in self.active_terms:
            self.rank = RankDistillationLoss(
                method=args.distillation_loss,
                exact=args.listmle_exact,
                # gamma (rank_weight) is applied once, in the effective weights: not again inside the term
                gamma=1.0,
                reduction=args.rank_reduction,
            )
        if "L_g2l" in self.active_terms:
            self.g2l = GlobalToLocalLoss(temperature=args.temperature, norm=args.g2l_norm)

    # -- helpers -----------------------------------------------------------------------------------------------------
    def encode_views(self, batch: dict) -> tuple[Tensor, Tensor]:
        """One forward pass over the duplicated batch (2B rows): the two dropout views' CLS states, float32."""
        size = batch["input_ids"].size(0)
        features = {
            k: torch.cat([batch[k], batch[k]]) for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch
        }
        h = self.model(features)["sentence_embedding"].float()
        return h[:size], h[size:]

    def teacher_outputs(self, batch: dict, with_tokens: bool) -> TeacherOutput:
        """Cached teacher outputs when the batch carries all that is needed, else the online teachers' outputs."""
        cached = sorted(k for k in batch if k.startswith("teacher_emb_"))
        tokens_cached = "teacher_token_states" in batch and "teacher_token_mask" in batch
        if cached and (not with_tokens or tokens_cached):
            embeddings = [batch[f"teacher_emb_{i}"].float() for i in range(len(cached))]
            if len(embeddings) != len(self.teacher_weights):
                raise ValueError(
                    f"the batch carries {len(embeddings)} cached teacher columns but "
                    f"{len(self.teacher_weights)} teacher weights are configured"
                )
            if not with_tokens:
                return TeacherOutput(embeddings=embeddings, weights=self.teacher_weights)
            return TeacherOutput(
                embeddings=embeddings,
                weights=self.teacher_weights,
                token_states=batch["teacher_token_states"].float(),
                token_mask=batch["teacher_token_mask"],
            )
        if self.teachers is None:
            if cached and with_tokens:
                raise ValueError(
                    "the g2l term needs teacher token states, but this paired batch carries only cached teacher "
                    "embeddings and no online teachers exist: rebuild the teacher cache with token states "
                    "(dalr-hf cache-teachers stores them unless --no-token-states), pass online teachers, or set "
                    "use_g2l=False"
                )
            raise ValueError("this paired batch has no cached teacher_emb_<k> columns and no online teachers exist")
        return self.teachers(batch["sentences"], with_tokens=with_tokens, device=batch["input_ids"].device)

    # -- forward -----------------------------------------------------------------------------------------------------
    def forward(self, batch: dict) -> dict[str, Tensor]:
        h1, h2 = self.encode_views(batch)
        gather = self.gather_across_devices and world_size() > 1
        paired = bool(batch.get("paired", False))
        images = image_ids = captions = teacher = None
        if paired:
            if not self.multimodal:
                raise ValueError("a paired batch reached a DALRLoss built without image features")
            # Teachers run on this process's sentences only (and only when a weighted term reads them); their
            # outputs are gathered like the features.
            if self.needs_teachers:
                teacher = self.teacher_outputs(batch, with_tokens=self.g2l is not None)
            images, image_ids = batch["image_features"], batch["image_ids"]
            captions = batch.get("caption_features") if self.settings.ground_use_caption_branch else None
        if gather:
            h1, h2 = gather_rows(h1, with_grad=True), gather_rows(h2, with_grad=True)
            if paired:
                images, image_ids = gather_rows(images), gather_rows(image_ids)
                captions = gather_rows(captions) if captions is not None else None
                if teacher is not None:
                    tokens, token_mask = teacher.token_states, teacher.token_mask
                    if tokens is not None:
                        tokens, token_mask = gather_padded_tokens(tokens, token_mask)
                    teacher = TeacherOutput(
                        embeddings=[gather_rows(e) for e in teacher.embeddings],
                        weights=teacher.weights,
                        token_states=tokens,
                        token_mask=token_mask,
                    )
        # Heads and loss math in float32 even under mixed precision.
        with torch.autocast(device_type=h1.device.type, enabled=False):
            z1, z2 = (self.mlp(h1), self.mlp(h2)) if self.mlp is not None else (h1, h2)
            l_info, text_logits = self.info_nce(z1, z2)
            terms = {"L_info": check_finite("L_info", l_info)}
            if paired and len(self.active_terms) > 1:
                terms.update(self._paired_terms(images, image_ids, captions, teacher, h1, h2, z1, text_logits))
        return {name: self.weights[name] * value for name, value in terms.items()}

    def _paired_terms(
        self,
        images: Tensor,
        image_ids: Tensor,
        captions: Tensor | None,
        teacher: TeacherOutput,
        h1: Tensor,
        h2: Tensor,
        z1: Tensor,
        text_logits: Tensor,
    ) -> dict:
        args = self.settings
        images = images.float()
        if images.size(1) != self.image_feature_dim:
            raise ValueError(
                f"image feature dim {images.size(1)} does not match the configured {self.image_feature_dim}"
            )
        size = images.size(0)
        eye = torch.eye(size, dtype=torch.bool, device=images.device)
        same_image = (image_ids[:, None] == image_ids[None, :]) & ~eye
        negative_mask = same_image if args.mask_same_image_negatives and bool(same_image.any()) else None
        unit_images = F.normalize(images, dim=-1)
        image_sim = unit_images @ unit_images.T
        active = self.active_terms
        terms: dict[str, Tensor] = {}
        if self.consistency is not None:
            terms["L_cons"] = self.consistency(z1, images, image_ids, generator=self.generator)
        if self.grounding is not None and "L_ground" in active:
            terms["L_ground"] = self.grounding(
                h1,
                h2,
                images,
                image_sim=image_sim,
                negative_mask=negative_mask,
                caption_features=captions,
            )
        if teacher is not None:
            embeddings = [e.float() for e in teacher.embeddings]
            if args.teacher_sim_fp16:
                embeddings = [e.half().float() for e in embeddings]
            q_t2t = teacher_text_distribution(embeddings, teacher.weights, args.kl_teacher_temp, mode=args.teacher_t2t)
            if self.cma is not None:
                if negative_mask is not None:
                    q_t2t_cross = teacher_text_distribution(
                        embeddings,
                        teacher.weights,
                        args.kl_teacher_temp,
                        mode=args.teacher_t2t,
                        negative_mask=negative_mask,
                    )
                else:
                    q_t2t_cross = q_t2t
                q_v2v = image_distribution(image_sim, args.kl_teacher_temp, negative_mask=negative_mask)
                if args.cma_space == "mlp_vs_clip":
                    terms["L_cma"] = self.cma(z1, images, q_t2t_cross, q_v2v, negative_mask=negative_mask)
                else:
                    p1 = F.normalize(torch.tanh(self.grounding.text_proj(h1)), dim=-1)
                    g = F.normalize(torch.tanh(self.grounding.image_proj(images)), dim=-1)
                    logits = arc_similarity(p1, g, args.arc_margin_text if args.kl_margin else 0.0, args.temperature_vl)
                    terms["L_cma"] = cross_modal_alignment(
                        logits, q_t2t_cross, q_v2v, args.kl_student_temp, negative_mask=negative_mask
                    )
            if self.rank is not None:
                rank_scores = teacher_rank_scores(embeddings, teacher.weights, args.rank_teacher_temp)
                terms["L_rank"] = self.rank(text_logits, rank_scores, generator=self.generator)
            if self.ima is not None:
                terms["L_ima"] = self.ima(text_logits, q_t2t)
            if self.g2l is not None:
                terms["L_g2l"] = self.g2l(z1, teacher.token_states.to(z1.device), teacher.token_mask.to(z1.device))
        return check_terms_finite({name: value.float() for name, value in terms.items()})
