"""The training-memory estimates shipped for the dataset's models, by batch: the advisor's
fits-in-GPU-memory check uses the total, the step-time scaling across GPU types the parts that say
how many bytes a step moves (activations and weights).

``ddlprof/models/data/memory_estimates.csv`` is built by ``benchmarks/build_memory_table.py`` from
``ddlprof model features`` (no torch is imported to read it).
"""

from __future__ import annotations

import csv
import functools
import json
from importlib import resources

from ddlprof.models.gpus import is_half

MEMORY_CSV = "data/memory_estimates.csv"


@functools.cache
def _memory_table(part: str) -> dict[str, list[tuple[int, float]]]:
    text = resources.files("ddlprof.models").joinpath(MEMORY_CSV).read_text("utf-8")
    table: dict[str, list[tuple[int, float]]] = {}
    for row in csv.DictReader(text.splitlines()):
        table.setdefault(row["model"], []).append((int(row["batch_per_gpu"]), float(row[part])))
    return {model: sorted(points) for model, points in table.items()}


MEMORY_FRAGMENTATION = 0.10
MEMORY_CONTEXT_GB = 1.0


def memory_required_gb(estimate_bytes: float) -> float:
    """GPU memory needed for an estimate: +10% allocator fragmentation, +1 GB CUDA context/workspaces."""
    return estimate_bytes / 1e9 * (1 + MEMORY_FRAGMENTATION) + MEMORY_CONTEXT_GB


ACTIVATION_SHARE_JSON = "data/activation_share_16bit.json"


@functools.cache
def sixteen_bit_activation_share(model: str) -> float:
    """The share of the estimate's (fp32) activations a step under 16-bit autocast holds at its peak:
    measured on the H100 at bf16, per model its highest, rounded up (0.44 for bert-base to 0.67 for
    swin_t; the rows ranged 0.30-0.66, and at TF32 the same steps held 0.50-1.05, so the estimate is
    right for CNNs and overshoots transformers), the highest of them for any other model. Built by
    ``benchmarks/memory_share.py --write``."""
    shares = json.loads(resources.files("ddlprof.models").joinpath(ACTIVATION_SHARE_JSON).read_text("utf-8"))
    return float(shares["models"].get(model, shares["default"]))


def shipped_memory_estimate(
    model: str, batch: int, part: str = "total_bytes", precision: str | None = None
) -> tuple[float, str] | None:
    """(bytes, how) for a model of the shipped table at ``batch``: as estimated, or linear between
    (beyond) the nearest estimated batches (every part is constant or linear in the batch). The total
    at a 16-bit ``precision`` counts :func:`sixteen_bit_activation_share` of the activations (the
    table's are fp32)."""
    found = _interpolated(model, batch, part)
    if found is None or part != "total_bytes" or precision is None or not is_half(precision):
        return found
    activations = _interpolated(model, batch, "activations_bytes")
    if activations is None:
        return found
    share = sixteen_bit_activation_share(model)
    total = found[0] - (1 - share) * activations[0]
    return total, f"{found[1]}, activations x {share:g} at {precision} (measured, H100)"


def _interpolated(model: str, batch: int, part: str) -> tuple[float, str] | None:
    try:
        points = _memory_table(part).get(model)
    except (OSError, KeyError, ValueError):
        return None
    if not points:
        return None
    source = "macro_features estimate shipped in ddlprof/models/data/memory_estimates.csv"
    for b, total in points:
        if b == batch:
            return total, f"{source}, batch {batch}"
    if len(points) == 1:
        return None
    below = [p for p in points if p[0] < batch]
    above = [p for p in points if p[0] > batch]
    if below and above:
        (b0, t0), (b1, t1), how = below[-1], above[0], "linear between"
    elif above:  # below the smallest estimated batch
        (b0, t0), (b1, t1), how = points[0], points[1], "extrapolated linearly from"
    else:  # above the largest
        (b0, t0), (b1, t1), how = points[-2], points[-1], "extrapolated linearly from"
    value = t0 + (t1 - t0) * (batch - b0) / (b1 - b0)
    return value, f"{source}, {how} batch {b0} and {b1}"


def bytes_moved_per_step(model: str, batch: int) -> float | None:
    """Bytes a training step moves to and from GPU memory, by the usual count, or None when the
    model is not in the table: every saved activation is written and read in the forward pass and
    read, with its gradient written and read, in the backward pass (5x the activations); the weights
    are read in forward and backward, their gradients written, and SGD with momentum reads weights,
    gradients and momentum and writes weights and momentum (8x the weights)."""
    activations = shipped_memory_estimate(model, batch, "activations_bytes")
    weights = shipped_memory_estimate(model, batch, "weights_bytes")
    if activations is None or weights is None:
        return None
    return 5 * activations[0] + 8 * weights[0]


def activation_share_per_step(model: str, batch: int) -> float | None:
    """The activations' share of :func:`bytes_moved_per_step` (5x activations against 8x weights),
    or None when the model is not in the table: the part of the traffic that 16-bit math halves."""
    activations = shipped_memory_estimate(model, batch, "activations_bytes")
    weights = shipped_memory_estimate(model, batch, "weights_bytes")
    if activations is None or weights is None:
        return None
    return 5 * activations[0] / (5 * activations[0] + 8 * weights[0])
