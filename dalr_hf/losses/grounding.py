"""L_ground: MCSE/KDMCSE text→image grounding contrastive, docs/method.md#grounding-l_ground."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dalr_hf.losses._masking import mask_logits
from dalr_hf.losses.arc_similarity import ARC_MARGIN, arc_similarity, pairwise_cosine

__all__ = ["GroundingLoss", "grounding_contrastive"]


def grounding_contrastive(logits: list[Tensor], negative_mask: Tensor | None = None) -> Tensor:
    """L = (1/V) Σ_v −(1/B) Σ_i log softmax_j(G^(v)_ij)[j = i], masked negatives excluded from the softmax.

    ``logits``: the V (B, B) matrices G^(v) (texts × images, positive on the diagonal). ``negative_mask``: optional
    bool (B, B), True = drop column j from row i's softmax (used for captions of the same image); the diagonal is
    never dropped.
    """
    if len(logits) == 0:
        raise ValueError("grounding_contrastive needs at least one logit matrix")
    losses = []
    for g in logits:
        if g.dim() != 2 or g.shape[0] != g.shape[1]:
            raise ValueError(f"grounding logits must be square (B, B), got {tuple(g.shape)}")
        masked = mask_logits(g, negative_mask)
        targets = torch.arange(masked.shape[0], device=masked.device)
        losses.append(F.cross_entropy(masked, targets))
    return torch.stack(losses).mean()


class GroundingLoss(nn.Module):
    """L = ½ Σ_v CE(ArcSim(p^(v), g; m₂, τ_vl, V)), p^(v) = n(tanh(W_g h^(v))), g = n(tanh(W_v c)): heads and loss.

    With ``use_caption_branch`` (KDMCSE) the same loss against CLIP caption features, projected by their own head
    and with the caption–caption cosine as adaptive-margin similarity, is added to the image term.
    """

    def __init__(
        self,
        text_dim: int,
        image_dim: int,
        proj_dim: int = 256,
        margin: float = ARC_MARGIN,
        temperature: float = 0.05,
        adaptive_margin: bool = True,
        use_caption_branch: bool = False,
    ) -> None:
        super().__init__()
        if margin < 0 or temperature <= 0:
            raise ValueError(f"GroundingLoss needs margin >= 0 and temperature > 0, got {margin} and {temperature}")
        self.text_dim = int(text_dim)
        self.image_dim = int(image_dim)
        self.proj_dim = int(proj_dim)
        self.margin = float(margin)
        self.temperature = float(temperature)
        self.adaptive_margin = bool(adaptive_margin)
        self.use_caption_branch = bool(use_caption_branch)
        # Outside the pretrained encoder, hence PyTorch's default Linear init (as in the reference).
        self.text_proj = nn.Linear(self.text_dim, self.proj_dim)
        self.image_proj = nn.Linear(self.image_dim, self.proj_dim)
        self.caption_proj = nn.Linear(self.image_dim, self.proj_dim) if self.use_caption_branch else None

    def _check_width(self, name: str, value: Tensor, expected: int) -> None:
        if value.dim() != 2 or value.shape[1] != expected:
            raise ValueError(
                f"grounding: {name} must have shape (batch, {expected}), got {tuple(value.shape)}; "
                f"{name} dim {value.shape[-1]} does not match the configured {expected}"
            )

    def _project(self, head: nn.Linear, x: Tensor) -> Tensor:
        return F.normalize(torch.tanh(head(x.float())).float(), p=2.0, dim=-1)

    def _branch(
        self, texts: list[Tensor], features: Tensor, head: nn.Linear, sim: Tensor | None, mask: Tensor | None
    ) -> Tensor:
        g = self._project(head, features)
        if self.adaptive_margin and sim is None:
            sim = pairwise_cosine(features, features).detach()
        margin_sim = sim if self.adaptive_margin else None
        logits = [arc_similarity(p, g, self.margin, self.temperature, sim=margin_sim) for p in texts]
        return grounding_contrastive(logits, mask)

    def forward(
        self,
        h1: Tensor,
        h2: Tensor,
        image_features: Tensor,
        image_sim: Tensor | None = None,
        negative_mask: Tensor | None = None,
        caption_features: Tensor | None = None,
    ) -> Tensor:
        """½[CE(G^(1)) + CE(G^(2))] (+ the caption term); ``image_sim`` defaults to the cosine V of the raw features."""
        self._check_width("h1", h1, self.text_dim)
        self._check_width("h2", h2, self.text_dim)
        self._check_width("image feature", image_features, self.image_dim)
        if not (h1.shape[0] == h2.shape[0] == image_features.shape[0]):
            raise ValueError(
                f"grounding: batch sizes differ: h1 {tuple(h1.shape)}, h2 {tuple(h2.shape)}, "
                f"image features {tuple(image_features.shape)}"
            )
        texts = [self._project(self.text_proj, h1), self._project(self.text_proj, h2)]
        loss = self._branch(texts, image_features, self.image_proj, image_sim, negative_mask)
        if self.caption_proj is not None:
            if caption_features is None:
                raise ValueError(
                    "grounding: use_caption_branch=True needs caption_features (the CLIP caption embeddings); "
                    "column missing from the batch?"
                )
            self._check_width("caption feature", caption_features, self.image_dim)
            loss = loss + self._branch(texts, caption_features, self.caption_proj, None, negative_mask)
        return loss

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, temperature={self.temperature}, adaptive_margin={self.adaptive_margin}, "
            f"use_caption_branch={self.use_caption_branch}"
        )
