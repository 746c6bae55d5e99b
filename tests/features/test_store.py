"""save_feature_store / load_feature_store: writing a valid store from memory and refusing invalid ones."""

from __future__ import annotations

import json

import numpy as np
import pytest
from datasets import Dataset

from dalr_hf.features import load_feature_store, save_feature_store
from tests.features.feature_helpers import STAND_IN_META as META


def _unit(rows: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_save_from_column_arrays_and_load_back(tmp_path):
    image, caption = _unit(6, 8), _unit(6, 8, seed=1)
    ids = ["a", "a", "b", "b", "c", "c"]
    texts = [f"sentence {i}" for i in range(6)]
    saved = save_feature_store(
        {"image_id": ids, "caption": texts, "image_features": image, "caption_features": caption}, tmp_path / "s", META
    )
    dataset, metadata = load_feature_store(tmp_path / "s")
    assert len(saved) == len(dataset) == 6
    assert list(dataset["image_id"]) == ids and list(dataset["caption"]) == texts
    np.testing.assert_array_equal(np.asarray(dataset.with_format("numpy")["image_features"]), image)
    np.testing.assert_array_equal(np.asarray(dataset.with_format("numpy")["caption_features"]), caption)
    assert metadata["stand_in"] is True and metadata["format"] == "dalr_hf.feature_store"
    counts = (metadata["image_dim"], metadata["caption_dim"], metadata["num_images"], metadata["num_rows"])
    assert counts == (8, 8, 3, 6)
    assert set(metadata["files"]) == {p.name for p in (tmp_path / "s").glob("*.arrow")}


def test_save_from_rows_and_from_a_dataset_with_variable_length_lists(tmp_path):
    image = _unit(3, 4)
    rows = [{"image_id": str(i), "caption": f"c{i}", "image_features": image[i].tolist()} for i in range(3)]
    dataset = save_feature_store(rows, tmp_path / "rows", META)
    assert "caption_features" not in dataset.column_names
    assert load_feature_store(tmp_path / "rows")[1]["caption_dim"] is None

    # a plain Dataset whose features are float64, variable-length lists is cast to fixed float32
    plain = Dataset.from_dict(
        {
            "image_id": ["x", "y", "z"],
            "caption": ["1", "2", "3"],
            "image_features": image.astype(np.float64).tolist(),
            "extra": [1, 2, 3],
        }
    )
    dataset = save_feature_store(plain, tmp_path / "ds", META)
    assert str(dataset.features["image_features"]) == "List(Value('float32'), length=4)"
    assert dataset.column_names == ["image_id", "caption", "image_features"]
    np.testing.assert_allclose(np.asarray(dataset.with_format("numpy")["image_features"]), image, rtol=1e-6)


def test_save_refuses_bad_input(tmp_path):
    image = _unit(2, 4)
    columns = {"image_id": ["a", "b"], "caption": ["x", "y"], "image_features": image}
    with pytest.raises(ValueError, match=r"lacks \['weights_sha256'\]"):
        save_feature_store(columns, tmp_path / "a", {k: v for k, v in META.items() if k != "weights_sha256"})
    with pytest.raises(ValueError, match="L2 norm"):
        save_feature_store(dict(columns, image_features=image * 3), tmp_path / "b", META)
    save_feature_store(dict(columns, image_features=image * 3), tmp_path / "b", dict(META, normalized=False))
    nan = image.copy()
    nan[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"NaN/Inf values at row 1 \(image_id 'b'\)"):
        save_feature_store(dict(columns, image_features=nan), tmp_path / "c", META)
    with pytest.raises(ValueError, match="column 'caption' missing"):
        save_feature_store({"image_id": ["a"], "image_features": image[:1]}, tmp_path / "d", META)
    with pytest.raises(ValueError, match="has 1 rows"):
        save_feature_store(dict(columns, caption=["only one"]), tmp_path / "e", META)
    with pytest.raises(ValueError, match="dim 4, but the metadata says 8"):
        save_feature_store(columns, tmp_path / "f", dict(META, image_dim=8))
    save_feature_store(columns, tmp_path / "g", META)
    with pytest.raises(FileExistsError, match="already holds a feature store"):
        save_feature_store(columns, tmp_path / "g", META)
    save_feature_store(dict(columns, caption=["p", "q"]), tmp_path / "g", META, overwrite=True)
    assert list(load_feature_store(tmp_path / "g")[0]["caption"]) == ["p", "q"]


def test_load_refuses_missing_or_foreign_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_feature_store(tmp_path / "nowhere")
    Dataset.from_dict({"image_id": ["a"]}).save_to_disk(str(tmp_path / "plain"))
    with pytest.raises(FileNotFoundError, match="not a dalr_hf feature store"):
        load_feature_store(tmp_path / "plain")
    (tmp_path / "unfinished" / "_partial").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="unfinished.*resume"):
        load_feature_store(tmp_path / "unfinished")

    store = tmp_path / "store"
    save_feature_store({"image_id": ["a"], "caption": ["x"], "image_features": _unit(1, 4)}, store, META)
    metadata = json.loads((store / "dalr_features.json").read_text())
    (store / "dalr_features.json").write_text(json.dumps(dict(metadata, version=99)))
    with pytest.raises(ValueError, match="version 99 is not supported"):
        load_feature_store(store)
    (store / "dalr_features.json").write_text(json.dumps(dict(metadata, caption_dim=4)))
    with pytest.raises(ValueError, match="column 'caption_features' missing"):
        load_feature_store(store)
    (store / "dalr_features.json").write_text(json.dumps(metadata))
    (store / "state.json").unlink()
    with pytest.raises(FileNotFoundError, match="'state.json' is missing"):
        load_feature_store(store)
