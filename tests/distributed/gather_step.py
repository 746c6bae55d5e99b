"""One DALR step on a fixed global batch, split over however many processes run it; saves loss and gradients.

python gather_step.py --student DIR --teacher DIR --out FILE                 # one process, the whole batch
accelerate launch --multi_gpu --num_processes 2 gather_step.py ... --gather  # two processes, half each
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from accelerate import Accelerator  # noqa: E402

from dalr_hf.data import DALRDataCollator  # noqa: E402
from dalr_hf.distributed import close_process_group  # noqa: E402
from dalr_hf.losses.dalr import DALRLoss  # noqa: E402
from dalr_hf.student import build_student  # noqa: E402
from dalr_hf.teachers import TeacherEnsemble  # noqa: E402
from dalr_hf.trainer import DALRTrainer  # noqa: E402

WORDS = ["red", "dog", "runs", "over", "the", "hill", "blue", "car", "city", "at", "night", "a", "man", "sings"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--student", required=True)
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--gather", action="store_true")
    parser.add_argument("--batch", type=int, default=8, help="global batch size")
    cli = parser.parse_args()

    accelerator = Accelerator(cpu=True)
    world, rank = accelerator.num_processes, accelerator.process_index
    torch.manual_seed(0)
    student = build_student(cli.student)
    for module in student.modules():  # no dropout: both runs must see the same student outputs
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    teachers = TeacherEnsemble.from_configs(
        [{"name_or_path": cli.teacher, "weight": 0.4}, {"name_or_path": cli.student, "weight": 0.6, "pooler": "mean"}]
    )
    dim = student[0].get_embedding_dimension()
    loss = DALRLoss(
        student, teachers, "clean", image_feature_dim=dim, seed=1, gather_across_devices=cli.gather, use_g2l=True
    )
    loss.model = accelerator.prepare(student)  # DDP around the student only, as in the Trainer

    rng = np.random.default_rng(0)
    captions = [" ".join(rng.choice(WORDS, size=rng.integers(3, 10))) for _ in range(cli.batch)]
    image_ids = [f"img{i // 2}" for i in range(cli.batch)]
    features = rng.standard_normal((cli.batch, dim)).astype(np.float32)
    share = slice(rank * cli.batch // world, (rank + 1) * cli.batch // world)
    collator = DALRDataCollator(student.tokenizer, max_seq_length=32)
    batch = collator(
        {"kind": "paired", "caption": captions[share], "image_id": image_ids[share], "image_features": features[share]}
    )

    loss.train()
    terms = loss(batch)
    total = torch.stack(list(terms.values())).sum()
    accelerator.backward(total)
    DALRTrainer._sync_head_gradients(type("T", (), {"loss": loss})())  # the Trainer's head-gradient averaging
    if rank == 0:
        grads = {n: p.grad.detach().clone() for n, p in loss.named_parameters() if p.grad is not None}
        grads = {n.replace("model.module.", "model."): g for n, g in grads.items()}
        torch.save({"terms": {k: float(v.detach()) for k, v in terms.items()}, "grads": grads, "world": world}, cli.out)
    close_process_group()  # as the training script does: a gloo process exiting with its group alive may abort


if __name__ == "__main__":
    main()
