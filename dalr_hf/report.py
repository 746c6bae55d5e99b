"""The run report: the trained student against its base model *as shipped*.

The base as shipped is the base model loaded the way its users load it, ``SentenceTransformer(path)``: its own
pooling and ``max_seq_length``. When training starts from a different configuration of it (re-pooled, e.g. to the
CLS state, or cut to a shorter length), that starting point is named separately: it is not the model anyone ships,
and a gain over it is not a gain over the base.

After training, the STS test suite (STS12-16, STS-B test, SICK-R test; Spearman x 100 of cosine similarities) is run
on both models, and the report says in plain words whether the student ends above or below its base on the test
average. The STS-B dev figures are given for reference only (they selected the checkpoint).

The report is the ``comparison`` block of ``OUTPUT_DIR/dalr_run_report.json`` (see :func:`build_comparison`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

#: The 7 STS test sets, in the papers' order.
STS_TEST_TASKS = ("STS12", "STS13", "STS14", "STS15", "STS16", "STSBenchmark", "SICKRelatedness")
DEV_METRIC = "eval_stsb_spearman"


def model_settings(model: SentenceTransformer) -> dict:
    """``{"pooling": str, "max_seq_length": int}`` of a SentenceTransformer (pooling "none" without a Pooling)."""
    pooling = "none"
    for module in model:
        describe = getattr(module, "get_pooling_mode_str", None)
        if callable(describe):
            pooling = str(describe())
            break
        mode = getattr(module, "pooling_mode", None)
        if isinstance(mode, str):
            pooling = mode
            break
    return {"pooling": pooling, "max_seq_length": int(model.max_seq_length or 0)}


def load_base_as_shipped(path: str, device: str | None = None) -> SentenceTransformer:
    """The base model exactly as its users load it: ``SentenceTransformer(path)``."""
    return SentenceTransformer(path, device=device)


def _metric(metrics: Mapping[str, float], key: str) -> float:
    for name in (key, f"eval_{key}"):
        if name in metrics:
            return float(metrics[name])
    raise KeyError(f"metric {key!r} missing from the evaluation results {sorted(metrics)}")


def sts_test_scores(
    model: SentenceTransformer, tasks: Sequence[str] = STS_TEST_TASKS, data_dir: str | None = None
) -> dict[str, float]:
    """Spearman x 100 per STS test set (keys: the task names) for ``model``."""
    from dalr_hf.evaluation import SentEvalEvaluator
    from dalr_hf.evaluation.evaluator import METRIC_KEYS

    unknown = [t for t in tasks if t not in STS_TEST_TASKS]
    if unknown:
        raise ValueError(f"sts_test_tasks {unknown} are not STS test sets; expected a subset of {STS_TEST_TASKS}")
    metrics = SentEvalEvaluator(tasks=tuple(tasks), data_dir=data_dir, name="")(model)
    return {task: _metric(metrics, METRIC_KEYS[task]) for task in tasks}


def _average(scores: Mapping[str, float]) -> float:
    return sum(scores.values()) / len(scores)


def build_comparison(
    base_model: str,
    base_settings: Mapping,
    student_settings: Mapping,
    dev_base: float,
    dev_student: float,
    repooled_start: Mapping | None = None,
    test_base: Mapping[str, float] | None = None,
    test_student: Mapping[str, float] | None = None,
) -> dict:
    """The ``comparison`` block of the run report.

    ``improved`` compares the STS test averages (student vs base as shipped); when the test suite was skipped it
    falls back to STS-B dev, and ``improved_on`` says which one was used.
    """
    comparison: dict = {
        "base_model": str(base_model),
        "base_as_shipped": {
            "pooling": base_settings["pooling"],
            "max_seq_length": int(base_settings["max_seq_length"]),
        },
        "student": {"pooling": student_settings["pooling"], "max_seq_length": int(student_settings["max_seq_length"])},
        "repooled_start": dict(repooled_start) if repooled_start is not None else None,
        "dev": {"metric": DEV_METRIC, "base": float(dev_base), "student": float(dev_student)},
    }
    if test_base is not None and test_student is not None:
        if list(test_base) != list(test_student):
            raise ValueError(f"test sets differ: base {list(test_base)} vs student {list(test_student)}")
        test = {
            task: {
                "base": float(test_base[task]),
                "student": float(test_student[task]),
                "delta": float(test_student[task]) - float(test_base[task]),
            }
            for task in test_base
        }
        base_avg, student_avg = _average(test_base), _average(test_student)
        test["avg"] = {"base": base_avg, "student": student_avg, "delta": student_avg - base_avg}
        comparison["test"] = test
        below = [t for t in test_base if test[t]["delta"] < 0]
        improved = student_avg > base_avg
        what = f"the STS test average ({len(test_base)} set{'s' if len(test_base) != 1 else ''})"
        verdict = (
            f"The trained student is {'ABOVE' if improved else 'BELOW'} its base model as shipped on {what}: "
            f"{student_avg:.2f} vs {base_avg:.2f} ({student_avg - base_avg:+.2f}); below the base on "
            f"{len(below)} of {len(test_base)} sets{' (' + ', '.join(below) + ')' if below else ''}."
        )
        if not improved:
            verdict += " Training made this model worse than the one it started from; prefer the base model."
        comparison["improved_on"] = "sts_test_avg"
    else:
        improved = dev_student > dev_base
        verdict = (
            f"The STS test suite was skipped, so whether the student beats its base is not known. On STS-B dev "
            f"only (which also selected the checkpoint, so it flatters the student) it is "
            f"{'above' if improved else 'BELOW'} its base as shipped: {dev_student:.2f} vs {dev_base:.2f}."
        )
        comparison["test"] = None
        comparison["test_skipped"] = True
        comparison["improved_on"] = "stsb_dev"
    comparison["improved"] = bool(improved)
    comparison["verdict"] = verdict
    return comparison


def format_comparison(comparison: Mapping) -> str:
    """The printed summary: settings, per-task scores side by side with deltas, and the verdict."""
    base, student, start = comparison["base_as_shipped"], comparison["student"], comparison.get("repooled_start")
    lines = [
        f"Base as shipped: {comparison['base_model']} (pooling {base['pooling']}, max_seq_length "
        f"{base['max_seq_length']}); trained student: pooling {student['pooling']}, max_seq_length "
        f"{student['max_seq_length']}."
    ]
    if start is not None:
        lines.append(
            f"Training started from a RE-CONFIGURED copy of the base (pooling {start['pooling']}, max_seq_length "
            f"{start['max_seq_length']}; STS-B dev {start['dev']:.2f}), not from the base as shipped; the figures "
            "below compare with the base as shipped."
        )
    test = comparison.get("test")
    if test:
        lines.append(f"{'STS test (Spearman x100)':<26}{'base':>8}{'student':>9}{'delta':>8}")
        for task, row in test.items():
            name = "Avg." if task == "avg" else task
            lines.append(f"{name:<26}{row['base']:>8.2f}{row['student']:>9.2f}{row['delta']:>+8.2f}")
    dev = comparison["dev"]
    lines.append(f"STS-B dev (selection set, for reference): base {dev['base']:.2f}, student {dev['student']:.2f}")
    lines.append(comparison["verdict"])
    return "\n".join(lines)
