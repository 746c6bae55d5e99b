"""LoRA through peft: only the adapters (and DALR's heads) train, every saved folder holds merged plain weights,
and the export loads without peft and reproduces the merged model's embeddings."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from sentence_transformers import SentenceTransformer

from dalr_hf.lora import (
    LORA_ADAPTER_FILE,
    LORA_CONFIG_FILE,
    apply_lora,
    has_lora,
    lora_settings,
    lora_state_dict,
    merge_lora,
    parameter_counts,
)
from dalr_hf.publish.export import export_model, list_files
from dalr_hf.student import build_student
from dalr_hf.trainer import DALRTrainer
from dalr_hf.training_args import DALRTrainingArguments
from tests.publish.publish_helpers import PROBE_SENTENCES, load_without_peft, tiny_data


def _plain_keys(state: dict) -> dict:
    """A LoRA backbone's base weights under the plain model's names."""
    return {k.replace(".base_layer.", "."): v for k, v in state.items() if ".lora_" not in k}


def test_only_the_adapters_and_the_heads_are_trained(lora_run):
    trainer = lora_run.trainer
    backbone = trainer.model[0].auto_model
    settings = lora_settings(trainer.model)
    assert settings["r"] == 4 and settings["alpha"] == 8.0 and settings["target_modules"] == ["query", "value"]
    assert settings["num_layers"] == 4  # 2 layers x (query, value)

    lora_params = {n: p for n, p in trainer.model.named_parameters() if ".lora_" in n}
    head_params = {n: p for n, p in trainer.loss.named_parameters() if not n.startswith("model.")}
    assert lora_params and head_params
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in [*lora_params.values(), *head_params.values()]}
    assert all(not p.requires_grad for n, p in trainer.model.named_parameters() if ".lora_" not in n)
    counts = parameter_counts(backbone)
    assert counts["trainable"] == settings["adapter_parameters"] == sum(p.numel() for p in lora_params.values())
    assert counts["trainable"] < 0.01 * counts["total"]

    # base weights untouched (before any merge), every adapter and head weight moved
    base_now = _plain_keys(backbone.state_dict())
    assert base_now.keys() == lora_run.base_state.keys()
    assert all(torch.equal(base_now[k], v) for k, v in lora_run.base_state.items())
    unchanged = [n for n, p in lora_params.items() if torch.equal(p, lora_run.lora_before[n])]
    unchanged += [n for n, p in head_params.items() if torch.equal(p, lora_run.heads_before[n])]
    assert unchanged == [], f"never updated: {unchanged}"


def test_checkpoints_hold_merged_weights_plus_the_adapter_for_resuming(lora_run, tiny_bert_dir, tiny_teacher_dir):
    run = lora_run
    best = Path(run.trainer.state.best_model_checkpoint)
    best_step = int(best.name.split("-")[1])
    files = set(os.listdir(best))
    assert {LORA_ADAPTER_FILE, LORA_CONFIG_FILE, "model.safetensors"} <= files
    assert "adapter_config.json" not in files  # not a peft adapter folder: the model there is complete
    with safe_open(str(best / "model.safetensors"), "pt") as f:
        assert set(f.keys()) == set(run.base_state)
    # the best checkpoint was reloaded at the end: the in-memory model is what the evaluator measured
    run.trainer.model.eval()
    np.testing.assert_allclose(
        run.trainer.model.encode(PROBE_SENTENCES), run.evaluator.embeddings[best_step], rtol=0, atol=1e-6
    )
    # the checkpoint folder alone (merged weights, no peft) gives the same embeddings up to the merge's rounding
    plain = SentenceTransformer(str(best), device="cpu")
    np.testing.assert_allclose(plain.encode(PROBE_SENTENCES), run.evaluator.embeddings[best_step], atol=1e-5)

    # a resumed run rebuilds the student from its base model and loads only the adapters (and heads)
    text, paired = tiny_data()
    resumed = DALRTrainer(
        model=build_student(tiny_bert_dir),
        args=run.trainer.args,
        text_dataset=text,
        paired_dataset=paired,
        teachers=run.trainer.teachers,
        evaluator=run.evaluator,
    )
    resumed._load_from_checkpoint(str(best))
    expected = lora_state_dict(run.trainer.model)
    restored = lora_state_dict(resumed.model)
    assert restored.keys() == expected.keys()
    assert all(torch.equal(restored[k], v) for k, v in expected.items())
    other = json.loads((best / LORA_CONFIG_FILE).read_text())
    (best / LORA_CONFIG_FILE).write_text(json.dumps({**other, "r": 8}))
    try:
        with pytest.raises(ValueError, match="other settings"):
            resumed._load_from_checkpoint(str(best))
    finally:
        (best / LORA_CONFIG_FILE).write_text(json.dumps(other))


def test_merge_export_and_load_without_peft(lora_run, trained_run, tiny_bert_dir, tmp_path):
    trainer = lora_run.trainer
    trainer.model.eval()
    adapted = trainer.model.encode(PROBE_SENTENCES)

    # the merged in-memory model: a fresh student with the trained adapters, merged and unloaded
    merged = build_student(tiny_bert_dir)
    apply_lora(merged, r=4, alpha=8, dropout=0.0, target_modules=["query", "value"])
    merged[0].auto_model.load_state_dict(lora_state_dict(trainer.model), strict=False)
    merge_lora(merged)
    assert not has_lora(merged) and not hasattr(merged[0].auto_model, "peft_config")
    merged.eval()
    merged_embeddings = merged.encode(PROBE_SENTENCES)
    np.testing.assert_allclose(merged_embeddings, adapted, atol=1e-5)

    result = export_model(merged, tmp_path / "merged")
    assert result.merged_lora is False
    from_view = export_model(trainer.model, tmp_path / "view")  # export merges on its own, leaving the model as is
    assert from_view.merged_lora is True and has_lora(trainer.model)
    assert (tmp_path / "merged" / "model.safetensors").read_bytes() == (
        tmp_path / "view" / "model.safetensors"
    ).read_bytes()
    assert not any("adapter" in name or "lora" in name for name in list_files(tmp_path / "view"))

    exported, plain = load_without_peft(
        [tmp_path / "view", trained_run.export_dir], tmp_path / "fresh", PROBE_SENTENCES
    )
    np.testing.assert_allclose(exported, merged_embeddings, rtol=0, atol=1e-6)
    np.testing.assert_allclose(plain, trained_run.embeddings, rtol=0, atol=1e-6)


def test_lora_settings_are_validated(tmp_path, tiny_student):
    for bad in ({"lora_r": 0}, {"lora_alpha": 0}, {"lora_dropout": 1.0}, {"lora_target_modules": []}):
        with pytest.raises(ValueError, match="lora_"):
            DALRTrainingArguments(output_dir=str(tmp_path), **bad)
    with pytest.raises(ValueError, match="Linear layers of this model end in: .*query"):
        apply_lora(tiny_student, target_modules=["q_proj"])
    apply_lora(tiny_student, target_modules=["query"])
    with pytest.raises(ValueError, match="already carries LoRA"):
        apply_lora(tiny_student)
