from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dalr_hf.losses import GlobalToLocalLoss, global_to_local
from dalr_hf.losses.g2l import mix_token_states


def _naive_normalise(states: torch.Tensor, norm: str) -> list[list[list[float]]]:
    """L2-normalise over tokens (each feature over its sentence's positions) or over features, with loops."""
    s = states.detach().double().tolist()
    out = []
    for sentence in s:
        length, hidden = len(sentence), len(sentence[0])
        if norm == "token_axis":
            norms = [max(math.sqrt(sum(sentence[k][h] ** 2 for k in range(length))), 1e-12) for h in range(hidden)]
            out.append([[sentence[k][h] / norms[h] for h in range(hidden)] for k in range(length)])
        else:
            out.append([[v / max(math.sqrt(sum(u * u for u in tok)), 1e-12) for v in tok] for tok in sentence])
    return out


def _naive_g2l(z, states, mask, temperature, norm) -> float:
    """docs/method.md#global-to-local-l_g2l term by term: for every valid token k of sentence i, a softmax over its
    positive and every valid token of every other sentence."""
    m_hat = _naive_normalise(states, norm)
    z_l = z.detach().double().tolist()
    w = mask.bool().tolist()
    batch, length = len(w), len(w[0])

    def score(i, j, k):
        return sum(a * b for a, b in zip(z_l[i], m_hat[j][k])) / temperature

    total = 0.0
    for i in range(batch):
        negatives = [score(i, j, k2) for j in range(batch) if j != i for k2 in range(length) if w[j][k2]]
        row_sum, count = 0.0, 0
        for k in range(length):
            if not w[i][k]:
                continue
            pos = score(i, i, k)
            logits = [pos, *negatives]
            top = max(logits)
            row_sum += top + math.log(sum(math.exp(v - top) for v in logits)) - pos
            count += 1
        total += row_sum / count
    return total / batch


def _reference_additive_g2l(z, states, mask, temperature, norm) -> torch.Tensor:
    """The reference's style: one big softmax per token with ±10000 additive constants instead of exact masks."""
    m_hat = F.normalize(states.float(), dim=1 if norm == "token_axis" else -1)
    batch, length, _ = states.shape
    w = mask.float()
    scores = torch.einsum("ih,jkh->ijk", z.float(), m_hat) / temperature  # [i, j, k]
    own_sentence = torch.eye(batch).unsqueeze(-1).expand(batch, batch, length)
    padded = (1.0 - w).unsqueeze(0).expand(batch, batch, length)
    negatives = scores - 10000.0 * own_sentence - 10000.0 * padded
    negatives = negatives.reshape(batch, 1, batch * length).expand(batch, length, batch * length)
    positives = torch.stack([scores[i, i] for i in range(batch)])  # (B, L)
    positives = positives * w + 10000.0 * (1.0 - w)  # padded positive slots: loss ~ 0
    logits = torch.cat([positives.unsqueeze(-1), negatives], dim=-1)
    token_loss = -torch.log_softmax(logits, dim=-1)[..., 0]
    return (token_loss.sum(dim=1) / w.sum(dim=1)).mean()


def _inputs(gen, batch, length, hidden=6, pad_lengths=None):
    z = torch.tanh(torch.randn(batch, hidden, generator=gen))
    states = torch.randn(batch, length, hidden, generator=gen)
    mask = torch.ones(batch, length, dtype=torch.long)
    for i, n_valid in enumerate(pad_lengths or []):
        mask[i, n_valid:] = 0
    return z, states, mask


@pytest.mark.parametrize("norm", ["token_axis", "feature_axis"])
@pytest.mark.parametrize(
    ("batch", "length", "pads"), [(2, 4, [4, 2]), (4, 5, [5, 3, 1, 4]), (3, 3, None), (5, 6, [2, 6, 6, 1, 3])]
)
def test_against_naive_loops(gen, norm, batch, length, pads):
    z, states, mask = _inputs(gen, batch, length, pad_lengths=pads)
    got = global_to_local(z, states, mask, temperature=0.05, norm=norm)
    assert got.item() == pytest.approx(_naive_g2l(z, states, mask, 0.05, norm), abs=1e-4, rel=1e-5)


@pytest.mark.parametrize("norm", ["token_axis", "feature_axis"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_masks_equal_the_reference_additive_constants(norm, seed):
    gen = torch.Generator().manual_seed(seed)
    batch, length = 6, 7
    lengths = torch.randint(1, length + 1, (batch,), generator=gen).tolist()
    z, states, mask = _inputs(gen, batch, length, hidden=8, pad_lengths=lengths)
    assert (mask == 0).any()
    exact = global_to_local(z, states, mask, temperature=0.05, norm=norm)
    reference = _reference_additive_g2l(z, states, mask, 0.05, norm)
    assert exact.item() == pytest.approx(reference.item(), abs=1e-4, rel=1e-5)


def test_norms_differ_and_token_axis_includes_pads(gen):
    z, states, mask = _inputs(gen, 3, 4, pad_lengths=[4, 2, 3])
    token = global_to_local(z, states, mask, norm="token_axis")
    feature = global_to_local(z, states, mask, norm="feature_axis")
    assert token.item() != pytest.approx(feature.item(), abs=1e-3)
    # token_axis: changing a padded state changes the normalisation of the valid ones (the reference quirk) ...
    changed = states.clone()
    changed[1, 3] = 10.0
    assert global_to_local(z, changed, mask, norm="token_axis").item() != pytest.approx(token.item(), abs=1e-4)
    # ... feature_axis: padded states are ignored entirely.
    assert global_to_local(z, changed, mask, norm="feature_axis").item() == pytest.approx(feature.item(), abs=1e-5)


@pytest.mark.parametrize("norm", ["token_axis", "feature_axis"])
def test_batch_of_one_has_no_negatives(gen, norm):
    z, states, mask = _inputs(gen, 1, 5, pad_lengths=[3])
    z = z.requires_grad_(True)
    loss = global_to_local(z, states, mask, norm=norm)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(z.grad).all()


@pytest.mark.parametrize("norm", ["token_axis", "feature_axis"])
def test_single_token_does_not_collapse_dimensions(gen, norm):
    z, states, mask = _inputs(gen, 4, 1)
    got = global_to_local(z, states, mask, norm=norm)
    assert got.dim() == 0
    assert got.item() == pytest.approx(_naive_g2l(z, states, mask, 0.05, norm), abs=1e-4, rel=1e-5)
    z1, states1, mask1 = _inputs(gen, 1, 1)
    assert global_to_local(z1, states1, mask1, norm=norm).item() == 0.0


def test_gradients_are_finite_with_padding(gen):
    z, states, mask = _inputs(gen, 4, 5, pad_lengths=[5, 1, 2, 3])
    z = z.requires_grad_(True)
    global_to_local(z, states, mask).backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_bool_mask_and_module(gen):
    z, states, mask = _inputs(gen, 3, 4, pad_lengths=[4, 2, 1])
    by_long = global_to_local(z, states, mask, temperature=0.1, norm="feature_axis")
    by_bool = global_to_local(z, states, mask.bool(), temperature=0.1, norm="feature_axis")
    assert by_long.item() == by_bool.item()
    module = GlobalToLocalLoss(temperature=0.1, norm="feature_axis")
    assert module(z, states, mask).item() == by_long.item()


def test_errors(gen):
    z, states, mask = _inputs(gen, 3, 4, pad_lengths=[4, 0, 2])
    with pytest.raises(ValueError, match=r"rows \[1\] have no valid token"):
        global_to_local(z, states, mask)
    with pytest.raises(ValueError, match="hidden size 6 does not match the student width 5"):
        global_to_local(torch.randn(3, 5), states, torch.ones(3, 4))
    with pytest.raises(ValueError, match="token_mask"):
        global_to_local(z, states, torch.ones(3, 5))
    with pytest.raises(ValueError, match="norm"):
        GlobalToLocalLoss(norm="both")


def test_mix_token_states(gen):
    a = torch.randn(2, 3, 4, generator=gen)
    b = torch.randn(2, 3, 4, generator=gen).half()
    mixed = mix_token_states([a, b], [0.33, 0.67])
    assert mixed.dtype == torch.float32
    for i in range(2):
        for k in range(3):
            for h in range(4):
                expected = 0.33 * a[i, k, h].item() + 0.67 * float(b[i, k, h])
                assert mixed[i, k, h].item() == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="one shape"):
        mix_token_states([a, torch.randn(2, 4, 4)], [0.5, 0.5])
