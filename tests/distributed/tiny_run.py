"""A tiny DALR training run for the multi-process and resume tests (launched as a real subprocess).

python tiny_run.py --student DIR --teacher DIR --output_dir OUT --max_steps 8 --save_steps 2 [--resume last]
accelerate launch --multi_gpu --num_processes 2 tiny_run.py ... --gather
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from datasets import Dataset  # noqa: E402

from dalr_hf.distributed import close_process_group  # noqa: E402
from dalr_hf.student import build_student  # noqa: E402
from dalr_hf.teachers import TeacherEnsemble  # noqa: E402
from dalr_hf.trainer import DALRTrainer  # noqa: E402
from dalr_hf.training_args import DALRTrainingArguments  # noqa: E402

WORDS = ["red", "dog", "runs", "over", "the", "hill", "blue", "car", "city", "at", "night", "a", "man", "sings"]


def data(dim: int):
    rng = np.random.default_rng(0)
    text = Dataset.from_dict({"text": [" ".join(rng.choice(WORDS, size=rng.integers(3, 9))) for _ in range(64)]})
    paired = Dataset.from_dict(
        {
            "image_id": [f"img{i // 2}" for i in range(32)],
            "caption": [" ".join(rng.choice(WORDS, size=rng.integers(3, 8))) for _ in range(32)],
            "image_features": rng.standard_normal((32, dim)).astype(np.float32).tolist(),
        }
    )
    return text, paired


class RecordingTrainer(DALRTrainer):
    """Records the kind of every step this process trains on (to compare processes' schedules)."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            self.kinds_seen = getattr(self, "kinds_seen", []) + ["paired" if bool(inputs["paired"]) else "text"]
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


def build_trainer(student_dir: str, teacher_dir: str, output_dir: str, **overrides) -> DALRTrainer:
    """A RecordingTrainer of ``student_dir`` with two teachers on random data: 8 steps of batch 8 on the CPU with the
    'reference' preset, a checkpoint every 2 steps and no evaluation; ``overrides`` are DALRTrainingArguments."""
    student = build_student(student_dir)
    teachers = TeacherEnsemble.from_configs(
        [{"name_or_path": teacher_dir, "weight": 0.4}, {"name_or_path": student_dir, "weight": 0.6, "pooler": "mean"}]
    )
    text, paired = data(student[0].get_embedding_dimension())
    values = dict(
        output_dir=output_dir,
        preset="reference",
        per_device_train_batch_size=8,
        max_steps=8,
        learning_rate=1e-3,
        eval_strategy="no",
        save_strategy="steps",
        save_steps=2,
        load_best_model_at_end=False,
        save_total_limit=None,
        logging_steps=1,
        report_to="none",
        gather_across_devices=False,
        use_cpu=True,
        dataloader_num_workers=0,
    )
    values.update(overrides)
    args = DALRTrainingArguments(**values)
    return RecordingTrainer(model=student, args=args, text_dataset=text, paired_dataset=paired, teachers=teachers)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--student", required=True)
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--output_dir", required=True)
    # the options that override build_trainer's training arguments: their dest is the argument's name
    parser.add_argument("--max_steps", type=int, default=8)
    parser.add_argument("--save_steps", type=int, default=2)
    parser.add_argument("--batch_size", dest="per_device_train_batch_size", type=int, default=8, help="per process")
    parser.add_argument("--gather", dest="gather_across_devices", action="store_true")
    parser.add_argument("--preset", default="reference")
    parser.add_argument("--resume", default=None)
    parser.add_argument("--fsize_limit", type=int, default=None, help="RLIMIT_FSIZE in bytes (simulates a full disk)")
    parser.add_argument("--report", default=None, help="write the final student weights' summary here (JSON)")
    cli = parser.parse_args()
    if cli.fsize_limit:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG, like ENOSPC
        resource.setrlimit(resource.RLIMIT_FSIZE, (cli.fsize_limit, cli.fsize_limit))

    training = ("max_steps", "save_steps", "per_device_train_batch_size", "gather_across_devices", "preset")
    trainer = build_trainer(cli.student, cli.teacher, cli.output_dir, **{name: getattr(cli, name) for name in training})
    args = trainer.args
    resume = True if cli.resume == "last" else cli.resume
    try:
        trainer.train(resume_from_checkpoint=resume)
    except BaseException:
        close_process_group(wait=False)  # as the training script does on its way out
        raise
    if cli.report and trainer.is_world_process_zero():
        state = {k: v.double() for k, v in trainer.model.state_dict().items()}
        heads = {k: v.double() for k, v in trainer.training_heads_state_dict().items() if v.is_floating_point()}
        torch.save({"student": state, "heads": heads, "log": trainer.state.log_history}, cli.report)
    if cli.report:
        with open(f"{cli.report}.rank{args.process_index}.json", "w") as f:
            json.dump({"kinds_seen": getattr(trainer, "kinds_seen", []), "world_size": args.world_size}, f)
    close_process_group()


if __name__ == "__main__":
    main()
