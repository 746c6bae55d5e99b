from __future__ import annotations

import pytest
import torch

from dalr_hf.losses._checks import check_finite, check_terms_finite


def test_returns_finite_value_unchanged():
    value = torch.tensor(1.5, requires_grad=True)
    assert check_finite("L_info", value) is value
    matrix = torch.randn(3, 3)
    assert check_finite("L_cma", matrix) is matrix


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_raises_naming_the_term(bad):
    with pytest.raises(FloatingPointError, match="DALR loss term 'L_cma' is NaN/Inf"):
        check_finite("L_cma", torch.tensor(bad))


def test_reports_counts_for_tensors():
    value = torch.tensor([1.0, float("nan"), float("inf"), float("nan")])
    with pytest.raises(FloatingPointError, match=r"'L_rank'.*2 NaN and 1 Inf"):
        check_finite("L_rank", value)


def test_all_terms_of_a_step_checked_at_once_still_name_the_bad_term():
    terms = {"L_info": torch.tensor(0.3), "L_ground": torch.tensor(1.2), "L_rank": torch.tensor(0.5)}
    assert check_terms_finite(terms) is terms
    terms["L_ground"] = torch.tensor(float("inf"))
    with pytest.raises(FloatingPointError, match="'L_ground' is NaN/Inf"):
        check_terms_finite(terms)
    assert check_terms_finite({}) == {}
