"""CLIP feature extraction with a random open_clip model on generated images: formats, determinism, resume, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets.table import ConcatenationTable, MemoryMappedTable

from dalr_hf.features import ClipEncoder, extract_features, load_feature_store
from tests.features.feature_helpers import (
    CAPTIONS,
    IMAGES,
    write_coco,
    write_flickr_token,
    write_images,
    write_karpathy,
)


class InterruptingEncoder:
    """Delegates to a real ClipEncoder, counts the images it encodes and can raise KeyboardInterrupt (a Ctrl-C or a
    preemption) when asked to encode batch number ``interrupt_at``."""

    def __init__(self, encoder: ClipEncoder, interrupt_at: int | None = None) -> None:
        self.encoder = encoder
        self.interrupt_at = interrupt_at
        self.image_batches = 0
        self.images = 0

    def __getattr__(self, name):
        return getattr(self.encoder, name)

    def encode_images(self, pixels):
        self.image_batches += 1
        if self.interrupt_at is not None and self.image_batches == self.interrupt_at:
            raise KeyboardInterrupt
        self.images += len(pixels)
        return self.encoder.encode_images(pixels)


def _memory_mapped(dataset) -> bool:
    """Whether every Arrow block of the dataset is a memory-mapped file (not a copy in RAM)."""
    table = dataset.data
    blocks = [b for row in table.blocks for b in row] if isinstance(table, ConcatenationTable) else [table]
    return all(isinstance(b, MemoryMappedTable) for b in blocks)


def _columns(dataset) -> dict[str, np.ndarray | list]:
    numpy = dataset.with_format("numpy")
    return {c: (np.asarray(numpy[c]) if c.endswith("features") else list(dataset[c])) for c in dataset.column_names}


def _assert_same_store(a, b) -> None:
    ca, cb = _columns(a), _columns(b)
    assert ca.keys() == cb.keys()
    for name in ca:
        if isinstance(ca[name], np.ndarray):
            assert ca[name].dtype == np.float32
            np.testing.assert_array_equal(ca[name], cb[name], err_msg=name)
        else:
            assert ca[name] == cb[name], name


def _extract_in_twos(image_dir, captions, out, encoder, **options):
    """extract_features in batches and shards of two images (the six test images: shards 0, 1 and 2), no progress."""
    return extract_features(
        image_dir, captions, out, encoder=encoder, batch_size=2, shard_size=2, progress=False, **options
    )


@pytest.fixture(scope="module")
def token_store(tmp_path_factory, image_dir, clip_encoder):
    root = tmp_path_factory.mktemp("token_store")
    captions = write_flickr_token(root / "results_20130124.token")
    dataset, metadata = _extract_in_twos(image_dir, captions, root / "store", clip_encoder)
    return dataset, metadata, captions


def test_flickr_token_store_layout_and_metadata(token_store, clip_encoder, image_dir):
    dataset, metadata, _ = token_store
    assert len(dataset) == 18 and dataset.column_names == ["image_id", "caption", "image_features", "caption_features"]
    assert list(dataset["image_id"]) == [name.split(".")[0] for name in IMAGES for _ in range(3)]
    assert list(dataset["caption"]) == [c for name in IMAGES for c in CAPTIONS[name]]
    assert str(dataset.features["image_features"]) == "List(Value('float32'), length=32)"
    assert metadata["format"] == "dalr_hf.feature_store" and metadata["version"] == 1
    assert metadata["model"] == clip_encoder.model_name and metadata["pretrained"] is None
    assert metadata["weights_sha256"] == clip_encoder.weights_sha256 and len(metadata["weights_sha256"]) == 64
    assert (metadata["image_dim"], metadata["caption_dim"]) == (32, 32)
    assert metadata["normalized"] is True and metadata["source"] == "open_clip"
    assert (metadata["num_images"], metadata["num_rows"]) == (6, 18)

    features = _columns(dataset)
    np.testing.assert_allclose(np.linalg.norm(features["image_features"], axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(features["caption_features"], axis=1), 1.0, atol=1e-5)
    # every caption row of an image carries that image's features
    per_image = features["image_features"].reshape(6, 3, -1)
    assert all(np.array_equal(per_image[i, 0], per_image[i, k]) for i in range(6) for k in range(3))
    assert not np.allclose(per_image[0, 0], per_image[1, 0])

    # the stored values are what CLIP gives for that image and caption (batch of one here, so to float tolerance)
    pixels = clip_encoder.load_image(image_dir / IMAGES[3])[None]
    direct = torch.nn.functional.normalize(clip_encoder.encode_images(pixels), dim=-1)[0].numpy()
    np.testing.assert_allclose(features["image_features"][9], direct, atol=1e-5)
    text = torch.nn.functional.normalize(clip_encoder.encode_texts([CAPTIONS[IMAGES[3]][1]]), dim=-1)[0].numpy()
    np.testing.assert_allclose(features["caption_features"][10], text, atol=1e-5)


def test_store_is_memory_mapped_from_its_folder(token_store):
    dataset, _, _ = token_store
    folder = Path(dataset.cache_files[0]["filename"]).parent
    assert folder.name == "store" and all(Path(f["filename"]).parent == folder for f in dataset.cache_files)
    assert _memory_mapped(dataset)
    batch = dataset.with_format("torch")[0:4]
    assert batch["image_features"].dtype == torch.float32 and batch["image_features"].shape == (4, 32)


def test_karpathy_and_coco_formats_give_the_same_features(tmp_path, token_store, image_dir, clip_encoder):
    reference = _columns(token_store[0])
    karpathy = write_karpathy(tmp_path / "dataset_flickr30k.json")
    ds_k, meta_k = _extract_in_twos(image_dir, karpathy, tmp_path / "k", clip_encoder)
    assert meta_k["caption_format"] == "karpathy" and meta_k["splits"] == ["train"]
    _assert_same_store(ds_k, token_store[0])

    # COCO layout: images under a train2014 folder, numeric ids
    coco_images = write_images(tmp_path / "coco" / "train2014")
    coco = write_coco(tmp_path / "captions_train2014.json")
    ds_c, meta_c = _extract_in_twos(coco_images, coco, tmp_path / "c", clip_encoder)
    assert meta_c["caption_format"] == "coco"
    assert list(ds_c["image_id"])[:3] == ["500"] * 3
    np.testing.assert_array_equal(_columns(ds_c)["image_features"], reference["image_features"])
    np.testing.assert_array_equal(_columns(ds_c)["caption_features"], reference["caption_features"])

    # Karpathy COCO: file names relative to the 'filepath' folder under the image root
    ds_kc, _ = _extract_in_twos(
        tmp_path / "coco",
        write_karpathy(tmp_path / "dataset_coco.json", coco=True),
        tmp_path / "kc",
        clip_encoder,
        caption_features=False,
    )
    assert "caption_features" not in ds_kc.column_names
    np.testing.assert_array_equal(_columns(ds_kc)["image_features"], reference["image_features"])


def test_extraction_is_deterministic_and_rerun_reuses_the_store(tmp_path, token_store, image_dir, clip_encoder):
    dataset, metadata, captions = token_store
    again, meta_again = _extract_in_twos(image_dir, captions, tmp_path / "again", clip_encoder)
    _assert_same_store(again, dataset)
    assert meta_again["config_sha256"] == metadata["config_sha256"]
    # a rerun on the finished store loads it and encodes nothing
    counting = InterruptingEncoder(clip_encoder)
    _extract_in_twos(image_dir, captions, tmp_path / "again", counting)
    assert counting.images == 0
    # a finished store made with another configuration is refused, naming the difference
    with pytest.raises(FileExistsError, match="normalize"):
        _extract_in_twos(image_dir, captions, tmp_path / "again", clip_encoder, normalize=False)


def test_interrupted_extraction_resumes_to_the_same_store(tmp_path, token_store, image_dir, clip_encoder):
    reference, ref_meta, captions = token_store
    out = tmp_path / "store"
    # batch_size 2, shard_size 2: batch 2 is the first (and only) batch of shard 1 -> shard 0 is complete
    with pytest.raises(KeyboardInterrupt):
        _extract_in_twos(image_dir, captions, out, InterruptingEncoder(clip_encoder, interrupt_at=2))
    assert (out / "_partial" / "shard-00000.json").is_file() and not (out / "_partial" / "shard-00001").exists()
    with pytest.raises(FileNotFoundError, match="unfinished"):
        load_feature_store(out)
    # another configuration does not silently mix with the partial work
    with pytest.raises(ValueError, match="shard_size"):
        extract_features(image_dir, captions, out, encoder=clip_encoder, batch_size=2, shard_size=3, progress=False)

    resumed = InterruptingEncoder(clip_encoder)
    dataset, metadata = _extract_in_twos(image_dir, captions, out, resumed)
    assert resumed.images == 4  # shards 1 and 2 only
    _assert_same_store(dataset, reference)
    assert {k: v for k, v in metadata.items() if k != "files"} == {k: v for k, v in ref_meta.items() if k != "files"}
    assert not (out / "_partial").exists()


def test_truncated_shard_is_recomputed_on_resume(tmp_path, token_store, image_dir, clip_encoder, caplog):
    reference, _, captions = token_store
    out = tmp_path / "store"
    with pytest.raises(KeyboardInterrupt):
        _extract_in_twos(image_dir, captions, out, InterruptingEncoder(clip_encoder, interrupt_at=3))
    arrow = next((out / "_partial" / "shard-00000").glob("*.arrow"))
    with open(arrow, "r+b") as f:
        f.truncate(arrow.stat().st_size // 2)
    resumed = InterruptingEncoder(clip_encoder)
    with caplog.at_level("WARNING"):
        dataset, _ = _extract_in_twos(image_dir, captions, out, resumed)
    assert "shard 0" in caplog.text and "recomputing" in caplog.text
    assert resumed.images == 4  # shard 0 (damaged) and shard 2; shard 1 reused
    _assert_same_store(dataset, reference)


def test_missing_and_corrupt_images(tmp_path, clip_encoder):
    images = write_images(tmp_path / "images")
    (images / IMAGES[1]).unlink()
    captions = write_flickr_token(tmp_path / "r.token")
    with pytest.raises(FileNotFoundError, match=IMAGES[1]):
        extract_features(images, captions, tmp_path / "a", encoder=clip_encoder, caption_features=False, progress=False)
    dataset, metadata = extract_features(
        images,
        captions,
        tmp_path / "b",
        encoder=clip_encoder,
        caption_features=False,
        on_missing_image="skip",
        progress=False,
    )
    assert metadata["skipped_images"] == 1 and metadata["skipped_image_files"] == [IMAGES[1]]
    assert metadata["num_images"] == 5 and len(dataset) == 15
    assert IMAGES[1].split(".")[0] not in set(dataset["image_id"])

    (images / IMAGES[1]).write_bytes(b"this is not a jpeg")
    with pytest.raises(ValueError, match=rf"{IMAGES[1]}.*cannot be read"):
        extract_features(images, captions, tmp_path / "c", encoder=clip_encoder, caption_features=False, progress=False)


def test_a_shard_whose_images_are_all_missing(tmp_path, token_store, clip_encoder):
    images = write_images(tmp_path / "images")
    for name in IMAGES[2:4]:  # all of shard 1 with shard_size 2
        (images / name).unlink()
    captions = write_flickr_token(tmp_path / "r.token")
    dataset, metadata = _extract_in_twos(images, captions, tmp_path / "s", clip_encoder, on_missing_image="skip")
    assert metadata["skipped_image_files"] == IMAGES[2:4] and len(dataset) == 12
    kept = [i for i in range(18) if i // 3 not in (2, 3)]
    reference = _columns(token_store[0])
    np.testing.assert_array_equal(_columns(dataset)["image_features"], reference["image_features"][kept])


def test_bf16_extraction_is_recorded_and_close_to_fp32(tmp_path, token_store, image_dir, tiny_clip):
    _, ref_meta, captions = token_store
    encoder = ClipEncoder(tiny_clip, pretrained=None, device="cpu", precision="bf16")
    dataset, metadata = _extract_in_twos(image_dir, captions, tmp_path / "bf16", encoder)
    assert metadata["precision"] == "bf16" and metadata["weights_sha256"] == ref_meta["weights_sha256"]
    assert metadata["config_sha256"] != ref_meta["config_sha256"]
    got = _columns(dataset)["image_features"]
    reference = _columns(token_store[0])["image_features"]
    cosine = (got * reference).sum(axis=1)
    assert got.dtype == np.float32 and not np.array_equal(got, reference) and cosine.min() > 0.99


def test_unknown_models_and_tags_are_clear_errors():
    with pytest.raises(RuntimeError, match="could not create open_clip model 'No-Such-Model'"):
        ClipEncoder("No-Such-Model", pretrained=None, device="cpu")
    with pytest.raises(RuntimeError, match="'no-such-tag' is not a known tag"):
        ClipEncoder("ViT-S-32-alt", pretrained="no-such-tag", device="cpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        ClipEncoder("ViT-S-32-alt", pretrained=None, precision="int8")


def test_refuses_a_foreign_folder_and_a_missing_image_root(tmp_path, clip_encoder):
    captions = write_flickr_token(tmp_path / "r.token")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        extract_features(tmp_path, captions, tmp_path / "busy", encoder=clip_encoder, progress=False)
    with pytest.raises(FileNotFoundError, match="image folder"):
        extract_features(tmp_path / "nope", captions, tmp_path / "out", encoder=clip_encoder, progress=False)


def test_stale_and_truncated_stores_are_refused(tmp_path, token_store):
    source = Path(token_store[0].cache_files[0]["filename"]).parent
    store = tmp_path / "copy"
    shutil.copytree(source, store)
    meta_path = store / "dalr_features.json"
    metadata = json.loads(meta_path.read_text())

    arrow = next(store.glob("data-*.arrow"))
    original = arrow.read_bytes()
    arrow.write_bytes(original[: len(original) - 100])
    with pytest.raises(ValueError, match=rf"{arrow.name}.*truncated"):
        load_feature_store(store)
    arrow.write_bytes(original)
    load_feature_store(store)

    meta_path.write_text(json.dumps(dict(metadata, num_rows=17)))
    with pytest.raises(ValueError, match="18 rows on disk, but the metadata says 17"):
        load_feature_store(store)
    meta_path.write_text(json.dumps(dict(metadata, image_dim=512)))
    with pytest.raises(ValueError, match="'image_features' has dim 32, but the metadata says 512"):
        load_feature_store(store)
    meta_path.write_text(json.dumps(dict(metadata, format="something_else")))
    with pytest.raises(ValueError, match="expected 'dalr_hf.feature_store'"):
        load_feature_store(store)
    meta_path.write_text(json.dumps(metadata)[:50])
    with pytest.raises(ValueError, match="not valid JSON"):
        load_feature_store(store)
    meta_path.unlink()
    with pytest.raises(FileNotFoundError, match="dalr_features.json"):
        load_feature_store(store)
