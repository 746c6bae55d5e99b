"""Training curves a user can look at: one PNG of every loss term and of the evaluation score, written at the end
of a run into the output folder (and shown in the model card).

:class:`TrainingCurvesCallback` reads the Trainer's own ``state.log_history`` when training ends, so it sees exactly
what was logged (and sent to TensorBoard with ``report_to: tensorboard``): each weighted DALR term (``L_info``,
``L_ground``, ...), the loss of text-only steps and of image–caption steps (``loss_text``, ``loss_paired``) and
the total ``loss``, and every ``eval_*`` score. The PNG needs matplotlib (the ``watch`` extra); without it the
callback logs a warning once and writes nothing.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from transformers import TrainerCallback

logger = logging.getLogger(__name__)

PLOT_FILE = "dalr_training_curves.png"
# logged values that are not curves worth a panel
_NOT_CURVES = {"epoch", "step", "learning_rate", "grad_norm", "paired_step_fraction", "total_flos"}


def curves_from_log_history(log_history: Sequence[Mapping[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """``{name: [(step, value), ...]}`` for every numeric training and evaluation value of a Trainer's log."""
    curves: dict[str, list[tuple[int, float]]] = {}
    for entry in log_history:
        step = entry.get("step")
        if not isinstance(step, int):
            continue
        for name, value in entry.items():
            if name in _NOT_CURVES or name.startswith("train_") or name.endswith(("_runtime", "_per_second")):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
                continue
            curves.setdefault(name, []).append((step, float(value)))
    return curves


def plot_training_curves(log_history: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> bool:
    """Write the PNG of a Trainer's ``log_history`` to ``path``; False (and nothing written) when nothing was logged.

    Panels: the step losses (total, text steps, image–caption steps), one per weighted loss term, and one with the
    evaluation scores.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = curves_from_log_history(log_history)
    if not curves:
        return False
    evaluation = {n: c for n, c in curves.items() if n.startswith("eval_") and not n.endswith("_loss")}
    steps: dict[str, list[tuple[int, float]]] = {
        n: curves[n] for n in ("loss", "loss_text", "loss_paired") if n in curves
    }
    terms = {n: c for n, c in curves.items() if n.startswith("L_")}
    panels: list[tuple[str, dict[str, list[tuple[int, float]]]]] = []
    if steps:
        panels.append(("loss per step kind", steps))
    panels += [(f"{name} (weighted)", {name: curve}) for name, curve in sorted(terms.items())]
    if evaluation:
        panels.append(("evaluation", evaluation))
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.4 * rows), squeeze=False)
    for ax, (title, series) in zip(axes.flat, panels):
        for name, curve in series.items():
            xs, ys = zip(*curve)
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=name)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        if len(series) > 1 or title == "evaluation":
            ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(str(path), dpi=100)
    plt.close(fig)
    return True


class TrainingCurvesCallback(TrainerCallback):
    """At the end of training, write ``OUTPUT_DIR/dalr_training_curves.png`` (main process only)."""

    def on_train_end(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            logger.warning("matplotlib is not installed: no training-curves PNG (pip install 'dalr-hf[watch]')")
            return
        os.makedirs(args.output_dir, exist_ok=True)
        path = os.path.join(args.output_dir, PLOT_FILE)
        if plot_training_curves(state.log_history, path):
            logger.info("training curves: %s", path)
