"""The safety tests' tripwire: model loading in the training script replaced by an error, to show that a run was
refused (or got as far as loading the student) before any model was touched."""

from __future__ import annotations

import pytest

import dalr_hf.scripts.train as train_script


class Tripwire(AssertionError):
    """Raised where the training script would load a model."""


@pytest.fixture()
def no_model_loading(monkeypatch):
    def tripwire(*args, **kwargs):
        raise Tripwire("a model was loaded")

    monkeypatch.setattr(train_script, "build_student", tripwire)
    monkeypatch.setattr(train_script.TeacherEnsemble, "from_configs", tripwire)
