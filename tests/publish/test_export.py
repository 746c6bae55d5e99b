"""Export: a plain SentenceTransformer folder that reproduces the trained model's embeddings, with nothing from
training in it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Normalize

from dalr_hf.checkpoints import HEADS_FILE
from dalr_hf.publish.export import (
    POOLING_TYPE,
    TRANSFORMER_TYPE,
    ExportError,
    check_export_folder,
    export_model,
    list_files,
    resolve_model_folder,
)
from dalr_hf.student import build_student
from tests.publish.publish_helpers import PROBE_SENTENCES

EXPECTED_FILES = {
    "1_Pooling/config.json",
    "README.md",
    "config.json",
    "config_sentence_transformers.json",
    "dalr_training_curves.png",  # the card shows it
    "model.safetensors",
    "modules.json",
    "sentence_bert_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
}


def test_export_reproduces_the_evaluated_embeddings_and_holds_only_the_student(trained_run):
    run = trained_run
    export = run.export_dir
    assert set(list_files(export)) == EXPECTED_FILES
    assert run.export_summary["files"] == sorted(EXPECTED_FILES)

    # the in-memory model after training is the best checkpoint, i.e. what the evaluator measured at that step
    best_step = int(run.trainer.state.best_model_checkpoint.rsplit("-", 1)[1])
    np.testing.assert_allclose(run.embeddings, run.evaluator.embeddings[best_step], rtol=0, atol=1e-6)

    loaded = SentenceTransformer(str(export), device="cpu")
    assert loaded.max_seq_length == 16
    np.testing.assert_allclose(loaded.encode(PROBE_SENTENCES), run.embeddings, rtol=0, atol=1e-6)
    # built as build_student builds it: no NSP pooler, so nothing randomly initialised at load time
    assert loaded[0].auto_model.pooler is None
    assert json.loads((export / "sentence_bert_config.json").read_text())["model_kwargs"] == {
        "add_pooling_layer": False
    }

    modules = json.loads((export / "modules.json").read_text())
    assert [m["type"] for m in modules] == [TRANSFORMER_TYPE, POOLING_TYPE]
    assert json.loads((export / "1_Pooling" / "config.json").read_text())["pooling_mode"] == "cls"
    assert "auto_map" not in json.loads((export / "config.json").read_text())
    with safe_open(str(export / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert keys == set(run.trainer.model[0].auto_model.state_dict())
    assert not any(k.startswith(("mlp", "grounding", "consistency", "pooler", "loss")) for k in keys)


def test_training_state_stays_in_checkpoints_for_a_resumed_run(trained_run):
    best = Path(trained_run.trainer.state.best_model_checkpoint)
    checkpoint_files = set(os.listdir(best))
    assert {HEADS_FILE, "optimizer.pt", "trainer_state.json", "dalr_checkpoint.json"} <= checkpoint_files
    exported = set(list_files(trained_run.export_dir))
    assert not exported & {HEADS_FILE, "optimizer.pt", "scheduler.pt", "trainer_state.json", "training_args.bin"}
    # ...and the training output folder keeps the card data for a later export
    assert (trained_run.output_dir / "dalr_card_data.json").is_file()


def test_export_from_the_output_folder_uses_the_runs_card_data(trained_run, tmp_path):
    target = tmp_path / "from_folder"
    result = export_model(trained_run.output_dir, target, model_id="org/dalr-tiny")
    assert result.source == str(trained_run.output_dir)
    assert result.card_rendered is True  # the run's dalr_card_data.json was found and used
    assert 'SentenceTransformer("org/dalr-tiny")' in (target / "README.md").read_text()
    loaded = SentenceTransformer(str(target), device="cpu")
    np.testing.assert_allclose(loaded.encode(PROBE_SENTENCES), trained_run.embeddings, rtol=0, atol=1e-6)
    # the same weights, whichever way the model reached the export
    assert (target / "model.safetensors").read_bytes() == (trained_run.export_dir / "model.safetensors").read_bytes()


def test_checkpoint_selection(trained_run):
    run = trained_run
    assert resolve_model_folder(run.output_dir) == run.output_dir
    best = resolve_model_folder(run.output_dir, "best")
    assert best == Path(run.trainer.state.best_model_checkpoint)
    checkpoints = sorted(run.output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert resolve_model_folder(run.output_dir, "last") == checkpoints[-1]
    assert resolve_model_folder(run.output_dir, str(best)) == best
    with pytest.raises(ExportError, match="not a SentenceTransformer folder"):
        resolve_model_folder(run.output_dir, str(run.output_dir / "nowhere"))


def test_export_refuses_what_it_cannot_publish(trained_run, tiny_bert_dir, tmp_path):
    student = build_student(tiny_bert_dir)
    student.append(Normalize())
    with pytest.raises(ExportError, match="Transformer \\+ Pooling"):
        export_model(student, tmp_path / "normalized")

    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="not empty"):
        export_model(trained_run.trainer.model, occupied)
    with pytest.raises(ExportError, match="not a model folder"):
        export_model(trained_run.trainer.model, occupied, overwrite=True)
    assert (occupied / "notes.txt").read_text() == "keep me"

    # an earlier export is replaced only when asked
    target = tmp_path / "again"
    export_model(trained_run.trainer.model, target, model_card=False)
    assert not (target / "README.md").exists()
    with pytest.raises(ExportError, match="not empty"):
        export_model(trained_run.trainer.model, target)
    export_model(trained_run.trainer.model, target, overwrite=True)
    assert (target / "README.md").is_file()
    assert not any(p.name.startswith(".again.") for p in tmp_path.iterdir())  # no staging folder left behind

    # the folder check catches training files and remote code slipped into an export
    (target / HEADS_FILE).write_bytes(b"x")
    with pytest.raises(ExportError, match="do not belong"):
        check_export_folder(target)
    (target / HEADS_FILE).unlink()
    config = json.loads((target / "config.json").read_text())
    (target / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoModel": "custom.Model"}}))
    with pytest.raises(ExportError, match="trust_remote_code"):
        check_export_folder(target)


@pytest.mark.parametrize("fault", ["card", "check", "swap"])
def test_an_export_that_fails_midway_leaves_the_previous_export_as_it_was(trained_run, tmp_path, monkeypatch, fault):
    import hashlib

    import dalr_hf.publish.card.render as render
    import dalr_hf.publish.export as export

    target = tmp_path / "published"
    export_model(trained_run.trainer.model, target)

    def digest() -> dict[str, str]:
        return {f: hashlib.sha256((target / f).read_bytes()).hexdigest() for f in list_files(target)}

    before = digest()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt("interrupted while exporting")

    if fault == "card":  # the model is already saved into the new folder when the card is written
        monkeypatch.setattr(render, "write_model_card", interrupted)
    elif fault == "check":  # everything is written; the last check before the swap fails
        monkeypatch.setattr(export, "check_export_folder", interrupted)
    else:  # the new folder cannot be renamed into place (after the previous one was moved aside)
        real_replace = os.replace
        failed = []

        def failing_replace(src, dst):
            if Path(dst) == target and not failed:  # the first move into place: the new export's
                failed.append(src)
                raise KeyboardInterrupt("interrupted while swapping the new export in")
            return real_replace(src, dst)

        monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(KeyboardInterrupt):
        export_model(trained_run.trainer.model, target, overwrite=True, model_id="org/other")
    assert digest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["published"]  # no half-built sibling left behind
    assert SentenceTransformer(str(target), device="cpu").encode(PROBE_SENTENCES).shape[0] == len(PROBE_SENTENCES)
