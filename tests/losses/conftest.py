"""Fixtures of the loss tests: the naive reference formulas (``naive``) and a seeded generator (``gen``)."""

from __future__ import annotations

from types import ModuleType

import pytest
import torch

from tests.losses import naive as naive_formulas


@pytest.fixture()
def naive() -> ModuleType:
    """The naive reference formulas of :mod:`tests.losses.naive`."""
    return naive_formulas


@pytest.fixture()
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)
