"""The composite DALRLoss built from a model and keyword arguments only: settings, presets, weights, errors."""

from __future__ import annotations

import pytest
import torch

from dalr_hf.data import DALRDataCollator, TwoSourceDataset
from dalr_hf.losses import PRESETS, TERMS, DALRLoss, LossSettings, effective_weights
from dalr_hf.student import build_student
from dalr_hf.teachers import CachedTeachers, TeacherEnsemble
from dalr_hf.training_args import DALRTrainingArguments
from tests.tiny_fixtures import tiny_data

# lambda = cml_weight 0.1, mu = iml_weight 0.2, gamma = rank_weight 1 (the defaults); the rest from the preset
EXPECTED_WEIGHTS = {
    "reference": {
        "L_info": 1.0,
        "L_ground": 0.1,
        "L_cma": 0.1,
        "L_cons": 0.001,
        "L_ima": 0.2,
        "L_rank": 0.2,
        "L_g2l": 0.2,
    },
    "clean": {"L_info": 1.0, "L_ground": 0.1, "L_cma": 0.1, "L_cons": 0.001, "L_ima": 0.2, "L_rank": 0.2, "L_g2l": 0.2},
    "paper": {"L_info": 1.0, "L_ground": 0.1, "L_cma": 0.1, "L_cons": 0.1, "L_ima": 0.2, "L_rank": 0.2, "L_g2l": 0.0},
    "finetune": {
        "L_info": 1.0,
        "L_ground": 0.1,
        "L_cma": 0.1,
        "L_cons": 0.1,
        "L_ima": 0.2,
        "L_rank": 0.2,
        "L_g2l": 0.0,
    },
}


@pytest.fixture()
def teachers(tiny_teacher_dir, tiny_bert_dir):
    return TeacherEnsemble.from_configs(
        [{"name_or_path": tiny_teacher_dir, "weight": 0.4}, {"name_or_path": tiny_bert_dir, "weight": 0.6}]
    )


def _paired_batch(student, n=6, dim=32):
    _, pairs = tiny_data(n_text=2, n_pairs=n, dim=dim, seed=3)
    collator = DALRDataCollator(student.tokenizer, max_seq_length=16)
    return collator(TwoSourceDataset(None, pairs).__getitems__(list(range(n))))


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_loss_from_keywords_only_has_the_preset_weights_and_settings(tiny_student, teachers, preset):
    loss = DALRLoss(tiny_student, teachers, preset, image_feature_dim=32)
    assert loss.weights == pytest.approx(EXPECTED_WEIGHTS[preset])
    assert set(loss.weights) == set(TERMS)
    for name, value in PRESETS[preset].items():
        if name in LossSettings.names():
            assert getattr(loss.settings, name) == value, name
    assert (loss.g2l is not None) == PRESETS[preset]["use_g2l"]


def test_keywords_override_the_preset_and_flow_into_terms_and_weights(tiny_student, teachers):
    loss = DALRLoss(
        tiny_student,
        teachers,
        preset="reference",
        image_feature_dim=32,
        cml_weight=0.5,
        iml_weight=0.0,
        cons_weight=0.2,
        use_g2l=False,
        mismatch="derangement",
        arc_margin_text=0.0,
        ground_weight_location="baseline",
        ground_weight=0.3,
    )
    assert loss.weights == pytest.approx(
        {"L_info": 1.0, "L_ground": 0.3, "L_cma": 0.5, "L_cons": 0.1, "L_ima": 0.0, "L_rank": 0.0, "L_g2l": 0.0}
    )
    assert loss.g2l is None and loss.consistency.mismatch == "derangement"
    assert loss.info_nce.margin == 0.0
    assert loss.settings.teacher_sim_fp16 is True  # untouched fields keep the preset's value


def test_forward_on_a_paired_batch_returns_every_weighted_term(tiny_student, teachers):
    loss = DALRLoss(tiny_student, teachers, "clean", image_feature_dim=32)
    terms = loss(_paired_batch(tiny_student))
    assert set(terms) == set(TERMS)
    assert all(v.dtype == torch.float32 and v.dim() == 0 and torch.isfinite(v) for v in terms.values())
    total = torch.stack(list(terms.values())).sum()
    total.backward()
    assert loss.mlp.dense.weight.grad is not None and loss.grounding.text_proj.weight.grad is not None


def test_text_only_loss_needs_no_teachers(tiny_student):
    loss = DALRLoss(tiny_student, temperature=0.1)
    assert not loss.multimodal and loss.teacher_weights is None
    collator = DALRDataCollator(tiny_student.tokenizer, max_seq_length=16)
    terms = loss(collator({"kind": "text", "text": ["a dog runs", "the red car", "a man sings at night"]}))
    assert set(terms) == {"L_info"} and torch.isfinite(terms["L_info"])


def test_unknown_setting_is_refused_with_the_nearest_name(tiny_student):
    with pytest.raises(TypeError, match=r"'cons_wieght' \(did you mean 'cons_weight'\?\)"):
        DALRLoss(tiny_student, cons_wieght=0.1)
    with pytest.raises(ValueError, match="preset='nope' is not one of"):
        DALRLoss(tiny_student, preset="nope")
    with pytest.raises(ValueError, match="mismatch='shuffle' is not one of"):
        DALRLoss(tiny_student, mismatch="shuffle")
    with pytest.raises(ValueError, match="cml_weight must be >= 0"):
        DALRLoss(tiny_student, cml_weight=-1.0)


def test_training_arguments_in_place_of_teachers_point_to_from_training_args(tiny_student, tmp_path):
    args = DALRTrainingArguments(output_dir=str(tmp_path), report_to="none")
    with pytest.raises(TypeError, match="from_training_args"):
        DALRLoss(tiny_student, args)


def test_from_training_args_passes_every_setting_generically(tiny_student, teachers, tmp_path):
    args = DALRTrainingArguments(
        output_dir=str(tmp_path), report_to="none", preset="paper", cml_weight=0.05, seed=7, kl_student_temp_total=0.02
    )
    loss = DALRLoss.from_training_args(tiny_student, args, teachers, image_feature_dim=32)
    assert loss.settings.to_dict() == {name: getattr(args, name) for name in LossSettings.names()}
    assert loss.settings.kl_student_temp == pytest.approx(0.02 / 0.05)
    assert loss.seed == 7 and loss.weights == pytest.approx(effective_weights(args))
    by_keywords = DALRLoss(tiny_student, teachers, "paper", image_feature_dim=32, seed=7, **args.loss_kwargs())
    for (name, a), (_, b) in zip(loss.state_dict().items(), by_keywords.state_dict().items()):
        if not name.startswith("model."):
            assert torch.equal(a, b), name


def test_heads_are_seeded_without_touching_the_global_rng(tiny_student, teachers):
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = DALRLoss(tiny_student, teachers, image_feature_dim=32, seed=5)
    assert torch.equal(torch.rand(3), expected_next)
    b = DALRLoss(tiny_student, teachers, image_feature_dim=32, seed=5)
    c = DALRLoss(tiny_student, teachers, image_feature_dim=32, seed=6)
    assert torch.equal(a.mlp.dense.weight, b.mlp.dense.weight)
    assert not torch.equal(a.mlp.dense.weight, c.mlp.dense.weight)


def test_cached_teachers_carry_weights_and_fingerprints(tiny_student, teachers):
    cached = teachers.cached()
    loss = DALRLoss(tiny_student, cached, "clean", image_feature_dim=32, use_g2l=False)
    assert loss.teachers is None and loss.teacher_weights == [0.4, 0.6]
    assert loss.teacher_fingerprints == teachers.fingerprints()
    # g2l without online teachers reads cached token states from each batch (tests/features/test_teacher_tokens.py)
    assert DALRLoss(tiny_student, cached, "clean", image_feature_dim=32).g2l is not None
    with pytest.raises(ValueError, match="CachedTeachers: 2 weights but 1 fingerprints"):
        CachedTeachers(weights=[0.5, 0.5], fingerprints=[{}])
    with pytest.raises(ValueError, match="needs teachers"):
        DALRLoss(tiny_student, image_feature_dim=32, use_g2l=False)


def test_config_dict_and_citation(tiny_student, teachers):
    loss = DALRLoss(tiny_student, teachers, "clean", image_feature_dim=32, cons_weight=0.5)
    config = loss.get_config_dict()
    assert config["preset"] == "clean" and config["cons_weight"] == 0.5 and config["image_feature_dim"] == 32
    assert config["teacher_weights"] == [0.4, 0.6]
    assert "2506.21096" in loss.citation and "Dual-level Alignment Learning" in loss.citation


def test_cma_width_check_names_both_widths(tiny_bert_dir, teachers):
    student = build_student(tiny_bert_dir)
    with pytest.raises(ValueError, match="32-d MLP output with the 48-d"):
        DALRLoss(student, teachers, image_feature_dim=48)


def test_every_loss_setting_is_a_documented_training_argument_and_a_yaml_key(tmp_path):
    from dataclasses import fields

    from transformers import HfArgumentParser

    parser = HfArgumentParser(DALRTrainingArguments)
    actions = {a.dest: a for a in parser._actions}
    for f in fields(LossSettings):
        assert f.name in actions, f.name
        assert f.metadata["help"] and actions[f.name].help.startswith(f.metadata["help"][:30]), f.name
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"output_dir: {tmp_path / 'out'}\nreport_to: none\npreset: paper\ncml_weight: 0.3\nmismatch: roll5\n"
        "use_g2l: true\n"
    )
    (args,) = parser.parse_yaml_file(str(recipe))
    assert (args.cml_weight, args.mismatch, args.use_g2l, args.cons_weight) == (0.3, "roll5", True, 1.0)
    assert args.loss_kwargs()["cml_weight"] == 0.3 and "preset" not in args.loss_kwargs()
