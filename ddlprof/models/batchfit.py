"""The largest batch per GPU that fits a GPU's memory by the training-memory estimate, rounded down
to a power of two: what ``--batch-per-gpu`` defaults to where it is wired (issue 14, point 7).

The estimate is the shipped one (``ddlprof.models.memory.shipped_memory_estimate``: weights,
gradients, DDP buckets, optimizer state and activations, every part constant or linear in the batch),
and the caller says how much GPU memory an estimate needs (the advisor's allowance for allocator
fragmentation and the CUDA context, ``ddlprof.models.memory.memory_required_gb``), so that the
batch chosen is one the advisor's memory check passes. No torch.
"""

from __future__ import annotations

from collections.abc import Callable

from ddlprof.models.memory import shipped_memory_estimate

#: The largest batch per GPU chosen: beyond it the step times are far outside any measurement.
MAX_BATCH = 1024


def largest_fitting_batch(
    model: str,
    memory_gb: float,
    required_gb: Callable[[float], float],
    limit: int = MAX_BATCH,
    precision: str | None = None,
) -> tuple[int, float] | None:
    """(batch, GB it needs) for the largest power of two up to ``limit`` whose estimate, through
    ``required_gb``, fits ``memory_gb`` at ``precision`` (16-bit activations take less); None when the
    model has no shipped estimate or batch 1 does not fit."""
    best = None
    batch = 1
    while batch <= limit:
        estimate = shipped_memory_estimate(model, batch, precision=precision)
        if estimate is None:
            return None
        needed = required_gb(estimate[0])
        if needed > memory_gb:
            break
        best = (batch, needed)
        batch *= 2
    return best
