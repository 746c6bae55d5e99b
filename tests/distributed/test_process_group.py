"""Every way out of a training run closes the process group, so no process aborts at exit after its work is done.

A gloo process that exits with its group alive can die with SIGABRT in the C++ teardown ("terminate called without
an active exception"); ``accelerate launch`` then fails the whole run. It depends on timing, so these tests check the
cause (the group is closed on the way out), not the symptom.
"""

from __future__ import annotations

import json

import pytest
import torch.distributed as dist
import yaml

from dalr_hf.distributed import close_process_group
from dalr_hf.scripts.train import main as train_main
from tests.distributed.test_multiprocess_and_resume import LAUNCH, _run
from tests.recipe_fixtures import stand_in_recipe, write_inputs

CLOSING = """
import json, sys
import torch, torch.distributed as dist
from accelerate import PartialState
from dalr_hf.distributed import close_process_group

state = PartialState(cpu=True)
parts = [torch.zeros(1) for _ in range(state.num_processes)]
dist.all_gather(parts, torch.tensor([float(state.process_index)]))
close_process_group()
with open(f"{sys.argv[1]}.rank{state.process_index}.json", "w") as f:
    json.dump({"gathered": [p.item() for p in parts], "open_after": dist.is_initialized()}, f)
"""


@pytest.fixture()
def one_process_group(tmp_path):
    """A real gloo group of one member, as a launcher would leave it (``dist.is_initialized()`` is true)."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_launched_processes_close_their_group_and_exit_cleanly(tmp_path):
    script = tmp_path / "closing.py"
    script.write_text(CLOSING, encoding="utf-8")
    _run([*LAUNCH, str(script), str(tmp_path / "out")])
    for rank in (0, 1):
        seen = json.loads((tmp_path / f"out.rank{rank}.json").read_text())
        assert seen == {"gathered": [0.0, 1.0], "open_after": False}


def test_closing_without_a_group_does_nothing():
    assert not dist.is_initialized()
    close_process_group()
    close_process_group(wait=False)
    assert not dist.is_initialized()


def test_a_finished_recipe_closes_the_group(tmp_path, tiny_bert_dir, tiny_teacher_dir, one_process_group):
    config = stand_in_recipe(
        tiny_bert_dir,
        tiny_teacher_dir,
        write_inputs(tmp_path),
        tmp_path / "out",
        max_steps=2,
        eval_steps=2,
        sts_test=False,
        export_dir="none",
    )
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert dist.is_initialized()
    report = train_main(["--config", str(path)])
    assert report["comparison"]["dev"]["metric"] == "eval_stsb_spearman"
    assert not dist.is_initialized()


@pytest.mark.parametrize("argv", [["--config", "no-such-recipe.yaml"], ["--help"]])
def test_a_recipe_that_stops_early_closes_the_group_too(argv, one_process_group):
    assert dist.is_initialized()
    with pytest.raises(SystemExit):
        train_main(argv)
    assert not dist.is_initialized()
