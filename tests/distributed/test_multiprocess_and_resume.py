"""Real multi-process runs (``accelerate launch``, gloo on CPU) and real crashes (SIGKILL, a full disk)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from dalr_hf.checkpoints import MANIFEST_FILE, CheckpointError, last_complete_checkpoint, verify_checkpoint
from tests.recipe_fixtures import stand_in_recipe, write_inputs

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
# The documented two-process CPU configuration (gloo): the tests launch exactly what users are told to.
LAUNCH = [
    sys.executable,
    "-m",
    "accelerate.commands.launch",
    "--config_file",
    os.path.join(ROOT, "examples", "accelerate_configs", "two_process_cpu.yaml"),
]


def _env():
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = HERE + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(cmd, timeout=600, check=True):
    if cmd[: len(LAUNCH)] == LAUNCH:  # a fresh rendezvous port per launch: runs never collide on 29500
        cmd = [*LAUNCH, "--main_process_port", str(_free_port()), *cmd[len(LAUNCH) :]]
    result = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


def _tiny(tiny_bert_dir, tiny_teacher_dir, output_dir, *extra):
    return [
        os.path.join(HERE, "tiny_run.py"),
        "--student",
        tiny_bert_dir,
        "--teacher",
        tiny_teacher_dir,
        "--output_dir",
        str(output_dir),
        *extra,
    ]


@pytest.mark.slow
def test_gathered_two_process_step_equals_one_process_with_the_global_batch(tmp_path, tiny_bert_dir, tiny_teacher_dir):
    script = [os.path.join(HERE, "gather_step.py"), "--student", tiny_bert_dir, "--teacher", tiny_teacher_dir]
    _run([sys.executable, *script, "--out", str(tmp_path / "one.pt")])
    _run([*LAUNCH, *script, "--out", str(tmp_path / "two.pt"), "--gather"])
    _run([*LAUNCH, *script, "--out", str(tmp_path / "two_local.pt")])
    one, two, local = (torch.load(tmp_path / f) for f in ("one.pt", "two.pt", "two_local.pt"))
    assert (one["world"], two["world"], local["world"]) == (1, 2, 2)
    assert set(one["terms"]) == {"L_info", "L_ground", "L_cons", "L_cma", "L_ima", "L_rank", "L_g2l"}
    for name, value in one["terms"].items():
        assert two["terms"][name] == pytest.approx(value, rel=1e-5, abs=1e-7), name
    assert set(one["grads"]) == set(two["grads"])
    assert any(k.startswith("model.") for k in one["grads"]) and any(k.startswith("mlp.") for k in one["grads"])
    for name, grad in one["grads"].items():
        torch.testing.assert_close(two["grads"][name], grad, rtol=1e-4, atol=1e-5, msg=name)
    # Without gathering each process only sees its half of the batch: the losses and gradients differ.
    assert local["terms"]["L_info"] != pytest.approx(one["terms"]["L_info"], rel=1e-3)
    worst = max((local["grads"][k] - g).abs().max().item() for k, g in one["grads"].items())
    assert worst > 1e-2


@pytest.mark.slow
def test_trainer_under_two_processes_follows_one_schedule(tmp_path, tiny_bert_dir, tiny_teacher_dir):
    report = tmp_path / "report.pt"
    _run(
        [
            *LAUNCH,
            *_tiny(
                tiny_bert_dir,
                tiny_teacher_dir,
                tmp_path / "out",
                "--gather",
                "--max_steps",
                "6",
                "--save_steps",
                "3",
                "--batch_size",
                "4",
                "--report",
                str(report),
            ),
        ]
    )
    ranks = [json.loads((tmp_path / f"report.pt.rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world_size"] == ranks[1]["world_size"] == 2
    assert ranks[0]["kinds_seen"] == ranks[1]["kinds_seen"] and "paired" in ranks[0]["kinds_seen"]
    logged = {k for entry in torch.load(report)["log"] for k in entry}
    assert {"L_info", "L_ground", "L_cma", "L_rank", "L_g2l"} <= logged
    # every checkpoint verifies with its hashes: no process rewrites a file (README.md, ...) after the manifest
    for step in (3, 6):
        verify_checkpoint(str(tmp_path / "out" / f"checkpoint-{step}"))


def _final_state(path):
    data = torch.load(path)
    return data["student"], data["heads"]


@pytest.mark.slow
def test_sigkill_then_resume_reaches_the_uninterrupted_weights(tmp_path, tiny_bert_dir, tiny_teacher_dir):
    steps = ["--max_steps", "12", "--save_steps", "3"]
    _run(
        [
            sys.executable,
            *_tiny(
                tiny_bert_dir,
                tiny_teacher_dir,
                tmp_path / "straight",
                *steps,
                "--report",
                str(tmp_path / "straight.pt"),
            ),
        ]
    )

    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, *_tiny(tiny_bert_dir, tiny_teacher_dir, out, *steps)],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while not (out / "checkpoint-6" / MANIFEST_FILE).exists():
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "checkpoint-12").exists()  # killed mid-way

    _run(
        [
            sys.executable,
            *_tiny(
                tiny_bert_dir,
                tiny_teacher_dir,
                out,
                *steps,
                "--resume",
                "last",
                "--report",
                str(tmp_path / "resumed.pt"),
            ),
        ]
    )
    straight_student, straight_heads = _final_state(tmp_path / "straight.pt")
    resumed_student, resumed_heads = _final_state(tmp_path / "resumed.pt")
    assert set(straight_student) == set(resumed_student) and set(straight_heads) == set(resumed_heads)
    for name, value in {**straight_student, **straight_heads}.items():
        other = resumed_student.get(name, resumed_heads.get(name))
        torch.testing.assert_close(other, value, rtol=1e-5, atol=1e-6, msg=name)


def test_damaged_foreign_and_interrupted_checkpoints_are_refused(tmp_path, tiny_bert_dir, tiny_teacher_dir):
    from tests.distributed.tiny_run import build_trainer

    out = tmp_path / "run"
    _run([sys.executable, *_tiny(tiny_bert_dir, tiny_teacher_dir, out, "--max_steps", "4", "--save_steps", "2")])
    good = out / "checkpoint-2"
    verify_checkpoint(str(good))

    truncated = tmp_path / "truncated"
    shutil.copytree(good, truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    trainer = build_trainer(tiny_bert_dir, tiny_teacher_dir, str(tmp_path / "new"), max_steps=4)
    with pytest.raises(CheckpointError, match="truncated or altered: model.safetensors has 1000 bytes"):
        trainer.train(resume_from_checkpoint=str(truncated))

    foreign = build_trainer(tiny_bert_dir, tiny_teacher_dir, str(tmp_path / "other"), max_steps=4, preset="paper")
    with pytest.raises(CheckpointError, match="another configuration(.|\n)*arc_margin_text"):
        foreign.train(resume_from_checkpoint=str(good))

    (out / "checkpoint-4" / MANIFEST_FILE).unlink()  # as if the process died while saving it
    with pytest.raises(CheckpointError, match="incomplete"):
        verify_checkpoint(str(out / "checkpoint-4"))
    assert last_complete_checkpoint(str(out)) == str(good)


def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path, tiny_bert_dir, tiny_teacher_dir):
    out = tmp_path / "run"
    _run([sys.executable, *_tiny(tiny_bert_dir, tiny_teacher_dir, out, "--max_steps", "2", "--save_steps", "2")])
    before = verify_checkpoint(str(out / "checkpoint-2"))
    # Resume with a file-size limit far below the model's size: writing checkpoint-4 fails part-way.
    failed = _run(
        [
            sys.executable,
            *_tiny(
                tiny_bert_dir,
                tiny_teacher_dir,
                out,
                "--max_steps",
                "4",
                "--save_steps",
                "2",
                "--resume",
                "last",
                "--fsize_limit",
                str(256 * 1024),
            ),
        ],
        check=False,
    )
    assert failed.returncode != 0 and "File too large" in failed.stderr
    assert (out / "checkpoint-4").is_dir()  # the interrupted save left a partial folder...
    with pytest.raises(CheckpointError, match="incomplete"):
        verify_checkpoint(str(out / "checkpoint-4"))
    after = verify_checkpoint(str(out / "checkpoint-2"))  # ...and the previous checkpoint is intact
    assert after["files"] == before["files"]
    assert last_complete_checkpoint(str(out)) == str(out / "checkpoint-2")
    # and training resumes from it once there is room again
    _run(
        [
            sys.executable,
            *_tiny(tiny_bert_dir, tiny_teacher_dir, out, "--max_steps", "4", "--save_steps", "2", "--resume", "last"),
        ]
    )
    verify_checkpoint(str(out / "checkpoint-4"))


def test_every_accelerate_config_parses():
    from accelerate.commands.config.config_args import load_config_from_file

    folder = os.path.join(ROOT, "examples", "accelerate_configs")
    configs = {
        name: load_config_from_file(os.path.join(folder, name))
        for name in sorted(os.listdir(folder))
        if name.endswith(".yaml")
    }
    kinds = {name: str(c.distributed_type) for name, c in configs.items()}
    assert set(kinds) == {
        "single_gpu.yaml",
        "multi_gpu.yaml",
        "fsdp.yaml",
        "deepspeed_zero2.yaml",
        "two_process_cpu.yaml",
    }
    assert "FSDP" in kinds["fsdp.yaml"] and "DEEPSPEED" in kinds["deepspeed_zero2.yaml"]
    assert configs["deepspeed_zero2.yaml"].deepspeed_config["zero_stage"] == 2
    assert configs["two_process_cpu.yaml"].num_processes == 2


@pytest.mark.slow
def test_the_recipe_under_two_processes_holds_one_lock_and_builds_the_stand_in_store_once(
    tmp_path, tiny_bert_dir, tiny_teacher_dir
):
    import yaml

    out = tmp_path / "out"
    inputs = write_inputs(tmp_path, corpus_lines=32, caption_lines=16)
    recipe = stand_in_recipe(tiny_bert_dir, tiny_teacher_dir, inputs, out, per_device_train_batch_size=2)
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    result = _run([*LAUNCH, os.path.join(ROOT, "examples", "train_dalr.py"), "--config", str(tmp_path / "recipe.yaml")])
    assert result.stderr.count("built STAND-IN image features") == 1  # the main process built it, rank 1 reused it
    assert "reusing the STAND-IN image features" in result.stderr
    assert not (out / "dalr_run.lock").exists()  # released at the end
    for step in (2, 4):
        verify_checkpoint(str(out / f"checkpoint-{step}"))
    # a second launch into the same folder is refused by the main process; the other one does not hang
    again = _run(
        [*LAUNCH, os.path.join(ROOT, "examples", "train_dalr.py"), "--config", str(tmp_path / "recipe.yaml")],
        timeout=300,
        check=False,
    )
    assert again.returncode != 0 and "holds an earlier run" in again.stderr
