"""The learned stall model: a non-negative linear regression on physically meaningful features.

With about 120 rows from 20 models, a small model whose every coefficient means something beats a
flexible one (gradient boosting did worse in leave-one-model-out validation, and needs care to stay
monotone in the bandwidth). Each feature is a time or a count, per communicator (see
``ddlprof.models.baseline`` for the ring terms):

    bandwidth_ms        2(n-1)/n x grad_bytes / busbw: the all-reduce's bytes over the ring
    latency_ms          num_buckets x latency: one small-message latency per bucket
    exposed_comm_ms     the analytical model's stall: what backward cannot hide
    num_grad_tensors    DDP's per-gradient CPU work (autograd hooks, copies into and out of the
                        buckets), which shows when the step is launch-bound
    single_gpu_step_ms  the step it all adds to
    gflop_per_step      flops_per_sample x batch_per_gpu / 1e9

The stall is ``intercept + sum(coef x feature)``, clipped at 0, with every coefficient >= 0
(scikit-learn ``LinearRegression(positive=True)``). The features that depend on the bandwidth grow
as it falls and none of their coefficients is negative, so a prediction never falls as the
bandwidth falls. The fitted model is its coefficients and feature names, kept as JSON: nothing is
pickled, and predicting needs numpy only (scikit-learn is imported to fit).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ddlprof.errors import require
from ddlprof.models.baseline import column_array, ring_terms

FEATURES = (
    "bandwidth_ms",
    "latency_ms",
    "exposed_comm_ms",
    "num_grad_tensors",
    "single_gpu_step_ms",
    "gflop_per_step",
)


def design_matrix(level: pd.DataFrame) -> pd.DataFrame:
    """The features of each communicator row (columns in :data:`FEATURES` order)."""
    terms = ring_terms(level)
    gflop = column_array(level, "flops_per_sample") * column_array(level, "batch_per_gpu") / 1e9
    return pd.DataFrame(
        {
            "bandwidth_ms": terms["bandwidth_ms"].to_numpy(),
            "latency_ms": terms["latency_ms"].to_numpy(),
            "exposed_comm_ms": terms["exposed_ms"].to_numpy(),
            "num_grad_tensors": column_array(level, "num_grad_tensors"),
            "single_gpu_step_ms": column_array(level, "single_gpu_step_ms"),
            # A model whose FLOPs are not known counts none (the coefficient is 0 on the shipped data).
            "gflop_per_step": np.nan_to_num(gflop, nan=0.0),
        },
        index=level.index,
    )[list(FEATURES)]


class LearnedStallModel:
    """Non-negative linear regression of the stall (ms) on :data:`FEATURES`."""

    name = "learned"

    def __init__(self, coef: dict[str, float] | None = None, intercept: float = 0.0) -> None:
        self.coef = dict(coef or {})
        self.intercept = float(intercept)

    def fit(self, level: pd.DataFrame, stall_ms: np.ndarray) -> LearnedStallModel:
        linear_model = require("sklearn.linear_model", "models", "fitting the stall models")

        x = design_matrix(level)
        regression = linear_model.LinearRegression(positive=True)
        regression.fit(x.to_numpy(), np.asarray(stall_ms, dtype=float))
        self.coef = {name: float(c) for name, c in zip(FEATURES, regression.coef_, strict=True)}
        self.intercept = float(regression.intercept_)
        return self

    def predict_stall(self, level: pd.DataFrame) -> np.ndarray:
        if set(self.coef) != set(FEATURES):
            raise ValueError("the learned stall model is not fitted (or was fitted on other features)")
        x = design_matrix(level).to_numpy()
        weights = np.array([self.coef[name] for name in FEATURES])
        return np.maximum(0.0, x @ weights + self.intercept)

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": list(FEATURES),
            "coef": self.coef,
            "intercept": self.intercept,
            "estimator": "sklearn.linear_model.LinearRegression(positive=True), prediction clipped at 0",
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LearnedStallModel:
        if list(data.get("features", [])) != list(FEATURES):
            raise ValueError("fitted on other features")
        coef = {str(k): float(v) for k, v in data["coef"].items()}
        if any(v < 0 or not np.isfinite(v) for v in coef.values()) or not np.isfinite(data["intercept"]):
            raise ValueError("coefficients must be finite and non-negative")
        return cls(coef, float(data["intercept"]))

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "non-negative linear regression of the stall on ring all-reduce terms, DDP's "
            "gradient count and the single-GPU step",
            **self.to_dict(),
        }
