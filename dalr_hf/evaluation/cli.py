"""``evaluate`` and ``mteb`` subcommands.

``register(subparsers)`` adds both to an ``argparse`` sub-parser group; each sets ``func`` to a handler that
takes the parsed namespace and returns the exit status (0: all tasks scored; 1: a task failed, e.g. NaN
embeddings; 2: unusable input such as a missing data file). Standalone::

    python -m dalr_hf.evaluation.cli evaluate MODEL --tasks sts,transfer --data-dir DIR
    python -m dalr_hf.evaluation.cli mteb MODEL --tasks sts --output-dir mteb_results
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from dalr_hf.cli import add_command, run_group, same_named_options
from dalr_hf.evaluation.data import ENV_DATA_DIR, DataFileError
from dalr_hf.evaluation.encoding import DEFAULT_BATCH_SIZE
from dalr_hf.evaluation.probe import PROBE_MODES, SENTEVAL_SEED
from dalr_hf.evaluation.results import STS_AGGREGATIONS
from dalr_hf.evaluation.transfer import MRPC_FEATURES

EXIT_OK, EXIT_TASK_FAILED, EXIT_BAD_INPUT = 0, 1, 2


EVALUATE_TASKS_HELP = (
    "comma-separated: sts, transfer, all, or task names (STS12..STS16, STSBenchmark, "
    "STSBenchmark-dev, SICKRelatedness, MR, CR, SUBJ, MPQA, SST2, TREC, MRPC)"
)
MTEB_TASKS_HELP = (
    "'sts' (MTEB's STS12-16, STSBenchmark, SICK-R; needs the Hub), 'local-sts' (bundled "
    "SentEval STS files, offline), 'mock' (mteb's mock tasks), or MTEB task names"
)


def _default_output(model: str) -> Path:
    stem = re.sub(r"[^\w.-]+", "_", Path(model).name if Path(model).exists() else model.replace("/", "__"))
    return Path(f"senteval_{stem}.json")


def _add_common(parser: argparse.ArgumentParser, tasks_help: str) -> None:
    parser.add_argument("model", help="SentenceTransformer folder or Hugging Face Hub id")
    parser.add_argument(
        "--data-dir",
        help=f"SentEval 'downstream' folder (default: ${ENV_DATA_DIR}, else the repository's "
        "bundled data/senteval/downstream, which holds the STS/SICK data only)",
    )
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="encoding batch size")
    parser.add_argument("--device", help="device for encoding, e.g. cpu or cuda:0")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each step (task scores, timings)")
    parser.add_argument("--tasks", default="sts", help=tasks_help)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` and ``mteb`` subcommands to ``subparsers``."""
    evaluate = add_command(subparsers, "evaluate", run_evaluate)
    _add_common(evaluate, EVALUATE_TASKS_HELP)
    evaluate.add_argument(
        "--aggregation",
        choices=STS_AGGREGATIONS,
        default="all",
        help="STS12-16 aggregation: 'all' (pooled pairs; the papers' protocol) or 'wmean'",
    )
    evaluate.add_argument(
        "--transfer-mode",
        choices=sorted(PROBE_MODES),
        default="test",
        help="SentEval probe settings: 'test' (reported numbers) or 'fasttest'",
    )
    evaluate.add_argument("-q", "--quiet", action="store_true", help="hide the progress bars (shown by default)")
    evaluate.add_argument("--seed", type=int, default=SENTEVAL_SEED, help="probe seed (SentEval: 1111)")
    evaluate.add_argument(
        "--mrpc-features",
        choices=MRPC_FEATURES,
        default="senteval",
        help="MRPC pair features: SentEval's [|u-v|, u*v] or 'full' [u, v, |u-v|, u*v]",
    )
    evaluate.add_argument("--output", help="JSON report path (default: ./senteval_<model>.json)")

    mteb = add_command(subparsers, "mteb", run_mteb_command)
    _add_common(mteb, MTEB_TASKS_HELP)
    mteb.add_argument(
        "--benchmark", help="run every task of an MTEB benchmark instead of --tasks, e.g. 'MTEB(eng, v2)'"
    )
    mteb.add_argument("--output-dir", default="mteb_results", help="results cache folder")
    mteb.add_argument(
        "--model-name",
        help="'org/name' recorded in ModelMeta (default: the Hub id, the name in the folder's DALR card, or "
        "local/<folder>)",
    )
    mteb.add_argument(
        "--revision",
        help="model revision (Hub commit) recorded in ModelMeta; default: read from the HF cache, "
        "else 'no_revision_available'",
    )
    mteb.add_argument(
        "--base-model",
        help="model the student was trained from (adapted_from); default: the base_model of the folder's DALR card",
    )
    mteb.add_argument(
        "--caption-data",
        choices=["card", "flickr30k", "coco", "none"],
        default="card",
        help="image-caption corpus used in training (adds its MTEB tasks to training_datasets); default: the "
        "datasets of the folder's DALR card, else flickr30k",
    )
    mteb.add_argument("--license", help="license recorded in ModelMeta (default: the card's, else apache-2.0)")
    mteb.add_argument("--reference", help="URL of the model's page (default: its Hub page when the card names one)")
    mteb.add_argument("--citation", help="BibTeX recorded in ModelMeta (default: DALR's, from the card)")
    mteb.add_argument(
        "--public-training-code", help="URL of the code the model was trained with (public_training_code)"
    )
    mteb.add_argument(
        "--training-datasets",
        help="comma-separated MTEB task names that replace the default training_datasets",
    )


# command-line values handed on unchanged, as keyword arguments of the same names
EVALUATE_OPTIONS = ("tasks", "data_dir", "batch_size", "aggregation", "transfer_mode", "seed", "mrpc_features")
MTEB_OPTIONS = (
    "output_dir",
    "model_name",
    "revision",
    "data_dir",
    "batch_size",
    "base_model",
    "benchmark",
    "license",
    "reference",
    "citation",
    "public_training_code",
)


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if verbose:
        logging.getLogger("dalr_hf").setLevel(logging.INFO)


def _fail(command: str, error: BaseException) -> int:
    print(f"dalr-hf {command}: error: {error}", file=sys.stderr)
    return EXIT_BAD_INPUT


def run_evaluate(args: argparse.Namespace) -> int:
    """STS12-16/STS-B/SICK-R and transfer tasks with the SentEval protocol of the papers

    Evaluate a SentenceTransformer with the SimCSE/MCSE/KDMCSE/DALR SentEval protocol; prints a markdown table and
    writes a JSON report.
    """
    from dalr_hf.evaluation.api import evaluate_model

    _configure_logging(args.verbose)
    if args.quiet:  # also the bars transformers and huggingface_hub show while loading the model
        import huggingface_hub.utils
        import transformers

        transformers.utils.logging.disable_progress_bar()
        huggingface_hub.utils.disable_progress_bars()
    output = Path(args.output) if args.output else _default_output(args.model)
    try:
        report = evaluate_model(
            args.model,
            **same_named_options(args, EVALUATE_OPTIONS),
            device=args.device,
            output_path=output,
            show_progress_bar=not args.quiet,
        )
    except (FileNotFoundError, DataFileError, ValueError, OSError) as error:
        return _fail("evaluate", error)
    print(report.to_markdown())
    print(f"JSON report: {output}")
    return EXIT_OK if report.ok else EXIT_TASK_FAILED


def run_mteb_command(args: argparse.Namespace) -> int:
    """run MTEB and write leaderboard-ready results (results-repository layout + ModelMeta)

    Run MTEB tasks on a SentenceTransformer; results go to OUTPUT_DIR/results/<org>__<name>/<revision>/, ready for
    `mteb submit-results --output-folder OUTPUT_DIR`.
    """
    from dalr_hf.evaluation.mteb_runner import run_mteb

    _configure_logging(args.verbose)
    training = [t.strip() for t in args.training_datasets.split(",") if t.strip()] if args.training_datasets else None
    try:
        run = run_mteb(
            args.model,
            args.tasks,
            caption_data=None if args.caption_data == "none" else args.caption_data,
            training_datasets=training,
            raise_error=False,
            **same_named_options(args, MTEB_OPTIONS),
            device=args.device,
        )
    except (FileNotFoundError, DataFileError, ValueError, KeyError, OSError) as error:
        return _fail("mteb", error)
    print(run.to_markdown())
    print(f"ModelMeta: {run.results_dir / 'model_meta.json'} (Python form: {run.output_dir / 'model_meta_snippet.py'})")
    return EXIT_OK if not run.errors else EXIT_TASK_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    return run_group(
        "python -m dalr_hf.evaluation.cli",
        "dalr_hf evaluation suite (SentEval protocol and MTEB)",
        register,
        argv,
        log_info=False,
    )


if __name__ == "__main__":
    sys.exit(main())
