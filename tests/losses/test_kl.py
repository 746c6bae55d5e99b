from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dalr_hf.losses import (
    CrossModalAlignmentLoss,
    IntraModalAlignmentLoss,
    cross_modal_alignment,
    intra_modal_alignment,
)
from dalr_hf.losses.kl import image_distribution, kl_batchmean, teacher_text_distribution


def test_kl_batchmean_two_by_two_by_hand():
    q = torch.tensor([[0.5, 0.5], [0.25, 0.75]])
    p = torch.tensor([[0.25, 0.75], [0.5, 0.5]])
    # row 1: 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75) = 0.5 ln(4/3)          = 0.1438410
    # row 2: 0.25 ln(0.25/0.5) + 0.75 ln(0.75/0.5) = 0.75 ln 1.5 - 0.25 ln 2 = 0.1308120
    # batchmean: (0.1438410 + 0.1308120) / 2                               = 0.1373265
    assert kl_batchmean(p.log(), q).item() == pytest.approx(0.1373265, abs=1e-6)
    assert kl_batchmean(p.log(), q).item() == pytest.approx(
        (0.5 * math.log(4 / 3) + 0.75 * math.log(1.5) - 0.25 * math.log(2)) / 2, abs=1e-6
    )


def test_kl_batchmean_zero_targets_and_infinite_log_p():
    q = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    logits = torch.tensor([[0.0, float("-inf")], [math.log(0.25), math.log(0.75)]], requires_grad=True)
    log_p = F.log_softmax(logits, dim=-1)
    loss = kl_batchmean(log_p, q)
    # row 1: 1 * (0 - ln 1) = 0 (the excluded column contributes exactly 0); row 2: 0.5 ln(4/3)
    assert loss.item() == pytest.approx(0.5 * math.log(4 / 3) / 2, abs=1e-6)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad[0, 1] == 0
    # torch's kl_div gives NaN here; ours does not.
    assert torch.isnan(F.kl_div(log_p.detach(), q, reduction="batchmean"))


@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (5, 7)])
def test_kl_batchmean_matches_torch_kl_div(gen, naive, shape):
    log_p = F.log_softmax(3 * torch.randn(*shape, generator=gen), dim=-1)
    q = torch.softmax(torch.randn(*shape, generator=gen), dim=-1)
    ours = kl_batchmean(log_p, q)
    assert ours.item() == pytest.approx(F.kl_div(log_p, q, reduction="batchmean").item(), abs=1e-5)
    assert ours.item() == pytest.approx(naive.kl_batchmean(naive.to_lists(log_p), naive.to_lists(q)), abs=1e-5)
    with pytest.raises(ValueError, match="same"):
        kl_batchmean(log_p, torch.ones(shape[0] + 1, shape[1]))


def _naive_distribution(sims: list[list[float]], temperature: float, mask=None, naive=None):
    rows = []
    for i, row in enumerate(sims):
        excluded = {j for j in range(len(row)) if mask is not None and j != i and bool(mask[i][j])}
        rows.append(naive.softmax_row([v / temperature for v in row], excluded))
    return torch.tensor(rows, dtype=torch.float64)


def test_teacher_mix_features_against_naive(gen, naive):
    a = torch.randn(5, 6, generator=gen)
    b = 3 * torch.randn(5, 6, generator=gen)
    got = teacher_text_distribution([a, b], [0.33, 0.67], temperature=0.5)
    mixed = [[0.33 * u + 0.67 * v for u, v in zip(ra, rb)] for ra, rb in zip(a.tolist(), b.tolist())]
    mixed_t = torch.tensor(mixed, dtype=torch.float64)
    expected = _naive_distribution(naive.cos_matrix(mixed_t, mixed_t), 0.5, naive=naive)
    assert torch.allclose(got.double(), expected, atol=1e-6)
    assert torch.allclose(got.sum(-1), torch.ones(5))
    # Mixing raw vectors differs from mixing similarities (b has a larger norm).
    other = teacher_text_distribution([a, b], [0.33, 0.67], temperature=0.5, mode="mix_similarities")
    assert not torch.allclose(got, other, atol=1e-4)


def test_teacher_mix_similarities_against_naive_with_different_widths(gen, naive):
    a = torch.randn(4, 6, generator=gen)
    b = torch.randn(4, 9, generator=gen)
    got = teacher_text_distribution([a, b], [0.33, 0.67], temperature=0.5, mode="mix_similarities")
    ca, cb = naive.cos_matrix(a, a), naive.cos_matrix(b, b)
    sims = [[0.33 * ca[i][j] + 0.67 * cb[i][j] for j in range(4)] for i in range(4)]
    assert torch.allclose(got.double(), _naive_distribution(sims, 0.5, naive=naive), atol=1e-6)
    with pytest.raises(ValueError, match=r"widths.*\[6, 9\].*mix_similarities"):
        teacher_text_distribution([a, b], [0.33, 0.67])
    with pytest.raises(ValueError, match="weights"):
        teacher_text_distribution([a, b], [1.0])
    with pytest.raises(ValueError, match="mode"):
        teacher_text_distribution([a], [1.0], mode="mix")


def test_teacher_and_image_distributions_with_negative_mask(gen, naive):
    a = torch.randn(5, 6, generator=gen)
    ids = torch.tensor([0, 0, 1, 2, 2])
    mask = ids.unsqueeze(0) == ids.unsqueeze(1)
    got = teacher_text_distribution([a], [1.0], temperature=0.5, negative_mask=mask)
    expected = _naive_distribution(naive.cos_matrix(a, a), 0.5, mask.tolist(), naive)
    assert torch.allclose(got.double(), expected, atol=1e-6)
    assert got[0, 1] == 0 and got[3, 4] == 0 and got[0, 0] > 0
    assert torch.allclose(got.sum(-1), torch.ones(5))

    c = torch.randn(5, 4, generator=gen)
    v = torch.tensor(naive.cos_matrix(c, c), dtype=torch.float32)
    q_v = image_distribution(v, temperature=0.5, negative_mask=mask)
    assert torch.allclose(q_v.double(), _naive_distribution(v.tolist(), 0.5, mask.tolist(), naive), atol=1e-6)
    assert torch.allclose(image_distribution(v).double(), _naive_distribution(v.tolist(), 0.5, naive=naive), atol=1e-6)


def _naive_cma(m, q_t2t, q_v2v, tau_s, mask, naive):
    rows = naive.to_lists(m)
    n = len(rows)
    mask_l = mask.tolist() if mask is not None else [[False] * n for _ in range(n)]

    def kl(logit_rows, q_rows, mask_rows):
        total = 0.0
        for i, (row, q_row) in enumerate(zip(logit_rows, q_rows)):
            excluded = {j for j in range(n) if j != i and mask_rows[i][j]}
            kept = [q_row[j] for j in range(n) if j not in excluded]
            q_norm = sum(kept)
            log_p = naive.log_softmax_row([v / tau_s for v in row], excluded)
            for j in range(n):
                if j not in excluded and q_row[j] > 0:
                    qq = q_row[j] / q_norm
                    total += qq * (math.log(qq) - log_p[j])
        return total / n

    t2v = kl(rows, naive.to_lists(q_t2t), mask_l)
    v2t = kl(naive.transpose(rows), naive.to_lists(q_v2v), naive.transpose(mask_l))
    return 0.5 * (t2v + v2t)


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_cross_modal_alignment_against_naive(gen, naive, batch):
    m = 20 * torch.randn(batch, batch, generator=gen)
    q_t2t = torch.softmax(torch.randn(batch, batch, generator=gen), -1)
    q_v2v = torch.softmax(torch.randn(batch, batch, generator=gen), -1)
    got = cross_modal_alignment(m, q_t2t, q_v2v, student_temperature=0.45)
    assert got.item() == pytest.approx(_naive_cma(m, q_t2t, q_v2v, 0.45, None, naive), abs=1e-4)


def test_cross_modal_alignment_negative_mask(gen, naive):
    m = (20 * torch.randn(6, 6, generator=gen)).requires_grad_(True)
    ids = torch.tensor([0, 0, 1, 1, 1, 2])
    mask = ids.unsqueeze(0) == ids.unsqueeze(1)
    a = torch.randn(6, 4, generator=gen)
    c = torch.randn(6, 3, generator=gen)
    q_t2t = teacher_text_distribution([a], [1.0], negative_mask=mask)
    q_v2v = image_distribution(torch.tensor(naive.cos_matrix(c, c), dtype=torch.float32), negative_mask=mask)
    got = cross_modal_alignment(m, q_t2t, q_v2v, 0.45, negative_mask=mask)
    assert got.item() == pytest.approx(_naive_cma(m, q_t2t, q_v2v, 0.45, mask, naive), abs=1e-4)
    got.backward()
    assert torch.isfinite(m.grad).all()
    off_mask = mask & ~torch.eye(6, dtype=torch.bool)
    assert torch.all(m.grad[off_mask] == 0)  # excluded student entries get no gradient
    # Unmasked targets are restricted to the kept entries as well (same value as pre-masked targets).
    q_t2t_raw = teacher_text_distribution([a], [1.0])
    again = cross_modal_alignment(m, q_t2t_raw, q_v2v, 0.45, negative_mask=mask)
    assert again.item() == pytest.approx(got.item(), abs=1e-4)


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_intra_modal_alignment_against_naive(gen, naive, batch):
    t = (20 * torch.randn(batch, batch, generator=gen)).requires_grad_(True)
    q = torch.softmax(torch.randn(batch, batch, generator=gen), -1)
    got = intra_modal_alignment(t, q, student_temperature=0.45)
    rows = naive.to_lists(t)
    log_p = [naive.log_softmax_row([v / 0.45 for v in row]) for row in rows]
    assert got.item() == pytest.approx(naive.kl_batchmean(log_p, naive.to_lists(q)), abs=1e-4)
    assert IntraModalAlignmentLoss(0.45)(t, q).item() == pytest.approx(got.item(), abs=1e-7)
    got.backward()
    assert torch.isfinite(t.grad).all()


@pytest.mark.parametrize("use_margin", [True, False])
def test_cma_module_against_naive(gen, naive, use_margin):
    z1 = torch.tanh(torch.randn(5, 6, generator=gen)).requires_grad_(True)
    c = 2 * torch.randn(5, 6, generator=gen)
    q_t2t = teacher_text_distribution([torch.randn(5, 4, generator=gen)], [1.0])
    module = CrossModalAlignmentLoss(margin=0.18, temperature=0.05, use_margin=use_margin)
    v = naive.cos_matrix(c, c)
    q_v2v = _naive_distribution(v, 0.5, naive=naive).float()
    got = module(z1, c, q_t2t, q_v2v)
    m = torch.tensor(naive.arcsim(z1, c, 0.18 if use_margin else 0.0, 0.05), dtype=torch.float64)
    assert got.item() == pytest.approx(_naive_cma(m, q_t2t, q_v2v, 0.45, None, naive), abs=1e-3)
    # q_v2v=None builds Q^{v2v} from the image cosines at the teacher temperature.
    assert module(z1, c, q_t2t, None).item() == pytest.approx(got.item(), abs=1e-4)
    got.backward()
    assert torch.isfinite(z1.grad).all() and z1.grad.abs().sum() > 0


def test_cma_width_error_names_both_widths():
    module = CrossModalAlignmentLoss()
    q = torch.full((3, 3), 1 / 3)
    with pytest.raises(ValueError, match=r"width 768.*width 512.*cma_space='grounding'"):
        module(torch.randn(3, 768), torch.randn(3, 512), q, q)
