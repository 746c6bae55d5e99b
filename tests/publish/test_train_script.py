"""The training recipe end to end: LoRA training, export with the card, and one upload of the exported folder when
``push_to_hub`` is on (the Trainer's own pushes stay off)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from dalr_hf.publish.card.render import CARD_MARKER
from dalr_hf.publish.export import list_files
from dalr_hf.scripts.train import main as train_main
from tests.publish.publish_helpers import PROBE_SENTENCES


def _argv(recipe) -> list[str]:
    """The shared tiny recipe with LoRA, the export (and its card) and a push of the export switched on."""
    return recipe(
        max_steps=3,
        save_steps=...,
        save_strategy=...,
        load_best_model_at_end=...,
        save_total_limit=1,
        export_dir=...,
        use_cpu=...,
        lora=True,
        lora_r=4,
        lora_alpha=8,
        push_to_hub=True,
        hub_model_id="my-org/dalr-recipe",
        hub_private_repo=True,
        hub_token="hf_recipe_token",
    )


def test_recipe_trains_with_lora_exports_and_pushes_the_export_once(recipe, hub):
    report = train_main(_argv(recipe))

    out = recipe.output_dir
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


def test_recipe_refuses_a_push_it_could_not_do_before_training(recipe):
    argv = _argv(recipe)
    with pytest.raises(SystemExit, match="offline mode"):  # HF_HUB_OFFLINE=1, as tests/conftest.py sets it
        train_main(argv)
    with pytest.raises(SystemExit, match="namespace/name"):
        train_main(argv + ["--hub_model_id", "no-namespace"])
    assert not recipe.output_dir.exists()  # nothing was trained or written
