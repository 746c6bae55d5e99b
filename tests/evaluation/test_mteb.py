"""MTEB: results-repository layout, ModelMeta for a submission, offline tasks and mteb's mock tasks."""

from __future__ import annotations

import json

import pytest

from dalr_hf.evaluation import build_model_meta, evaluate_sts, local_sts_tasks, run_mteb
from dalr_hf.evaluation.mteb_runner import (
    MOCK_TASKS,
    NO_REVISION,
    infer_model_name,
    infer_revision,
    model_meta_python,
)


@pytest.fixture(scope="module")
def mock_run(tiny_bert_dir, tmp_path_factory):
    from dalr_hf.student import build_student

    model = build_student(tiny_bert_dir, pooling="cls", max_seq_length=32)
    out = tmp_path_factory.mktemp("mteb_mock")
    return run_mteb(
        model,
        "mock",
        output_dir=out,
        model_name="dalr-test/tiny-student",
        revision="abc123",
        base_model="google-bert/bert-base-uncased",
    )


def test_mock_tasks_run_and_write_the_results_repository_layout(mock_run):
    folder = mock_run.output_dir / "results" / "dalr-test__tiny-student" / "abc123"
    assert mock_run.results_dir == folder
    assert set(mock_run.scores) == set(MOCK_TASKS) and not mock_run.errors
    for task in MOCK_TASKS:
        result = json.loads((folder / f"{task}.json").read_text())
        assert result["task_name"] == task and "main_score" in result["scores"]["test"][0]
    meta = json.loads((folder / "model_meta.json").read_text())
    assert meta["name"] == "dalr-test/tiny-student" and meta["revision"] == "abc123"
    assert "STSBenchmark" in meta["training_datasets"]
    assert {"Flickr30kI2TRetrieval", "Flickr30kT2IRetrieval"} <= set(meta["training_datasets"])
    assert meta["adapted_from"] == "google-bert/bert-base-uncased" and meta["embed_dim"] == 32
    assert meta["similarity_fn_name"] == "cosine" and meta["open_weights"] is True


def test_results_load_back_with_mteb(mock_run):
    from mteb.cache import ResultCache

    cache = ResultCache(mock_run.output_dir)
    loaded = cache.load_task_result("MockSTSTask", mock_run.model_meta)
    assert loaded is not None and loaded.get_score() == pytest.approx(mock_run.scores["MockSTSTask"])


def test_model_meta_snippet_rebuilds_the_same_metadata(mock_run):
    source = (mock_run.output_dir / "model_meta_snippet.py").read_text()
    namespace: dict = {}
    exec(compile(source, "model_meta_snippet.py", "exec"), namespace)
    rebuilt = namespace["dalr_student"]
    assert rebuilt.name == mock_run.model_meta.name and rebuilt.revision == "abc123"
    assert rebuilt.training_datasets == mock_run.model_meta.training_datasets
    assert rebuilt.n_parameters == mock_run.model_meta.n_parameters
    assert model_meta_python(rebuilt) == source


def test_build_model_meta_options(tiny_student):
    coco = build_model_meta(tiny_student, "org/m", caption_data="coco")
    assert coco.training_datasets == {"STSBenchmark", "MSCOCOI2TRetrieval", "MSCOCOT2IRetrieval"}
    assert coco.revision == NO_REVISION and coco.max_tokens == 32
    text_only = build_model_meta(tiny_student, "org/m", caption_data=None)
    assert text_only.training_datasets == {"STSBenchmark"}
    custom = build_model_meta(tiny_student, "org/m", training_datasets=["STSBenchmark", "SICK-R"])
    assert custom.training_datasets == {"STSBenchmark", "SICK-R"}
    assert custom.is_zero_shot_on(["STS12"]) is True and custom.is_zero_shot_on(["STSBenchmark"]) is False
    with pytest.raises(ValueError, match="organization/model_name"):
        build_model_meta(tiny_student, "no-slash")
    with pytest.raises(ValueError, match="caption_data"):
        build_model_meta(tiny_student, "org/m", caption_data="laion")


def test_name_and_revision_inference(tmp_path, tiny_bert_dir):
    assert infer_model_name("some-org/some-model") == "some-org/some-model"
    assert infer_model_name(tiny_bert_dir).startswith("local/")
    assert infer_revision(tiny_bert_dir) == NO_REVISION
    sha = "0123456789abcdef0123456789abcdef01234567"
    snapshot = tmp_path / "models--org--m" / "snapshots" / sha
    snapshot.mkdir(parents=True)
    assert infer_revision(snapshot) == sha


def test_offline_sts_task_matches_the_suite(minilm, small_sts_dir, tmp_path):
    [task] = local_sts_tasks(["STSBenchmark"], small_sts_dir)
    assert task.metadata.name == "SentEvalSTSBenchmark" and task.metadata.main_score == "cosine_spearman"
    run = run_mteb(minilm, [task], output_dir=tmp_path, model_name="dalr-test/minilm")
    [ours] = evaluate_sts(minilm, tasks=["STSBenchmark"], data_dir=small_sts_dir)
    # MTEB pools all pairs into one correlation: the suite's "all" aggregation (MTEB stores 6 decimals)
    assert run.scores["SentEvalSTSBenchmark"] == pytest.approx(ours.spearman_all / 100, abs=2e-6)
    saved = json.loads(run.files[0].read_text())
    assert len(saved["dataset_revision"]) == 40  # content hash of the data files
