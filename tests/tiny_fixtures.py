"""Tiny data and a recording evaluator shared by the trainer, publishing and example tests."""

from __future__ import annotations

import numpy as np
from datasets import Dataset
from scipy.stats import spearmanr
from sentence_transformers.sentence_transformer.evaluation import SentenceEvaluator

PAIRS_A = [
    "a man is playing a guitar",
    "a woman slices an onion",
    "two dogs run in a field",
    "a child reads a book",
    "the stock market fell today",
    "a cat sleeps on a sofa",
]
PAIRS_B = [
    "a man plays the guitar",
    "someone is cutting an onion",
    "dogs are running on grass",
    "a kid is reading",
    "shares dropped sharply",
    "a plane takes off",
]
GOLD = [4.8, 4.2, 4.5, 4.0, 3.9, 0.2]
WORDS = ["red", "dog", "runs", "over", "the", "hill", "blue", "car", "city", "at", "night", "a", "man", "sings"]


class RecordingEvaluator(SentenceEvaluator):
    """A tiny STS evaluator that keeps the embeddings it scored, keyed by training step.

    The score is the Spearman ×100 of the six pairs plus ``steps * 1e-3`` (deterministic, step-dependent), or, with
    ``peak_step``, ``100 - |steps - peak_step|`` so that the best checkpoint is not the last one.
    """

    def __init__(self, sentences: list[str] | None = None, peak_step: int | None = None) -> None:
        super().__init__()
        self.primary_metric = "stsb_spearman"
        self.sentences = sentences or PAIRS_A + PAIRS_B
        self.peak_step = peak_step
        self.embeddings: dict[int, np.ndarray] = {}

    def __call__(self, model, output_path=None, epoch=-1, steps=-1):
        emb = model.encode(self.sentences, convert_to_numpy=True)
        self.embeddings[steps] = emb
        a, b = emb[: len(PAIRS_A)], emb[len(PAIRS_A) : len(PAIRS_A) + len(PAIRS_B)]
        cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        self.spearman = float(spearmanr(cos, GOLD).statistic * 100)
        if self.peak_step is not None:
            return {"stsb_spearman": 100.0 - abs(steps - self.peak_step)}
        return {"stsb_spearman": self.spearman + steps * 1e-3}


def tiny_data(
    n_text: int = 32, n_pairs: int = 16, dim: int = 32, seed: int = 0, captions_per_image: int = 2
) -> tuple[Dataset, Dataset]:
    """Random word sentences and image-caption pairs with random ``dim``-wide image features."""
    rng = np.random.default_rng(seed)
    text = Dataset.from_dict({"text": [" ".join(rng.choice(WORDS, size=rng.integers(3, 9))) for _ in range(n_text)]})
    paired = Dataset.from_dict(
        {
            "image_id": [f"img{i // captions_per_image}" for i in range(n_pairs)],
            "caption": [" ".join(rng.choice(WORDS, size=rng.integers(3, 8))) for _ in range(n_pairs)],
            "image_features": rng.standard_normal((n_pairs, dim)).astype(np.float32).tolist(),
        }
    )
    return text, paired


def tiny_training_args(tmp_path, **overrides):
    """DALRTrainingArguments for a short CPU run in ``tmp_path / "out"``: batch 8, one epoch, no eval or saving."""
    from dalr_hf.training_args import DALRTrainingArguments

    values = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=8,
        num_train_epochs=1,
        eval_strategy="no",
        save_strategy="no",
        load_best_model_at_end=False,
        logging_steps=1,
        report_to="none",
        learning_rate=1e-3,
    )
    values.update(overrides)
    return DALRTrainingArguments(**values)
