"""From a stall model of one communicator to a job's step time, interconnect and network stalls.

A stall model (``AnalyticalBaseline`` or ``LearnedStallModel``) predicts the stall a DDP job adds on
top of the single-GPU step for one communicator: ``ranks`` GPUs joined at ``busbw_gbps`` with
``latency_us`` per small all-reduce. A job of ``gpus_per_node`` GPUs on each of ``nodes`` machines
is two such predictions, as the differential method (Sharma et al.) defines the stalls:

- one node: the node's GPUs at the intra-node bandwidth; interconnect stall = t(one node) - t(one GPU)
- the job: all ``world_size`` ranks at the bandwidth the whole ring gets (the inter-node bandwidth,
  never more than the intra-node one); network stall = t(job) - t(one node), at least 0.

Only single-node, world-size-2 jobs were measured, so the second level is the same model applied
outside its data: predictions say so (``ddlprof.models.predict``).

Rows are in the dataset's columns (``ddlprof.models.dataset``): model, batch_per_gpu,
gpus_per_node, nodes, world_size, single_gpu_step_ms, intra_busbw_gbps, inter_busbw_gbps,
latency_us (intra), optionally inter_latency_us, and the macro features.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import pandas as pd

from ddlprof.models.baseline import AnalyticalBaseline
from ddlprof.models.learned import LearnedStallModel

TARGETS = ("step_ms", "interconnect_stall_ms", "network_stall_ms")
#: what a person reads for each target (model evaluate's table, the dashboard's Models page)
TARGET_LABELS = {
    "step_ms": "step time",
    "interconnect_stall_ms": "interconnect stall",
    "network_stall_ms": "network stall",
}
_CARRIED = (
    "model",
    "batch_per_gpu",
    "single_gpu_step_ms",
    "grad_bytes",
    "num_buckets",
    "last_bucket_bytes",
    "num_grad_tensors",
    "flops_per_sample",
)


class StallModel(Protocol):
    name: str

    def fit(self, level: pd.DataFrame, stall_ms: np.ndarray) -> StallModel: ...

    def predict_stall(self, level: pd.DataFrame) -> np.ndarray: ...

    def describe(self) -> dict[str, Any]: ...


def _column(rows: pd.DataFrame, name: str) -> pd.Series:
    return rows[name].astype(float) if name in rows else pd.Series(np.nan, index=rows.index)


def node_level(rows: pd.DataFrame) -> pd.DataFrame:
    """The communicator of one node: its GPUs at the intra-node bandwidth and latency."""
    level = rows[[c for c in _CARRIED if c in rows]].copy()
    level["ranks"] = rows["gpus_per_node"].astype(int)
    level["busbw_gbps"] = _column(rows, "intra_busbw_gbps")
    level["latency_us"] = _column(rows, "latency_us")
    return level


def job_level(rows: pd.DataFrame) -> pd.DataFrame:
    """The communicator of the whole job: every rank, at the slower of the two bandwidths (a ring
    across nodes crosses the network; where one GPU per node leaves no intra-node link, the network
    alone), with the inter-node latency where known."""
    level = rows[[c for c in _CARRIED if c in rows]].copy()
    level["ranks"] = rows["world_size"].astype(int)
    intra, inter = _column(rows, "intra_busbw_gbps"), _column(rows, "inter_busbw_gbps")
    level["busbw_gbps"] = np.fmin(intra, inter).where(rows["nodes"] > 1, intra)
    latency = _column(rows, "inter_latency_us").where(rows["nodes"] > 1)
    level["latency_us"] = latency.fillna(_column(rows, "latency_us"))
    return level


def components(model: StallModel, rows: pd.DataFrame) -> pd.DataFrame:
    """Predicted step_ms, interconnect_stall_ms and network_stall_ms for each row."""
    out = pd.DataFrame(0.0, index=rows.index, columns=list(TARGETS))
    multi_gpu = rows["gpus_per_node"].astype(int) > 1
    multi_node = rows["nodes"].astype(int) > 1
    node = pd.Series(0.0, index=rows.index)
    if multi_gpu.any():
        node[multi_gpu] = model.predict_stall(node_level(rows[multi_gpu]))
    job = node.copy()
    if multi_node.any():
        job[multi_node] = np.maximum(node[multi_node], model.predict_stall(job_level(rows[multi_node])))
    out["interconnect_stall_ms"] = node
    out["network_stall_ms"] = job - node
    out["step_ms"] = rows["single_gpu_step_ms"].astype(float) + job
    return out


def training_set(rows: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """One communicator row per measured job and its stall: single-node jobs at the node level,
    multi-node ones at the job level (their whole step - single-GPU step)."""
    multi_node = rows["nodes"].astype(int) > 1
    level = pd.concat([node_level(rows[~multi_node]), job_level(rows[multi_node])]).loc[rows.index]
    stall = (rows["step_ms"].astype(float) - rows["single_gpu_step_ms"].astype(float)).to_numpy()
    return level, stall


def fit_models(rows: pd.DataFrame) -> dict[str, StallModel]:
    """Both models fitted on ``rows`` (the baseline has nothing to fit)."""
    level, stall = training_set(rows)
    return {
        "baseline": AnalyticalBaseline().fit(level, stall),
        "learned": LearnedStallModel().fit(level, stall),
    }
