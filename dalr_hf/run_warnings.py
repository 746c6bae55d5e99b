"""Warnings about runs that finished but did not learn: a collapsed selection metric, a diverging or non-finite loss.

``run_warnings`` returns the list written under ``"warnings"`` in ``OUTPUT_DIR/dalr_run_report.json``, printed in the
run's summary and rendered in the model card. The thresholds (``docs/robustness.md``, "Runs that cannot learn"):

* the selection metric (STS-B dev Spearman x100) ends more than ``METRIC_DROP_POINTS`` (10) points below where it
  started, or is not a number: a healthy DALR run moves it by a few points either way; lr 1000 takes it from 90.70
  to 1.01;
* the mean of the last three logged training losses is more than ``LOSS_RISE_FACTOR`` (2) times the mean of the first
  three, or a logged loss is not finite.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

METRIC_DROP_POINTS = 10.0
LOSS_RISE_FACTOR = 2.0


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def run_warnings(
    metric: str,
    before: float | None,
    after: float | None,
    log_history: Sequence[Mapping] = (),
    greater_is_better: bool = True,
) -> list[str]:
    """The loud warnings of a finished run (empty when nothing looks wrong)."""
    out: list[str] = []
    if after is not None and not _finite(after):
        out.append(f"COLLAPSE: {metric} is {after} after training: the trained model produces no usable embeddings")
    elif before is not None and after is not None and _finite(before) and _finite(after):
        drop = (before - after) if greater_is_better else (after - before)
        if drop > METRIC_DROP_POINTS:
            out.append(
                f"COLLAPSE: {metric} fell from {before:.2f} to {after:.2f} ({-drop:+.2f} points; a drop of more than "
                f"{METRIC_DROP_POINTS:g} points is treated as a collapse): the trained model is worse than the one it "
                "started from; lower learning_rate or check the data (docs/robustness.md, 'Runs that cannot learn')"
            )
    losses = [entry["loss"] for entry in log_history if "loss" in entry and "eval_loss" not in entry]
    bad = [value for value in losses if not _finite(value)]
    if bad:
        out.append(f"DIVERGED: {len(bad)} logged training loss value(s) are not finite (first: {bad[0]})")
    elif len(losses) >= 6:
        first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
        if first > 0 and last > LOSS_RISE_FACTOR * first:
            out.append(
                f"DIVERGED: the training loss rose from {first:.4g} (first three logs) to {last:.4g} (last three), "
                f"more than {LOSS_RISE_FACTOR:g}x; lower learning_rate"
            )
    return out
