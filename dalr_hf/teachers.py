"""Frozen teacher sentence encoders.

A teacher encodes raw text with its *own* tokenizer, so any teacher works with any student: the student and the
teachers need not share a vocabulary or a width. Teachers are deliberately not ``nn.Module`` attributes of anything
the Trainer sees: they are never in the optimizer, never saved, never wrapped in DDP, and ``Trainer.train()``
cannot switch them to train mode (docs/method.md#frozen-teachers-outside-the-model).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

logger = logging.getLogger(__name__)

TEACHER_POOLERS = ("cls", "cls_before_pooler", "mean")


@dataclass
class TeacherConfig:
    """How to load and pool one frozen teacher."""

    name_or_path: str = field(
        metadata={"help": "Hugging Face encoder id or local folder (plain HF or a SentenceTransformer folder)."}
    )
    weight: float = field(default=1.0, metadata={"help": "Weight of this teacher (alpha in the paper)."})
    pooler: str = field(
        default="cls_before_pooler",
        metadata={
            "help": "cls_before_pooler = last_hidden_state[:, 0]; cls = the model's pooler_output; mean = masked mean."
        },
    )
    revision: str | None = field(default=None, metadata={"help": "Hub revision (commit, tag or branch)."})
    max_length: int = field(
        default=32, metadata={"help": "Teacher tokenizer truncation length (the reference uses 32)."}
    )

    def __post_init__(self) -> None:
        if self.pooler not in TEACHER_POOLERS:
            raise ValueError(f"teacher {self.name_or_path!r}: pooler {self.pooler!r} is not one of {TEACHER_POOLERS}")
        if not self.weight > 0:
            raise ValueError(f"teacher {self.name_or_path!r}: weight must be > 0, got {self.weight}")
        if self.max_length < 2:
            raise ValueError(f"teacher {self.name_or_path!r}: max_length must be >= 2, got {self.max_length}")

    @classmethod
    def from_any(cls, value: TeacherConfig | dict | str) -> TeacherConfig:
        if isinstance(value, TeacherConfig):
            return value
        if isinstance(value, str):
            return cls(name_or_path=value)
        if isinstance(value, dict):
            unknown = set(value) - {f for f in cls.__dataclass_fields__}
            if unknown:
                raise ValueError(
                    f"unknown teacher option(s) {sorted(unknown)}; expected {sorted(cls.__dataclass_fields__)}"
                )
            return cls(**value)
        raise TypeError(f"a teacher is a TeacherConfig, a dict or a model id, got {type(value).__name__}")


def _transformer_folder(path: str) -> str:
    """The folder holding the HF backbone: a SentenceTransformer folder may keep it in a module subfolder."""
    modules_file = os.path.join(path, "modules.json")
    if os.path.isdir(path) and os.path.isfile(modules_file):
        with open(modules_file) as f:
            modules = json.load(f)
        for module in modules:
            if module.get("type", "").endswith("Transformer"):
                return os.path.join(path, module.get("path", ""))
    return path


@dataclass
class TeacherOutput:
    """What the losses need from the teachers for one batch of B sentences (all float32)."""

    embeddings: list[Tensor]  # one (B, H_k) tensor per teacher
    weights: list[float]
    token_states: Tensor | None = None  # (B, T, H) weight-mixed token states at positions 1..T (g2l only)
    token_mask: Tensor | None = None  # (B, T)


class Teacher:
    """One frozen encoder. ``encode`` runs under ``torch.inference_mode`` in eval mode and returns float32."""

    def __init__(
        self,
        config: TeacherConfig | dict | str,
        device: str | torch.device | None = None,
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.config = TeacherConfig.from_any(config)
        folder = _transformer_folder(self.config.name_or_path)
        kwargs = {"revision": self.config.revision} if self.config.revision else {}
        self.tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
        if self.config.pooler == "cls":
            self.model, info = AutoModel.from_pretrained(folder, output_loading_info=True, **kwargs)
            missing = [k for k in info.get("missing_keys", []) if "pooler" in k]
            if getattr(self.model, "pooler", None) is None or missing:
                # A freshly initialised pooler would silently give random teacher embeddings.
                raise ValueError(
                    f"teacher {self.config.name_or_path!r}: pooler 'cls' needs a trained pooling layer "
                    f"(pooler_output), but the checkpoint has none (missing: {missing or 'pooler'}); "
                    "use pooler='cls_before_pooler' or 'mean'"
                )
        else:
            try:  # the NSP pooler is unused here: do not build (and randomly initialise) it
                self.model = AutoModel.from_pretrained(folder, add_pooling_layer=False, **kwargs)
            except TypeError:
                self.model = AutoModel.from_pretrained(folder, **kwargs)
        self.model.eval()
        self.model.requires_grad_(False)
        self.autocast_dtype = autocast_dtype
        if device is not None:
            self.to(device)
        self._fingerprint: dict | None = None

    # -- properties -------------------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.config.name_or_path

    @property
    def weight(self) -> float:
        return self.config.weight

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> Teacher:
        self.model.to(device)
        return self

    def train(self, mode: bool = True) -> Teacher:
        """Teachers never leave eval mode; this exists so that a stray ``.train()`` cannot enable dropout."""
        self.model.eval()
        return self

    # -- encoding ---------------------------------------------------------------------------------------------------
    def _forward(self, sentences: Sequence[str], device: torch.device | None = None, padding: bool | str = True):
        if device is not None and self.device != torch.device(device):
            self.to(device)
        self.model.eval()
        batch = self.tokenizer(
            list(sentences), padding=padding, truncation=True, max_length=self.config.max_length, return_tensors="pt"
        )
        batch = {
            k: v.to(self.device) for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")
        }
        with torch.inference_mode():
            if self.autocast_dtype is not None:
                with torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype):
                    out = self.model(**batch)
            else:
                out = self.model(**batch)
        return out, batch["attention_mask"]

    def _pool(self, out, mask: Tensor) -> Tensor:
        hidden = out.last_hidden_state.float()
        if self.config.pooler == "cls_before_pooler":
            return hidden[:, 0]
        if self.config.pooler == "cls":
            return out.pooler_output.float()
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)

    def encode(self, sentences: Sequence[str], batch_size: int = 128, device: torch.device | None = None) -> Tensor:
        """(N, H) float32 embeddings with this teacher's pooler. Inputs are cloned out of inference mode."""
        chunks = []
        for start in range(0, len(sentences), batch_size):
            out, mask = self._forward(sentences[start : start + batch_size], device)
            chunks.append(self._pool(out, mask).clone())
        if not chunks:
            return torch.empty(0, self.hidden_size)
        return torch.cat(chunks)

    def encode_with_tokens(
        self, sentences: Sequence[str], device: torch.device | None = None, padding: bool | str = True
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Pooled embedding, token states at positions 1..L-1 (no CLS; SEP and pads kept) and their mask.

        ``padding=True`` pads to the longest sentence of the batch (training); ``"max_length"`` pads every row to
        ``max_length`` (the teacher cache, which stores every position so that any batch's padding can be sliced).
        """
        out, mask = self._forward(sentences, device, padding=padding)
        pooled = self._pool(out, mask).clone()
        tokens = out.last_hidden_state[:, 1:].float().clone()
        return pooled, tokens, mask[:, 1:].clone()

    # -- identity ---------------------------------------------------------------------------------------------------
    def fingerprint(self) -> dict:
        """Identity of this teacher's outputs: model, revision, weights checksum, pooler, max length."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            for name, tensor in sorted(self.model.state_dict().items()):
                digest.update(name.encode())
                digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
            self._fingerprint = {
                "name_or_path": self.config.name_or_path,
                "revision": self.config.revision,
                "weights_sha256": digest.hexdigest(),
                "pooler": self.config.pooler,
                "max_length": self.config.max_length,
                "hidden_size": self.hidden_size,
            }
        return dict(self._fingerprint)

    def vocab_fingerprint(self) -> str:
        vocab = sorted(self.tokenizer.get_vocab().items())
        return hashlib.sha256(json.dumps([type(self.tokenizer).__name__, vocab]).encode()).hexdigest()

    def __repr__(self) -> str:
        return f"Teacher({asdict(self.config)})"


class TeacherEnsemble:
    """The frozen teachers with their weights; produces :class:`TeacherOutput` for a batch of raw sentences."""

    def __init__(self, teachers: Sequence[Teacher]) -> None:
        if not teachers:
            raise ValueError("TeacherEnsemble needs at least one teacher")
        self.teachers = list(teachers)
        total = sum(t.weight for t in self.teachers)
        if abs(total - 1.0) > 1e-6:
            logger.warning("teacher weights sum to %.4f, not 1 (the paper uses alpha and 1 - alpha)", total)

    @classmethod
    def from_configs(
        cls, configs: Sequence[TeacherConfig | dict | str], device=None, autocast_dtype: torch.dtype | None = None
    ) -> TeacherEnsemble:
        return cls([Teacher(c, device=device, autocast_dtype=autocast_dtype) for c in configs])

    @property
    def weights(self) -> list[float]:
        return [t.weight for t in self.teachers]

    def __len__(self) -> int:
        return len(self.teachers)

    def check_token_mixing(self, student_width: int) -> None:
        """g2l mixes the teachers' token states and dots them with the student's MLP output
        (docs/method.md#global-to-local-l_g2l, docs/method.md#coupled-widths)."""
        widths = {t.name: t.hidden_size for t in self.teachers}
        if len(set(widths.values())) != 1 or student_width not in widths.values():
            raise ValueError(
                f"the g2l term needs every teacher's hidden size to equal the student's ({student_width}); "
                f"got {widths}. Disable it with use_g2l=False or choose teachers of width {student_width}."
            )
        vocabs = {t.vocab_fingerprint() for t in self.teachers}
        if len(vocabs) != 1:
            raise ValueError(
                "the g2l term averages token states position by position, so all teachers must share one tokenizer; "
                f"teachers {[t.name for t in self.teachers]} do not. Disable it with use_g2l=False."
            )

    def __call__(self, sentences: Sequence[str], with_tokens: bool = False, device=None) -> TeacherOutput:
        embeddings: list[Tensor] = []
        token_states = token_mask = None
        for teacher in self.teachers:
            if with_tokens:
                pooled, tokens, mask = teacher.encode_with_tokens(sentences, device=device)
                weighted = teacher.weight * tokens
                token_states = weighted if token_states is None else token_states + weighted
                token_mask = mask
            else:
                pooled = teacher.encode(sentences, batch_size=max(1, len(sentences)), device=device)
            embeddings.append(pooled)
        return TeacherOutput(
            embeddings=embeddings, weights=self.weights, token_states=token_states, token_mask=token_mask
        )

    def fingerprints(self) -> list[dict]:
        return [dict(t.fingerprint(), weight=t.weight) for t in self.teachers]

    def cached(self) -> CachedTeachers:
        """What remains needed once every paired batch carries these teachers' embeddings: weights and identity."""
        return CachedTeachers(weights=self.weights, fingerprints=self.fingerprints())


@dataclass(frozen=True)
class CachedTeachers:
    """Teachers whose embeddings come with the data (``teacher_emb_<k>`` columns): their weights and fingerprints.

    Pass it as ``teachers=`` to :class:`~dalr_hf.losses.dalr.DALRLoss` instead of a :class:`TeacherEnsemble` when the
    teacher models are not needed during training; the fingerprints still identify the run in checkpoints and the
    model card. Build it with :meth:`TeacherEnsemble.cached` (after checking the cache against the models).
    """

    weights: list[float]
    fingerprints: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.weights:
            raise ValueError("CachedTeachers needs at least one teacher weight")
        if self.fingerprints and len(self.fingerprints) != len(self.weights):
            raise ValueError(f"CachedTeachers: {len(self.weights)} weights but {len(self.fingerprints)} fingerprints")
        object.__setattr__(self, "weights", [float(w) for w in self.weights])
        object.__setattr__(self, "fingerprints", [dict(f) for f in self.fingerprints])

    def __len__(self) -> int:
        return len(self.weights)
