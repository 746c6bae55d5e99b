"""What README's "Teachers" section says about widths holds for the code's default teacher target."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dalr_hf.losses.kl import teacher_text_distribution
from dalr_hf.training_args import DALRTrainingArguments

README = Path(__file__).resolve().parents[2] / "README.md"


def _teachers_section() -> str:
    text = README.read_text(encoding="utf-8")
    return text.split("### Teachers", 1)[1].split("\n## ", 1)[0]


def test_readme_width_claim_matches_the_default_teacher_target():
    default = DALRTrainingArguments(output_dir="unused", report_to="none").teacher_t2t  # the default preset's
    section = " ".join(_teachers_section().split())
    generator = torch.Generator().manual_seed(0)
    wide, wider, same = (torch.randn(6, d, generator=generator) for d in (48, 64, 48))
    # teachers wider than any student: the student's width never enters the teachers' distribution
    q = teacher_text_distribution([wide, same], [0.4, 0.6], mode=default)
    torch.testing.assert_close(q.sum(dim=1), torch.ones(6))
    if default == "mix_features":
        # the default refuses teachers of different widths, and the README says so and names the alternative
        with pytest.raises(ValueError, match="mix_similarities"):
            teacher_text_distribution([wide, wider], [0.4, 0.6], mode=default)
        assert "`teacher_t2t: mix_features`" in section and "must share one width" in section
    q = teacher_text_distribution([wide, wider], [0.4, 0.6], mode="mix_similarities")
    torch.testing.assert_close(q.sum(dim=1), torch.ones(6))
    assert "`teacher_t2t: mix_similarities`" in section
