"""Caption files: Flickr30k token, Karpathy json (Flickr and COCO) and COCO captions json."""

from __future__ import annotations

import json

import pytest

from dalr_hf.features import detect_caption_format, read_captions
from tests.features.feature_helpers import CAPTIONS, IMAGES, write_coco, write_flickr_token, write_karpathy


def test_flickr_token_keeps_file_order_and_sorts_caption_index(tmp_path):
    index = read_captions(write_flickr_token(tmp_path / "results_20130124.token"))
    assert index.caption_format == "flickr30k_token"
    assert [im.file_name for im in index.images] == IMAGES
    assert [im.image_id for im in index.images] == [name.split(".")[0] for name in IMAGES]
    # image 2 lists #2, #0, #1 in the file; captions come back in #k order
    assert list(index.images[2].captions) == CAPTIONS[IMAGES[2]]
    assert index.num_captions == 18


def test_karpathy_split_filter_and_coco_subfolder(tmp_path):
    splits = {IMAGES[0]: "val", IMAGES[1]: "restval", IMAGES[2]: "test"}
    path = write_karpathy(tmp_path / "dataset_coco.json", split_of=splits, coco=True)
    train = read_captions(path)
    assert [im.file_name for im in train.images] == IMAGES[3:]
    assert train.images[0].image_id == "503" and train.images[0].subdir == "train2014"
    assert train.stats["split_counts"] == {"val": 1, "restval": 1, "test": 1, "train": 3}
    with_restval = read_captions(path, split="train,restval")
    assert [im.file_name for im in with_restval.images] == [IMAGES[1], *IMAGES[3:]]
    assert len(read_captions(path, split="all").images) == 6
    with pytest.raises(ValueError, match="no image in split"):
        read_captions(path, split="nonexistent")


def test_coco_captions_grouped_by_image_and_stripped(tmp_path):
    index = read_captions(write_coco(tmp_path / "captions_train2014.json"))
    assert index.caption_format == "coco"
    assert [im.image_id for im in index.images] == [str(500 + i) for i in range(6)]
    assert list(index.images[4].captions) == CAPTIONS[IMAGES[4]]  # trailing " \n" removed


def test_format_detection_and_mismatch(tmp_path):
    assert detect_caption_format(write_flickr_token(tmp_path / "a.token")) == "flickr30k_token"
    assert detect_caption_format(write_karpathy(tmp_path / "b.json")) == "karpathy"
    assert detect_caption_format(write_coco(tmp_path / "c.json")) == "coco"
    (tmp_path / "d.txt").write_text("just a sentence\n")
    with pytest.raises(ValueError, match="cannot tell the caption format"):
        read_captions(tmp_path / "d.txt")
    with pytest.raises(ValueError, match="looks like a 'coco' file"):
        read_captions(tmp_path / "c.json", caption_format="karpathy")


def test_empty_captions_error_names_the_place_or_are_counted(tmp_path):
    path = tmp_path / "r.token"
    path.write_text("1.jpg#0\ta cat\n1.jpg#1\t   \n2.jpg#0\ta dog\n")
    with pytest.raises(ValueError, match=r"line 2 \(1.jpg#1\)"):
        read_captions(path)
    index = read_captions(path, on_empty_caption="skip")
    assert index.stats["empty_captions_skipped"] == 1 and index.num_captions == 2

    data = {
        "images": [{"id": 7, "file_name": "7.jpg"}, {"id": 8, "file_name": "8.jpg"}],
        "annotations": [{"image_id": 7, "caption": ""}, {"image_id": 8, "caption": "a bird"}],
    }
    (tmp_path / "c.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"annotations\[0\] \(image 7\)"):
        read_captions(tmp_path / "c.json")
    index = read_captions(tmp_path / "c.json", on_empty_caption="skip")
    assert [im.image_id for im in index.images] == ["8"]
    assert index.stats["images_without_captions"] == 1

    karpathy = {"images": [{"filename": "9.jpg", "split": "train", "sentences": [{"raw": "ok"}, {"raw": ""}]}]}
    (tmp_path / "k.json").write_text(json.dumps(karpathy))
    with pytest.raises(ValueError, match="image 9.jpg sentence 1"):
        read_captions(tmp_path / "k.json")


def test_malformed_lines_and_duplicates_are_errors(tmp_path):
    (tmp_path / "a.token").write_text("1.jpg#0\tfine\n1.jpg no tab here\n")
    with pytest.raises(ValueError, match="line 2"):
        read_captions(tmp_path / "a.token", caption_format="flickr30k_token")
    (tmp_path / "b.token").write_text("1.jpg#0\tone\n1.jpg#0\tagain\n")
    with pytest.raises(ValueError, match="appears twice"):
        read_captions(tmp_path / "b.token")
    data = {"images": [{"id": 1, "file_name": "1.jpg"}], "annotations": [{"image_id": 2, "caption": "x"}]}
    (tmp_path / "c.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="refers to image id 2"):
        read_captions(tmp_path / "c.json")


def test_image_list_restricts_by_id_or_file_name(tmp_path):
    path = write_flickr_token(tmp_path / "r.token")
    (tmp_path / "train.txt").write_text(f"{IMAGES[1].split('.')[0]}\n{IMAGES[4]}\nmissing_id\n")
    index = read_captions(path, image_list=tmp_path / "train.txt")
    assert [im.file_name for im in index.images] == [IMAGES[1], IMAGES[4]]
    assert index.stats["image_list_unmatched"] == 1
