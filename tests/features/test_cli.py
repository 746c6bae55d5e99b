"""The extract-features, import-kdmcse and cache-teachers commands."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dalr_hf.features import attach_teacher_cache, load_feature_store, load_teacher_cache, save_feature_store
from dalr_hf.features.cli import main, register
from dalr_hf.teachers import TeacherEnsemble
from tests.features.feature_helpers import (
    IMAGES,
    SMALLEST_BUILTIN_CLIP,
    kdmcse_entries,
    write_images,
    write_karpathy,
)

REPO = Path(__file__).resolve().parents[2]


def test_extract_features_with_a_builtin_open_clip_model(tmp_path):
    """The smallest built-in open_clip config, randomly initialised (nothing downloaded), on two images."""
    two = {name: [f"a photo number {i}", f"another caption {i}"] for i, name in enumerate(IMAGES[:2])}
    images = write_images(tmp_path / "images", names=list(two))
    captions = write_karpathy(tmp_path / "dataset_flickr30k.json", captions=two)
    out = tmp_path / "store"
    args = [
        "extract-features",
        "--images",
        str(images),
        "--captions",
        str(captions),
        "--output",
        str(out),
        "--model",
        SMALLEST_BUILTIN_CLIP,
        "--pretrained",
        "none",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--no-progress",
    ]
    assert main(args) == 0
    dataset, metadata = load_feature_store(out)
    assert (metadata["model"], metadata["pretrained"], metadata["image_dim"]) == (SMALLEST_BUILTIN_CLIP, None, 256)
    assert metadata["tokenizer"] == "SimpleTokenizer" and metadata["caption_format"] == "karpathy"
    assert len(dataset) == 4 and list(dataset["caption"]) == [c for caps in two.values() for c in caps]
    features = np.asarray(dataset.with_format("numpy")["image_features"])
    assert np.array_equal(features[0], features[1]) and not np.allclose(features[0], features[2])

    (images / IMAGES[0]).unlink()
    with pytest.raises(SystemExit, match=f"error: .*{IMAGES[0]}.*does not exist"):
        main([*args[:5], "--output", str(tmp_path / "other"), *args[7:]])


def test_import_kdmcse_runs_as_a_module(tmp_path):
    data = kdmcse_entries()
    (tmp_path / "f.json").write_text(json.dumps(data))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dalr_hf.features.cli",
            "import-kdmcse",
            "--json",
            str(tmp_path / "f.json"),
            "--output",
            str(tmp_path / "store"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "6 rows, 3 images, dim 4" in result.stdout
    assert load_feature_store(tmp_path / "store")[1]["source"] == "kdmcse_json"


def test_cache_teachers_from_a_store_and_from_a_text_file(tmp_path, tiny_bert_dir, tiny_teacher_dir):
    sentences = ["a dog", "a cat on a mat", "people walk in the rain", "a red car"]
    image = np.eye(4, dtype=np.float32)
    store = tmp_path / "store"
    save_feature_store(
        {"image_id": ["0", "0", "1", "1"], "caption": sentences, "image_features": image},
        store,
        {"model": "m", "pretrained": None, "weights_sha256": None, "normalized": True, "source": "open_clip"},
    )
    teachers = ["--teacher", tiny_bert_dir, "--teacher", tiny_teacher_dir, "--teacher-weight", "0.33", "0.67"]
    assert (
        main(["cache-teachers", *teachers, "--dataset", str(store), "--output", str(tmp_path / "c1"), "--no-progress"])
        == 0
    )
    ensemble = TeacherEnsemble.from_configs(
        [{"name_or_path": tiny_bert_dir, "weight": 0.33}, {"name_or_path": tiny_teacher_dir, "weight": 0.67}]
    )
    attached = attach_teacher_cache(load_feature_store(store)[0], tmp_path / "c1", ensemble)
    assert "teacher_emb_1" in attached.column_names
    assert [t["weight"] for t in load_teacher_cache(tmp_path / "c1")[1]["teachers"]] == [0.33, 0.67]

    (tmp_path / "wiki.txt").write_text("\n".join(sentences) + "\n")
    assert (
        main(
            [
                "cache-teachers",
                "--teacher",
                tiny_bert_dir,
                "--pooler",
                "mean",
                "--max-length",
                "16",
                "--text-file",
                str(tmp_path / "wiki.txt"),
                "--output",
                str(tmp_path / "c2"),
                "--dtype",
                "float32",
                "--no-progress",
            ]
        )
        == 0
    )
    _, metadata = load_teacher_cache(tmp_path / "c2")
    assert metadata["text_column"] == "text" and metadata["num_rows"] == 4
    assert (metadata["teachers"][0]["pooler"], metadata["teachers"][0]["max_length"]) == ("mean", 16)
    with pytest.raises(SystemExit, match="--pooler: give one value for all teachers or one per teacher"):
        main(
            [
                "cache-teachers",
                *teachers,
                "--pooler",
                "mean",
                "cls",
                "mean",
                "--text-file",
                str(tmp_path / "wiki.txt"),
                "--output",
                str(tmp_path / "c3"),
            ]
        )


def test_register_adds_the_three_commands():
    parser = argparse.ArgumentParser(prog="dalr-hf")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["import-kdmcse", "--json", "f.json", "--output", "o"])
    assert args.command == "import-kdmcse" and args.no_normalize is False and args.func.__name__ == "_run_import"
    assert (
        parser.parse_args(["extract-features", "--images", "i", "--captions", "c", "--output", "o"]).model == "ViT-L-14"
    )
    assert (
        parser.parse_args(["cache-teachers", "--teacher", "t", "--text-file", "w", "--output", "o"]).dtype == "float16"
    )
