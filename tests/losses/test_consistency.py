from __future__ import annotations

import logging
import math

import pytest
import torch

from dalr_hf.losses import ConsistencyLoss, consistency_loss
from dalr_hf.losses.consistency import sample_mismatch


def _naive_cos(a: list[float], b: list[float]) -> float:
    eps = 1e-12
    dot = sum(u * v for u, v in zip(a, b))
    return dot / math.sqrt((sum(u * u for u in a) + eps) * (sum(v * v for v in b) + eps))


def _naive_consistency(text_out, image_out, index, valid, margin):
    a = text_out.detach().double().tolist()
    b = image_out.detach().double().tolist()
    terms = [1.0 - _naive_cos(a[i], b[i]) for i in range(len(a))]
    for i in range(len(a)):
        if valid[i]:
            terms.append(max(0.0, _naive_cos(a[i], b[int(index[i])]) - margin))
    return sum(terms) / len(terms)


@pytest.mark.parametrize("batch", [1, 2, 6])
def test_consistency_loss_against_naive(gen, batch):
    a = torch.relu(torch.randn(batch, 5, generator=gen))
    b = torch.relu(torch.randn(batch, 5, generator=gen))
    index = torch.randperm(batch, generator=gen)
    valid = torch.rand(batch, generator=gen) > 0.3
    got = consistency_loss(a, b, index, valid, margin=0.2)
    assert got.item() == pytest.approx(_naive_consistency(a, b, index, valid.tolist(), 0.2), abs=1e-6)
    got_all = consistency_loss(a, b, index, margin=0.2)
    assert got_all.item() == pytest.approx(_naive_consistency(a, b, index, [True] * batch, 0.2), abs=1e-6)


def test_matches_torch_cosine_embedding_loss(gen):
    a = torch.randn(7, 6, generator=gen)
    b = torch.randn(7, 6, generator=gen)
    b[3] = 0.0  # zero vector (a ReLU tower can output one): torch's epsilon convention must match
    index = torch.remainder(torch.arange(7) - 5, 7)
    ours = consistency_loss(a, b, index, torch.ones(7, dtype=torch.bool), margin=0.2)
    reference = torch.nn.CosineEmbeddingLoss(margin=0.2)(
        torch.cat([a, a]), torch.cat([b, torch.roll(b, 5, dims=0)]), torch.cat([torch.ones(7), -torch.ones(7)])
    )
    assert ours.item() == pytest.approx(reference.item(), abs=1e-6)


def test_roll5_matches_the_reference_and_reports_collisions():
    ids = torch.tensor([0, 1, 2, 3, 4, 5, 0, 7, 8, 9, 10, 11])
    index, valid = sample_mismatch(ids, mode="roll5")
    assert index.tolist() == [(i - 5) % 12 for i in range(12)]
    c = torch.randn(12, 3)
    assert torch.equal(c[index], torch.roll(c, 5, dims=0))
    expected_valid = [ids[(i - 5) % 12] != ids[i] for i in range(12)]
    assert valid.tolist() == [bool(v) for v in expected_valid]
    collision_ids = torch.tensor([0, 1, 2, 3, 4, 0, 6])  # row 5 draws row 0: same image
    _, valid = sample_mismatch(collision_ids, mode="roll5")
    assert valid.tolist() == [True, True, True, True, True, False, True]
    # Rolling by 5 is the identity for B in {1, 5}: every pair is reported invalid.
    for b in (1, 5):
        index, valid = sample_mismatch(torch.arange(b), mode="roll5")
        assert index.tolist() == list(range(b)) and not valid.any()


def test_derangement_avoids_same_image_when_possible():
    ids = torch.arange(4).repeat_interleave(5)  # 4 images x 5 captions, B = 20
    for seed in range(300):
        g = torch.Generator().manual_seed(seed)
        shuffled = ids[torch.randperm(20, generator=g)]
        index, valid = sample_mismatch(shuffled, mode="derangement", generator=g)
        assert valid.all()
        assert (shuffled[index] != shuffled).all()


def test_derangement_is_a_permutation_without_fixed_points_for_distinct_images():
    ids = torch.arange(10)
    permutations = 0
    for seed in range(100):
        index, valid = sample_mismatch(ids, generator=torch.Generator().manual_seed(seed))
        assert valid.all() and (index != ids).all()
        permutations += sorted(index.tolist()) == list(range(10))
    assert permutations >= 95  # 10 rejection tries succeed with probability ~0.99 each


def test_derangement_edge_cases():
    index, valid = sample_mismatch(torch.tensor([3]))
    assert index.tolist() == [0] and valid.tolist() == [False]
    index, valid = sample_mismatch(torch.tensor([3, 4]))
    assert index.tolist() == [1, 0] and valid.tolist() == [True, True]
    _, valid = sample_mismatch(torch.tensor([3, 3]))
    assert valid.tolist() == [False, False]
    # One image dominates: a perfect derangement is impossible but every row still finds another image.
    ids = torch.tensor([0, 0, 0, 0, 1])
    for seed in range(20):
        index, valid = sample_mismatch(ids, generator=torch.Generator().manual_seed(seed))
        assert valid.all() and (ids[index] != ids).all()
    # Only rows with no other image in the batch are invalid.
    ids = torch.tensor([5, 5, 5])
    index, valid = sample_mismatch(ids)
    assert not valid.any()


def test_derangement_is_reproducible_with_a_generator():
    ids = torch.arange(6).repeat_interleave(2)
    first = sample_mismatch(ids, generator=torch.Generator().manual_seed(7))
    second = sample_mismatch(ids, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_sample_mismatch_rejects_bad_input():
    with pytest.raises(ValueError, match="mode"):
        sample_mismatch(torch.arange(4), mode="shuffle")
    with pytest.raises(ValueError, match="1-D"):
        sample_mismatch(torch.zeros(2, 2))


def test_towers_architecture_and_defaults():
    module = ConsistencyLoss(text_dim=12, image_dim=9)
    assert module.hidden_dim == 12 and module.sim_dim == 256
    kinds = [type(m) for m in module.text_tower]
    nn = torch.nn
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear, nn.BatchNorm1d, nn.ReLU]
    assert module.image_tower[0].in_features == 9 and module.image_tower[0].out_features == 12
    assert module.text_tower[3].out_features == 256
    assert module.text_tower[0].weight.data_ptr() != module.image_tower[0].weight.data_ptr()
    assert not any("classifier" in name for name, _ in module.named_modules())


def test_tower_once_equals_the_reference_double_call(gen):
    torch.manual_seed(3)
    module = ConsistencyLoss(text_dim=8, image_dim=6, sim_dim=5, mismatch="roll5").train()
    z = torch.randn(12, 8, generator=gen)
    c = torch.randn(12, 6, generator=gen)
    index = torch.remainder(torch.arange(12) - 5, 12)
    a = module.text_tower(z)
    b = module.image_tower(c)
    # Reference: a second call on (z, c rolled). Train-mode BatchNorm over a permuted batch permutes the outputs.
    a2 = module.text_tower(z)
    b2 = module.image_tower(c[index])
    assert torch.allclose(a2, a, atol=1e-6)
    assert torch.allclose(b2, b[index], atol=1e-5)
    reference = torch.nn.CosineEmbeddingLoss(margin=0.2)(
        torch.cat([a, a2]), torch.cat([b, b2]), torch.cat([torch.ones(12), -torch.ones(12)])
    )
    got = module(z, c, torch.arange(12))
    assert got.item() == pytest.approx(reference.item(), abs=1e-5)


def test_module_forward_with_derangement(gen):
    torch.manual_seed(4)
    module = ConsistencyLoss(text_dim=8, image_dim=6, hidden_dim=7, sim_dim=5)
    z = torch.randn(10, 8, generator=gen, requires_grad=True)
    c = torch.randn(10, 6, generator=gen)
    ids = torch.arange(5).repeat_interleave(2)
    got = module(z, c, ids, generator=torch.Generator().manual_seed(11))
    index, valid = sample_mismatch(ids, generator=torch.Generator().manual_seed(11))
    a = module.text_tower(z)
    b = module.image_tower(c)
    expected = _naive_consistency(a, b, index, valid.tolist(), 0.2)
    assert got.item() == pytest.approx(expected, abs=1e-5)
    got.backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    for p in module.parameters():
        assert p.grad is not None


def test_batch_of_two_runs(gen):
    module = ConsistencyLoss(text_dim=4, image_dim=4, sim_dim=3)
    loss = module(torch.randn(2, 4, generator=gen), torch.randn(2, 4, generator=gen), torch.tensor([0, 1]))
    assert torch.isfinite(loss) and loss.item() >= 0


def test_batch_of_one_is_skipped_with_a_warning(gen, caplog):
    module = ConsistencyLoss(text_dim=4, image_dim=3, sim_dim=2)
    z = torch.randn(1, 4, generator=gen, requires_grad=True)
    with caplog.at_level(logging.WARNING, logger="dalr_hf.losses.consistency"):
        loss = module(z, torch.randn(1, 3, generator=gen), torch.tensor([0]))
    assert loss.item() == 0.0
    assert loss.requires_grad and loss.grad_fn is not None
    assert module.skipped_batches == 1
    assert any("skipped" in record.getMessage() for record in caplog.records)
    loss.backward()
    for p in module.parameters():
        assert p.grad is not None and torch.all(p.grad == 0)
    module(z, torch.randn(1, 3, generator=gen), torch.tensor([0]))
    assert module.skipped_batches == 2


def test_dimension_errors():
    module = ConsistencyLoss(text_dim=8, image_dim=768)
    with pytest.raises(ValueError, match="image feature dim 512 does not match the configured 768"):
        module(torch.randn(3, 8), torch.randn(3, 512), torch.arange(3))
    with pytest.raises(ValueError, match="mismatch"):
        ConsistencyLoss(text_dim=8, image_dim=8, mismatch="random")
