"""The ``dalr-hf`` command: training, feature extraction, evaluation and publishing subcommands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _train(args: argparse.Namespace) -> int:
    from dalr_hf.scripts.train import main as train_main

    train_main(args.train_args)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from dalr_hf import __version__
    from dalr_hf.evaluation.cli import register as register_evaluation
    from dalr_hf.features.cli import register as register_features
    from dalr_hf.publish.cli import register as register_publish

    parser = argparse.ArgumentParser(prog="dalr-hf", description="DALR sentence encoders on the Hugging Face stack")
    parser.add_argument("--version", action="version", version=f"dalr-hf {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    train = subparsers.add_parser(
        "train", help="train from a YAML recipe (same flags as examples/train_dalr.py)", add_help=False
    )
    train.add_argument("train_args", nargs=argparse.REMAINDER)
    train.set_defaults(func=_train)
    register_features(subparsers)
    register_evaluation(subparsers)
    register_publish(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv[:1] == ["train"]:  # everything after `train` belongs to the training recipe's own parser
        return _train(argparse.Namespace(train_args=argv[1:]))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
