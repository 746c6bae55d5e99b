"""Keep the loss math in float32 when the caller runs under mixed-precision autocast."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["float32_math"]


@contextmanager
def float32_math(device: torch.device) -> Iterator[None]:
    """Disable autocast on ``device`` for the block: matmul/einsum would otherwise run in bf16/fp16."""
    device_type = device.type
    try:
        enabled = torch.is_autocast_enabled(device_type)
    except (RuntimeError, TypeError):  # a device type autocast does not know
        enabled = False
    if not enabled:
        yield
        return
    with torch.autocast(device_type=device_type, enabled=False):
        yield
