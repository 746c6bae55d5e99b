"""The training recipe end to end: LoRA training, export with the card, and one upload of the exported folder when
``push_to_hub`` is on (the Trainer's own pushes stay off)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from sentence_transformers import SentenceTransformer

from dalr_hf.publish.card.render import CARD_MARKER
from dalr_hf.publish.export import list_files
from dalr_hf.scripts.train import main as train_main
from tests.publish.publish_helpers import PROBE_SENTENCES

REPO_ROOT = Path(__file__).resolve().parents[2]


def _inputs(tmp_path: Path) -> dict[str, Path]:
    corpus = tmp_path / "wiki1m_slice.txt"
    lines = (REPO_ROOT / "data" / "demo" / "wiki1m_slice.txt").read_text(encoding="utf-8").splitlines()
    corpus.write_text("\n".join(lines[:24]) + "\n", encoding="utf-8")
    captions = tmp_path / "captions.txt"
    lines = (REPO_ROOT / "data" / "demo" / "flickr30k_captions_slice.txt").read_text(encoding="utf-8").splitlines()
    captions.write_text("\n".join(lines[:12]) + "\n", encoding="utf-8")
    # a 40-pair STS-B dev set keeps the before/after evaluation of the recipe cheap
    downstream = tmp_path / "downstream"
    sts_dir = downstream / "STS" / "STSBenchmark"
    sts_dir.mkdir(parents=True)
    dev = (REPO_ROOT / "data" / "senteval" / "downstream" / "STS" / "STSBenchmark" / "sts-dev.csv").read_text(
        encoding="utf-8"
    )
    (sts_dir / "sts-dev.csv").write_text("\n".join(dev.splitlines()[:40]) + "\n", encoding="utf-8")
    return {"corpus": corpus, "captions": captions, "downstream": downstream}


def _argv(tmp_path: Path, student: str, teacher: str) -> list[str]:
    inputs = _inputs(tmp_path)
    config = {
        "student_model": student,
        "teachers": [teacher],
        "teacher_weights": [1.0],
        "text_corpus": str(inputs["corpus"]),
        "stand_in_captions": str(inputs["captions"]),
        "stand_in_dim": 32,
        "eval_data_dir": str(inputs["downstream"]),
        "output_dir": str(tmp_path / "out"),
        "per_device_train_batch_size": 4,
        "max_steps": 3,
        "eval_steps": 2,
        "save_total_limit": 1,
        "logging_steps": 1,
        "report_to": "none",
        "lora": True,
        "lora_r": 4,
        "lora_alpha": 8,
        "push_to_hub": True,
        "hub_model_id": "my-org/dalr-recipe",
        "hub_private_repo": True,
        "hub_token": "hf_recipe_token",
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return ["--config", str(path)]


def test_recipe_trains_with_lora_exports_and_pushes_the_export_once(tmp_path, tiny_bert_dir, tiny_teacher_dir, hub):
    report = train_main(_argv(tmp_path, tiny_bert_dir, tiny_teacher_dir))

    out = tmp_path / "out"
    export = Path(report["export"]["export_dir"])
    assert export == out / "export"
    assert report["export"]["merged_lora"] is True and report["export"]["card_rendered"] is True
    files = list_files(export)
    assert [f for f in files if f.endswith(".md")] == ["README.md"]  # exactly one card: ours
    card = (export / "README.md").read_text()
    assert CARD_MARKER in card and 'SentenceTransformer("my-org/dalr-recipe")' in card
    assert "STAND-IN, not features of images" in card.split("## Usage")[0]
    assert "LoRA (r=4" in card and "- lora" in card
    assert (out / "dalr_card_data.json").is_file()

    # one repository creation and one commit of exactly the export: the Trainer itself pushed nothing
    assert [p for _, p in hub.paths()] == [
        "/api/repos/create",
        "/api/validate-yaml",
        "/api/models/my-org/dalr-recipe/preupload/main",
        "/api/models/my-org/dalr-recipe/commit/main",
    ]
    assert hub.requests[0].body["visibility"] == "private"
    assert hub.requests[0].headers["authorization"] == "Bearer hf_recipe_token"
    assert hub.commits[0]["files"] == {name: (export / name).read_bytes() for name in files}
    assert report["export"]["hub"]["commit_url"].startswith(f"{hub.url}/my-org/dalr-recipe/commit/")

    # the export and the saved output folder hold the same merged weights, loadable as plain models
    assert (export / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()
    emb = SentenceTransformer(str(export), device="cpu").encode(PROBE_SENTENCES)
    assert np.isfinite(emb).all() and emb.shape == (len(PROBE_SENTENCES), 32)


def test_recipe_refuses_a_push_it_could_not_do_before_training(tmp_path, tiny_bert_dir, tiny_teacher_dir):
    argv = _argv(tmp_path, tiny_bert_dir, tiny_teacher_dir)
    with pytest.raises(SystemExit, match="offline mode"):  # HF_HUB_OFFLINE=1, as tests/conftest.py sets it
        train_main(argv)
    with pytest.raises(SystemExit, match="namespace/name"):
        train_main(argv + ["--hub_model_id", "no-namespace"])
    assert not (tmp_path / "out").exists()  # nothing was trained or written
