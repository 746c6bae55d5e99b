from __future__ import annotations

import math

import pytest
import torch

from dalr_hf.losses import RankDistillationLoss, listmle, listnet
from dalr_hf.losses.rank import teacher_rank_scores


def _naive_listmle(student, teacher, perm, exact: bool) -> float:
    """Permute columns, stable-sort each row by teacher descending, then the ListMLE sum, row by row."""
    s_rows = student.detach().double().tolist()
    r_rows = teacher.detach().double().tolist()
    total = 0.0
    for s_row, r_row in zip(s_rows, r_rows):
        s_p = [s_row[j] for j in perm]
        r_p = [r_row[j] for j in perm]
        order = sorted(range(len(r_p)), key=lambda j: -r_p[j])  # Python's sort is stable
        s_sorted = [s_p[j] for j in order]
        top = max(s_sorted)
        for k in range(len(s_sorted)):
            suffix = s_sorted[k:]
            if exact:
                total += top + math.log(sum(math.exp(v - top) for v in suffix)) - s_sorted[k]
            else:
                total += math.log(sum(math.exp(v - top) for v in suffix) + 1e-7) - (s_sorted[k] - top)
    return total / len(s_rows)


def test_teacher_rank_scores_against_naive(gen, naive):
    a = torch.randn(5, 6, generator=gen)
    b = torch.randn(5, 9, generator=gen)
    got = teacher_rank_scores([a, b], [0.33, 0.67], temperature=0.05)
    ca, cb = naive.cos_matrix(a, a), naive.cos_matrix(b, b)
    expected = torch.tensor([[(0.33 * ca[i][j] + 0.67 * cb[i][j]) / 0.05 for j in range(5)] for i in range(5)])
    assert got.dtype == torch.float32
    assert torch.allclose(got.double(), expected.double(), atol=1e-5)
    assert torch.allclose(got.diagonal(), torch.full((5,), 20.0), atol=1e-5)
    assert torch.all(got <= got.diagonal().unsqueeze(1) + 1e-5)
    # fp16 teacher embeddings are upcast before the cosines.
    assert teacher_rank_scores([a.half()], [1.0]).dtype == torch.float32


@pytest.mark.parametrize("batch", [1, 2, 6])
@pytest.mark.parametrize("exact", [True, False])
def test_listmle_against_naive(gen, batch, exact):
    student = 5 * torch.randn(batch, batch, generator=gen)
    teacher = torch.randn(batch, batch, generator=gen)
    got = listmle(student, teacher, exact=exact, generator=torch.Generator().manual_seed(3))
    perm = torch.randperm(batch, generator=torch.Generator().manual_seed(3)).tolist()
    assert got.item() == pytest.approx(_naive_listmle(student, teacher, perm, exact), abs=1e-4)


def test_listmle_tie_breaking_follows_the_shared_permutation(gen):
    student = 5 * torch.randn(5, 5, generator=gen)
    teacher = torch.tensor([[1.0, 1.0, 0.0, 0.0, 2.0]]).repeat(5, 1)  # ties inside every row
    values = set()
    for seed in range(12):
        got = listmle(student, teacher, generator=torch.Generator().manual_seed(seed))
        perm = torch.randperm(5, generator=torch.Generator().manual_seed(seed)).tolist()
        assert got.item() == pytest.approx(_naive_listmle(student, teacher, perm, True), abs=1e-4)
        values.add(round(got.item(), 4))
    assert len(values) > 1  # ties really are broken differently by different permutations


@pytest.mark.parametrize("batch", [2, 8, 16])
def test_listmle_exact_is_zero_for_a_perfectly_ordered_widely_separated_student(gen, batch):
    teacher = torch.randn(batch, batch, generator=gen)
    ranks = teacher.argsort(dim=1, descending=True).argsort(dim=1)  # rank 0 = teacher's top item
    student = 100.0 * (batch - ranks).float()
    exact = listmle(student, teacher, exact=True, generator=torch.Generator().manual_seed(0))
    assert exact.item() == pytest.approx(0.0, abs=1e-4)
    reference = listmle(student, teacher, exact=False, generator=torch.Generator().manual_seed(0))
    # Reference: every term below the top becomes ~ -16.1 + 100 * rank instead of ~ 0.
    expected_reference = sum(100.0 * r + math.log(1e-7) for r in range(1, batch))
    assert reference.item() == pytest.approx(expected_reference, rel=1e-3)


@pytest.mark.parametrize("batch", [1, 2, 7, 32])
@pytest.mark.parametrize("exact", [True, False])
def test_listmle_constant_student_gives_log_factorial(gen, batch, exact):
    teacher = torch.randn(batch, batch, generator=gen)
    student = torch.full((batch, batch), 3.0)
    got = listmle(student, teacher, exact=exact, generator=torch.Generator().manual_seed(1))
    assert got.item() == pytest.approx(math.lgamma(batch + 1), rel=1e-5, abs=1e-5)


def test_reference_listmle_departs_once_a_row_spans_more_than_16_nats(gen):
    batch = 8
    teacher = torch.randn(batch, batch, generator=gen)
    ranks = teacher.argsort(dim=1, descending=True).argsort(dim=1).float()
    # Teacher order with gaps of 40/7 ~ 5.7 nats: the row spans 40 nats (cos/0.05 spans up to 40).
    student = 40.0 - ranks * (40.0 / (batch - 1))
    exact = listmle(student, teacher, exact=True, generator=torch.Generator().manual_seed(0))
    reference = listmle(student, teacher, exact=False, generator=torch.Generator().manual_seed(0))
    assert exact.item() < 0.03
    assert reference.item() > 20.0
    # Within 16 nats both forms agree.
    narrow = 0.5 * student / 40.0 * 10.0
    a = listmle(narrow, teacher, exact=True, generator=torch.Generator().manual_seed(0))
    b = listmle(narrow, teacher, exact=False, generator=torch.Generator().manual_seed(0))
    assert a.item() == pytest.approx(b.item(), abs=1e-4)


def test_listmle_does_not_modify_inputs_and_has_finite_gradients(gen):
    student = (5 * torch.randn(6, 6, generator=gen)).requires_grad_(True)
    teacher = torch.randn(6, 6, generator=gen)
    student_copy, teacher_copy = student.detach().clone(), teacher.clone()
    for exact in (True, False):
        loss = listmle(student, teacher, exact=exact)
        loss.backward()
        assert torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0
        student.grad = None
    assert torch.equal(student.detach(), student_copy) and torch.equal(teacher, teacher_copy)


def _naive_listnet(student, teacher, naive) -> float:
    s_rows = student.detach().double().tolist()
    r_rows = teacher.detach().double().tolist()
    total = 0.0
    for i, (s_row, r_row) in enumerate(zip(s_rows, r_rows)):
        log_p = naive.log_softmax_row(s_row, {i})
        q = naive.softmax_row(r_row, {i})
        total -= sum(q[j] * log_p[j] for j in range(len(s_row)) if j != i)
    return total / len(s_rows)


@pytest.mark.parametrize("batch", [2, 3, 6])
def test_listnet_against_naive(gen, naive, batch):
    student = (5 * torch.randn(batch, batch, generator=gen)).requires_grad_(True)
    teacher = 20 * torch.randn(batch, batch, generator=gen)
    student_copy, teacher_copy = student.detach().clone(), teacher.clone()
    got = listnet(student, teacher)
    assert got.item() == pytest.approx(_naive_listnet(student, teacher, naive), abs=1e-4)
    got.backward()
    assert torch.isfinite(student.grad).all()
    assert torch.all(student.grad.diagonal() == 0)
    assert torch.equal(student.detach(), student_copy) and torch.equal(teacher, teacher_copy)


def test_listnet_single_column_is_zero():
    student = torch.tensor([[2.0]], requires_grad=True)
    loss = listnet(student, torch.tensor([[1.0]]))
    assert loss.item() == 0.0 and loss.requires_grad


def test_rank_module(gen):
    student = 5 * torch.randn(5, 5, generator=gen)
    teacher = torch.randn(5, 5, generator=gen)
    base = listmle(student, teacher, generator=torch.Generator().manual_seed(2))
    module = RankDistillationLoss(method="listmle", exact=True, gamma=0.5)
    assert module(student, teacher, generator=torch.Generator().manual_seed(2)).item() == pytest.approx(
        0.5 * base.item(), rel=1e-6
    )
    reference = RankDistillationLoss(exact=False)(student, teacher, generator=torch.Generator().manual_seed(2))
    assert reference.item() == pytest.approx(
        listmle(student, teacher, exact=False, generator=torch.Generator().manual_seed(2)).item(), rel=1e-6
    )
    assert RankDistillationLoss(method="listnet", gamma=2.0)(student, teacher).item() == pytest.approx(
        2.0 * listnet(student, teacher).item(), rel=1e-6
    )
    with pytest.raises(ValueError, match="method"):
        RankDistillationLoss(method="lambdarank")
    with pytest.raises(ValueError, match="same shape"):
        listmle(student, teacher[:, :3])
