"""Cross-process helpers for the in-batch terms (``gather_across_devices``).

With gathering on, every process all-gathers the batch's embeddings (with gradient), image features, image ids and
teacher outputs and evaluates the loss of the *global* batch. The all-gather's backward sums the identical
gradients of every process into each process's own rows, and DDP (or :meth:`DALRTrainer._sync_head_gradients` for
the loss heads) averages them, so the update equals one process training on the global batch. The loss math is
O(B²) and cheap next to the encoder; computing it whole on every process also keeps the BatchNorm towers and the
random mismatch exact, which a row-split would not.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def close_process_group(wait: bool = True) -> None:
    """Destroy the default process group, if one is up, while the interpreter is still whole.

    A process that exits with its gloo group alive can abort in the C++ teardown (``terminate called without an
    active exception``, SIGABRT) when a background work item still holds tensors at interpreter shutdown. It depends on
    timing, so it strikes now and then, after all the work is done, and ``accelerate launch`` then reports the whole
    run as failed. ``wait`` first holds every process at a barrier, so none tears down while a peer is still in a
    collective; pass ``wait=False`` on an error path, where a peer may never arrive. A no-op in a single process.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    if wait:
        dist.barrier()
    dist.destroy_process_group()


def _sizes(n: int, device: torch.device) -> list[int]:
    local = torch.tensor([n], dtype=torch.int64, device=device)
    sizes = [torch.zeros_like(local) for _ in range(world_size())]
    dist.all_gather(sizes, local)
    return [int(s.item()) for s in sizes]


def gather_rows(tensor: Tensor, with_grad: bool = False) -> Tensor:
    """Concatenate every process's rows (dim 0) in rank order; unequal row counts are padded for the collective."""
    if world_size() == 1:
        return tensor
    sizes = _sizes(tensor.size(0), tensor.device)
    longest = max(sizes)
    padded = tensor
    if tensor.size(0) < longest:
        pad = tensor.new_zeros((longest - tensor.size(0), *tensor.shape[1:]))
        padded = torch.cat([tensor, pad])
    if with_grad:
        parts = torch.distributed.nn.functional.all_gather(padded.contiguous())
    else:
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[:n] for part, n in zip(parts, sizes)])


def gather_padded_tokens(states: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Gather (B, T, H) token states and their (B, T) mask when processes padded to different lengths T."""
    if world_size() == 1:
        return states, mask
    lengths = _sizes(states.size(1), states.device)
    longest = max(lengths)
    if states.size(1) < longest:
        extra = longest - states.size(1)
        states = torch.cat([states, states.new_zeros(states.size(0), extra, states.size(2))], dim=1)
        mask = torch.cat([mask, mask.new_zeros(mask.size(0), extra)], dim=1)
    return gather_rows(states), gather_rows(mask)
