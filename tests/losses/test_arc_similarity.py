from __future__ import annotations

import math

import pytest
import torch

from dalr_hf.losses import ArcSimilarity, arc_similarity
from dalr_hf.losses.arc_similarity import (
    arc_margin_from_cosine,
    arc_margin_from_cosine_arccos,
    arc_similarity_arccos,
    pairwise_cosine,
)


def _inputs(gen: torch.Generator, batch: int, dim: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(batch, dim, generator=gen)
    y = torch.randn(batch, dim, generator=gen)
    if batch >= 3:
        # Some off-diagonal pairs with an angle below the margin (not selected) and one near-opposite pair.
        y[1] = x[0] + 0.01 * torch.randn(dim, generator=gen)
        y[2] = -x[1] + 0.01 * torch.randn(dim, generator=gen)
        y[0] = x[0] + 0.05 * torch.randn(dim, generator=gen)
    return x, y


@pytest.mark.parametrize("batch", [1, 2, 7])
@pytest.mark.parametrize("margin", [0.18, 0.5])
def test_closed_form_matches_arccos_form(gen, batch, margin):
    x, y = _inputs(gen, batch)
    closed = arc_similarity(x, y, margin, 1.0)
    literal = arc_similarity_arccos(x, y, margin, 1.0)
    assert closed.dtype == torch.float32
    assert torch.allclose(closed, literal, atol=1e-6, rtol=0)
    scaled = arc_similarity(x, y, margin, 0.05)
    assert torch.allclose(scaled, literal / 0.05, atol=2e-5, rtol=0)


@pytest.mark.parametrize("batch", [1, 2, 6])
def test_against_naive_loops(gen, naive, batch):
    x, y = _inputs(gen, batch)
    expected = torch.tensor(naive.arcsim(x, y, 0.18, 0.05), dtype=torch.float64)
    got = arc_similarity(x, y, 0.18, 0.05).double()
    assert torch.allclose(got, expected, atol=1e-4, rtol=0)
    # The margin changed something: selected negatives got a higher logit than plain cos/t.
    if batch > 1:
        plain = torch.tensor(naive.cos_matrix(x, y), dtype=torch.float64) / 0.05
        off = ~torch.eye(batch, dtype=torch.bool)
        assert (got[off] > plain[off] + 1e-3).any()
        assert torch.allclose(got.diagonal(), plain.diagonal(), atol=1e-5)


def test_adaptive_margin_against_naive(gen, naive):
    x, y = _inputs(gen, 6)
    c = torch.randn(6, 5, generator=gen)
    sim = pairwise_cosine(c, c)
    expected = torch.tensor(naive.arcsim(x, y, 0.18, 0.05, sim=sim), dtype=torch.float64)
    got = arc_similarity(x, y, 0.18, 0.05, sim=sim).double()
    assert torch.allclose(got, expected, atol=1e-4, rtol=0)
    literal = arc_similarity_arccos(x, y, 0.18, 1.0, sim=sim)
    assert torch.allclose(arc_similarity(x, y, 0.18, 1.0, sim=sim), literal, atol=1e-6, rtol=0)
    # sim = 1 everywhere means zero per-entry margin: plain cosines, even where selected.
    ones = torch.ones(6, 6)
    assert torch.allclose(arc_similarity(x, y, 0.18, 0.05, sim=ones), pairwise_cosine(x, y) / 0.05, atol=1e-6)
    # Selection uses the base margin: a pair below it keeps its cosine even with a large adaptive margin.
    big = torch.full((6, 6), -3.0)
    out = arc_similarity(x, y, 0.18, 1.0, sim=big)
    cos = pairwise_cosine(x, y)
    assert cos[0, 1] > math.cos(0.18)
    assert out[0, 1] == cos[0, 1]


def test_margin_zero_is_plain_cosine(gen):
    x, y = _inputs(gen, 5)
    out = arc_similarity(x, y, 0.0, 0.05)
    assert torch.equal(out, pairwise_cosine(x, y) / 0.05)
    torch_cos = torch.nn.CosineSimilarity(dim=-1, eps=1e-8)(x.unsqueeze(1), y.unsqueeze(0))
    assert torch.allclose(out, torch_cos / 0.05, atol=1e-5, rtol=0)


def test_pairwise_cosine_matches_torch_and_floors_small_norms(gen, naive):
    x = torch.randn(4, 6, generator=gen)
    y = torch.randn(3, 6, generator=gen)
    y[2] = 0.0
    got = pairwise_cosine(x, y)
    expected = torch.tensor(naive.cos_matrix(x, y), dtype=torch.float64)
    assert torch.allclose(got.double(), expected, atol=1e-6)
    assert torch.all(got[:, 2] == 0)


def test_gradients_finite_and_nonzero_at_unit_cosine():
    # |C| = 1 exactly on the diagonal (C = 1) and on a selected off-diagonal entry (C = -1).
    cos = torch.tensor([[1.0, -1.0, 0.3], [0.2, 1.0, -1.0], [0.5, 0.1, 1.0]], requires_grad=True)
    arc_margin_from_cosine(cos, 0.18, 0.05).sum().backward()
    grad = cos.grad
    assert torch.isfinite(grad).all()
    assert torch.allclose(grad.diagonal(), torch.full((3,), 1 / 0.05))
    assert grad[0, 1] == pytest.approx(math.cos(0.18) / 0.05, rel=1e-5)
    assert (grad != 0).all()

    # The literal arccos form loses the gradient there: zero (through the clamp) or NaN/Inf ...
    cos_ref = cos.detach().clone().requires_grad_(True)
    arc_margin_from_cosine_arccos(cos_ref, 0.18, 0.05).sum().backward()
    unit = cos.detach().abs() == 1
    lost = (cos_ref.grad == 0) | ~torch.isfinite(cos_ref.grad)
    assert lost[unit].all()
    # ... and without the clamp it is NaN.
    c = torch.tensor([1.0, -1.0], requires_grad=True)
    torch.cos(torch.acos(c) - torch.tensor([0.0, 0.18])).sum().backward()
    assert not torch.isfinite(c.grad).any()
    # ... and silently zero just outside [-1, 1] (what rounding produces), where the closed form is not.
    over = torch.tensor([[1.0 + 1e-6, -1.0 - 1e-6], [0.0, 1.0 + 1e-6]])
    over_ref = over.clone().requires_grad_(True)
    arc_margin_from_cosine_arccos(over_ref, 0.18, 0.05).sum().backward()
    assert over_ref.grad[0, 0] == 0 and over_ref.grad[0, 1] == 0
    over_new = over.clone().requires_grad_(True)
    arc_margin_from_cosine(over_new, 0.18, 0.05).sum().backward()
    assert torch.isfinite(over_new.grad).all() and over_new.grad[0, 0] != 0 and over_new.grad[0, 1] != 0


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_gradients_through_inputs_at_identical_or_opposite_rows(gen, sign):
    x = torch.randn(4, 8, generator=gen)
    x_leaf = x.clone().requires_grad_(True)
    y_leaf = (sign * x).clone().requires_grad_(True)
    logits = arc_similarity(x_leaf, y_leaf, 0.18, 0.05)
    loss = torch.nn.functional.cross_entropy(logits, torch.arange(4))
    loss.backward()
    for g in (x_leaf.grad, y_leaf.grad):
        assert torch.isfinite(g).all()
        assert g.abs().sum() > 0


def test_shape_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(2, 4\)"):
        arc_similarity(torch.randn(3, 4), torch.randn(2, 4), 0.18, 0.05)
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(3, 5\)"):
        arc_similarity(torch.randn(3, 4), torch.randn(3, 5), 0.18, 0.05)
    with pytest.raises(ValueError, match="sim"):
        arc_similarity(torch.randn(3, 4), torch.randn(3, 4), 0.18, 0.05, sim=torch.ones(2, 2))
    with pytest.raises(ValueError, match="temperature"):
        arc_similarity(torch.randn(3, 4), torch.randn(3, 4), 0.18, 0.0)


def test_module_and_float32_upcast(gen):
    x, y = _inputs(gen, 5)
    module = ArcSimilarity(margin=0.18, temperature=0.05)
    assert torch.equal(module(x, y), arc_similarity(x, y, 0.18, 0.05))
    half = module(x.half(), y.half())
    assert half.dtype == torch.float32
    assert torch.allclose(half, module(x.half().float(), y.half().float()))
    assert "margin=0.18" in repr(module)
