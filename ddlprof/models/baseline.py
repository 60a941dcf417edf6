"""The analytical stall model: ring all-reduce per DDP bucket, overlapped with the backward pass.

For one communicator of ``n`` ranks with bus bandwidth B (GB/s, as nccl-tests and the probe report
it) and small-message latency L (us per all-reduce), each gradient bucket of b bytes takes

    t(b) = L + 2(n-1)/n * b / B                      (``ddlprof.runs.breakdown.ring_factor``)

and all buckets together ``comm_ms`` = num_buckets * L + 2(n-1)/n * grad_bytes / B. DDP launches a
bucket's all-reduce as soon as its gradients are ready, so communication runs under the backward
pass; backward is about 2/3 of a training step's compute (twice the forward's FLOPs), so the
window it can hide in is ``OVERLAP_FRACTION`` of the single-GPU step. The bucket all-reduced last
(the first layers' gradients, ready when backward ends) can never hide. So the exposed part,
the stall on top of the single-GPU step, is

    exposed_ms = max(t(last bucket), comm_ms - OVERLAP_FRACTION * single_gpu_step_ms)

and step_ms = single_gpu_step_ms + exposed_ms. It never falls as the bandwidth falls. Nothing here
is fitted to the measurements: it is the yardstick the learned model must beat.

Inputs are "level" frames (see ``ddlprof.models.stall_models``): one row per communicator with
columns grad_bytes, num_buckets, last_bucket_bytes (may be missing: then grad_bytes / num_buckets),
single_gpu_step_ms, busbw_gbps, latency_us and ranks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ddlprof.runs.breakdown import ring_factor

#: Share of the single-GPU step that the backward pass takes, the window communication can hide in.
OVERLAP_FRACTION = 2 / 3


def column_array(level: pd.DataFrame, column: str) -> np.ndarray:
    """A column as floats (NaN where missing; all NaN when the column is absent)."""
    if column not in level:
        return np.full(len(level), np.nan)
    return level[column].to_numpy(dtype=float, na_value=np.nan)


def ring_terms(level: pd.DataFrame) -> pd.DataFrame:
    """Per row, in ms: bandwidth_ms (bytes over the ring), latency_ms (one latency per bucket),
    comm_ms (their sum), last_bucket_ms and exposed_ms (what cannot hide under backward)."""
    ranks = column_array(level, "ranks")
    factor = np.array([ring_factor(int(n)) if n >= 2 else 0.0 for n in ranks])
    busbw_bytes_per_ms = column_array(level, "busbw_gbps") * 1e6
    latency_ms = column_array(level, "latency_us") / 1e3 * (factor > 0)
    grad_bytes, buckets = column_array(level, "grad_bytes"), column_array(level, "num_buckets")
    last_bytes = column_array(level, "last_bucket_bytes")
    last_bytes = np.where(np.isnan(last_bytes), grad_bytes / np.maximum(buckets, 1), last_bytes)
    bandwidth_ms = factor * grad_bytes / busbw_bytes_per_ms
    bucket_latency_ms = buckets * latency_ms
    comm_ms = bandwidth_ms + bucket_latency_ms
    last_bucket_ms = latency_ms + factor * last_bytes / busbw_bytes_per_ms
    window = OVERLAP_FRACTION * column_array(level, "single_gpu_step_ms")
    return pd.DataFrame(
        {
            "bandwidth_ms": bandwidth_ms,
            "latency_ms": bucket_latency_ms,
            "comm_ms": comm_ms,
            "last_bucket_ms": last_bucket_ms,
            "exposed_ms": np.maximum(last_bucket_ms, comm_ms - window),
        },
        index=level.index,
    )


class AnalyticalBaseline:
    """Ring all-reduce cost per bucket, minus what the backward pass hides; nothing fitted."""

    name = "baseline"

    def fit(self, level: pd.DataFrame, stall_ms: np.ndarray) -> AnalyticalBaseline:
        return self

    def predict_stall(self, level: pd.DataFrame) -> np.ndarray:
        return ring_terms(level)["exposed_ms"].to_numpy()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "analytical: ring all-reduce per bucket (latency + 2(n-1)/n x bytes / busbw), "
            f"hidden under backward up to {OVERLAP_FRACTION:.3g} x the single-GPU step, the last bucket "
            "always exposed",
            "overlap_fraction": OVERLAP_FRACTION,
        }
