from __future__ import annotations

import math

import pytest
import torch

from dalr_hf.losses import GroundingLoss, grounding_contrastive


def _same_image_mask(image_ids: list[int]) -> torch.Tensor:
    ids = torch.tensor(image_ids)
    return ids.unsqueeze(0) == ids.unsqueeze(1)


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_grounding_contrastive_against_naive(gen, naive, batch):
    g1 = 4 * torch.randn(batch, batch, generator=gen)
    g2 = 4 * torch.randn(batch, batch, generator=gen)
    expected = 0.5 * (naive.row_ce(naive.to_lists(g1)) + naive.row_ce(naive.to_lists(g2)))
    assert grounding_contrastive([g1, g2]).item() == pytest.approx(expected, abs=1e-5)
    assert grounding_contrastive([g1]).item() == pytest.approx(naive.row_ce(naive.to_lists(g1)), abs=1e-5)


def test_negative_mask_skips_columns_but_never_the_diagonal(gen, naive):
    g1 = 4 * torch.randn(6, 6, generator=gen)
    g2 = 4 * torch.randn(6, 6, generator=gen)
    mask = _same_image_mask([0, 0, 1, 2, 2, 2])  # diagonal True as well: must be ignored there
    expected = 0.5 * (naive.row_ce(naive.to_lists(g1), mask) + naive.row_ce(naive.to_lists(g2), mask))
    got = grounding_contrastive([g1, g2], negative_mask=mask)
    assert got.item() == pytest.approx(expected, abs=1e-5)
    assert got.item() != pytest.approx(grounding_contrastive([g1, g2]).item(), abs=1e-3)
    with pytest.raises(ValueError, match="negative_mask"):
        grounding_contrastive([g1], negative_mask=torch.zeros(5, 5, dtype=torch.bool))


def _naive_projection(linear: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """normalize(tanh(W x + b)) row by row in float64."""
    w = linear.weight.detach().double()
    b = linear.bias.detach().double()
    rows = []
    for v in x.detach().double():
        out = torch.tanh(w @ v + b)
        rows.append(out / math.sqrt(float((out * out).sum())))
    return torch.stack(rows)


@pytest.mark.parametrize("batch", [1, 2, 5])
@pytest.mark.parametrize("adaptive", [True, False])
def test_grounding_module_against_naive(gen, naive, batch, adaptive):
    torch.manual_seed(0)
    module = GroundingLoss(
        text_dim=10, image_dim=7, proj_dim=6, margin=0.18, temperature=0.05, adaptive_margin=adaptive
    )
    assert module.caption_proj is None
    h1 = torch.randn(batch, 10, generator=gen, requires_grad=True)
    h2 = torch.randn(batch, 10, generator=gen)
    c = torch.randn(batch, 7, generator=gen)
    got = module(h1, h2, c)

    p1 = _naive_projection(module.text_proj, h1)
    p2 = _naive_projection(module.text_proj, h2)
    g = _naive_projection(module.image_proj, c)
    v = torch.tensor(naive.cos_matrix(c, c)) if adaptive else None
    ce1 = naive.row_ce(naive.arcsim(p1, g, 0.18, 0.05, sim=v))
    ce2 = naive.row_ce(naive.arcsim(p2, g, 0.18, 0.05, sim=v))
    assert got.item() == pytest.approx(0.5 * (ce1 + ce2), abs=1e-4)

    got.backward()
    assert torch.isfinite(h1.grad).all()
    for name in ("text_proj", "image_proj"):
        head = getattr(module, name)
        assert head.weight.grad is not None and torch.isfinite(head.weight.grad).all()


def test_explicit_image_sim_and_negative_mask(gen, naive):
    torch.manual_seed(1)
    module = GroundingLoss(text_dim=8, image_dim=8, proj_dim=4)
    h1 = torch.randn(5, 8, generator=gen)
    h2 = torch.randn(5, 8, generator=gen)
    c = torch.randn(5, 8, generator=gen)
    c[1] = c[0]  # two captions of one image
    sim = torch.rand(5, 5, generator=gen)
    mask = _same_image_mask([0, 0, 1, 2, 3])
    got = module(h1, h2, c, image_sim=sim, negative_mask=mask)
    g = _naive_projection(module.image_proj, c)
    ce = [
        naive.row_ce(naive.arcsim(_naive_projection(module.text_proj, h), g, 0.18, 0.05, sim=sim), mask)
        for h in (h1, h2)
    ]
    assert got.item() == pytest.approx(0.5 * sum(ce), abs=1e-4)


def test_caption_branch_adds_the_caption_term(gen, naive):
    torch.manual_seed(2)
    module = GroundingLoss(text_dim=6, image_dim=5, proj_dim=4, use_caption_branch=True)
    assert isinstance(module.caption_proj, torch.nn.Linear)
    h1 = torch.randn(4, 6, generator=gen)
    h2 = torch.randn(4, 6, generator=gen)
    c = torch.randn(4, 5, generator=gen)
    cap = torch.randn(4, 5, generator=gen)
    got = module(h1, h2, c, caption_features=cap)
    p = [_naive_projection(module.text_proj, h) for h in (h1, h2)]
    g = _naive_projection(module.image_proj, c)
    k = _naive_projection(module.caption_proj, cap)
    v = torch.tensor(naive.cos_matrix(c, c))
    w = torch.tensor(naive.cos_matrix(cap, cap))
    image_term = 0.5 * sum(naive.row_ce(naive.arcsim(pv, g, 0.18, 0.05, sim=v)) for pv in p)
    caption_term = 0.5 * sum(naive.row_ce(naive.arcsim(pv, k, 0.18, 0.05, sim=w)) for pv in p)
    assert got.item() == pytest.approx(image_term + caption_term, abs=1e-4)
    got.backward()
    assert module.caption_proj.weight.grad is not None and module.caption_proj.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="caption_features"):
        module(h1, h2, c)


def test_dimension_errors_are_actionable():
    module = GroundingLoss(text_dim=8, image_dim=768, proj_dim=4)
    with pytest.raises(ValueError, match="image feature dim 512 does not match the configured 768"):
        module(torch.randn(3, 8), torch.randn(3, 8), torch.randn(3, 512))
    with pytest.raises(ValueError, match="h1"):
        module(torch.randn(3, 9), torch.randn(3, 8), torch.randn(3, 768))
    with pytest.raises(ValueError, match="batch sizes differ"):
        module(torch.randn(3, 8), torch.randn(3, 8), torch.randn(4, 768))


def test_default_init_is_pytorch_linear_default():
    module = GroundingLoss(text_dim=64, image_dim=32, proj_dim=16)
    # kaiming_uniform(a=sqrt(5)) gives |w| <= 1/sqrt(fan_in); bias uniform in the same bound (not N(0, 0.02)).
    assert module.text_proj.weight.abs().max() <= 1 / math.sqrt(64)
    assert module.image_proj.bias.abs().max() <= 1 / math.sqrt(32)
    assert module.image_proj.bias.abs().max() > 0
