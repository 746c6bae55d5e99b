"""Caption files of Flickr30k and MS-COCO, read into one ordered list of images with their captions.

Supported formats (``caption_format``):

- ``flickr30k_token``: Flickr30k ``results_20130124.token``, lines ``1000092795.jpg#0<TAB>Two young guys ...``.
  No split information; restrict it with ``image_list`` (e.g. the Flickr30k-Entities ``train.txt`` used by MCSE).
- ``karpathy``: Karpathy's ``dataset_flickr30k.json`` / ``dataset_coco.json``,
  ``{"images": [{"filename", "filepath"?, "split", "sentences": [{"raw"}], "cocoid"?}]}``, filtered by ``split``
  (``"train"`` by default; COCO's ``"restval"`` is usually added to train).
- ``coco``: COCO ``captions_train2014.json``, ``{"images": [{"id", "file_name"}],
  "annotations": [{"image_id", "caption"}]}``.
- ``auto``: chosen from the file's content.

The order is the file's order (images by first appearance, captions as listed, Flickr ``#k`` by k), so the feature
store built from it is deterministic. Image ids are the COCO id or the Flickr file stem, as strings.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

CAPTION_FORMATS = ("auto", "flickr30k_token", "karpathy", "coco")
EMPTY_CAPTION_POLICIES = ("error", "skip")


@dataclass(frozen=True)
class CaptionedImage:
    """One image and its captions. ``file_name`` is relative to the image folder (``subdir`` tried first)."""

    image_id: str
    file_name: str
    captions: tuple[str, ...]
    subdir: str = ""


@dataclass
class CaptionIndex:
    """The images of a caption file, in file order, with what was dropped while reading it."""

    images: list[CaptionedImage]
    caption_format: str
    splits: list[str] | None
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def num_captions(self) -> int:
        return sum(len(image.captions) for image in self.images)


class _EmptyCaptions:
    """Applies the empty-caption policy: raise naming the place, or count (and report at the end)."""

    def __init__(self, policy: str, source: str) -> None:
        if policy not in EMPTY_CAPTION_POLICIES:
            raise ValueError(f"on_empty_caption must be one of {EMPTY_CAPTION_POLICIES}, got {policy!r}")
        self.policy = policy
        self.source = source
        self.skipped = 0

    def keep(self, caption: Any, where: str) -> bool:
        if isinstance(caption, str) and caption.strip():
            return True
        if self.policy == "error":
            raise ValueError(
                f"{self.source}: empty caption at {where}; fix the file or pass on_empty_caption='skip' "
                "(--on-empty-caption skip) to drop empty captions with a count"
            )
        self.skipped += 1
        return False


def detect_caption_format(path: str | os.PathLike) -> str:
    """``flickr30k_token``, ``karpathy`` or ``coco`` from the file's content."""
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        head = f.read(4096)
    stripped = head.lstrip()
    if stripped.startswith("{"):
        data = _load_json(path)
        return _json_format(data, path)
    first = next((line for line in head.splitlines() if line.strip()), "")
    name = first.split("\t", 1)[0]
    if "\t" in first and "#" in name:
        return "flickr30k_token"
    raise ValueError(
        f"cannot tell the caption format of {str(path)!r}: expected Flickr30k token lines "
        "('<file>#<k>\\t<caption>'), a Karpathy json ({'images': [... 'sentences' ...]}) or a COCO captions json "
        "({'images', 'annotations'}); pass caption_format explicitly"
    )


def _load_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"caption file {str(path)!r} is not valid JSON: {e}") from e


def _json_format(data: Any, path: Path) -> str:
    if isinstance(data, dict) and isinstance(data.get("images"), list):
        if "annotations" in data:
            return "coco"
        if data["images"] and isinstance(data["images"][0], dict) and "sentences" in data["images"][0]:
            return "karpathy"
    raise ValueError(
        f"{str(path)!r} is neither a Karpathy json ({{'images': [{{'filename', 'split', 'sentences'}}]}}) nor a COCO "
        "captions json ({'images': [{'id', 'file_name'}], 'annotations': [{'image_id', 'caption'}]})"
    )


def _read_flickr_token(path: Path, empty: _EmptyCaptions) -> list[CaptionedImage]:
    by_file: dict[str, dict[int, str]] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            if "\t" not in line:
                raise ValueError(f"{str(path)!r} line {lineno}: expected '<file>#<k>\\t<caption>', got {line[:80]!r}")
            key, caption = line.split("\t", 1)
            file_name, sep, k = key.strip().rpartition("#")
            if not sep or not file_name or not k.isdigit():
                raise ValueError(f"{str(path)!r} line {lineno}: expected '<file>#<k>' before the tab, got {key!r}")
            captions = by_file.setdefault(file_name, {})
            if int(k) in captions:
                raise ValueError(f"{str(path)!r} line {lineno}: caption {key!r} appears twice")
            if empty.keep(caption, f"line {lineno} ({key})"):
                captions[int(k)] = caption.strip()
    return [
        CaptionedImage(Path(name).stem, name, tuple(caps[k] for k in sorted(caps))) for name, caps in by_file.items()
    ]


def _read_karpathy(
    data: dict, path: Path, splits: Sequence[str] | None, empty: _EmptyCaptions
) -> tuple[list[CaptionedImage], dict[str, int]]:
    images: list[CaptionedImage] = []
    seen: set[str] = set()
    split_counts: dict[str, int] = {}
    for i, entry in enumerate(data["images"]):
        try:
            split = entry.get("split", "")
            filename = entry["filename"]
            sentences = entry["sentences"]
        except (KeyError, AttributeError) as e:
            raise ValueError(f"{str(path)!r}: images[{i}] lacks {e} (expected 'filename', 'split', 'sentences')") from e
        split_counts[split] = split_counts.get(split, 0) + 1
        if splits is not None and split not in splits:
            continue
        image_id = str(entry["cocoid"]) if "cocoid" in entry else Path(filename).stem
        if image_id in seen:
            raise ValueError(f"{str(path)!r}: image {image_id!r} ({filename}) is listed twice")
        seen.add(image_id)
        captions = []
        for j, sentence in enumerate(sentences):
            raw = sentence.get("raw")
            if raw is None and "tokens" in sentence:
                raw = " ".join(sentence["tokens"])
            if empty.keep(raw, f"image {filename} sentence {j}"):
                captions.append(raw.strip())
        images.append(CaptionedImage(image_id, filename, tuple(captions), subdir=entry.get("filepath", "") or ""))
    return images, split_counts


def _read_coco(data: dict, path: Path, empty: _EmptyCaptions) -> list[CaptionedImage]:
    files: dict[str, str] = {}
    for i, entry in enumerate(data["images"]):
        try:
            image_id, file_name = str(entry["id"]), entry["file_name"]
        except (KeyError, TypeError) as e:
            raise ValueError(f"{str(path)!r}: images[{i}] lacks {e} (expected 'id' and 'file_name')") from e
        if image_id in files:
            raise ValueError(f"{str(path)!r}: image id {image_id} is listed twice in 'images'")
        files[image_id] = file_name
    captions: dict[str, list[str]] = {image_id: [] for image_id in files}
    for i, ann in enumerate(data["annotations"]):
        try:
            image_id, caption = str(ann["image_id"]), ann["caption"]
        except (KeyError, TypeError) as e:
            raise ValueError(f"{str(path)!r}: annotations[{i}] lacks {e} (expected 'image_id' and 'caption')") from e
        if image_id not in captions:
            raise ValueError(f"{str(path)!r}: annotations[{i}] refers to image id {image_id}, which 'images' lacks")
        if empty.keep(caption, f"annotations[{i}] (image {image_id})"):
            captions[image_id].append(caption.strip())
    return [CaptionedImage(image_id, files[image_id], tuple(captions[image_id])) for image_id in files]


def _read_image_list(image_list: str | os.PathLike | Iterable[str]) -> list[str]:
    if isinstance(image_list, (str, os.PathLike)):
        with open(image_list, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    return [str(x).strip() for x in image_list]


def read_captions(
    path: str | os.PathLike,
    caption_format: str = "auto",
    split: str | Sequence[str] | None = "train",
    image_list: str | os.PathLike | Iterable[str] | None = None,
    on_empty_caption: str = "error",
) -> CaptionIndex:
    """Read a Flickr30k or COCO caption file into a :class:`CaptionIndex`.

    Args:
        path: the caption file.
        caption_format: one of :data:`CAPTION_FORMATS`.
        split: Karpathy split(s) to keep (``"train"``, ``"train,restval"``, a list, or ``None``/``"all"`` for every
            image); ignored by the other formats, which carry no split.
        image_list: optional file (one id or file name a line) or iterable restricting the images kept.
        on_empty_caption: ``"error"`` (raise naming the line or image) or ``"skip"`` (drop, count, log).

    Images left with no caption are dropped and counted in ``stats["images_without_captions"]``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"caption file {str(path)!r} does not exist")
    if caption_format not in CAPTION_FORMATS:
        raise ValueError(f"caption_format must be one of {CAPTION_FORMATS}, got {caption_format!r}")
    empty = _EmptyCaptions(on_empty_caption, f"caption file {str(path)!r}")
    if caption_format == "auto":
        caption_format = detect_caption_format(path)
    splits: list[str] | None = None
    stats: dict[str, Any] = {}
    if caption_format == "flickr30k_token":
        images = _read_flickr_token(path, empty)
    else:
        data = _load_json(path)
        found = _json_format(data, path)
        if found != caption_format:
            raise ValueError(f"{str(path)!r} looks like a {found!r} file, not {caption_format!r}")
        if caption_format == "karpathy":
            if isinstance(split, str):
                splits = None if split == "all" else [s.strip() for s in split.split(",") if s.strip()]
            else:
                splits = None if split is None else list(split)
            images, split_counts = _read_karpathy(data, path, splits, empty)
            stats["split_counts"] = split_counts
            if not images:
                raise ValueError(f"{str(path)!r}: no image in split(s) {splits}; the file has {split_counts}")
        else:
            images = _read_coco(data, path, empty)
        del data
    if image_list is not None:
        wanted = _read_image_list(image_list)
        wanted_set = set(wanted)
        kept = [im for im in images if im.image_id in wanted_set or Path(im.file_name).name in wanted_set]
        matched = {im.image_id for im in kept} | {Path(im.file_name).name for im in kept}
        unmatched = [w for w in wanted if w not in matched]
        if unmatched:
            logger.warning(
                "%d of %d entries of the image list match no image of %s (e.g. %s)",
                len(unmatched),
                len(wanted),
                path,
                unmatched[:3],
            )
        stats["image_list_unmatched"] = len(unmatched)
        images = kept
    without = [im.image_id for im in images if not im.captions]
    if without:
        logger.warning("%d image(s) of %s have no caption and are left out (e.g. %s)", len(without), path, without[:3])
        images = [im for im in images if im.captions]
    if empty.skipped:
        logger.warning("skipped %d empty caption(s) in %s", empty.skipped, path)
    stats.update({"empty_captions_skipped": empty.skipped, "images_without_captions": len(without)})
    if not images:
        raise ValueError(f"{str(path)!r}: no image with a caption is left to extract")
    return CaptionIndex(images=images, caption_format=caption_format, splits=splits, stats=stats)
