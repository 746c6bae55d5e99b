"""Console commands for publishing: ``export`` and ``push``.

    dalr-hf export outputs/dalr-bert --output exports/dalr-bert [--eval-results results.json] [--model-id org/name]
    dalr-hf push outputs/dalr-bert --repo-id org/dalr-bert [--private] [--dry-run staging/]

``register(subparsers)`` adds them to the ``dalr-hf`` command; ``python -m dalr_hf.publish.cli <command> ...`` runs
them standalone.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from dalr_hf.cli import add_command, run_group

logger = logging.getLogger(__name__)


def _friendly(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Report errors a user can act on as one line (``error: ...``) and exit status 1, not a traceback."""

    @functools.wraps(func)
    def wrapper(args: argparse.Namespace) -> int:
        from huggingface_hub.errors import HfHubHTTPError

        from dalr_hf.publish.card.collect import ModelCardError
        from dalr_hf.publish.export import ExportError
        from dalr_hf.publish.hub import HubPushError

        user_errors = (ExportError, HubPushError, ModelCardError, HfHubHTTPError, FileNotFoundError)
        try:
            return func(args)
        except (*user_errors, json.JSONDecodeError) as exc:
            raise SystemExit(f"error: {exc}") from exc

    return wrapper


def _eval_results(args: argparse.Namespace) -> dict[str, Any] | None:
    """The evaluation results for the card: ``--eval-results`` (sts/transfer/mteb) and ``--mteb-results``."""
    results: dict[str, Any] = {}
    if args.eval_results:
        with open(args.eval_results, encoding="utf-8") as f:
            loaded = json.load(f)
        if not isinstance(loaded, dict):
            raise SystemExit(f"error: {args.eval_results} must hold a JSON object with sts/transfer/mteb sections")
        results.update(loaded)
    if args.mteb_results:
        with open(args.mteb_results, encoding="utf-8") as f:
            results["mteb"] = json.load(f)
    return results or None


def _print_files(folder: str, files: Sequence[str]) -> None:
    print(f"{folder}: {len(files)} files")
    for name in files:
        print(f"  {name}")


@_friendly
def _run_export(args: argparse.Namespace) -> int:
    """write a trained student as a publishable SentenceTransformer folder with its model card

    Export the best (or final) model of a DALR training run as a plain SentenceTransformer folder (Transformer +
    Pooling, safetensors, LoRA merged, no training heads or trainer state) with a DALR model card.
    """
    from dalr_hf.publish.export import export_model

    result = export_model(
        args.source,
        args.output,
        model_card=not args.no_card,
        model_id=args.model_id,
        eval_results=_eval_results(args),
        base_model_id=args.base_model,
        checkpoint=args.checkpoint,
        overwrite=args.overwrite,
    )
    print(f"exported {result.source} -> {result.path}: {result.pooling_mode} pooling, {result.embedding_dimension}-d")
    _print_files(result.path, result.files)
    if result.card_rendered is False:
        print("warning: the full model card could not be rendered; a minimal card was written (see the log)")
    return 0


@_friendly
def _run_push(args: argparse.Namespace) -> int:
    """export a trained student and upload it to the Hugging Face Hub

    Export a DALR training run (as `export` does, with a card for REPO_ID) and upload the folder to the Hub with
    huggingface_hub: create_repo (exist_ok) and one upload_folder commit. --dry-run DIR writes the exact folder that
    would be uploaded and uploads nothing.
    """
    from dalr_hf.publish.hub import push_to_hub

    result = push_to_hub(
        args.source,
        args.repo_id,
        private=True if args.private else None,
        token=args.token,
        endpoint=args.endpoint,
        dry_run_dir=args.dry_run,
        model_card=not args.no_card,
        eval_results=_eval_results(args),
        base_model_id=args.base_model,
        checkpoint=args.checkpoint,
        commit_message=args.commit_message,
        revision=args.revision,
        overwrite=args.overwrite,
    )
    if result.dry_run:
        print(f"dry run: nothing uploaded; this folder is what would be uploaded to {result.repo_id}")
        _print_files(result.folder or args.dry_run, result.files)
    else:
        print(f"uploaded {len(result.files)} files to {result.repo_id}: {result.commit_url}")
        for name in result.files:
            print(f"  {name}")
    if result.card_rendered is False:
        print("warning: the full model card could not be rendered; a minimal card was written (see the log)")
    return 0


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "source", help="training output folder (or one of its checkpoint-N folders, or a SentenceTransformer folder)"
    )
    p.add_argument(
        "--checkpoint",
        default="auto",
        help="which model of a training output folder: auto (the model saved at the end, else the best "
        "checkpoint), best, last, or a folder path",
    )
    p.add_argument(
        "--eval-results",
        help="JSON with the card's evaluation tables: sections sts / transfer / mteb mapping task names to scores "
        "x100 (the evaluation suite's JSON report is accepted as is)",
    )
    p.add_argument("--mteb-results", help="dalr_mteb_run.json written by `dalr-hf mteb` (MTEB table)")
    p.add_argument("--no-card", action="store_true", help="do not write README.md")
    p.add_argument(
        "--base-model",
        help="Hub id of the base model for the card's base_model metadata, when the run's base (a pypi: package or "
        "a local folder) does not name it (e.g. sentence-transformers/all-MiniLM-L6-v2)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export in the target folder")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``export`` and ``push`` to an argparse subparsers object."""
    p = add_command(subparsers, "export", _run_export)
    _add_common(p)
    p.add_argument("--output", required=True, help="folder to write (new or empty, or --overwrite)")
    p.add_argument("--model-id", help="Hub id the card's usage example loads (e.g. my-org/dalr-bert)")

    p = add_command(subparsers, "push", _run_push)
    _add_common(p)
    p.add_argument("--repo-id", required=True, help="namespace/name of the model repository")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--token", help="Hub token (default: HF_TOKEN or the saved `hf auth login`)")
    p.add_argument("--endpoint", help="Hub endpoint (default: HF_ENDPOINT or https://huggingface.co)")
    p.add_argument("--revision", help="branch to commit to (default: main)")
    p.add_argument("--commit-message", help="commit message")
    p.add_argument("--dry-run", metavar="DIR", help="write the folder that would be uploaded to DIR")


def main(argv: Sequence[str] | None = None) -> int:
    return run_group("python -m dalr_hf.publish.cli", "dalr_hf publishing commands.", register, argv)


if __name__ == "__main__":
    sys.exit(main())
