"""LoRA adapters on the student's backbone, through peft, merged into plain weights before anything is saved.

The adapters are injected with peft's functional API (``peft.inject_adapter_in_model``) straight into the student's
transformers model, before the trainer is built, so the optimizer only ever sees the adapter weights (and DALR's
training heads, which live in the loss module). sentence-transformers' own ``model.add_adapter`` would be the natural
entry point, but it goes through transformers' PEFT integration, which (transformers 5.24) refuses peft < 0.22; the
functional API has no such gate and produces the same LoRA layers.

What is saved is always a plain model: a checkpoint or an export holds the *merged* weights (``W + scale · B A``)
under the backbone's own parameter names, so ``SentenceTransformer(folder)`` loads it without peft and gives the
adapted model's embeddings. The adapter weights themselves are training state, kept next to the training heads in
checkpoint folders (:data:`LORA_ADAPTER_FILE`, :data:`LORA_CONFIG_FILE`) for a resumed run or the best-checkpoint
reload. They deliberately do not use peft's ``adapter_model.safetensors`` / ``adapter_config.json`` names: a folder
holding those is treated as an adapter-only checkpoint by the loaders, and the merged folder is not one.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dalr_hf.files import LORA_ADAPTER_FILE, LORA_CONFIG_FILE

logger = logging.getLogger(__name__)

ADAPTER_NAME = "default"


@dataclass(frozen=True)
class LoraLayerRef:
    """One LoRA layer of a model: its qualified name, its parent module and its attribute name there."""

    name: str
    parent: nn.Module
    attribute: str
    layer: nn.Module


def backbone(model: nn.Module) -> nn.Module:
    """The transformers model inside a student (``student.transformers_model``), or ``model`` itself."""
    inner = getattr(model, "transformers_model", None)
    return inner if isinstance(inner, nn.Module) else model


def _tuner_layer_class() -> type | None:
    # Adapter layers can only exist once peft has been imported: without it, there is nothing to find (and peft, an
    # optional dependency, is neither required nor imported on every save of a full fine-tuning run).
    if "peft" not in sys.modules:
        return None
    from peft.tuners.tuners_utils import BaseTunerLayer

    return BaseTunerLayer


def lora_layers(model: nn.Module) -> list[LoraLayerRef]:
    """Every peft tuner layer in ``model`` (outermost only), with where it is attached."""
    tuner = _tuner_layer_class()
    if tuner is None:
        return []
    found: list[LoraLayerRef] = []
    inside: list[str] = []
    modules = dict(model.named_modules())
    for name, module in model.named_modules():
        if not isinstance(module, tuner) or any(name.startswith(prefix + ".") for prefix in inside):
            continue
        inside.append(name)
        parent_name, _, attribute = name.rpartition(".")
        found.append(LoraLayerRef(name, modules[parent_name] if parent_name else model, attribute, module))
    return found


def has_lora(model: nn.Module) -> bool:
    """Whether ``model`` (a student or a transformers model) carries peft adapter layers."""
    return bool(lora_layers(model))


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Trainable and total parameter counts (shared tensors counted once)."""
    seen: set[int] = set()
    trainable = total = 0
    for parameter in model.parameters():
        if id(parameter) in seen:
            continue
        seen.add(id(parameter))
        total += parameter.numel()
        if parameter.requires_grad:
            trainable += parameter.numel()
    return {"trainable": trainable, "total": total}


def apply_lora(
    student: nn.Module,
    r: int = 8,
    alpha: float = 16.0,
    dropout: float = 0.1,
    target_modules: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Inject LoRA adapters into the student's backbone, in place; only the adapter weights stay trainable.

    Call it after building the student and before building the trainer (the optimizer is made from the parameters
    that require a gradient at that point). ``target_modules`` are module-name suffixes (e.g. ``["query", "value"]``);
    None takes peft's default for the architecture (BERT/RoBERTa: query and value). Returns the adapter settings as
    recorded in checkpoints and the model card.
    """
    from peft import LoraConfig, inject_adapter_in_model

    if r < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {r}")
    if not alpha > 0:
        raise ValueError(f"LoRA alpha must be > 0, got {alpha}")
    if not 0 <= dropout < 1:
        raise ValueError(f"LoRA dropout must be in [0, 1), got {dropout}")
    inner = backbone(student)
    if has_lora(inner):
        raise ValueError("the student already carries LoRA adapters; merge_lora() it or build a fresh student")
    targets = list(target_modules) if target_modules else None
    config = LoraConfig(r=int(r), lora_alpha=alpha, lora_dropout=float(dropout), target_modules=targets, bias="none")
    try:
        inject_adapter_in_model(config, inner, adapter_name=ADAPTER_NAME)
    except ValueError as exc:
        names = sorted({n.rpartition(".")[2] for n, m in inner.named_modules() if isinstance(m, nn.Linear)})
        raise ValueError(
            f"LoRA could not be applied to {type(inner).__name__} with target_modules={targets}: {exc}. "
            f"Linear layers of this model end in: {names}"
        ) from exc
    layers = lora_layers(inner)
    settings = lora_settings(student)
    counts = parameter_counts(inner)
    logger.info(
        "LoRA r=%d alpha=%s dropout=%s on %d layers (%s): %d of %d backbone parameters trainable (%.2f%%)",
        r,
        alpha,
        dropout,
        len(layers),
        ", ".join(settings["target_modules"]),
        counts["trainable"],
        counts["total"],
        100.0 * counts["trainable"] / max(1, counts["total"]),
    )
    return settings


def lora_settings(model: nn.Module) -> dict[str, Any]:
    """The adapter settings of a LoRA student (rank, alpha, dropout, the module names actually adapted)."""
    import peft

    inner = backbone(model)
    layers = lora_layers(inner)
    if not layers:
        raise ValueError("the model carries no LoRA adapters")
    config = getattr(inner, "peft_config", {}).get(ADAPTER_NAME)
    if config is None:
        raise ValueError(f"the model's LoRA adapters are not named {ADAPTER_NAME!r}; they were not added by apply_lora")
    counts = parameter_counts(inner)
    return {
        "r": int(config.r),
        "alpha": float(config.lora_alpha),
        "dropout": float(config.lora_dropout),
        "target_modules": sorted({ref.attribute for ref in layers}),
        "num_layers": len(layers),
        "adapter_parameters": sum(p.numel() for n, p in inner.named_parameters() if ".lora_" in n),
        "backbone_parameters": counts["total"],
        "peft_version": peft.__version__,
    }


def _merged_base_layer(layer: nn.Module, in_place: bool) -> nn.Module:
    """The base layer of ``layer`` with its active adapters merged in (by peft's own ``merge``)."""
    if getattr(layer, "merged", False):
        raise ValueError(f"LoRA layer {type(layer).__name__} is already merged; refusing to merge it twice")
    target = layer if in_place else copy.deepcopy(layer)
    if not getattr(target, "disable_adapters", False):
        with torch.no_grad():
            target.merge(safe_merge=True)
    base = target.get_base_layer()
    return base


@contextmanager
def merged_lora_view(model: nn.Module) -> Iterator[nn.Module]:
    """Temporarily replace every LoRA layer by a merged copy of its base layer (the model's own weights untouched).

    Inside the block the model has the plain architecture and state-dict names, so it saves as an ordinary
    SentenceTransformer; on exit the LoRA layers are put back. Used to write checkpoints during LoRA training.
    """
    swaps = [(ref, _merged_base_layer(ref.layer, in_place=False)) for ref in lora_layers(model)]
    try:
        for ref, merged in swaps:
            setattr(ref.parent, ref.attribute, merged)
        yield model
    finally:
        for ref, _ in swaps:
            setattr(ref.parent, ref.attribute, ref.layer)


def merge_lora(model: nn.Module) -> nn.Module:
    """Merge the LoRA adapters into the base weights and remove them, in place; returns ``model``.

    Afterwards the backbone is a plain transformers model (no peft modules, no ``peft_config``) whose parameters all
    require gradients again, so it saves, loads and trains like a freshly built student. No-op without adapters.
    """
    inner = backbone(model)
    layers = lora_layers(inner)
    if not layers:
        return model
    for ref in layers:
        setattr(ref.parent, ref.attribute, _merged_base_layer(ref.layer, in_place=True))
    if hasattr(inner, "peft_config"):
        del inner.peft_config
    inner.requires_grad_(True)
    logger.info("merged %d LoRA layers into the base weights", len(layers))
    return model


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter weights (``lora_A`` / ``lora_B``), keyed by their names in the backbone."""
    inner = backbone(model)
    return {name: tensor.detach().cpu().contiguous() for name, tensor in inner.state_dict().items() if ".lora_" in name}


def save_lora_adapter(model: nn.Module, folder: str | os.PathLike[str]) -> None:
    """Write the adapter weights and settings into ``folder`` (training state, next to the training heads)."""
    from safetensors.torch import save_file

    os.makedirs(folder, exist_ok=True)
    save_file(lora_state_dict(model), os.path.join(folder, LORA_ADAPTER_FILE), metadata={"format": "pt"})
    with open(os.path.join(folder, LORA_CONFIG_FILE), "w", encoding="utf-8") as f:
        json.dump(lora_settings(model), f, indent=2, sort_keys=True)


def load_lora_adapter(model: nn.Module, folder: str | os.PathLike[str]) -> None:
    """Load adapter weights saved by :func:`save_lora_adapter` into a student carrying the same adapters.

    The base weights are not read: they are frozen during LoRA training, so the student rebuilt from its base model
    already holds them. A checkpoint made with other LoRA settings is refused with the differences named.
    """
    from safetensors.torch import load_file

    weights = os.path.join(folder, LORA_ADAPTER_FILE)
    if not os.path.isfile(weights):
        raise FileNotFoundError(
            f"{str(folder)!r} holds no LoRA adapter ({LORA_ADAPTER_FILE} is missing): it was not written by a LoRA "
            "run; resume it without `lora`, or from a LoRA run's checkpoint"
        )
    settings_path = os.path.join(folder, LORA_CONFIG_FILE)
    if os.path.isfile(settings_path):
        with open(settings_path, encoding="utf-8") as f:
            saved = json.load(f)
        current = lora_settings(model)
        keys = ("r", "alpha", "dropout", "target_modules")
        diffs = [
            f"{k}: checkpoint {saved.get(k)!r} vs this run {current[k]!r}" for k in keys if saved.get(k) != current[k]
        ]
        if diffs:
            raise ValueError(f"LoRA checkpoint {str(folder)!r} was made with other settings ({'; '.join(diffs)})")
    state = load_file(weights)
    expected = set(lora_state_dict(model))
    if set(state) != expected:
        missing = sorted(expected - set(state))[:5]
        unexpected = sorted(set(state) - expected)[:5]
        raise ValueError(
            f"LoRA checkpoint {str(folder)!r} does not match this model's adapters "
            f"(missing e.g. {missing}, unexpected e.g. {unexpected})"
        )
    inner = backbone(model)
    missing_keys, unexpected_keys = inner.load_state_dict(state, strict=False)
    if unexpected_keys:
        raise ValueError(f"unexpected LoRA keys {unexpected_keys[:5]} in {str(folder)!r}")
