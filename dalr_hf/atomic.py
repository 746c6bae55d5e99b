"""Replacing a folder without ever leaving it half-written: build beside it, validate, then swap.

``replace_folder(target)`` yields a fresh temporary sibling (``.NAME.building-PID``) to write into. When the block
ends without an error the sibling replaces ``target`` (the previous folder is renamed aside, the new one renamed into
place, the old one deleted); when it raises, the sibling is deleted and ``target`` is left exactly as it was. Both
renames happen inside one parent folder, on one filesystem.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator

logger = logging.getLogger(__name__)


def _sibling(target: str, tag: str) -> str:
    parent, name = os.path.split(os.path.abspath(target))
    return os.path.join(parent, f".{name}.{tag}-{os.getpid()}")


@contextlib.contextmanager
def replace_folder(target: str) -> Iterator[str]:
    """Yield a temporary folder beside ``target``; on success it becomes ``target``, on error it is removed."""
    target = os.path.abspath(target)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    building = _sibling(target, "building")
    if os.path.exists(building):
        shutil.rmtree(building)
    try:
        yield building
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    if not os.path.isdir(building):
        raise FileNotFoundError(f"nothing was written for {target}: {building} is missing")
    old = _sibling(target, "replaced")
    if os.path.lexists(target):
        if os.path.exists(old):
            shutil.rmtree(old)
        os.replace(target, old)
    try:
        os.replace(building, target)
    except BaseException:
        if os.path.exists(old) and not os.path.exists(target):
            os.replace(old, target)  # put the previous folder back
        shutil.rmtree(building, ignore_errors=True)
        raise
    if os.path.exists(old):
        shutil.rmtree(old, ignore_errors=True)
    logger.info("replaced %s", target)
