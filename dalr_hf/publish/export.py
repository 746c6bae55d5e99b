"""Export a trained DALR student as a plain SentenceTransformer folder, with its model card.

The export is what gets published: ``Transformer`` + ``Pooling`` exactly as :func:`dalr_hf.student.build_student`
makes them, weights in safetensors, ``modules.json`` naming only sentence-transformers' own classes (so
``SentenceTransformer(folder)`` needs no ``trust_remote_code``), LoRA adapters merged into the weights, and one
``README.md``: the DALR card. Nothing used only for training is in it: not the training heads
(``dalr_training_heads.safetensors``, kept in checkpoint folders for a resumed run), not the LoRA adapter state, the
optimizer, scheduler, RNG or trainer state, the run reports or the checkpoints themselves.

The folder is written by saving the model (never by copying files out of a training folder), into a temporary
sibling that replaces the target only once it is complete and has passed :func:`check_export_folder`
(:func:`dalr_hf.atomic.replace_folder`: the previous export is renamed aside, never deleted before the new one is in
place).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dalr_hf.atomic import replace_folder
from dalr_hf.files import CHECKPOINT_DIR_RE, TRAINING_ONLY_FILES

logger = logging.getLogger(__name__)

TRANSFORMER_TYPE = "sentence_transformers.base.modules.transformer.Transformer"
POOLING_TYPE = "sentence_transformers.sentence_transformer.modules.pooling.Pooling"
# Files that belong to training, never to an exported model (glob patterns on a file's name).
TRAINING_ONLY_PATTERNS = (
    *TRAINING_ONLY_FILES,
    "optimizer.pt",
    "optimizer.bin",
    "scheduler.pt",
    "scaler.pt",
    "rng_state*.pth",
    "trainer_state.json",
    "training_args.bin",
    "adapter_config.json",
    "adapter_model.safetensors",
    "adapter_model.bin",
    "pytorch_model.bin",
    "*.py",
)
_CHECKPOINT_DIR = CHECKPOINT_DIR_RE


class ExportError(ValueError):
    """The model or folder is not a publishable DALR student (the message says what is wrong)."""


@dataclass
class ExportResult:
    """What :func:`export_model` wrote."""

    path: str
    files: list[str]
    source: str
    pooling_mode: str
    embedding_dimension: int
    max_seq_length: int | None
    merged_lora: bool
    card_rendered: bool | None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------------------------
# finding what to export
# ---------------------------------------------------------------------------------------------------------------------
def _checkpoints(folder: Path) -> list[Path]:
    found = [p for p in folder.iterdir() if p.is_dir() and _CHECKPOINT_DIR.match(p.name)]
    return sorted(found, key=lambda p: int(p.name.rsplit("-", 1)[1]))


def _is_model_folder(folder: Path) -> bool:
    return (folder / "modules.json").is_file()


def resolve_model_folder(path: str | os.PathLike[str], checkpoint: str = "auto") -> Path:
    """The model folder to export from a training output folder (or a model folder itself).

    ``checkpoint``: ``"auto"`` takes the model the trainer saved at the end (``output_dir`` itself, which is the
    best checkpoint when ``load_best_model_at_end`` is on), else the best checkpoint; ``"best"`` the best checkpoint
    recorded in the newest ``trainer_state.json``; ``"last"`` the newest ``checkpoint-N``; anything else is a path.
    """
    folder = Path(path)
    if checkpoint not in ("auto", "best", "last"):
        folder = Path(checkpoint)
        if not _is_model_folder(folder):
            raise ExportError(f"{str(folder)!r} is not a SentenceTransformer folder (modules.json is missing)")
        return folder
    if not folder.is_dir():
        raise ExportError(f"{str(folder)!r} does not exist (expected a training output folder or a model folder)")
    checkpoints = _checkpoints(folder)
    if checkpoint == "auto" and _is_model_folder(folder):
        return folder
    if checkpoint in ("auto", "best"):
        for candidate in reversed(checkpoints):
            state_file = candidate / "trainer_state.json"
            if state_file.is_file():
                best = json.loads(state_file.read_text(encoding="utf-8")).get("best_model_checkpoint")
                if best:
                    best_path = Path(best) if Path(best).is_dir() else folder / Path(best).name
                    if _is_model_folder(best_path):
                        return best_path
                    raise ExportError(f"the best checkpoint {best!r} recorded in {str(state_file)!r} is gone")
        if checkpoint == "best":
            raise ExportError(f"no best checkpoint is recorded in {str(folder)!r} (was evaluation on?)")
    if checkpoints and _is_model_folder(checkpoints[-1]):
        return checkpoints[-1]
    raise ExportError(
        f"{str(folder)!r} holds no model: neither modules.json nor a checkpoint-N folder (was the run saved?)"
    )


def load_student(path: str | os.PathLike[str], device: str = "cpu"):
    """Load a saved student for export (no remote code; LoRA checkpoints of dalr_hf are already merged)."""
    from sentence_transformers import SentenceTransformer

    folder = Path(path)
    if (folder / "adapter_config.json").is_file():
        raise ExportError(
            f"{str(folder)!r} is an adapter-only peft folder; dalr_hf saves LoRA runs with merged weights. Merge the "
            "adapter into its base model first (peft's merge_and_unload) and export the result"
        )
    if not _weights_have_pooler(folder):
        # Saved by build_student's backbone (no NSP pooler): load it the same way instead of adding a random pooler.
        try:
            return SentenceTransformer(
                str(folder), device=device, trust_remote_code=False, model_kwargs={"add_pooling_layer": False}
            )
        except TypeError:  # architectures without that argument
            pass
    return SentenceTransformer(str(folder), device=device, trust_remote_code=False)


def _weights_have_pooler(folder: Path) -> bool:
    from safetensors import safe_open

    for weights in folder.glob("*.safetensors"):
        with safe_open(str(weights), "pt") as f:
            if any(key.split(".")[0] == "pooler" or ".pooler." in key for key in f.keys()):
                return True
    return False


# ---------------------------------------------------------------------------------------------------------------------
# checking
# ---------------------------------------------------------------------------------------------------------------------
def list_files(folder: str | os.PathLike[str]) -> list[str]:
    """Every file under ``folder``, as sorted POSIX paths relative to it."""
    root = Path(folder)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def check_student_structure(model) -> str:
    """Raise unless ``model`` is Transformer + Pooling from sentence-transformers; returns the pooling mode."""
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    modules = list(model)
    kinds = [type(m).__name__ for m in modules]
    if len(modules) != 2 or not isinstance(modules[0], Transformer) or not isinstance(modules[1], Pooling):
        raise ExportError(
            f"a DALR student is Transformer + Pooling (dalr_hf.student.build_student); this model has {kinds}"
        )
    for module in modules:
        if not type(module).__module__.startswith("sentence_transformers."):
            raise ExportError(f"module {type(module).__name__} is not a sentence-transformers class")
    return str(modules[1].get_config_dict()["pooling_mode"])


def check_export_folder(path: str | os.PathLike[str]) -> list[str]:
    """Check a folder is a publishable student; returns its files. Raises :class:`ExportError` naming the problem.

    Checked: ``modules.json`` lists exactly sentence-transformers' Transformer and Pooling; the backbone's
    ``config.json`` has no ``auto_map`` (no remote code) and there is no Python file; weights are safetensors only;
    no training-only file (heads, optimizer, trainer state, LoRA adapter state, run reports, checkpoints) is present.
    """
    folder = Path(path)
    files = list_files(folder)
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        raise ExportError(f"{str(folder)!r}: modules.json is missing; this is not a SentenceTransformer folder")
    modules = json.loads(modules_file.read_text(encoding="utf-8"))
    types = [m.get("type") for m in modules]
    if types != [TRANSFORMER_TYPE, POOLING_TYPE]:
        raise ExportError(f"{str(folder)!r}: modules.json lists {types}, expected [{TRANSFORMER_TYPE}, {POOLING_TYPE}]")
    transformer_dir = folder / modules[0].get("path", "")
    config_file = transformer_dir / "config.json"
    if not config_file.is_file():
        raise ExportError(f"{str(folder)!r}: the Transformer module's config.json is missing")
    if "auto_map" in json.loads(config_file.read_text(encoding="utf-8")):
        raise ExportError(f"{str(config_file)!r} has an auto_map: loading it would need trust_remote_code")
    pooling_config = folder / modules[1].get("path", "") / "config.json"
    if not pooling_config.is_file():
        raise ExportError(f"{str(folder)!r}: the Pooling module's config.json is missing")
    weights = [f for f in files if f.endswith(".safetensors")]
    if not weights:
        raise ExportError(f"{str(folder)!r}: no safetensors weights")
    bad = [
        f
        for f in files
        if any(fnmatch.fnmatch(Path(f).name, pattern) for pattern in TRAINING_ONLY_PATTERNS)
        or any(_CHECKPOINT_DIR.match(part) for part in Path(f).parts[:-1])
    ]
    if bad:
        raise ExportError(f"{str(folder)!r} holds files that do not belong in a published model: {bad}")
    return files


# ---------------------------------------------------------------------------------------------------------------------
# exporting
# ---------------------------------------------------------------------------------------------------------------------
def _saved_backbone_kwargs(folder: Path) -> dict[str, Any]:
    config = json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))
    return dict(config.get("model_kwargs") or {})


def _prepare_target(export_dir: Path, overwrite: bool) -> None:
    if not export_dir.exists():
        return
    if not export_dir.is_dir():
        raise ExportError(f"{str(export_dir)!r} exists and is not a folder")
    contents = list(export_dir.iterdir())
    if not contents:
        return
    if not overwrite:
        raise ExportError(f"{str(export_dir)!r} is not empty; choose a new folder or pass overwrite=True (--overwrite)")
    if not _is_model_folder(export_dir):
        # Only ever replace a previous export: a wrong path must not cost an unrelated folder.
        raise ExportError(f"{str(export_dir)!r} is not empty and is not a model folder; refusing to replace it")


def export_model(
    model_or_path: Any,
    export_dir: str | os.PathLike[str],
    *,
    card_data: Mapping[str, Any] | None = None,
    model_card: bool = True,
    model_id: str | None = None,
    eval_results: Any = None,
    plot: str | os.PathLike[str] | None = None,
    base_model_id: str | None = None,
    checkpoint: str = "auto",
    overwrite: bool = False,
) -> ExportResult:
    """Write a publishable SentenceTransformer folder for a trained student.

    Args:
        model_or_path: the trained student (in memory; LoRA adapters are merged into the saved weights, the model
            itself is left as it is), or a training output folder / checkpoint / model folder.
        export_dir: the folder to write (created; must be new or empty unless ``overwrite``).
        card_data: card data from :func:`dalr_hf.publish.card.collect.collect_card_data`; when exporting from a
            path, the ``dalr_card_data.json`` of the run (in the folder or its parent) is used if this is None.
        model_card: write ``README.md`` (the DALR card, rendered by sentence-transformers with
            :class:`~dalr_hf.publish.card.render.DALRModelCardData`; a failure to render warns and writes a minimal
            card).
        model_id: the Hub id the card's usage snippet loads.
        eval_results: evaluation results for the card (see
            :func:`dalr_hf.publish.card.results.normalize_eval_results`).
        plot: the run's training-curves PNG, copied beside the card that embeds it (when exporting from a path:
            found beside the card data if None).
        base_model_id: the base model's Hub id for the card's ``base_model``, when the card data has none.
        checkpoint: which model of a training output folder to export (see :func:`resolve_model_folder`).
        overwrite: replace an existing export in ``export_dir``.
    """
    from dalr_hf.curves import PLOT_FILE
    from dalr_hf.lora import has_lora, merged_lora_view
    from dalr_hf.publish.card.collect import find_card_data, load_card_data
    from dalr_hf.publish.card.render import is_dalr_card, retarget_card, write_model_card
    from dalr_hf.student import record_no_pooling_layer

    target = Path(export_dir)
    _prepare_target(target, overwrite)
    kept_card = None
    if isinstance(model_or_path, (str, os.PathLike)):
        source_folder = resolve_model_folder(model_or_path, checkpoint)
        model = load_student(source_folder)
        source = str(source_folder)
        existing = source_folder / "README.md"
        if card_data is None and eval_results is None and base_model_id is None and existing.is_file():
            text = existing.read_text(encoding="utf-8")
            if is_dalr_card(text):
                # an earlier export: keep its card (with the evaluation tables it was given), aimed at model_id
                kept_card = retarget_card(text, model_id)
        if card_data is None and kept_card is None:
            found = find_card_data(source_folder) or find_card_data(model_or_path)
            card_data = load_card_data(found) if found is not None else None
            if plot is None and found is not None and (found.parent / PLOT_FILE).is_file():
                plot = found.parent / PLOT_FILE
        if plot is None and (source_folder / PLOT_FILE).is_file():
            plot = source_folder / PLOT_FILE
    else:
        model = model_or_path
        source = "in-memory model"
    if base_model_id and card_data is not None:
        from dalr_hf.publish.card.base_model import resolve_base_model_id

        card_data = {
            **card_data,
            "base_model": {**card_data["base_model"], "hub_id": resolve_base_model_id(None, base_model_id)},
        }
        card_data["base_model"]["name"] = base_model_id
    pooling = check_student_structure(model)
    merged = has_lora(model)

    # Built in a sibling folder and swapped in only once complete and checked: an error or an interruption at any
    # point leaves a previous export exactly as it was.
    with replace_folder(str(target)) as building:
        staging = Path(building)
        staging.mkdir()
        if merged:
            with merged_lora_view(model):
                model.save(str(staging), create_model_card=False)
        else:
            model.save(str(staging), create_model_card=False)
        # Rebuild the backbone on load exactly as build_student built it (no randomly initialised NSP pooler).
        record_no_pooling_layer(str(staging), model)
        rendered = None
        plot_file = None
        if plot is not None and Path(plot).is_file():
            shutil.copyfile(plot, staging / PLOT_FILE)
            plot_file = PLOT_FILE
        if model_card and kept_card is not None:
            (staging / "README.md").write_text(kept_card, encoding="utf-8")
            rendered = True
        elif model_card:
            rendered = write_model_card(
                model, staging, card_data, model_id=model_id, eval_results=eval_results, plot_file=plot_file
            )
        files = check_export_folder(staging)  # the same files once the folder is swapped in
    result = ExportResult(
        path=str(target),
        files=files,
        source=source,
        pooling_mode=pooling,
        embedding_dimension=int(model.get_embedding_dimension()),
        max_seq_length=int(model.max_seq_length) if model.max_seq_length else None,
        merged_lora=merged,
        card_rendered=rendered,
        extra={"backbone_kwargs": _saved_backbone_kwargs(target)},
    )
    logger.info("exported %s to %s (%d files%s)", source, target, len(files), ", LoRA merged" if merged else "")
    return result


def export_after_training(
    trainer: Any,
    export_dir: str | os.PathLike[str],
    *,
    model_card: bool = True,
    card_inputs: Mapping[str, Any] | None = None,
    eval_results: Any = None,
    model_id: str | None = None,
) -> ExportResult:
    """What the training script does once the model is saved: the run's one card, then the export.

    The card data (:func:`dalr_hf.publish.card.collect.collect_card_data` with ``card_inputs``) goes into the
    trained model's sentence-transformers card data, so ``OUTPUT_DIR/README.md`` is rewritten as the DALR card and
    the export gets the same card (with ``model_id`` in its usage examples). The card data, with what
    sentence-transformers recorded during training, is saved as ``OUTPUT_DIR/dalr_card_data.json`` so that
    ``dalr-hf export`` / ``dalr-hf push`` render the same card later (with evaluation results that arrive after
    training). A problem with the card only warns; an export failure raises (the trained model is saved by then).
    """
    from dalr_hf.curves import PLOT_FILE
    from dalr_hf.publish.card.collect import collect_card_data, save_card_data
    from dalr_hf.publish.card.render import write_model_card

    output_dir = Path(trainer.args.output_dir)
    plot = output_dir / PLOT_FILE
    plot_file = PLOT_FILE if plot.is_file() else None
    card_data = None
    try:
        card_data = collect_card_data(trainer, **dict(card_inputs or {}))
    except Exception as exc:
        logger.warning(
            "model card data could not be collected (%s: %s); the card will be minimal", type(exc).__name__, exc
        )
    if card_data is not None and model_card:
        if write_model_card(trainer.model, output_dir, card_data, eval_results=eval_results, plot_file=plot_file):
            card = trainer.model.model_card_data
            card_data["sentence_transformers"] = card.sentence_transformers_context()
            card._training_start_time = None  # training is over: every later card shows the time recorded now
    if card_data is not None:
        save_card_data(card_data, output_dir)
    return export_model(
        trainer.model,
        export_dir,
        card_data=card_data,
        model_card=model_card,
        model_id=model_id,
        eval_results=eval_results,
        plot=plot if plot_file else None,
        overwrite=True,
    )
