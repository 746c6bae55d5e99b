"""Cached teacher token states: the g2l term (and every other term) from the cache equals the online teachers'.

The reference g2l normalises the teachers' token states over the token axis with the pads included, so the cache
must reproduce each batch's own padding; these tests compare whole DALR loss dicts computed from online teachers
and from the cache, on batches padded to different lengths, and check that stale token states are refused.
"""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest
import torch
from datasets import Dataset

from dalr_hf.data import DALRDataCollator, TwoSourceDataset
from dalr_hf.features import attach_teacher_cache, build_teacher_cache, load_teacher_cache
from dalr_hf.losses.dalr import DALRLoss
from dalr_hf.student import build_student
from dalr_hf.teachers import Teacher, TeacherEnsemble
from dalr_hf.trainer import DALRTrainer
from dalr_hf.training_args import DALRTrainingArguments
from tests.features.feature_helpers import STAND_IN_META
from tests.tiny_fixtures import tiny_data

ALPHA = 0.33
CAPTIONS = [
    "a dog runs on the beach",
    "two young guys with shaggy hair look at their hands while hanging out in the yard",
    "a child in a pink dress is climbing up a set of stairs",
    "a man sleeps",
    "several people stand in front of a building waiting for the bus to arrive at the station in the rain on a "
    "cold and windy morning in the middle of the winter",  # longer than 32 tokens: truncated
    "a cat",
    "the girl is riding a bicycle down the street",
    "an old man plays the guitar",
    "kids play football",
    "a woman with a red umbrella walks through the rain",
    "a brown dog catches a frisbee in mid air",
    "people",
]
# shuffled training batches of different padded lengths: short captions only, mixed, and one with a truncated row
BATCHES = [[3, 5, 8, 11], [7, 1, 10, 3, 0, 5], [4, 9, 2, 6, 11]]


@pytest.fixture(scope="module")
def ensemble(tiny_bert_dir, tiny_teacher_dir) -> TeacherEnsemble:
    return TeacherEnsemble.from_configs(
        [
            {"name_or_path": tiny_teacher_dir, "weight": ALPHA},
            {"name_or_path": tiny_bert_dir, "weight": 1 - ALPHA, "pooler": "mean"},
        ]
    )


@pytest.fixture(scope="module")
def paired() -> Dataset:
    rng = np.random.default_rng(0)
    return Dataset.from_dict(
        {
            "image_id": [f"img{i // 2}" for i in range(len(CAPTIONS))],
            "caption": CAPTIONS,
            "image_features": rng.standard_normal((len(CAPTIONS), 32)).astype(np.float32).tolist(),
        }
    )


@pytest.fixture(scope="module")
def token_cache(tmp_path_factory, ensemble, paired):
    folder = tmp_path_factory.mktemp("tokens") / "cache"
    build_teacher_cache(ensemble, paired, folder, dtype="float32", batch_size=5, chunk_size=7, progress=False)
    return folder


def _args(tmp_path, **overrides) -> DALRTrainingArguments:
    values = dict(
        output_dir=str(tmp_path / "out"),
        report_to="none",
        per_device_train_batch_size=4,
        eval_strategy="no",
        save_strategy="no",
        load_best_model_at_end=False,
        logging_steps=1,
    )
    values.update(overrides)
    return DALRTrainingArguments(**values)


def test_the_cache_stores_every_position_and_the_valid_counts(token_cache, ensemble):
    cache, metadata = load_teacher_cache(token_cache)
    tokens = metadata["token_states"]
    assert tokens["positions"] == 31 and tokens["hidden_size"] == 32
    assert tokens["fingerprint"]["weights"] == [ALPHA, 1 - ALPHA]
    assert tokens["pad_probe_max_abs_diff"] <= 1e-5
    states = cache.with_format("numpy")[:]["teacher_tokens"]
    assert states.shape == (len(CAPTIONS), 31, 32) and states.dtype == np.float32
    lengths = ensemble.teachers[0].tokenizer(CAPTIONS, truncation=True, max_length=32)["input_ids"]
    assert cache["teacher_token_len"] == [len(ids) - 1 for ids in lengths]
    assert max(cache["teacher_token_len"]) == 31  # the long caption is truncated to max_length


@pytest.mark.parametrize("preset", ["reference", "clean"])
def test_cached_token_states_give_the_online_loss_terms(tmp_path, tiny_bert_dir, ensemble, paired, token_cache, preset):
    args = _args(tmp_path, preset=preset)
    assert args.use_g2l
    student = build_student(tiny_bert_dir)
    torch.manual_seed(0)
    online_loss = DALRLoss.from_training_args(student, args, ensemble, image_feature_dim=32)
    cached_loss = copy.deepcopy(online_loss)
    cached_loss.teachers = None  # no teacher can run: everything must come from the batch
    online_loss.eval()
    cached_loss.eval()  # no dropout: both losses see the same student vectors

    dataset = attach_teacher_cache(paired, token_cache, ensemble)
    view = TwoSourceDataset(paired_dataset=dataset)
    assert {"teacher_tokens", "teacher_token_len"} <= set(view.paired_columns)
    collator = DALRDataCollator(student.tokenizer, max_seq_length=32)
    padded_lengths = set()
    for rows in BATCHES:
        batch = collator(view.__getitems__(rows))
        online_batch = {k: v for k, v in batch.items() if not k.startswith("teacher_")}
        online = ensemble([CAPTIONS[i] for i in rows], with_tokens=True)
        # the batch's own padding, reproduced exactly
        assert batch["teacher_token_states"].shape == online.token_states.shape
        assert torch.equal(batch["teacher_token_mask"], online.token_mask)
        torch.testing.assert_close(batch["teacher_token_states"], online.token_states, rtol=0, atol=1e-5)
        padded_lengths.add(online.token_states.shape[1])

        with torch.no_grad():
            online_loss.generator.manual_seed(5)
            want = online_loss(online_batch)
            cached_loss.generator.manual_seed(5)
            got = cached_loss(batch)
        assert set(got) == set(want) and "L_g2l" in got
        for name in want:
            torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-5, msg=f"{preset} {rows} {name}")
        assert want["L_g2l"] > 0
    assert len(padded_lengths) == len(BATCHES)  # three different paddings were compared


def test_stale_token_states_are_refused(tmp_path, ensemble, paired, token_cache, tiny_bert_dir, tiny_teacher_dir):
    reweighted = TeacherEnsemble(
        [
            Teacher({"name_or_path": tiny_teacher_dir, "weight": 0.5}),
            Teacher({"name_or_path": tiny_bert_dir, "weight": 0.5, "pooler": "mean"}),
        ]
    )
    # the embeddings do not depend on the weights, the mixed token states do
    assert len(attach_teacher_cache(paired, token_cache, reweighted, token_states=False)) == len(CAPTIONS)
    with pytest.raises(ValueError, match=r"token states .* teacher weights \[0\.33, 0\.6[0-9]*\].* \[0\.5, 0\.5\]"):
        attach_teacher_cache(paired, token_cache, reweighted)
    with pytest.raises(ValueError, match="teacher weights"):
        attach_teacher_cache(paired, token_cache, [t.config for t in reweighted.teachers])
    bf16 = TeacherEnsemble([Teacher(t.config, autocast_dtype=torch.bfloat16) for t in ensemble.teachers])
    with pytest.raises(ValueError, match=r"teacher autocast \[None, None\].*torch\.bfloat16"):
        attach_teacher_cache(paired, token_cache, bf16)
    # the token fingerprint is part of the build configuration: a rebuild with other weights needs overwrite
    with pytest.raises(FileExistsError, match="token_states"):
        build_teacher_cache(reweighted, paired, token_cache, dtype="float32", progress=False)


def test_teachers_whose_pad_states_depend_on_padding_are_refused(tmp_path, ensemble, paired, monkeypatch):
    teacher = ensemble.teachers[1]
    original = teacher.encode_with_tokens

    def padding_dependent(sentences, device=None, padding=True):
        pooled, tokens, mask = original(sentences, device=device, padding=padding)
        if padding == "max_length":  # pad positions that "see" the trailing pads
            tokens = tokens + (1 - mask.unsqueeze(-1).float()) * 1e-3
        return pooled, tokens, mask

    monkeypatch.setattr(teacher, "encode_with_tokens", padding_dependent)
    with pytest.raises(ValueError, match="differ by 1.00e-03 .* padded to max_length 32"):
        build_teacher_cache(ensemble, paired, tmp_path / "cache", dtype="float32", progress=False)
    assert not (tmp_path / "cache" / "dalr_teacher_cache.json").exists()


def test_reduced_precision_teachers_are_cached_with_a_warning(tmp_path, ensemble, paired, caplog):
    bf16 = TeacherEnsemble([Teacher(t.config, autocast_dtype=torch.bfloat16) for t in ensemble.teachers])
    with caplog.at_level(logging.WARNING):
        _, metadata = build_teacher_cache(bf16, paired, tmp_path / "cache", dtype="float32", progress=False)
    assert "bfloat16 autocast" in caplog.text and "not to float32 round-off" in caplog.text
    assert metadata["token_states"]["fingerprint"]["autocast"] == ["torch.bfloat16"] * 2
    assert len(attach_teacher_cache(paired, tmp_path / "cache", bf16)) == len(CAPTIONS)


def test_token_states_need_teachers_that_can_be_mixed(tmp_path, tiny_bert_dir, minilm_path, paired):
    mixed_widths = TeacherEnsemble.from_configs(
        [{"name_or_path": tiny_bert_dir, "weight": 0.5}, {"name_or_path": minilm_path, "weight": 0.5}]
    )
    with pytest.raises(ValueError, match=r"hidden sizes differ .*--no-token-states"):
        build_teacher_cache(mixed_widths, paired, tmp_path / "cache", progress=False)
    cache, metadata = build_teacher_cache(mixed_widths, paired, tmp_path / "cache", progress=False, token_states=False)
    assert metadata["token_states"] is None and "teacher_tokens" not in cache.column_names


def test_trainer_runs_g2l_from_the_cache_without_teachers(
    tmp_path, tiny_bert_dir, minilm_path, ensemble, paired, token_cache, caplog
):
    text, _ = tiny_data(n_text=16)
    dataset = attach_teacher_cache(paired, token_cache, ensemble)

    def trainer_without_teachers(student_dir: str, paired_dataset: Dataset, **overrides) -> DALRTrainer:
        """A trainer whose teacher outputs all come from the cache in ``paired_dataset`` (no online teachers)."""
        return DALRTrainer(
            model=build_student(student_dir),
            args=_args(tmp_path, preset="reference", **overrides),
            text_dataset=text,
            paired_dataset=paired_dataset,
            teachers=None,
            teacher_weights=ensemble.weights,
        )

    trainer = trainer_without_teachers(tiny_bert_dir, dataset, max_steps=3, paired_batch_size=6)
    trainer.train()
    g2l = [e["L_g2l"] for e in trainer.state.log_history if "L_g2l" in e]
    assert g2l and all(np.isfinite(v) and v > 0 for v in g2l)

    # a cache without token states cannot feed g2l without teachers: refused before training, saying what to do
    embeddings_only = attach_teacher_cache(paired, token_cache, ensemble, token_states=False)
    with pytest.raises(ValueError, match="use_g2l needs teacher token states.*cache-teachers"):
        trainer_without_teachers(tiny_bert_dir, embeddings_only)
    with pytest.raises(ValueError, match="384-d vector with the cached teacher token states, which are 32-d"):
        # grounding-space CMA, so that the image width (32) is no obstacle and the token width check is reached
        trainer_without_teachers(minilm_path, dataset, cma_space="grounding")
    with caplog.at_level(logging.INFO):
        DALRTrainer(
            model=build_student(tiny_bert_dir),
            args=_args(tmp_path, preset="reference"),
            text_dataset=text,
            paired_dataset=dataset,
            teachers=ensemble,
        )
    assert "online teachers will not run" in caplog.text


def test_train_script_uses_no_teacher_forward_pass_with_a_token_cache(
    tmp_path, tiny_bert_dir, tiny_teacher_dir, monkeypatch, capsys
):
    """``dalr-hf train`` with the default preset (g2l on) and a token-state cache: the teachers never run."""
    import os

    from dalr_hf import teachers as teachers_module
    from dalr_hf.features import save_feature_store
    from dalr_hf.scripts import train

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    dev = tmp_path / "senteval" / "STS" / "STSBenchmark"
    dev.mkdir(parents=True)
    with open(
        os.path.join(root, "data", "senteval", "downstream", "STS", "STSBenchmark", "sts-dev.csv"), encoding="utf-8"
    ) as f:
        (dev / "sts-dev.csv").write_text("".join(f.readlines()[:60]), encoding="utf-8")
    rng = np.random.default_rng(0)
    store = save_feature_store(
        {
            "image_id": [f"img{i // 2}" for i in range(len(CAPTIONS))],
            "caption": CAPTIONS,
            "image_features": rng.standard_normal((len(CAPTIONS), 32)).astype(np.float32),
        },
        tmp_path / "store",
        dict(STAND_IN_META, normalized=False),
    )
    ensemble = TeacherEnsemble.from_configs(
        [{"name_or_path": tiny_teacher_dir, "weight": ALPHA}, {"name_or_path": tiny_bert_dir, "weight": 1 - ALPHA}]
    )
    build_teacher_cache(ensemble, store, tmp_path / "cache", dtype="float32", progress=False)
    text, _ = tiny_data(n_text=24)
    (tmp_path / "wiki.txt").write_text("\n".join(text["text"]) + "\n", encoding="utf-8")

    forwards = []
    original = teachers_module.Teacher._forward

    def counting_forward(self, *args, **kwargs):
        forwards.append(self.name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(teachers_module.Teacher, "_forward", counting_forward)
    train.main(
        [
            "--student_model",
            tiny_bert_dir,
            "--teachers",
            tiny_teacher_dir,
            tiny_bert_dir,
            "--teacher_weights",
            str(ALPHA),
            str(1 - ALPHA),
            "--text_corpus",
            str(tmp_path / "wiki.txt"),
            "--paired_dataset",
            str(tmp_path / "store"),
            "--teacher_cache",
            str(tmp_path / "cache"),
            "--eval_data_dir",
            str(tmp_path / "senteval"),
            "--output_dir",
            str(tmp_path / "out"),
            "--preset",
            "reference",
            "--max_steps",
            "4",
            "--per_device_train_batch_size",
            "6",
            "--eval_strategy",
            "no",
            "--save_strategy",
            "no",
            "--load_best_model_at_end",
            "false",
            "--logging_steps",
            "1",
            "--report_to",
            "none",
            "--export_dir",
            "none",
            "--use_cpu",
            "true",
        ]
    )
    assert forwards == []  # no teacher forward pass: embeddings and token states all came from the cache
    logged = capsys.readouterr().out  # the Trainer prints every logged term
    assert "'L_g2l'" in logged and "'L_rank'" in logged
