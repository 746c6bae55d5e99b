"""The model card: rendered offline from the template, with and without evaluation results; a failure never
aborts (a minimal card is written instead)."""

from __future__ import annotations

import copy
import json
import logging
import re
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard

from dalr_hf.evaluation.results import EvaluationReport, STSResult, TransferResult
from dalr_hf.model_card import (
    CARD_MARKER,
    ModelCardError,
    collect_card_data,
    hyperparameter_differences,
    load_card_data,
    normalize_eval_results,
    render_model_card,
    write_model_card,
)
from dalr_hf.training_args import DALRTrainingArguments

LEFTOVER_TEMPLATE = re.compile(r"\{\{\s|\s\}\}|\{%|%\}")  # Jinja syntax (BibTeX's {{DALR}} is not)
FULL_RESULTS = {
    "sts": {
        "STS12": 71.21,
        "STS13": 80.5,
        "STS14": 75.0,
        "STS15": 82.25,
        "STS16": 79.0,
        "STSBenchmark": 78.75,
        "SICKRelatedness": 72.0,
    },
    "transfer": {"MR": 80.1, "CR": 85.2, "avg": 82.65},
    "mteb": {"scores": {"STS12": 0.7121, "SummEval": 0.3011}, "errors": {"Banking77Classification": "boom"}},
}


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def _card_data(trained_run) -> dict:
    return load_card_data(trained_run.output_dir)


def test_card_with_results_has_metadata_training_details_tables_and_citations(trained_run):
    data = _card_data(trained_run)
    text = render_model_card(data, model_id="my-org/dalr-tiny", eval_results=FULL_RESULTS)
    meta = _front_matter(text)
    assert meta["library_name"] == "sentence-transformers"
    assert meta["pipeline_tag"] == "sentence-similarity"
    assert meta["base_model"] == "bert-base-uncased"
    assert meta["datasets"] == ["princeton-nlp/datasets-for-simcse"]  # inferred from the wiki1m corpus name
    assert meta["language"] == ["en"] and meta["license"] == "apache-2.0"
    assert {"sentence-transformers", "dalr"} <= set(meta["tags"]) and "lora" not in meta["tags"]
    # huggingface_hub parses the same metadata offline
    assert ModelCard(text).data.library_name == "sentence-transformers"

    assert CARD_MARKER in text
    assert 'SentenceTransformer("my-org/dalr-tiny")' in text
    assert "last_hidden_state[:, 0]" in text  # the AutoModel view of the CLS embedding
    # teachers with their weights, the preset and what differs from it
    assert "[princeton-nlp/unsup-simcse-bert-base-uncased](https://huggingface.co/" in text
    assert "| 0.33 |" in text and "| 0.67 |" in text
    assert "DALR preset **`clean`**" in text
    assert "| `cons_weight` | 0.5 | 0.01 |" in text  # clean preset's value is 0.01
    assert "| `learning_rate` | 0.001 | 2e-05 |" in text
    assert "| `max_steps` | 4 | -1 |" in text
    assert "`arc_margin_text`" not in text  # same as the preset: not listed
    # the three evaluation sections, in the papers' task order, with averages
    assert "| STS12 | STS13 | STS14 | STS15 | STS16 | STS-B | SICK-R | Avg. |" in text
    assert "| 71.21 | 80.50 | 75.00 | 82.25 | 79.00 | 78.75 | 72.00 | **76.96** |" in text
    assert "| MR | CR | Avg. |" in text and "**82.65**" in text
    assert "| STS12 | 71.21 |" in text and "| SummEval | 30.11 |" in text  # MTEB's 0-1 scores, x100
    assert "| Banking77Classification | FAILED |" in text
    # model selection, environment, limitations, citations
    assert "10.00 before training → 20.00 after" in text
    for library in ("torch", "transformers", "sentence-transformers", "accelerate", "datasets", "peft", "dalr-hf"):
        assert f"| {library} |" in text
    assert "Hardware:" in text
    assert "## Intended use and limitations" in text
    for key in ("@inproceedings{he2025dalr", "2506.21096", "@inproceedings{gao2021simcse", "zhang2022mcse"):
        assert key in text
    assert "STAND-IN" not in text  # this run had no stand-in features
    # the run's pairs came as an in-memory dataset: no feature-store metadata, and the card says so
    assert "16 image–caption pairs were used, but the metadata of their image features" in text
    assert not LEFTOVER_TEMPLATE.search(text) and "None" not in text


def test_card_without_results_renders_cleanly(trained_run):
    data = _card_data(trained_run)
    text = render_model_card(data)
    meta = _front_matter(text)
    assert "metrics" not in meta
    assert "No evaluation results were attached" in text
    assert "### Semantic textual similarity" not in text and "### MTEB" not in text
    assert 'SentenceTransformer("path/to/this/model")' in text
    assert not LEFTOVER_TEMPLATE.search(text) and "None" not in text
    # no teachers, no image data, no selection: still a clean card
    bare = copy.deepcopy(data)
    bare.update(teachers=[], image_features=None, selection=None, schedule=None)
    bare["training_data"] = {**bare["training_data"], "num_paired": None}
    text = render_model_card(bare)
    assert "No teachers were used" in text and "No image–caption data was used" in text
    assert "None" not in text


def test_stand_in_features_are_announced_prominently(trained_run, tiny_teacher_dir, tmp_path):
    from dalr_hf.demo import STAND_IN_DESCRIPTION, build_stand_in_feature_store
    from dalr_hf.teachers import Teacher

    captions = tmp_path / "captions.txt"
    captions.write_text("a dog runs\na cat sleeps\na man sings\n")
    store = build_stand_in_feature_store(str(captions), Teacher(tiny_teacher_dir), str(tmp_path / "store"), dim=32)
    data = collect_card_data(trained_run.trainer, base_model="bert-base-uncased", paired_dataset=store)
    assert data["image_features"]["stand_in"] is True
    text = render_model_card(data)
    assert "stand-in-image-features" in _front_matter(text)["tags"]
    head = text.split("## Usage")[0]
    assert "STAND-IN, not features of images" in head  # before anything else in the card body
    assert STAND_IN_DESCRIPTION in head
    assert "nothing in this model was learned from images" in text
    # local folders are named, not spelled out: a published card does not reveal the training machine's paths
    assert data["image_features"]["model"] == f"stand-in:{Path(tiny_teacher_dir).name}"
    assert data["training_data"]["paired_dataset"] == "store"
    assert tiny_teacher_dir not in text and str(tmp_path) not in text


def test_evaluation_suite_report_is_accepted_as_is():
    report = EvaluationReport(
        model="m",
        sts=[
            STSResult(task="STS12", split="test", aggregation="all", spearman=70.0),
            STSResult(task="SICKRelatedness", split="test", aggregation="all", spearman=60.0),
            STSResult(task="STS13", split="test", aggregation="all", status="error", error="file missing"),
        ],
        transfer=[TransferResult(task="MR", mode="test", acc=81.5, devacc=80.0)],
    )
    for form in (report, report.to_dict(), json.loads(json.dumps(report.to_dict()))):
        tables = normalize_eval_results(form)
        sts = {row["name"]: (row["value"], row["failed"]) for row in tables["sts"]["rows"]}
        assert sts == {"STS12": (70.0, False), "STS13": (None, True), "SICK-R": (60.0, False)}
        assert tables["sts"]["average"] is None  # one task failed: no average
        assert tables["transfer"]["rows"][0]["value"] == 81.5
        assert "mteb" not in tables
    assert normalize_eval_results(None) == {}
    with pytest.raises(ModelCardError, match="unknown evaluation section"):
        normalize_eval_results({"sts": {"STS12": 1.0}, "stss": {}})
    with pytest.raises(ModelCardError, match="no score found"):
        normalize_eval_results({"transfer": {"MR": {"devacc": 80.0}}})


def test_a_card_failure_warns_and_writes_a_minimal_card(trained_run, tmp_path, caplog):
    data = _card_data(trained_run)
    with caplog.at_level(logging.WARNING, logger="dalr_hf.model_card"):
        rendered = write_model_card(tmp_path, data, model_id="org/x", template=tmp_path / "missing.md")
    assert rendered is False
    assert "model card not rendered" in caplog.text and "missing.md" in caplog.text
    text = (tmp_path / "README.md").read_text()
    assert CARD_MARKER in text and 'SentenceTransformer("org/x")' in text
    assert _front_matter(text)["library_name"] == "sentence-transformers"
    assert write_model_card(tmp_path, None) is False  # no card data at all: also only a warning
    assert write_model_card(tmp_path, data) is True


def test_hyperparameter_differences_compare_with_the_preset(tmp_path):
    args = DALRTrainingArguments(
        output_dir=str(tmp_path), preset="paper", use_g2l=True, temperature=0.07, learning_rate=3e-5
    )
    method, trainer = hyperparameter_differences(args)
    assert method == {"use_g2l": {"value": True, "default": False}, "temperature": {"value": 0.07, "default": 0.05}}
    assert trainer == {"learning_rate": {"value": 3e-05, "default": 2e-05}}
    args = DALRTrainingArguments(output_dir=str(tmp_path), preset="reference", hub_token="hf_secret", report_to="none")
    method, trainer = hyperparameter_differences(args)
    assert method == {} and trainer == {}
