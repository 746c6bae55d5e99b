"""Issue 9/10 loss behaviour: zero-weight terms are not computed (and teachers not run when no term reads them),
the reference's roll5 consistency with ``mask_same_image_negatives: false``, the fine-tuning preset's knobs."""

from __future__ import annotations

import math

import pytest
import torch

from dalr_hf.data import DALRDataCollator
from dalr_hf.losses.consistency import ConsistencyLoss
from dalr_hf.losses.dalr import DALRLoss, needs_teachers
from dalr_hf.losses.rank import RankDistillationLoss, listmle
from dalr_hf.student import build_student
from dalr_hf.teachers import TeacherEnsemble
from dalr_hf.training_args import DALRTrainingArguments

DIM = 32
CAPTIONS = [
    "a dog runs on the grass",
    "two men play guitar on a stage",
    "a child eats an ice cream",
    "a woman rides a red bicycle",
    "people walk along a busy street",
    "a cat sleeps on a sofa",
]


def _loss(student, args, image_feature_dim=None, teachers=None) -> DALRLoss:
    return DALRLoss.from_training_args(student, args, teachers, image_feature_dim=image_feature_dim)


def _args(tmp_path, **overrides) -> DALRTrainingArguments:
    values = dict(output_dir=str(tmp_path / "out"), report_to="none", per_device_train_batch_size=6)
    values.update(overrides)
    return DALRTrainingArguments(**values)


class CountingTeachers(TeacherEnsemble):
    """A real TeacherEnsemble that counts its forward calls."""

    def __init__(self, ensemble: TeacherEnsemble) -> None:
        self.__dict__.update(ensemble.__dict__)
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return super().__call__(*args, **kwargs)


def _paired_batch(student) -> dict:
    collate = DALRDataCollator(student.tokenizer, max_seq_length=16)
    gen = torch.Generator().manual_seed(0)
    rows = {
        "caption": CAPTIONS,
        "image_id": [f"img{i}" for i in range(len(CAPTIONS))],
        "image_features": torch.randn(len(CAPTIONS), DIM, generator=gen).tolist(),
    }
    return collate({"kind": "paired", **rows})


@pytest.fixture()
def counting_teachers(tiny_teacher_dir):
    ensemble = TeacherEnsemble.from_configs(
        [{"name_or_path": tiny_teacher_dir, "weight": 1.0, "pooler": "mean", "max_length": 16}], device="cpu"
    )
    return CountingTeachers(ensemble)


def test_mcse_configuration_runs_no_teacher_and_computes_only_its_terms(tmp_path, tiny_bert_dir):
    args = _args(tmp_path, preset="finetune", cml_weight=0.0, iml_weight=0.0)
    assert not needs_teachers(args)
    student = build_student(tiny_bert_dir)
    # No teachers at all: accepted, because no weighted term reads them.
    loss = _loss(student, args, image_feature_dim=DIM, teachers=None)
    assert loss.active_terms == {"L_info", "L_ground"}
    assert loss.consistency is None and loss.cma is None and loss.rank is None and loss.ima is None
    terms = loss(_paired_batch(student))
    assert set(terms) == {"L_info", "L_ground"}
    assert terms["L_ground"].item() > 0 and math.isfinite(terms["L_info"].item())


def test_teachers_run_only_when_a_teacher_term_has_weight(tmp_path, tiny_bert_dir, counting_teachers):
    student = build_student(tiny_bert_dir)
    batch = _paired_batch(student)
    no_teacher_terms = _loss(
        student,
        _args(tmp_path, preset="finetune", iml_weight=0.0, cml_weight=0.1, cons_weight=1.0),
        image_feature_dim=DIM,
        teachers=counting_teachers,
    )
    # cml_weight > 0 keeps L_cma, which reads the teachers
    no_teacher_terms(batch)
    assert counting_teachers.calls == 1
    counting_teachers.calls = 0
    args = _args(tmp_path, preset="finetune", cml_weight=0.0, iml_weight=0.0, ground_weight=0.0)
    loss = _loss(student, args, image_feature_dim=DIM, teachers=counting_teachers)
    assert loss.active_terms == {"L_info"} and loss.grounding is None
    assert set(loss(batch)) == {"L_info"}
    assert counting_teachers.calls == 0
    full = _loss(student, _args(tmp_path, preset="finetune"), image_feature_dim=DIM, teachers=counting_teachers)
    terms = full(batch)
    assert counting_teachers.calls == 1
    assert set(terms) == {"L_info", "L_ground", "L_cons", "L_cma", "L_ima", "L_rank"}


def test_a_teacher_term_without_teachers_is_refused(tmp_path, tiny_bert_dir):
    student = build_student(tiny_bert_dir)
    with pytest.raises(ValueError, match="needs teachers.*cml_weight and iml_weight to 0"):
        _loss(student, _args(tmp_path, preset="finetune", cml_weight=0.0), image_feature_dim=DIM)


def test_reference_roll5_keeps_same_image_mismatches_when_masking_is_off():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(5, 8, generator=gen)
    c = torch.randn(5, 6, generator=gen)
    ids = torch.arange(5)
    # At B = 5, roll5 maps every row to itself: each "mismatch" is the matched pair.
    module = ConsistencyLoss(text_dim=8, image_dim=6, sim_dim=4, mismatch="roll5", drop_same_image=False).train()
    loss = module(z, c, ids)
    a, b = module.text_tower(z), module.image_tower(c)
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1, eps=1e-12).double().tolist()
    expected = (sum(1 - x for x in cos) + sum(max(0.0, x - 0.2) for x in cos)) / (2 * 5)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    # The masking default drops them (mean over the matched pairs only): a different value.
    dropped = ConsistencyLoss(text_dim=8, image_dim=6, sim_dim=4, mismatch="roll5").train()
    dropped.load_state_dict(module.state_dict())
    assert dropped(z, c, ids).item() == pytest.approx(sum(1 - x for x in cos) / 5, abs=1e-6)
    assert abs(expected - sum(1 - x for x in cos) / 5) > 1e-3


def test_dalr_loss_passes_the_masking_flag_to_the_consistency_term(tmp_path, tiny_bert_dir, counting_teachers):
    student = build_student(tiny_bert_dir)
    off = _args(tmp_path, preset="reference", mask_same_image_negatives=False, use_g2l=False, cma_space="grounding")
    assert _loss(student, off, image_feature_dim=DIM, teachers=counting_teachers).consistency.drop_same_image is False
    on = _args(tmp_path, preset="reference", use_g2l=False, cma_space="grounding")
    assert _loss(student, on, image_feature_dim=DIM, teachers=counting_teachers).consistency.drop_same_image is True


def test_rank_mean_reduction_divides_by_the_list_length():
    gen = torch.Generator().manual_seed(0)
    s, r = torch.randn(8, 8, generator=gen) * 20, torch.randn(8, 8, generator=gen)
    total = listmle(s, r, generator=torch.Generator().manual_seed(3))
    mean = RankDistillationLoss(reduction="mean")(s, r, generator=torch.Generator().manual_seed(3))
    assert mean.item() == pytest.approx(total.item() / 8, rel=1e-6)
    with pytest.raises(ValueError, match="unknown rank reduction 'max'"):
        RankDistillationLoss(reduction="max")


def test_finetune_preset_trains_the_students_own_embedding(tmp_path, tiny_bert_dir):
    student = build_student(tiny_bert_dir, pooling="mean")
    args = _args(tmp_path, preset="finetune")
    assert (args.student_head, args.rank_reduction, args.arc_margin_text, args.cma_space) == (
        "none",
        "mean",
        0.0,
        "grounding",
    )
    assert args.kl_teacher_temp == 0.05 and args.kl_student_temp * args.temperature == pytest.approx(0.05)
    loss = _loss(student, args)
    assert loss.mlp is None
    batch = _paired_batch(student)
    batch["paired"] = torch.tensor(False)
    student.eval()  # no dropout: the two views are equal, so the InfoNCE logits are exactly the embeddings' cosines
    h = student(dict(batch))["sentence_embedding"]
    expected = torch.nn.functional.cross_entropy(
        torch.nn.functional.cosine_similarity(h[:, None], h[None], dim=-1) / args.temperature,
        torch.arange(len(CAPTIONS)),
    )
    assert loss(batch)["L_info"].item() == pytest.approx(expected.item(), rel=1e-5)
    # the reference keeps the MLP head
    assert _loss(student, _args(tmp_path, preset="reference")).mlp is not None
