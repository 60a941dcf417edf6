"""How many samples a batch holds, whatever shape the user's batches take."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def batch_size(batch: Any, depth: int = 0) -> int | None:
    """Leading dimension of the first tensor found in a tensor, sequence or mapping."""
    shape = getattr(batch, "shape", None)
    if shape is not None:
        return int(shape[0]) if len(shape) > 0 else None
    if depth > 3:
        return None
    if isinstance(batch, Mapping):
        batch = list(batch.values())
    if isinstance(batch, list | tuple):
        for item in batch:
            size = batch_size(item, depth + 1)
            if size is not None:
                return size
    return None
