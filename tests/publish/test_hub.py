"""Publishing: the dry run writes the exact folder that would be uploaded, and the real huggingface_hub client uploads
it to a local stand-in of the Hub's HTTP API (the one thing these tests stand in for) that records every request."""

from __future__ import annotations

import argparse
import json
import shutil

import huggingface_hub
import pytest

from dalr_hf.publish.cli import main as publish_main
from dalr_hf.publish.cli import register
from dalr_hf.publish.export import export_model, list_files
from dalr_hf.publish.hub import HubPushError, check_repo_id, push_to_hub


def test_dry_run_writes_the_folder_that_would_be_uploaded(trained_run, tmp_path, capsys):
    target = tmp_path / "staging"
    argv = ["push", str(trained_run.output_dir), "--repo-id", "my-org/dalr-tiny", "--dry-run", str(target)]
    assert publish_main(argv) == 0
    printed = capsys.readouterr().out
    files = list_files(target)
    assert files == sorted(
        [
            "1_Pooling/config.json",
            "README.md",
            "config.json",
            "config_sentence_transformers.json",
            "dalr_training_curves.png",
            "model.safetensors",
            "modules.json",
            "sentence_bert_config.json",
            "tokenizer.json",
            "tokenizer_config.json",
        ]
    )
    assert "nothing uploaded" in printed
    for name in files:
        assert f"  {name}\n" in printed
    assert 'SentenceTransformer("my-org/dalr-tiny")' in (target / "README.md").read_text()
    # a second dry run into the same folder is refused unless asked to overwrite
    with pytest.raises(SystemExit, match="not empty"):
        publish_main(argv)


def test_push_uploads_exactly_the_dry_run_folder(trained_run, tmp_path, hub, capsys):
    dry = push_to_hub(trained_run.output_dir, "my-org/dalr-tiny", dry_run_dir=tmp_path / "dry")
    assert dry.dry_run and dry.commit_url is None and hub.requests == []

    argv = ["push", str(trained_run.output_dir), "--repo-id", "my-org/dalr-tiny", "--private"]
    argv += ["--token", "hf_test_token", "--endpoint", hub.url, "--commit-message", "DALR tiny"]
    assert publish_main(argv) == 0
    assert hub.paths() == [
        ("POST", "/api/repos/create"),
        ("POST", "/api/validate-yaml"),
        ("POST", "/api/models/my-org/dalr-tiny/preupload/main"),
        ("POST", "/api/models/my-org/dalr-tiny/commit/main"),
    ]
    create = hub.requests[0].body
    assert create["name"] == "dalr-tiny" and create["organization"] == "my-org"
    assert create["visibility"] == "private" and hub.repos["my-org/dalr-tiny"]["private"] is True
    assert all(r.headers.get("authorization") == "Bearer hf_test_token" for r in hub.requests)
    (commit,) = hub.commits
    assert commit["header"]["summary"] == "DALR tiny"
    assert commit["other"] == []  # only regular file additions: no deletion, no LFS pointer
    # the committed files are byte for byte the dry run's folder
    expected = {name: (tmp_path / "dry" / name).read_bytes() for name in dry.files}
    assert commit["files"] == expected
    assert hub.requests[1].body["content"] == expected["README.md"].decode()  # the card's metadata was checked
    assert sorted(f["path"] for f in hub.requests[2].body["files"]) == dry.files
    printed = capsys.readouterr().out
    assert f"uploaded {len(dry.files)} files to my-org/dalr-tiny: {hub.url}/my-org/dalr-tiny/commit/" in printed


def test_push_from_python_without_private_flag_and_to_an_existing_repo(trained_run, hub):
    first = push_to_hub(trained_run.trainer.model, "someone/dalr", token="t")  # huggingface_hub's default endpoint
    second = push_to_hub(trained_run.export_dir, "someone/dalr", token="t", model_card=False)
    assert [p for _, p in hub.paths()].count("/api/repos/create") == 2  # exist_ok: the second push reuses it
    assert "visibility" not in hub.requests[0].body  # public unless asked (or the namespace's default)
    assert first.private is None and first.commit_oid != second.commit_oid
    # pushing an in-memory model: the card comes as a minimal one (no card data), the weights as trained
    assert "README.md" in hub.commits[0]["files"]
    assert "README.md" not in hub.commits[1]["files"]
    assert hub.commits[0]["files"]["model.safetensors"] == hub.commits[1]["files"]["model.safetensors"]


def test_push_refuses_offline_mode_and_malformed_repo_ids(trained_run, tmp_path):
    assert huggingface_hub.constants.HF_HUB_OFFLINE  # as tests/conftest.py set it
    with pytest.raises(HubPushError, match="offline mode"):
        push_to_hub(trained_run.export_dir, "org/name")
    with pytest.raises(HubPushError, match="namespace/name"):
        check_repo_id("just-a-name")
    with pytest.raises(HubPushError, match="not valid"):
        check_repo_id("org/bad--name..")
    with pytest.raises(SystemExit, match="error: .*offline mode"):
        publish_main(["push", str(trained_run.export_dir), "--repo-id", "org/name"])
    assert not (tmp_path / "anything").exists()


def test_export_command_and_registration(trained_run, tmp_path, capsys):
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"sts": {"STS12": 70.0, "STS13": 80.0}}))
    mteb = tmp_path / "dalr_mteb_run.json"
    mteb.write_text(json.dumps({"model": "m", "scores": {"STS14": 0.5}, "errors": {}}))
    target = tmp_path / "exported"
    argv = ["export", str(trained_run.output_dir), "--output", str(target), "--checkpoint", "best"]
    argv += ["--eval-results", str(results), "--mteb-results", str(mteb), "--model-id", "org/m"]
    assert publish_main(argv) == 0
    assert f"-> {target}" in capsys.readouterr().out
    card = (target / "README.md").read_text()
    assert "| 70.00 | 80.00 | **75.00** |" in card and "| STS14 | 50.00 |" in card

    # the `dalr-hf` command's parser takes both subcommands through register()
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["push", "out", "--repo-id", "a/b", "--private", "--dry-run", "d"])
    assert (args.command, args.repo_id, args.private, args.dry_run) == ("push", "a/b", True, "d")
    args = parser.parse_args(["export", "out", "--output", "x"])
    assert args.func.__name__ == "_run_export" and args.checkpoint == "auto"


def test_pushing_an_earlier_export_keeps_its_card_aimed_at_the_new_repository(trained_run, tmp_path):
    first = tmp_path / "exports" / "dalr"
    export_model(trained_run.output_dir, first, model_id="org/first", eval_results={"sts": {"STS12": 66.6}})
    # the export travels alone (no training folder, no card data next to it), then is pushed under another name
    moved = tmp_path / "elsewhere" / "dalr"
    shutil.copytree(first, moved)
    result = push_to_hub(moved, "org/second", dry_run_dir=tmp_path / "staging")
    card = (tmp_path / "staging" / "README.md").read_text()
    assert result.card_rendered is True
    assert "| 66.60 |" in card  # the evaluation table of the export survives
    assert 'SentenceTransformer("org/second")' in card and "org/first" not in card
    assert card.count("# second\n") == 1
