"""The two-source schedule reproduces the reference's k-rule where it uses both sources
(docs/method.md#two-source-schedule) and interleaves evenly where the k-rule would starve the text corpus."""

from __future__ import annotations

import logging
from collections import Counter

import pytest

from dalr_hf.data import TwoSourceSchedule

# (N_text, N_pair, B, epochs) -> (n_t, n_p, k, steps/epoch, total steps, paired steps)
# from docs/method.md#two-source-schedule
TABLE = [
    pytest.param(1_000_000, 148_915, 128, 4, (7813, 1164, 6, 8977, 35_908, 5988), id="flickr-B128"),
    pytest.param(1_000_000, 414_113, 128, 3, (7813, 3236, 2, 11_049, 33_147, 16_575), id="coco-train2014-B128"),
    pytest.param(1_000_000, 29_783, 64, 3, (15_625, 466, 33, 16_091, 48_273, 1464), id="mcse-flickr-B64"),
]


@pytest.mark.parametrize(("n_text", "n_pair", "batch", "epochs", "expected"), TABLE)
def test_k_rule_reproduces_the_table(n_text, n_pair, batch, epochs, expected):
    s = TwoSourceSchedule(num_text=n_text, num_paired=n_pair, batch_size=batch)
    n_t, n_p, k, steps, total, paired = expected
    assert (s.n_t, s.n_p, s.k, s.steps_per_epoch) == (n_t, n_p, k, steps)
    assert s.interleave == "k_rule"
    assert s.steps_per_epoch * epochs == total
    assert s.paired_steps_per_epoch * epochs == paired
    kinds = s.kinds()
    assert kinds.count("paired") == s.paired_steps_per_epoch
    assert all(kind == "paired" for i, kind in enumerate(kinds) if i % k == 0)
    assert all(kind == "text" for i, kind in enumerate(kinds) if i % k != 0)


def _longest_run(kinds: list[str], kind: str) -> int:
    longest = run = 0
    for k in kinds:
        run = run + 1 if k == kind else 0
        longest = max(longest, run)
    return longest


@pytest.mark.parametrize(
    ("n_text", "n_pair", "batch", "n_t", "n_p"),
    [
        pytest.param(9_600, 9_600, 64, 150, 150, id="equal-sizes-B64"),  # k = 1: the reference never reads text
        pytest.param(1_000_000, 566_747, 128, 7813, 4428, id="coco-karpathy-B128"),  # k = 1
        pytest.param(6_400, 9_600, 64, 100, 150, id="more-pairs-B64"),  # k = 0: the reference divides by zero
        pytest.param(100, 1_000, 10, 10, 100, id="ten-times-more-pairs"),
    ],
)
def test_even_rule_takes_every_batch_of_both_sources_once_per_epoch(n_text, n_pair, batch, n_t, n_p, caplog):
    with caplog.at_level(logging.INFO, logger="dalr_hf.data"):
        s = TwoSourceSchedule(num_text=n_text, num_paired=n_pair, batch_size=batch, seed=5)
    assert (s.n_t, s.n_p, s.interleave) == (n_t, n_p, "even")
    assert "evenly" in caplog.text
    assert (s.text_steps_per_epoch, s.paired_steps_per_epoch, s.steps_per_epoch) == (n_t, n_p, n_t + n_p)
    summary = s.summary()
    assert (summary["text_steps_per_epoch"], summary["paired_steps_per_epoch"]) == (n_t, n_p)
    assert summary["passes_over_text_per_epoch"] == summary["passes_over_pairs_per_epoch"] == 1.0
    kinds = s.kinds()
    assert kinds[0] == "paired" and kinds.count("text") == n_t
    # evenly spread: no run of one kind longer than its share rounds up to
    assert _longest_run(kinds, "paired") <= -(-n_p // n_t)
    assert _longest_run(kinds, "text") <= max(1, -(-n_t // n_p))
    if n_text <= 10_000:
        batches = s.epoch(0)
        text_rows = sorted(r for kind, rows in batches if kind == "text" for r in rows)
        paired_rows = sorted(r for kind, rows in batches if kind == "paired" for r in rows)
        assert text_rows == list(range(n_text)) and paired_rows == list(range(n_pair))


def test_equal_sizes_alternate():
    s = TwoSourceSchedule(num_text=9_600, num_paired=9_600, batch_size=64)
    assert s.kinds()[:6] == ["paired", "text"] * 3


def test_batches_cover_each_source_pass_exactly_once_and_keep_partial_batches():
    s = TwoSourceSchedule(num_text=103, num_paired=23, batch_size=10, seed=3)
    assert (s.n_t, s.n_p, s.k) == (11, 3, 3)
    batches = s.epoch(0)
    assert len(batches) == s.steps_per_epoch == 14
    text_rows = [r for kind, rows in batches if kind == "text" for r in rows]
    # 9 text steps of an 11-batch pass: every row at most once, and the next epoch continues the same pass.
    assert len(text_rows) == 90 and len(set(text_rows)) == len(text_rows)
    paired = [rows for kind, rows in batches if kind == "paired"]
    # 5 paired steps (s % 3 == 0 of 14): one whole pass whose last partial batch is kept, then a reshuffled pass.
    assert [len(b) for b in paired] == [10, 10, 3, 10, 10]
    assert sorted(r for b in paired[:3] for r in b) == list(range(23))
    assert paired[3] != paired[0]
    second = s.epoch(1)
    text_two_epochs = text_rows + [r for kind, rows in second if kind == "text" for r in rows]
    first_pass = text_two_epochs[:103]
    assert sorted(first_pass) == list(range(103))


def test_epochs_are_pure_functions_of_seed_and_epoch():
    a = TwoSourceSchedule(num_text=500, num_paired=120, batch_size=16, seed=7)
    b = TwoSourceSchedule(num_text=500, num_paired=120, batch_size=16, seed=7)
    c = TwoSourceSchedule(num_text=500, num_paired=120, batch_size=16, seed=8)
    b.epoch(0)  # consuming an epoch first must not change later ones (resume starts at any epoch)
    assert a.epoch(2) == b.epoch(2)
    assert a.epoch(2) != c.epoch(2)
    assert a.epoch(0) != a.epoch(1)


def test_drop_last_paired_and_text_only_and_paired_only():
    s = TwoSourceSchedule(num_text=100, num_paired=25, batch_size=10, drop_last_paired=True)
    assert s.n_p == 2 and all(len(rows) == 10 for kind, rows in s.epoch(0) if kind == "paired")
    text_only = TwoSourceSchedule(num_text=95, num_paired=0, batch_size=10)
    assert text_only.kinds() == ["text"] * 10
    paired_only = TwoSourceSchedule(num_text=0, num_paired=35, batch_size=10)
    assert paired_only.kinds() == ["paired"] * 4
    assert Counter(len(r) for _, r in paired_only.epoch(0)) == Counter({10: 3, 5: 1})


def test_summary_logs_the_realised_ratio():
    s = TwoSourceSchedule(num_text=1_000_000, num_paired=148_915, batch_size=128)
    summary = s.summary()
    assert summary["paired_steps_per_epoch"] == 1497 and summary["text_steps_per_epoch"] == 7480
    assert summary["paired_to_text_ratio"] == pytest.approx(1497 / 7480)
    assert summary["passes_over_pairs_per_epoch"] == pytest.approx(1497 / 1164)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(num_text=0, num_paired=0, batch_size=4),
        dict(num_text=5, num_paired=5, batch_size=0),
        dict(num_text=0, num_paired=3, batch_size=4, drop_last_paired=True),
    ],
)
def test_invalid_schedules_raise(kwargs):
    with pytest.raises(ValueError):
        TwoSourceSchedule(**kwargs)
