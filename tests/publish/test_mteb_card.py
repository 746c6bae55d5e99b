"""`dalr-hf mteb` on an exported folder: the model is named, and its ModelMeta filled, from the folder's card."""

from __future__ import annotations

import json

from dalr_hf.cli import main as cli_main
from dalr_hf.evaluation.mteb_runner import read_card_metadata, run_mteb
from dalr_hf.publish.export import export_model


def test_mteb_names_an_export_from_its_card(trained_run, tmp_path, capsys):
    card = read_card_metadata(trained_run.export_dir)
    assert card is not None and card.model_id is None  # exported without a Hub id
    assert card.base_model == "bert-base-uncased" and card.license == "apache-2.0"
    assert card.citation.startswith("@inproceedings{he2025dalr") and "Ji, Donghong" in card.citation

    code = cli_main(["mteb", str(trained_run.export_dir), "--tasks", "MockSTSTask", "--output-dir", str(tmp_path)])
    assert code == 0
    meta_files = list((tmp_path / "results").glob("*/*/model_meta.json"))
    assert len(meta_files) == 1
    meta = json.loads(meta_files[0].read_text())
    # named from the card, not after the folder ("local/export")
    assert meta["name"] == "local/dalr-bert-base-uncased"
    assert meta["adapted_from"] == "bert-base-uncased"
    assert meta["license"] == "apache-2.0" and "he2025dalr" in meta["citation"]
    # the card's datasets hold no caption data for this run: no Flickr30k/COCO task among the training data
    assert set(meta["training_datasets"]) == {"STSBenchmark"}
    assert "local/dalr-bert-base-uncased" in capsys.readouterr().out


def test_mteb_takes_the_hub_id_of_the_card_and_the_flags(trained_run, tmp_path):
    folder = tmp_path / "for-hub"
    export_model(trained_run.output_dir, folder, model_id="my-org/dalr-tiny")
    run = run_mteb(
        folder,
        "MockSTSTask",
        output_dir=tmp_path / "mteb",
        revision="0123456789abcdef0123456789abcdef01234567",
        license="mit",
        public_training_code="https://github.com/my-org/dalr-training",
    )
    meta = run.model_meta
    assert meta.name == "my-org/dalr-tiny" and meta.revision == "0123456789abcdef0123456789abcdef01234567"
    assert meta.reference == "https://huggingface.co/my-org/dalr-tiny"
    assert meta.license == "mit" and meta.public_training_code == "https://github.com/my-org/dalr-training"
    assert meta.adapted_from == "bert-base-uncased"
    assert run.results_dir == tmp_path / "mteb" / "results" / "my-org__dalr-tiny" / meta.revision
    saved = json.loads((run.results_dir / "model_meta.json").read_text())
    assert saved["name"] == "my-org/dalr-tiny" and saved["reference"] == meta.reference
    # what mteb's own loader reads back (the form `mteb submit-results` uploads)
    from mteb.cache import ResultCache

    assert ResultCache(tmp_path / "mteb").load_task_result("MockSTSTask", meta) is not None
