"""Readers of SentEval's files: bundled STS data, data-dir resolution, missing files, malformed lines."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from dalr_hf.evaluation.data import (
    ENV_DATA_DIR,
    STS_TASKS,
    TRANSFER_TASKS,
    DataFileError,
    MalformedDataWarning,
    bundled_data_dir,
    load_sts_task,
    load_transfer_task,
    resolve_data_dir,
    resolve_tasks,
)

REPO = Path(__file__).resolve().parents[2]

# Pairs scored by the protocol (empty gold scores of STS15/16 dropped): STS13 has no SMT subset.
EXPECTED_PAIRS = {
    "STS12": 3108,
    "STS13": 1500,
    "STS14": 3750,
    "STS15": 3000,
    "STS16": 1186,
    "STSBenchmark": 1379,
    "SICKRelatedness": 4927,
    "STSBenchmark-dev": 1500,
}


def test_bundled_data_is_in_the_repository_and_small():
    root = bundled_data_dir()
    assert root == REPO / "data" / "senteval" / "downstream"
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files and max(p.stat().st_size for p in files) < 5 * 1024 * 1024
    assert not (root / "STS" / "STSBenchmark" / "sts-train.csv").exists()
    assert (REPO / "data" / "senteval" / "SOURCE_STS_SICK.txt").is_file()
    assert (root / "STS" / "STSBenchmark" / "LICENSE.txt").is_file()
    # SICK's test file keeps its CRLF line endings (the reader strips them)
    assert b"\r\n" in (root / "SICK" / "SICK_test_annotated.txt").read_bytes()[:2000]


@pytest.mark.parametrize("task", [*STS_TASKS, "STSBenchmark-dev"])
def test_bundled_sts_tasks_load_cleanly(task):
    with warnings.catch_warnings():
        warnings.simplefilter("error", MalformedDataWarning)
        data = load_sts_task(task)
    assert data.n_pairs == EXPECTED_PAIRS[task]
    assert data.report.malformed == 0
    assert len(data.sentences1) == len(data.sentences2) == len(data.scores)
    assert np.all((data.scores >= 0) & (data.scores <= 5))
    assert all(s and "  " not in s and s == s.strip() for s in data.sentences1[:200] + data.sentences2[:200])
    assert sum(end - start for _, start, end in data.subsets) == data.n_pairs


def test_sts_year_subsets_and_dropped_empty_gold():
    sts16 = load_sts_task("STS16")
    assert [name for name, _, _ in sts16.subsets] == [
        "answer-answer",
        "headlines",
        "plagiarism",
        "postediting",
        "question-question",
    ]
    sizes = {name: end - start for name, start, end in sts16.subsets}
    assert sizes == {
        "answer-answer": 254,
        "headlines": 249,
        "plagiarism": 230,
        "postediting": 244,
        "question-question": 209,
    }
    assert sts16.report.empty_gold == 7997
    assert load_sts_task("STS15").report.empty_gold == 5500
    assert load_sts_task("STS12").report.empty_gold == 0


def test_sentences_are_whitespace_normalised_like_senteval():
    data = load_sts_task("STSBenchmark")
    assert data.sentences1[0] == "a girl is styling her hair ."
    assert data.sentences2[0] == "a girl is brushing her hair ."
    assert data.scores[0] == 2.5
    sick = load_sts_task("SICKRelatedness")
    assert sick.sentences1[0] == "There is no boy playing outdoors and there is no man smiling"
    assert sick.scores[0] == pytest.approx(3.3)


def test_resolve_tasks_groups_and_aliases():
    assert resolve_tasks("sts") == list(STS_TASKS)
    assert resolve_tasks("transfer") == list(TRANSFER_TASKS)
    assert resolve_tasks("sts-b, SICK-R,MR,sts12,MR") == ["STSBenchmark", "SICKRelatedness", "MR", "STS12"]
    assert resolve_tasks(["stsb-dev"]) == ["STSBenchmark-dev"]
    with pytest.raises(ValueError, match="unknown evaluation task 'STS17'"):
        resolve_tasks("STS17")
    with pytest.raises(ValueError, match="no evaluation task"):
        resolve_tasks(" , ")


def test_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_DATA_DIR, raising=False)
    assert resolve_data_dir() == bundled_data_dir()
    env_dir = tmp_path / "from_env"
    env_dir.mkdir()
    monkeypatch.setenv(ENV_DATA_DIR, str(env_dir))
    assert resolve_data_dir() == env_dir
    arg_dir = tmp_path / "from_arg"
    arg_dir.mkdir()
    assert resolve_data_dir(arg_dir) == arg_dir
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_data_dir(tmp_path / "nope")
    monkeypatch.setenv(ENV_DATA_DIR, str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match=ENV_DATA_DIR):
        resolve_data_dir()


def test_missing_task_folder_names_the_expected_file(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_sts_task("STS14", tmp_path)
    message = str(info.value)
    assert str(tmp_path / "STS" / "STS14-en-test" / "STS.input.deft-forum.txt") in message
    assert "STS/STS14-en-test is missing" in message
    with pytest.raises(FileNotFoundError, match=r"SICK_test_annotated\.txt"):
        load_sts_task("SICKRelatedness", tmp_path)
    # the bundled folder has no transfer data: the error says which file was expected there
    with pytest.raises(FileNotFoundError, match=r"MR/rt-polarity\.pos"):
        load_transfer_task("MR")


def _write_sts12(root: Path, inputs: dict[str, bytes], golds: dict[str, bytes]) -> None:
    folder = root / "STS" / "STS12-en-test"
    folder.mkdir(parents=True)
    for subset in ("MSRpar", "MSRvid", "SMTeuroparl", "surprise.OnWN", "surprise.SMTnews"):
        default_in = b"a man is cooking .\ta man cooks .\nthe cat sleeps .\ta dog runs .\n"
        (folder / f"STS.input.{subset}.txt").write_bytes(inputs.get(subset, default_in))
        (folder / f"STS.gs.{subset}.txt").write_bytes(golds.get(subset, b"4.8\n0.4\n"))


def test_malformed_lines_are_counted_reported_and_left_out(tmp_path):
    _write_sts12(
        tmp_path,
        inputs={
            "MSRpar": b"one\ttwo\nonly one field\nthree\tfour\tfive\nsix\tseven\nbad \xff\xfe bytes\tx\n",
            "MSRvid": b"a\tb\nc\td\ne\tf\n",
        },
        golds={"MSRpar": b"1.0\n2.0\n3.0\nnot-a-number\n4.0\n", "MSRvid": b"1\n\n2\n"},
    )
    with pytest.warns(MalformedDataWarning, match=r"STS12: 4 malformed line\(s\)") as record:
        data = load_sts_task("STS12", tmp_path)
    message = str(record[0].message)
    assert "STS.input.MSRpar.txt: 3 (lines 2, 3, 5" in message
    assert "STS.gs.MSRpar.txt: 1 (lines 4" in message
    msrpar_input, msrpar_gold = data.report.files[0], data.report.files[1]
    assert msrpar_input.malformed_lines == [2, 3, 5]
    assert "expected 2 tab-separated sentences, found 1" in msrpar_input.malformed_reasons[0]
    assert "not valid utf-8" in msrpar_input.malformed_reasons[2]
    assert msrpar_gold.malformed_lines == [4]
    # MSRpar keeps only line 1; MSRvid drops its unannotated pair (empty gold), which is the protocol, not an error
    assert dict((name, end - start) for name, start, end in data.subsets)["MSRpar"] == 1
    assert dict((name, end - start) for name, start, end in data.subsets)["MSRvid"] == 2
    assert data.report.malformed == 4 and data.report.empty_gold == 1
    report = data.report.to_dict()
    assert report["malformed_lines"] == 4
    assert json.loads(json.dumps(report))["files"][0]["malformed_lines"] == [2, 3, 5]


def test_sentence_and_gold_files_of_different_length_are_refused(tmp_path):
    _write_sts12(tmp_path, inputs={}, golds={"SMTeuroparl": b"1\n2\n3\n"})
    expected = r"STS\.input\.SMTeuroparl\.txt has 2 lines but .*STS\.gs\.SMTeuroparl\.txt has 3"
    with pytest.raises(DataFileError, match=expected):
        load_sts_task("STS12", tmp_path)


def test_malformed_stsb_and_sick_lines(tmp_path):
    folder = tmp_path / "STS" / "STSBenchmark"
    folder.mkdir(parents=True)
    good = "main-captions\tMSRvid\t2012test\t0001\t{score}\tA man plays .\tA man is playing ."
    (folder / "sts-test.csv").write_text(
        "\n".join(
            [
                good.format(score="5.0"),
                "too\tfew\tfields",
                good.format(score="n/a"),
                good.format(score="1.5"),
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    with pytest.warns(MalformedDataWarning, match="2 malformed"):
        data = load_sts_task("STSBenchmark", tmp_path)
    assert data.n_pairs == 2 and data.report.files[0].malformed_lines == [2, 3]
    sick = tmp_path / "SICK"
    sick.mkdir()
    (sick / "SICK_test_annotated.txt").write_bytes(
        b"pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment\r\n"
        b"1\tA dog runs\tA dog is running\t4.5\tENTAILMENT\r\n"
        b"2\tbroken line\r\n"
        b"3\tA cat\tA car\t1.2\tNEUTRAL\r\n"
    )
    with pytest.warns(MalformedDataWarning, match="1 malformed"):
        data = load_sts_task("SICKRelatedness", tmp_path)
    assert data.sentences2 == ["A dog is running", "A car"] and data.report.files[0].malformed_lines == [3]


def test_transfer_readers_follow_senteval_formats(transfer_dir):
    with pytest.warns(MalformedDataWarning, match=r"CR: 1 empty sentence\(s\) kept"):
        cr = load_transfer_task("CR", transfer_dir)
    assert len(cr.splits["all"]) == 101 and cr.report.empty_sentences == 1  # kept, as SentEval keeps it
    mr = load_transfer_task("MR", transfer_dir)
    split = mr.splits["all"]
    assert "the café scene was wonderful and lovely ." in split.sentences1  # decoded as latin-1
    assert split.labels.sum() == 50 and len(split) == 100
    # SentEval's order: by number of words, then label (stable)
    keys = [(len(s.split()), int(label)) for s, label in zip(split.sentences1, split.labels)]
    assert keys == sorted(keys)
    subj = load_transfer_task("SUBJ", transfer_dir)
    objective = {s for s, label in zip(subj.splits["all"].sentences1, subj.splits["all"].labels) if label == 1}
    assert all("filmed in" in s for s in objective)  # SUBJ: objective sentences carry label 1
    trec = load_transfer_task("TREC", transfer_dir)
    assert trec.n_classes == 6 and len(trec.splits["train"]) == 120 and len(trec.splits["test"]) == 60
    assert any("Malmö" in s for s in trec.splits["train"].sentences1)
    assert not any(s.startswith(("abb ", "def ", "count ")) for s in trec.splits["train"].sentences1)
    mrpc = load_transfer_task("MRPC", transfer_dir)
    assert len(mrpc.splits["train"]) == 100 and mrpc.report.malformed == 0  # BOM + header handled
    assert mrpc.splits["train"].sentences2 is not None
    sst = load_transfer_task("SST2", transfer_dir)
    assert {k: len(v) for k, v in sst.splits.items()} == {"train": 100, "dev": 40, "test": 40}


def test_malformed_transfer_lines_are_reported(tmp_path):
    trec = tmp_path / "TREC"
    trec.mkdir()
    (trec / "train_5500.label").write_bytes(
        b"NUM:count How many moons ?\nno colon here\nXYZ:foo What is this ?\nLOC:city Where is Malm\xf6 ?\n"
    )
    (trec / "TREC_10.label").write_bytes(b"HUM:ind Who wrote it ?\nNUM:date When ?\n")
    with pytest.warns(MalformedDataWarning, match=r"TREC: 2 malformed"):
        data = load_transfer_task("TREC", tmp_path)
    assert data.report.files[0].malformed_lines == [2, 3]
    assert "Where is Malmö ?" in data.splits["train"].sentences1
    sst = tmp_path / "SST" / "binary"
    sst.mkdir(parents=True)
    for name in ("sentiment-train", "sentiment-dev", "sentiment-test"):
        (sst / name).write_text("good film \t1\nbad film \t0\nno label here\nworse \t7\n", encoding="utf-8")
    with pytest.warns(MalformedDataWarning, match=r"SST2: 6 malformed"):
        data = load_transfer_task("SST2", tmp_path)
    assert len(data.splits["test"]) == 2
