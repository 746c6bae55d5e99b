from __future__ import annotations

import math

import pytest
import torch

from dalr_hf.losses import InfoNCELoss, arc_similarity, info_nce


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_info_nce_against_naive(gen, naive, batch):
    logits = 5 * torch.randn(batch, batch, generator=gen)
    expected = naive.row_ce(naive.to_lists(logits))
    assert info_nce(logits).item() == pytest.approx(expected, abs=1e-5)


def test_info_nce_batch_of_one_is_zero():
    assert info_nce(torch.tensor([[3.0]])).item() == 0.0


def test_info_nce_accepts_extra_columns_and_rejects_too_few(gen, naive):
    logits = torch.randn(3, 5, generator=gen)
    expected = naive.row_ce(naive.to_lists(logits))
    assert info_nce(logits).item() == pytest.approx(expected, abs=1e-5)
    with pytest.raises(ValueError, match=r"\(4, 3\)"):
        info_nce(torch.randn(4, 3))


@pytest.mark.parametrize("batch", [1, 2, 6])
@pytest.mark.parametrize("margin", [0.0, 0.18])
def test_module_returns_loss_and_logits_with_graph(gen, naive, batch, margin):
    z1 = torch.randn(batch, 8, generator=gen, requires_grad=True)
    z2 = torch.randn(batch, 8, generator=gen, requires_grad=True)
    loss, logits = InfoNCELoss(margin=margin, temperature=0.05)(z1, z2)
    expected_logits = naive.arcsim(z1, z2, margin, 0.05)
    assert torch.allclose(logits.double(), torch.tensor(expected_logits, dtype=torch.float64), atol=1e-4)
    assert loss.item() == pytest.approx(naive.row_ce(expected_logits), abs=1e-4)
    assert logits.requires_grad and logits.grad_fn is not None
    # The returned logits are the ones the loss was computed from (reused by L_rank and L_IMA).
    assert torch.equal(logits, arc_similarity(z1, z2, margin, 0.05))
    (loss + logits.sum()).backward()
    assert torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all()
    if batch > 1:
        assert z1.grad.abs().sum() > 0


def test_plain_simcse_formula(gen):
    z1 = torch.randn(4, 8, generator=gen)
    z2 = torch.randn(4, 8, generator=gen)
    loss, _ = InfoNCELoss(margin=0.0, temperature=0.05)(z1, z2)
    cos = torch.nn.functional.cosine_similarity(z1.unsqueeze(1), z2.unsqueeze(0), dim=-1).double() / 0.05
    expected = sum(-(cos[i, i] - torch.logsumexp(cos[i], 0)).item() for i in range(4)) / 4
    assert loss.item() == pytest.approx(expected, abs=1e-4)
    assert math.isfinite(loss.item())
