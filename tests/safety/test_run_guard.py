"""One run per output folder (lock, no silent reuse, run identity on resume) and folders replaced atomically."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time

import pytest

from dalr_hf.checkpoints import CheckpointError
from dalr_hf.run_guard import LOCK_FILE, RUN_FILE, OutputDirInUse, OutputDirLock, read_run_id
from dalr_hf.scripts.train import main as train_main
from tests.features.feature_helpers import kdmcse_entries
from tests.safety.conftest import Tripwire


def _hold_lock(folder):
    code = (
        "import sys, time\nfrom dalr_hf.run_guard import OutputDirLock\n"
        f"OutputDirLock({str(folder)!r}).acquire()\nprint('held', flush=True)\ntime.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_into_a_held_output_dir_is_refused_naming_the_holder(recipe, no_model_loading):
    out = recipe.output_dir
    holder = _hold_lock(out)
    try:
        with pytest.raises(SystemExit) as info:
            train_main(recipe())
        message = str(info.value.code)
        assert f"output_dir {out} is in use by another run (pid {holder.pid} on host {socket.gethostname()}" in message
        assert "started 20" in message
        assert os.listdir(out) == [LOCK_FILE]  # the refused run wrote nothing
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing: its lock is reported as stale, never taken over silently
    with pytest.raises(SystemExit) as info:
        train_main(recipe())
    message = str(info.value.code)
    assert "stale lock" in message and f"pid {holder.pid}" in message and f"delete {out / LOCK_FILE}" in message
    assert (out / LOCK_FILE).exists()
    os.unlink(out / LOCK_FILE)  # what the message tells the user to do
    with pytest.raises(Tripwire):  # now the run gets as far as loading the student
        train_main(recipe())
    assert not (out / LOCK_FILE).exists()  # released when the run ended (here: with an error)


def test_the_lock_is_exclusive_within_one_process_too(tmp_path):
    with OutputDirLock(str(tmp_path)):
        with pytest.raises(OutputDirInUse, match=f"pid {os.getpid()}"):
            OutputDirLock(str(tmp_path)).acquire()
    assert not (tmp_path / LOCK_FILE).exists()
    OutputDirLock(str(tmp_path)).acquire().release()


def test_a_lock_left_by_a_dead_process_is_stale(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": "then"}))
    with pytest.raises(OutputDirInUse, match=rf"stale lock .*\(pid {pid} on host"):
        OutputDirLock(str(tmp_path)).acquire()


def test_a_fresh_run_in_a_used_folder_is_refused_unless_overwrite(recipe, no_model_loading):
    out = recipe.output_dir
    # a run that failed before its first checkpoint left only its run files: nothing to lose, a new run may start
    out.mkdir(parents=True)
    (out / RUN_FILE).write_text(json.dumps({"run_id": "failed-start"}))
    (out / "dalr_schedule.json").write_text("{}")
    with pytest.raises(Tripwire):
        train_main(recipe())
    assert read_run_id(str(out)) not in (None, "failed-start")
    (out / "checkpoint-12").mkdir(parents=True)
    (out / "checkpoint-12" / "model.safetensors").write_bytes(b"old run")
    (out / "model.safetensors").write_bytes(b"old final model")
    with pytest.raises(SystemExit, match="holds an earlier run .*checkpoint-12.*--overwrite_output_dir"):
        train_main(recipe(max_steps=4))
    assert (out / "model.safetensors").read_bytes() == b"old final model"
    with pytest.raises(Tripwire):
        train_main(recipe(max_steps=4, overwrite_output_dir=True))
    assert not (out / "checkpoint-12").exists() and not (out / "model.safetensors").exists()
    assert read_run_id(str(out)) is not None


def _flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_resume_checks_run_and_position_and_skips_a_corrupt_newest_checkpoint(recipe, caplog):
    out = recipe.output_dir
    report = train_main(recipe())  # 4 steps, checkpoints at 2 and 4, stand-in features built
    assert report["warnings"] == [] or all(isinstance(w, str) for w in report["warnings"])
    run_id = read_run_id(str(out))
    assert json.loads((out / "checkpoint-4" / "dalr_checkpoint.json").read_text())["identity"]["run_id"] == run_id
    features = out / "stand_in_features" / "dalr_features.json"
    built = features.stat().st_mtime_ns

    with pytest.raises(SystemExit, match="holds an earlier run"):  # rerunning the recipe fresh
        train_main(recipe())
    with pytest.raises(CheckpointError, match="end of this run's schedule"):  # the run has finished
        train_main(recipe() + ["--resume_from_checkpoint", "last"])

    # a same-size corruption of the newest checkpoint: resume falls back to checkpoint-2 with a warning
    _flip_a_byte(out / "checkpoint-4" / "model.safetensors")
    with caplog.at_level(logging.WARNING):
        resumed = train_main(recipe() + ["--resume_from_checkpoint", "last"])
    assert "not resuming from checkpoint-4" in caplog.text and "does not match its SHA-256" in caplog.text
    assert "reusing the STAND-IN image features" in caplog.text
    assert features.stat().st_mtime_ns == built
    assert resumed["schedule"] == report["schedule"] and read_run_id(str(out)) == run_id

    # the folder now belongs to another run: this run's checkpoints are not resumed into it
    (out / RUN_FILE).write_text(json.dumps({"run_id": "another-run"}))
    with pytest.raises(CheckpointError, match="run_id: this run has 'another-run'"):
        train_main(recipe() + ["--resume_from_checkpoint", str(out / "checkpoint-2")])


def test_a_non_main_process_writes_nothing_when_saving(tiny_bert_dir, tmp_path):
    """transformers 5 calls _save on every process; only the main one may write (the README.md race)."""
    from dalr_hf import DALRTrainer, DALRTrainingArguments, build_student
    from tests.tiny_fixtures import tiny_data

    class OtherRank(DALRTrainingArguments):
        @property
        def should_save(self):
            return False

    text, _ = tiny_data()
    args = OtherRank(
        output_dir=str(tmp_path / "out"),
        eval_strategy="no",
        report_to="none",
        use_cpu=True,
        per_device_train_batch_size=4,
        max_steps=1,
    )
    trainer = DALRTrainer(build_student(tiny_bert_dir), args, text_dataset=text)
    trainer._save(str(tmp_path / "checkpoint-1"))
    assert not (tmp_path / "checkpoint-1").exists()


def test_import_kdmcse_overwrite_with_a_bad_file_keeps_the_good_store(tmp_path):
    from dalr_hf.cli import main
    from dalr_hf.features import load_feature_store

    good = kdmcse_entries()
    (tmp_path / "good.json").write_text(json.dumps(good))
    bad = dict(good, k9={"image": "9.jpg", "image_feat": [1.0, 2.0], "captions": ["x"], "lang_feat": [[1.0, 2.0]]})
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    store = tmp_path / "store"
    assert main(["import-kdmcse", "--json", str(tmp_path / "good.json"), "--output", str(store), "--no-progress"]) == 0
    before = {p.name: p.read_bytes() for p in store.iterdir() if p.is_file()}
    with pytest.raises(SystemExit, match="error: "):
        main(
            [
                "import-kdmcse",
                "--json",
                str(tmp_path / "bad.json"),
                "--output",
                str(store),
                "--overwrite",
                "--no-progress",
            ]
        )
    assert {p.name: p.read_bytes() for p in store.iterdir() if p.is_file()} == before
    assert len(load_feature_store(store)[0]) == 6
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folder left
    # a good replacement does replace it
    (tmp_path / "two.json").write_text(json.dumps({k: good[k] for k in ("k0", "k1")}))
    main(
        ["import-kdmcse", "--json", str(tmp_path / "two.json"), "--output", str(store), "--overwrite", "--no-progress"]
    )
    assert len(load_feature_store(store)[0]) == 4
    time.sleep(0)
