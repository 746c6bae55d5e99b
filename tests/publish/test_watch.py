"""A run a user can watch: TensorBoard event files, text-step and image-caption-step losses logged apart beside
every term, and a PNG of the curves in the output folder that the card (and the export) embed."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import pytest

from dalr_hf.curves import PLOT_FILE, curves_from_log_history, plot_training_curves


def test_losses_per_step_kind_are_logged_beside_every_term(trained_run):
    logs = [e for e in trained_run.trainer.state.log_history if "loss" in e and "eval_loss" not in e]
    assert len(logs) == 4  # logging_steps=1, 4 steps
    kinds = set()
    for entry in logs:
        # one step per log: the total is exactly the loss of that step's kind, and the terms add up to it
        kind = "loss_paired" if "loss_paired" in entry else "loss_text"
        assert ("loss_paired" in entry) != ("loss_text" in entry)
        kinds.add(kind)
        assert entry[kind] == pytest.approx(entry["loss"], rel=1e-3)
        terms = sum(v for k, v in entry.items() if k.startswith("L_"))
        assert terms == pytest.approx(entry[kind], rel=1e-3)
        if kind == "loss_text":
            assert not any(k.startswith("L_") and k != "L_info" for k in entry)
        else:
            assert {"L_info", "L_ground", "L_cons", "L_rank"} <= set(entry)
    assert kinds == {"loss_text", "loss_paired"}


def test_tensorboard_event_files_and_curves_png(trained_run):
    events = list((trained_run.output_dir / "runs").rglob("events.out.tfevents.*"))
    assert events and all(f.stat().st_size > 0 for f in events)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(events[0].parent))
    accumulator.Reload()
    scalars = set(accumulator.Tags()["scalars"])
    assert {"train/loss", "train/loss_text", "train/loss_paired", "train/L_info", "train/L_rank"} <= scalars
    assert any(tag.startswith("eval/") for tag in scalars)

    png = trained_run.output_dir / PLOT_FILE
    image = matplotlib.image.imread(str(png))
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 400
    assert image[..., :3].std() > 0.01  # something is drawn
    # the card of the run and of the export embed it, and the export carries the file
    for folder in (trained_run.output_dir, trained_run.export_dir):
        assert f"]({PLOT_FILE})" in (folder / "README.md").read_text()
    assert (trained_run.export_dir / PLOT_FILE).read_bytes() == png.read_bytes()


def test_curves_cover_every_term_and_the_evaluation(trained_run, tmp_path):
    curves = curves_from_log_history(trained_run.trainer.state.log_history)
    assert {"loss", "loss_text", "loss_paired", "L_info", "L_ground", "L_cma", "L_cons", "L_ima", "L_rank"} <= set(
        curves
    )
    assert [step for step, _ in curves["eval_stsb_spearman"]] == [2, 4]
    assert "learning_rate" not in curves and "paired_step_fraction" not in curves
    assert plot_training_curves([], tmp_path / "none.png") is False and not Path(tmp_path / "none.png").exists()
