"""Fixtures for the frozen-feature tests: generated images and a random (offline) open_clip model."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.features.feature_helpers import write_images, write_tiny_clip


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory) -> Path:
    return write_images(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> str:
    """open_clip model name of a tiny random CLIP (see feature_helpers.TINY_CLIP_CONFIG)."""
    return write_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture(scope="session")
def clip_encoder(tiny_clip):
    """The tiny CLIP, randomly initialised (seeded, offline), shared by the extraction tests."""
    from dalr_hf.features import ClipEncoder

    return ClipEncoder(tiny_clip, pretrained=None, device="cpu")
