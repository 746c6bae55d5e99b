"""Encode each unique sentence once per evaluation, and refuse to score non-finite embeddings.

SentEval re-encodes every sentence each time a task (or a split of STS-B) asks for it. Here all tasks of one
evaluation share one :class:`SentenceEncoder`: the sentences of every selected task are collected first, the unique
ones are encoded in a single ``model.encode`` call (sentence-transformers sorts them by length, which keeps padding
low), and tasks then look their rows up.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator, Sequence

import torch
from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 128


class NonFiniteEmbeddingError(ValueError):
    """The model returned NaN or infinite embeddings; the task cannot be scored."""


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Run in ``eval()`` mode and restore the previous train/eval mode afterwards.

    ``SentenceTransformer.encode`` switches the model to eval mode and leaves it there (sentence-transformers 6.2);
    an evaluator called from inside a training loop must hand the model back as it found it.
    """
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


class SentenceEncoder:
    """Embedding cache for one evaluation: every distinct sentence is encoded at most once.

    Embeddings are kept as float32 on the CPU. ``n_encoded`` counts the sentences actually sent to the model and
    ``encode_seconds`` the time spent in ``model.encode``.
    """

    def __init__(
        self,
        model: SentenceTransformer,
        batch_size: int = DEFAULT_BATCH_SIZE,
        device: str | None = None,
        show_progress_bar: bool = False,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.model = model
        self.batch_size = batch_size
        self.device = device
        self.show_progress_bar = show_progress_bar
        self._index: dict[str, int] = {}
        self._blocks: list[torch.Tensor] = []
        self._matrix: torch.Tensor | None = None
        self._finite: torch.Tensor | None = None
        self.n_encoded = 0
        self.encode_seconds = 0.0

    def __len__(self) -> int:
        return len(self._index)

    def add(self, sentences: Iterable[str]) -> int:
        """Encode the sentences not seen yet (in one ``model.encode`` call); return how many were new."""
        new: list[str] = []
        seen_new: set[str] = set()
        for sentence in sentences:
            if sentence not in self._index and sentence not in seen_new:
                seen_new.add(sentence)
                new.append(sentence)
        if not new:
            return 0
        start = time.perf_counter()
        with eval_mode(self.model):
            embeddings = self.model.encode(
                new,
                batch_size=self.batch_size,
                convert_to_tensor=True,
                show_progress_bar=self.show_progress_bar,
                device=self.device,
            )
        self.encode_seconds += time.perf_counter() - start
        embeddings = embeddings.detach().to("cpu", torch.float32)
        if embeddings.ndim != 2 or embeddings.shape[0] != len(new):
            raise ValueError(
                f"model.encode returned a tensor of shape {tuple(embeddings.shape)} for {len(new)} sentences; "
                "expected one embedding vector per sentence"
            )
        offset = len(self._index)
        for i, sentence in enumerate(new):
            self._index[sentence] = offset + i
        self._blocks.append(embeddings)
        self._matrix = None
        self.n_encoded += len(new)
        logger.debug("encoded %d new sentences in %.1fs", len(new), time.perf_counter() - start)
        return len(new)

    def _all(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._matrix is None:
            self._matrix = torch.cat(self._blocks) if len(self._blocks) != 1 else self._blocks[0]
            self._finite = torch.isfinite(self._matrix).all(dim=1)
        assert self._finite is not None
        return self._matrix, self._finite

    def indices(self, sentences: Sequence[str]) -> torch.Tensor:
        missing = [s for s in sentences if s not in self._index]
        if missing:
            self.add(missing)
        return torch.tensor([self._index[s] for s in sentences], dtype=torch.long)

    def embed(self, sentences: Sequence[str], what: str = "") -> torch.Tensor:
        """Rows for ``sentences`` (encoding unseen ones); :class:`NonFiniteEmbeddingError` if any is NaN/Inf."""
        idx = self.indices(sentences)
        matrix, finite = self._all()
        bad = (~finite[idx]).nonzero().flatten()
        if len(bad):
            unique_bad = sorted({sentences[int(i)] for i in bad})
            example = unique_bad[0][:80]
            raise NonFiniteEmbeddingError(
                f"{what or 'evaluation'}: the model returned NaN/Inf embeddings for {len(unique_bad)} of "
                f"{len(set(sentences))} unique sentences (e.g. {example!r}); refusing to score"
            )
        return matrix[idx]
