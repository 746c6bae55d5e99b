"""The loss math stays in float32 under mixed-precision autocast (CPU autocast stands in for CUDA here)."""

from __future__ import annotations

import torch

from dalr_hf.losses import arc_similarity, global_to_local, listmle
from dalr_hf.losses.arc_similarity import pairwise_cosine
from dalr_hf.losses.kl import teacher_text_distribution
from dalr_hf.losses.rank import teacher_rank_scores


def test_similarities_are_float32_under_autocast(gen):
    x = torch.randn(6, 32, generator=gen)
    y = torch.randn(6, 32, generator=gen)
    expected = arc_similarity(x, y, 0.18, 0.05)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.matmul(x, y.t()).dtype == torch.bfloat16  # autocast really is on
        got = arc_similarity(x, y, 0.18, 0.05)
        cos = pairwise_cosine(x, y)
        q = teacher_text_distribution([x, y], [0.33, 0.67])
        r = teacher_rank_scores([x, y], [0.33, 0.67])
    assert got.dtype == cos.dtype == q.dtype == r.dtype == torch.float32
    assert torch.equal(got, expected)
    assert torch.equal(q, teacher_text_distribution([x, y], [0.33, 0.67]))
    assert torch.equal(r, teacher_rank_scores([x, y], [0.33, 0.67]))


def test_g2l_and_listmle_are_float32_under_autocast(gen):
    z = torch.tanh(torch.randn(4, 16, generator=gen))
    states = torch.randn(4, 5, 16, generator=gen)
    mask = torch.ones(4, 5)
    mask[1, 3:] = 0
    expected = global_to_local(z, states, mask)
    student = 5 * torch.randn(4, 4, generator=gen)
    teacher = torch.randn(4, 4, generator=gen)
    expected_rank = listmle(student, teacher, generator=torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = global_to_local(z, states, mask)
        rank = listmle(student.bfloat16(), teacher, generator=torch.Generator().manual_seed(0))
    assert got.dtype == torch.float32 and torch.equal(got, expected)
    assert rank.dtype == torch.float32
    assert torch.allclose(rank, expected_rank, atol=0.1)
