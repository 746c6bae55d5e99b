"""Import of KDMCSE/DALR JSON feature files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dalr_hf.features import import_kdmcse_json, iter_kdmcse_entries, load_feature_store

DIM = 8


def _kdmcse(num_captions=(5, 5, 4), seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    data = {}
    for i, n in enumerate(num_captions):
        data[f"img{i}"] = {
            "image": f"{1000 + i}.jpg",
            "image_feat": rng.normal(size=DIM).tolist(),
            "captions": [f"image {i} caption {k}" for k in range(n)],
            "lang_feat": rng.normal(size=(n, DIM)).tolist(),
        }
    return data


def _write(path, data, indent=None):
    path.write_text(json.dumps(data, indent=indent), encoding="utf-8")
    return path


def test_streaming_reader_matches_json_load_at_any_buffer_size(tmp_path):
    data = _kdmcse()
    path = _write(tmp_path / "f.json", data, indent=1)
    for chunk in (7, 64, 1 << 20):
        assert dict(iter_kdmcse_entries(path, chunk_chars=chunk)) == data


def test_one_row_per_caption_with_its_lang_feat(tmp_path):
    data = _kdmcse()
    dataset, metadata = import_kdmcse_json(
        _write(tmp_path / "f.json", data), tmp_path / "store", rows_per_shard=4, progress=False
    )
    assert len(dataset) == 14 and metadata["num_images"] == 3 and metadata["num_rows"] == 14
    assert metadata["source"] == "kdmcse_json" and metadata["model"] == "ViT-L-14"
    assert metadata["weights_sha256"] is None and len(metadata["source_sha256"]) == 64
    assert (metadata["image_dim"], metadata["caption_dim"], metadata["normalized"]) == (DIM, DIM, True)
    assert metadata["source_normalized"] is False
    assert list(dataset["image_id"]) == ["img0"] * 5 + ["img1"] * 5 + ["img2"] * 4
    assert list(dataset["caption"])[7] == "image 1 caption 2"
    features = dataset.with_format("numpy")
    image = np.asarray(data["img1"]["image_feat"], dtype=np.float32)
    lang = np.asarray(data["img1"]["lang_feat"][2], dtype=np.float32)
    np.testing.assert_allclose(features["image_features"][7], image / np.linalg.norm(image), rtol=1e-6)
    np.testing.assert_allclose(features["caption_features"][7], lang / np.linalg.norm(lang), rtol=1e-6)
    # shard size does not change the store; raw values are kept with normalize=False
    raw, raw_meta = import_kdmcse_json(tmp_path / "f.json", tmp_path / "raw", normalize=False, progress=False)
    np.testing.assert_array_equal(np.asarray(raw.with_format("numpy")["caption_features"])[7], lang)
    assert raw_meta["normalized"] is False
    assert load_feature_store(tmp_path / "store")[0]["caption"] == dataset["caption"]


def test_invalid_entries_name_the_image_key(tmp_path):
    bad_dim = _kdmcse()
    bad_dim["img1"]["lang_feat"][0] = [0.1] * (DIM + 1)
    with pytest.raises(ValueError, match="'img1'"):
        import_kdmcse_json(_write(tmp_path / "a.json", bad_dim), tmp_path / "a", progress=False)
    other_dim = _kdmcse()
    other_dim["img2"]["image_feat"] = [0.1] * (DIM * 2)
    other_dim["img2"]["lang_feat"] = [[0.1] * (DIM * 2)] * 4
    with pytest.raises(ValueError, match=rf"'img2': feature dims differ .*expected {DIM}"):
        import_kdmcse_json(_write(tmp_path / "b.json", other_dim), tmp_path / "b", progress=False)
    count = _kdmcse()
    count["img0"]["captions"].append("one caption too many")
    with pytest.raises(ValueError, match=r"'img0': 'lang_feat' must hold one D-vector per caption \(6 captions\)"):
        import_kdmcse_json(_write(tmp_path / "c.json", count), tmp_path / "c", progress=False)
    nan = _kdmcse()
    text = json.dumps(nan).replace(str(nan["img2"]["image_feat"][3]), "NaN", 1)
    (tmp_path / "d.json").write_text(text)
    with pytest.raises(ValueError, match="'img2'.*NaN"):
        import_kdmcse_json(tmp_path / "d.json", tmp_path / "d", progress=False)
    empty = _kdmcse()
    empty["img1"]["captions"][3] = " "
    with pytest.raises(ValueError, match="'img1': caption 3 is empty"):
        import_kdmcse_json(_write(tmp_path / "e.json", empty), tmp_path / "e", progress=False)
    dataset, metadata = import_kdmcse_json(
        tmp_path / "e.json", tmp_path / "e2", on_empty_caption="skip", progress=False
    )
    assert len(dataset) == 13 and metadata["empty_captions_skipped"] == 1


def test_truncated_or_malformed_file_is_an_error(tmp_path):
    text = json.dumps(_kdmcse())
    (tmp_path / "t.json").write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match="truncated"):
        import_kdmcse_json(tmp_path / "t.json", tmp_path / "t", progress=False)
    (tmp_path / "l.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="entry '0' is a int"):
        import_kdmcse_json(tmp_path / "l.json", tmp_path / "l", progress=False)
    (tmp_path / "s.json").write_text('"just a string"')
    with pytest.raises(ValueError, match="expected a JSON object"):
        import_kdmcse_json(tmp_path / "s.json", tmp_path / "s", progress=False)
