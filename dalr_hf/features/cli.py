"""Console commands for frozen features: ``extract-features``, ``import-kdmcse`` and ``cache-teachers``.

``register(subparsers)`` adds them to the ``dalr-hf`` command; ``python -m dalr_hf.features.cli <command> ...`` runs
them standalone.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dalr_hf.cli import add_command, run_group, same_named_options, user_errors
from dalr_hf.features.captions import CAPTION_FORMATS, EMPTY_CAPTION_POLICIES

logger = logging.getLogger(__name__)


# extract-features values handed on unchanged, as keyword arguments of the same names
EXTRACT_OPTIONS = (
    "caption_format",
    "split",
    "image_list",
    "batch_size",
    "device",
    "precision",
    "shard_size",
    "num_workers",
    "on_missing_image",
    "on_empty_caption",
    "cache_dir",
    "init_seed",
)


def _build_store(args: argparse.Namespace, build: Callable[..., Any]) -> Any:
    """Run ``build(folder, overwrite=..., progress=...)`` into ``--output``, with ``--overwrite`` and
    ``--no-progress``. Replacing an existing folder (``--overwrite``) builds into a temporary sibling that takes the
    folder's place only once it is complete and valid: a bad input leaves the old one intact."""
    folder = Path(args.output)
    progress = not args.no_progress
    if args.overwrite and folder.is_dir() and any(folder.iterdir()):
        from ..atomic import replace_folder

        with replace_folder(args.output) as building:
            return build(building, overwrite=False, progress=progress)
    return build(args.output, overwrite=args.overwrite, progress=progress)


def _print_feature_store(output: str, metadata: dict[str, Any], details: str) -> None:
    print(f"feature store {output}: {metadata['num_rows']} rows, {metadata['num_images']} images, {details}")


def _pretrained(value: str) -> str | None:
    return None if value.lower() in ("", "none", "random") else value


@user_errors
def _run_extract(args: argparse.Namespace) -> int:
    """CLIP image and caption features of an image folder into a feature store.

    Extract CLIP (any open_clip model) image and caption features of Flickr30k / COCO images into a resumable feature
    store (a memory-mapped datasets folder). Rerun the same command to resume.
    """
    from dalr_hf.features.extract import extract_features

    extract = functools.partial(
        extract_features,
        args.images,
        args.captions,
        model_name=args.model,
        pretrained=_pretrained(args.pretrained),
        normalize=not args.no_normalize,
        caption_features=not args.no_caption_features,
        **same_named_options(args, EXTRACT_OPTIONS),
    )
    _, metadata = _build_store(args, extract)
    _print_feature_store(
        args.output,
        metadata,
        f"image dim {metadata['image_dim']}, caption dim {metadata['caption_dim']}, "
        f"{metadata['skipped_images']} image(s) skipped",
    )
    return 0


@user_errors
def _run_import(args: argparse.Namespace) -> int:
    """Convert a KDMCSE/DALR JSON feature file into a feature store.

    Convert a KDMCSE/DALR JSON feature file (image key -> image, image_feat, captions, lang_feat) into a feature
    store, one row per caption.
    """
    from dalr_hf.features.kdmcse import import_kdmcse_json

    convert = functools.partial(
        import_kdmcse_json,
        args.json,
        model=args.model,
        pretrained=_pretrained(args.pretrained),
        normalize=not args.no_normalize,
        rows_per_shard=args.rows_per_shard,
        on_empty_caption=args.on_empty_caption,
    )
    _, metadata = _build_store(args, convert)
    _print_feature_store(args.output, metadata, f"dim {metadata['image_dim']} (from {Path(args.json).name})")
    return 0


def _per_teacher(values: Sequence | None, n: int, name: str) -> list:
    if not values:
        return [None] * n
    if len(values) == 1:
        return list(values) * n
    if len(values) != n:
        raise ValueError(f"{name}: give one value for all teachers or one per teacher ({n}), got {len(values)}")
    return list(values)


@user_errors
def _run_cache(args: argparse.Namespace) -> int:
    """Precompute teacher sentence embeddings (and g2l token states) for a corpus.

    Encode every sentence of a corpus with each frozen teacher once and store the embeddings (teacher_emb_0,
    teacher_emb_1, ...) and the mixed token states the g2l term needs (teacher_tokens, teacher_token_len) with the
    teachers' fingerprints.
    """
    import torch
    from datasets import Dataset

    from dalr_hf.features.store import FEATURE_STORE_METADATA, load_feature_store
    from dalr_hf.features.teacher_cache import build_teacher_cache
    from dalr_hf.recipe_config import check_model_name, check_text_file
    from dalr_hf.teachers import Teacher, TeacherConfig, TeacherEnsemble

    # inputs first, before any teacher is loaded
    if args.text_file:
        check_text_file(args.text_file, "--text-file")
    elif not Path(args.dataset).is_dir():
        raise FileNotFoundError(
            f"--dataset {args.dataset!r}: no such folder (expected a feature store or a datasets save_to_disk folder)"
        )
    for i, name in enumerate(args.teacher):
        check_model_name(f"--teacher {i + 1}", name)
    n = len(args.teacher)
    weights = _per_teacher(args.teacher_weight, n, "--teacher-weight")
    weights = [w if w is not None else 1.0 / n for w in weights]
    poolers = _per_teacher(args.pooler, n, "--pooler")
    lengths = _per_teacher(args.max_length, n, "--max-length")
    revisions = _per_teacher(args.revision, n, "--revision")
    autocast = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.teacher_precision]
    from ..student import resolve_model_path

    configs = [
        TeacherConfig(
            name_or_path=resolve_model_path(name),
            weight=w,
            pooler=p or "cls_before_pooler",
            max_length=m or 32,
            revision=r,
        )
        for name, w, p, m, r in zip(args.teacher, weights, poolers, lengths, revisions)
    ]
    ensemble = TeacherEnsemble([Teacher(c, device=args.device, autocast_dtype=autocast) for c in configs])
    if args.dataset:
        folder = Path(args.dataset)
        if (folder / FEATURE_STORE_METADATA).is_file():
            corpus, _ = load_feature_store(folder)
        else:
            corpus = Dataset.load_from_disk(str(folder))
        text_column = args.text_column or "caption"
    else:
        with open(args.text_file, encoding="utf-8") as f:
            corpus = [line.rstrip("\r\n") for line in f]
        text_column = args.text_column or "text"
    build = functools.partial(
        build_teacher_cache,
        ensemble,
        corpus,
        text_column=text_column,
        dtype=args.dtype,
        batch_size=args.batch_size,
        device=args.device,
        chunk_size=args.chunk_size,
        token_states=not args.no_token_states,
    )
    _, metadata = _build_store(args, build)
    tokens = metadata.get("token_states")
    stored = (
        f"; token states {tokens['positions']} x {tokens['hidden_size']} per row"
        if tokens
        else "; no token states (the g2l term will need online teachers)"
    )
    print(
        f"teacher cache {args.output}: {metadata['num_rows']} rows, columns {metadata['columns']} "
        f"(dims {metadata['dims']}, {metadata['dtype']}){stored}, corpus sha256 {metadata['corpus_sha256'][:12]}"
    )
    return 0


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace a store made with another configuration (only store files are removed).",
    )
    parser.add_argument("--no-progress", action="store_true", help="Do not show a progress bar.")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``extract-features``, ``import-kdmcse`` and ``cache-teachers`` to an argparse subparsers object."""
    p = add_command(subparsers, "extract-features", _run_extract)
    p.add_argument("--images", required=True, help="Folder of the image files.")
    p.add_argument(
        "--captions",
        required=True,
        help="Caption file: Flickr30k results_20130124.token, Karpathy dataset_*.json or COCO captions_*.json.",
    )
    p.add_argument("--output", required=True, help="Folder of the feature store to write.")
    p.add_argument("--caption-format", default="auto", choices=CAPTION_FORMATS, help="Caption file format.")
    p.add_argument(
        "--split",
        default="train",
        help="Karpathy split(s) to keep, comma separated (e.g. train or train,restval), or 'all'.",
    )
    p.add_argument(
        "--image-list",
        help="File of image ids or file names (one a line) to keep, e.g. Flickr30k-Entities train.txt.",
    )
    p.add_argument("--model", default="ViT-L-14", help="open_clip model name (ViT-L-14 as in the paper).")
    p.add_argument(
        "--pretrained",
        default="openai",
        help="open_clip pretrained tag or weights file; 'none' for a random (seeded) model.",
    )
    p.add_argument("--batch-size", type=int, default=64, help="Images (and captions) per forward pass.")
    p.add_argument("--device", help="Device (default: cuda if available, else cpu).")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"), help="Autocast precision.")
    p.add_argument("--no-normalize", action="store_true", help="Store raw (not L2-normalised) features.")
    p.add_argument("--no-caption-features", action="store_true", help="Do not store CLIP caption features.")
    p.add_argument("--shard-size", type=int, default=1024, help="Images per shard (unit of resume and of memory).")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers decoding images.")
    p.add_argument(
        "--on-missing-image",
        default="error",
        choices=("error", "skip"),
        help="A missing or unreadable image: stop with an error, or skip it (logged and counted).",
    )
    p.add_argument(
        "--on-empty-caption",
        default="error",
        choices=EMPTY_CAPTION_POLICIES,
        help="An empty caption: stop with an error, or skip it (counted).",
    )
    p.add_argument("--cache-dir", help="open_clip download cache folder.")
    p.add_argument("--init-seed", type=int, default=0, help="Seed of a random model (--pretrained none).")
    _add_common(p)

    p = add_command(subparsers, "import-kdmcse", _run_import)
    p.add_argument("--json", required=True, help="The JSON feature file (e.g. flickr30k_ViT_L14.json).")
    p.add_argument("--output", required=True, help="Folder of the feature store to write.")
    p.add_argument("--model", default="ViT-L-14", help="CLIP model that made the file (recorded in the metadata).")
    p.add_argument("--pretrained", default="openai", help="Its pretrained tag (recorded in the metadata).")
    p.add_argument("--no-normalize", action="store_true", help="Keep the features as in the file.")
    p.add_argument("--rows-per-shard", type=int, default=20000, help="Rows written per shard.")
    p.add_argument(
        "--on-empty-caption",
        default="error",
        choices=EMPTY_CAPTION_POLICIES,
        help="An empty caption: stop with an error, or skip it (counted).",
    )
    _add_common(p)

    p = add_command(subparsers, "cache-teachers", _run_cache)
    p.add_argument(
        "--teacher",
        action="append",
        required=True,
        help="Teacher: Hub id, folder or pypi:<package> (as in training); repeat for several teachers (order matters).",
    )
    p.add_argument(
        "--teacher-weight",
        nargs="+",
        type=float,
        help="Teacher weight, once for all or once per teacher (default 1/n each; recorded only).",
    )
    p.add_argument(
        "--pooler",
        nargs="+",
        choices=("cls_before_pooler", "cls", "mean"),
        help="Teacher pooler, one for all or one per teacher (default cls_before_pooler).",
    )
    p.add_argument(
        "--max-length",
        nargs="+",
        type=int,
        help="Teacher max length, one for all or one per teacher (default 32).",
    )
    p.add_argument("--revision", nargs="+", help="Hub revision, one for all or one per teacher.")
    p.add_argument(
        "--teacher-precision",
        default="fp32",
        choices=("fp32", "bf16", "fp16"),
        help="Autocast precision of the teacher forward pass.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help="A feature store or any datasets save_to_disk folder.")
    source.add_argument("--text-file", help="A text file, one sentence a line (every line, e.g. wiki1m).")
    p.add_argument(
        "--text-column",
        help="Column of the sentences (default: caption for --dataset, text for --text-file).",
    )
    p.add_argument("--output", required=True, help="Folder of the cache to write.")
    p.add_argument("--dtype", default="float16", choices=("float16", "float32"), help="Storage dtype.")
    p.add_argument("--batch-size", type=int, default=128, help="Sentences per teacher forward pass.")
    p.add_argument(
        "--chunk-size",
        type=int,
        help="Sentences per shard (unit of resume and memory); default 16384, or about 256 MiB of "
        "float32 token states.",
    )
    p.add_argument(
        "--no-token-states",
        action="store_true",
        help="Store sentence embeddings only; the g2l term (on in the reference and clean presets) then "
        "needs online teachers. Token states need teachers of one width, max length and tokenizer.",
    )
    p.add_argument("--device", help="Device of the teachers (default: where they were loaded, cpu).")
    _add_common(p)


def main(argv: Sequence[str] | None = None) -> int:
    return run_group("python -m dalr_hf.features.cli", "dalr_hf frozen-feature commands.", register, argv)


if __name__ == "__main__":
    sys.exit(main())
