"""The ``dalr-hf`` command: training, feature extraction, evaluation and publishing subcommands.

Every subcommand runs inside :func:`user_errors`: an error a user can act on (a bad value, a missing file, a folder
in use, a full disk, a corrupt checkpoint) is printed as one line ``error: ...`` with exit status 1, not a traceback;
an interruption (Ctrl-C) exits with status 130. Programming errors keep their traceback.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

EXIT_ERROR = 1  # what SystemExit(message) exits with
EXIT_INTERRUPTED = 130

# ValueError covers the project's own input errors (CheckpointError, RecipeError, ExportError, ModelCardError, JSON
# decoding errors); OSError covers missing files, folders in use, a full disk and Hub/network errors; RuntimeError
# covers a held output folder and Hub pushes.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, OSError, RuntimeError)


def error_line(exc: BaseException) -> str:
    """``error: <message>``: the exception's own message, without a traceback (multi-line details kept)."""
    message = str(exc).strip() or type(exc).__name__
    if isinstance(exc, KeyError) and len(exc.args) == 1:
        message = str(exc.args[0])
    return f"error: {message}"


def user_errors(func: Callable[[argparse.Namespace], int | None]) -> Callable[[argparse.Namespace], int]:
    """Run a subcommand; report errors a user can act on as one ``error: ...`` line and exit status 1."""
    if getattr(func, "_dalr_user_errors", False):
        return func  # type: ignore[return-value]

    @functools.wraps(func)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return int(func(args) or 0)
        except KeyboardInterrupt:
            print("error: interrupted; a training run resumes with --resume_from_checkpoint last", file=sys.stderr)
            raise SystemExit(EXIT_INTERRUPTED) from None
        except USER_ERRORS as exc:
            raise SystemExit(error_line(exc)) from None  # printed to stderr, exit status 1

    wrapper._dalr_user_errors = True  # type: ignore[attr-defined]
    return wrapper


def add_command(
    subparsers: argparse._SubParsersAction, name: str, handler: Callable[[argparse.Namespace], int]
) -> argparse.ArgumentParser:
    """Add the subcommand ``name`` that runs ``handler``, documented by the handler's docstring: its first paragraph
    is the one-line help in the command list, the rest the ``--help`` description (the first paragraph when there is
    no more)."""
    summary, _, details = inspect.cleandoc(handler.__doc__ or "").partition("\n\n")
    parser = subparsers.add_parser(name, help=summary, description=details or summary)
    parser.set_defaults(func=handler)
    return parser


def same_named_options(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """The command-line values ``names`` as keyword arguments of the same names."""
    return {name: getattr(args, name) for name in names}


def run_group(
    prog: str,
    description: str,
    register: Callable[[argparse._SubParsersAction], None],
    argv: Sequence[str] | None,
    log_info: bool = True,
) -> int:
    """The ``python -m dalr_hf.<group>.cli`` entry point: the subcommands ``register`` adds, parsed from ``argv``;
    ``log_info`` shows the library's INFO messages."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    subparsers = parser.add_subparsers(dest="command", required=True)
    register(subparsers)
    args = parser.parse_args(argv)
    if log_info:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return int(args.func(args))


@user_errors
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
    if argv[:1] == ["train"]:  # everything after `train` belongs to the training recipe's own parser
        return _train(argparse.Namespace(train_args=argv[1:]))
    parser = build_parser()
    args = parser.parse_args(argv)
    return user_errors(args.func)(args)


if __name__ == "__main__":
    sys.exit(main())
