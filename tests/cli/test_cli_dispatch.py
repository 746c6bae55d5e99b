"""Every ``dalr-hf`` subcommand is dispatched: its help, and one error path reported as one ``error:`` line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dalr_hf.cli import main, user_errors

SUBCOMMANDS = ["train", "extract-features", "import-kdmcse", "cache-teachers", "evaluate", "mteb", "export", "push"]


def _exit(argv, capsys):
    try:
        code = main(argv)  # evaluate and mteb report their own errors and return status 2
    except SystemExit as info:
        code = info.code
    captured = capsys.readouterr()
    # SystemExit("message") prints the message to stderr and exits with status 1
    if isinstance(code, str):
        return 1, captured.out, captured.err + code
    return code, captured.out, captured.err


def test_top_level_help_lists_every_subcommand(capsys):
    code, out, _ = _exit(["--help"], capsys)
    assert code == 0
    for name in SUBCOMMANDS:
        assert name in out


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_each_subcommand_has_help(command, capsys):
    code, out, _ = _exit([command, "--help"], capsys)
    assert code == 0
    if command == "train":
        assert "--config YAML" in out and "--overwrite_output_dir" in out
    else:
        assert out.startswith(f"usage: dalr-hf {command}")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["train", "--config", "no-such-recipe.yaml"], "error: config file 'no-such-recipe.yaml' does not exist"),
        (
            [
                "extract-features",
                "--images",
                "no-such-images",
                "--captions",
                "no-such.token",
                "--output",
                "{tmp}/o",
                "--pretrained",
                "none",
                "--model",
                "no-such-model",
            ],
            "error: ",
        ),
        (["import-kdmcse", "--json", "no-such.json", "--output", "{tmp}/o"], "error: KDMCSE feature file"),
        (
            ["cache-teachers", "--teacher", "t", "--text-file", "no-such.txt", "--output", "{tmp}/o"],
            "error: --text-file: 'no-such.txt' does not exist",
        ),
        (["evaluate", "{tmp}/no-such-model"], "error: Path"),
        (["mteb", "{tmp}/no-such-model", "--tasks", "STS12"], "error: Path"),
        (["export", "{tmp}/no-such-run", "--output", "{tmp}/o"], "does not exist"),
        (["push", "{tmp}/no-such-run", "--repo-id", "me/model", "--dry-run", "{tmp}/o"], "does not exist"),
    ],
    ids=SUBCOMMANDS,
)
def test_each_subcommand_reports_a_bad_input_in_one_line(argv, expected, tmp_path, capsys):
    code, _, err = _exit([a.replace("{tmp}", str(tmp_path)) for a in argv], capsys)
    assert code != 0
    assert expected in err, err
    assert "Traceback" not in err


def test_train_errors_raised_during_the_run_are_one_line(monkeypatch, capsys):
    import dalr_hf.scripts.train as train_script
    from dalr_hf.checkpoints import CheckpointError

    def failing_run(argv):
        raise CheckpointError("checkpoint out/checkpoint-4 is corrupt: model.safetensors does not match its SHA-256")

    monkeypatch.setattr(train_script, "main", failing_run)
    code, _, err = _exit(["train", "--resume_from_checkpoint", "out/checkpoint-4"], capsys)
    assert code == 1 and err.strip() == (
        "error: checkpoint out/checkpoint-4 is corrupt: model.safetensors does not match its SHA-256"
    )


def test_the_wrapper_keeps_tracebacks_for_programming_errors_and_130_for_ctrl_c():
    @user_errors
    def buggy(args):
        raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError):
        buggy(None)

    @user_errors
    def interrupted(args):
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as info:
        interrupted(None)
    assert info.value.code == 130


def test_examples_train_dalr_uses_the_same_wrapper(tmp_path):
    result = subprocess.run(
        [sys.executable, "examples/train_dalr.py", "--config", str(tmp_path / "missing.yaml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    missing = str(tmp_path / "missing.yaml")
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: config file {missing!r} does not exist (expected a YAML file of recipe keys)"
    )
