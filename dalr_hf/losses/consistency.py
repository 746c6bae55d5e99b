"""L_cons: cross-modal consistency (matched vs mismatched text–image pairs),
docs/method.md#cross-modal-consistency-l_cons."""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

__all__ = [
    "MISMATCH_MODES",
    "ConsistencyLoss",
    "consistency_loss",
    "embedding_cosine",
    "sample_mismatch",
]

logger = logging.getLogger(__name__)

MISMATCH_MODES = ("derangement", "roll5")
#: Number of random permutations tried before falling back to independent per-row draws.
_DERANGEMENT_TRIES = 10
#: ``torch.nn.CosineEmbeddingLoss`` adds this to both squared norms (ATen's EPSILON).
_COSINE_EMBEDDING_EPS = 1e-12


def sample_mismatch(
    image_ids: Tensor, mode: str = "derangement", generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """c̃_i = c_{index[i]}, valid_i = [id_{index[i]} ≠ id_i]: the image paired with text i as its negative.

    ``mode="roll5"`` is the reference, ``index[i] = (i − 5) mod B``; its same-image collisions are reported in
    ``valid``. ``mode="derangement"`` draws a random permutation that maps no row to a row of the same image
    (rejection sampling a few times), falling back to a uniformly random row of a different image for each i; rows
    with no other image in the batch get ``valid = False`` (and ``index[i] = i``). Returns (index, valid), both (B,)
    on the device of ``image_ids``.
    """
    if image_ids.dim() != 1:
        raise ValueError(f"image_ids must be a 1-D tensor of per-row image ids, got shape {tuple(image_ids.shape)}")
    if mode not in MISMATCH_MODES:
        raise ValueError(f"unknown mismatch mode {mode!r}; expected one of {MISMATCH_MODES}")
    device = image_ids.device
    n = image_ids.shape[0]
    if mode == "roll5":
        index = torch.remainder(torch.arange(n, device=device) - 5, max(n, 1))
        return index, image_ids[index] != image_ids

    # Sample on the generator's device (CPU unless a CUDA generator is given), then move back.
    sample_device = generator.device if generator is not None else torch.device("cpu")
    ids = image_ids.detach().to(sample_device)
    rows = torch.arange(n, device=sample_device)
    for _ in range(_DERANGEMENT_TRIES):
        perm = torch.randperm(n, generator=generator, device=sample_device)
        if bool((ids[perm] != ids).all()):
            return perm.to(device), torch.ones(n, dtype=torch.bool, device=device)
    different = ids.unsqueeze(0) != ids.unsqueeze(1)  # [i, j]: row j shows another image than row i
    valid = different.any(dim=1)
    # Rows without any other image draw themselves (weight on the diagonal only) and are marked invalid.
    weights = torch.where(valid.unsqueeze(1), different.float(), (rows.unsqueeze(0) == rows.unsqueeze(1)).float())
    index = torch.multinomial(weights, 1, generator=generator).squeeze(1)
    return index.to(device), valid.to(device)


def embedding_cosine(a: Tensor, b: Tensor) -> Tensor:
    """cos_i = a_i·b_i / sqrt((‖a_i‖² + 1e−12)(‖b_i‖² + 1e−12)), row-wise, as in torch's CosineEmbeddingLoss."""
    a = a.float()
    b = b.float()
    dot = (a * b).sum(dim=-1)
    norms = ((a * a).sum(dim=-1) + _COSINE_EMBEDDING_EPS) * ((b * b).sum(dim=-1) + _COSINE_EMBEDDING_EPS)
    return dot / torch.sqrt(norms)


def consistency_loss(
    text_out: Tensor,
    image_out: Tensor,
    mismatch_index: Tensor,
    valid: Tensor | None = None,
    margin: float = 0.2,
) -> Tensor:
    """L = [Σ_i (1 − cos(a_i, b_i)) + Σ_{i valid} max(0, cos(a_i, b_{π(i)}) − m)] / (B + #valid).

    ``text_out`` a and ``image_out`` b: (B, S) tower outputs of the matched pairs; π = ``mismatch_index``; ``valid``
    (default all True) drops mismatched pairs that are not really mismatched. This is ``CosineEmbeddingLoss(margin)``
    with mean reduction over the B matched (+1) and the valid mismatched (−1) pairs.
    """
    if text_out.dim() != 2 or text_out.shape != image_out.shape:
        raise ValueError(
            f"consistency: text and image tower outputs must both be (B, S), got {tuple(text_out.shape)} and "
            f"{tuple(image_out.shape)}"
        )
    n = text_out.shape[0]
    if tuple(mismatch_index.shape) != (n,):
        raise ValueError(f"consistency: mismatch_index must have shape ({n},), got {tuple(mismatch_index.shape)}")
    if valid is None:
        valid = torch.ones(n, dtype=torch.bool, device=text_out.device)
    elif tuple(valid.shape) != (n,):
        raise ValueError(f"consistency: valid must have shape ({n},), got {tuple(valid.shape)}")
    valid = valid.to(device=text_out.device, dtype=torch.bool)
    positive = 1.0 - embedding_cosine(text_out, image_out)
    mismatched = image_out[mismatch_index.to(device=image_out.device, dtype=torch.long)]
    negative = torch.clamp(embedding_cosine(text_out, mismatched) - margin, min=0.0)
    negative = torch.where(valid, negative, torch.zeros_like(negative))
    count = n + valid.sum().to(positive.dtype)
    return (positive.sum() + negative.sum()) / count


def _tower(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(),
        nn.Linear(hidden_dim, out_dim),
        nn.BatchNorm1d(out_dim),
        nn.ReLU(),
    )


class ConsistencyLoss(nn.Module):
    """Consistency towers and loss: a = f_t(z^(1)), b = f_v(c), L = consistency_loss(a, b, mismatch).

    Each tower runs once per batch and the image outputs are indexed by the mismatch: train-mode BatchNorm gives the
    same outputs, permuted, for a permuted batch, so this equals the reference's second call on (z, c̃)
    (docs/method.md#consistency-towers-run-twice). A batch of one cannot go through train-mode BatchNorm: it yields a
    zero loss that still touches every parameter, and is counted in ``skipped_batches``.
    """

    def __init__(
        self,
        text_dim: int,
        image_dim: int,
        hidden_dim: int | None = None,
        sim_dim: int = 256,
        margin: float = 0.2,
        mismatch: str = "derangement",
        drop_same_image: bool = True,
    ) -> None:
        super().__init__()
        if mismatch not in MISMATCH_MODES:
            raise ValueError(f"unknown mismatch mode {mismatch!r}; expected one of {MISMATCH_MODES}")
        self.text_dim = int(text_dim)
        self.image_dim = int(image_dim)
        self.hidden_dim = int(hidden_dim) if hidden_dim is not None else self.text_dim
        self.sim_dim = int(sim_dim)
        self.margin = float(margin)
        self.mismatch = mismatch
        # False keeps every mismatched pair, even one that shows the same image (the reference's roll5 behaviour).
        self.drop_same_image = bool(drop_same_image)
        self.text_tower = _tower(self.text_dim, self.hidden_dim, self.sim_dim)
        self.image_tower = _tower(self.image_dim, self.hidden_dim, self.sim_dim)
        self.skipped_batches = 0

    def forward(
        self,
        z1: Tensor,
        image_features: Tensor,
        image_ids: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """L_cons on (z^(1), c); ``image_ids`` (B,) default to one distinct image per row."""
        if z1.dim() != 2 or z1.shape[1] != self.text_dim:
            raise ValueError(
                f"consistency: text input must have shape (batch, {self.text_dim}), got {tuple(z1.shape)}; "
                f"text dim {z1.shape[-1]} does not match the configured {self.text_dim}"
            )
        if image_features.dim() != 2 or image_features.shape[1] != self.image_dim:
            raise ValueError(
                f"consistency: image features must have shape (batch, {self.image_dim}), got "
                f"{tuple(image_features.shape)}; image feature dim {image_features.shape[-1]} does not match the "
                f"configured {self.image_dim}"
            )
        if z1.shape[0] != image_features.shape[0]:
            raise ValueError(
                f"consistency: batch sizes differ, text {tuple(z1.shape)} vs image {tuple(image_features.shape)}"
            )
        n = z1.shape[0]
        if n == 0 or (n < 2 and self.training):
            self.skipped_batches += 1
            logger.warning(
                "consistency loss skipped a batch of %d (BatchNorm needs >= 2 rows in train mode); "
                "%d batch(es) skipped so far",
                n,
                self.skipped_batches,
            )
            touch = sum(p.sum() for p in self.parameters()) + z1.float().sum()
            return touch * 0.0
        if image_ids is None:
            image_ids = torch.arange(n, device=image_features.device)
        index, valid = sample_mismatch(image_ids, self.mismatch, generator)
        if not self.drop_same_image:
            valid = torch.ones_like(valid)
        text_out = self.text_tower(z1.float())
        image_out = self.image_tower(image_features.float())
        return consistency_loss(text_out, image_out, index, valid, self.margin)

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, mismatch={self.mismatch!r}, drop_same_image={self.drop_same_image}, "
            f"skipped_batches={self.skipped_batches}"
        )
