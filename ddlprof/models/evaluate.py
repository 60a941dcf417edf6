"""Leave-one-model-out cross-validation of the stall models.

Every model's rows (both batch sizes, every transport) are held out in turn, the learned model is
fitted on the other models, and both models predict the held-out rows: the error a user should
expect for a model ddlprof has never measured. Per target: mean absolute percentage error (step
time only: stalls are often near zero, where a percentage means nothing) and mean absolute error
in ms. A target no row measures (the network stall, when every row is single-node) is reported as
not evaluable, not as a win.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ddlprof.errors import require
from ddlprof.models.baseline import AnalyticalBaseline
from ddlprof.models.learned import LearnedStallModel
from ddlprof.models.stall_models import TARGETS, components, training_set

#: The step-time error the learned model is meant to stay under (issue 4).
TARGET_STEP_MAPE_PCT = 10.0


def lomo_predictions(rows: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Held-out predictions of each model for every row (``components`` columns)."""
    model_selection = require("sklearn.model_selection", "models", "cross-validating the stall models")

    rows = rows.reset_index(drop=True)
    baseline = components(AnalyticalBaseline(), rows)
    learned = pd.DataFrame(index=rows.index, columns=list(TARGETS), dtype=float)
    groups = rows["model"].astype(str).to_numpy()
    for train, test in model_selection.LeaveOneGroupOut().split(rows, groups=groups):
        level, stall = training_set(rows.iloc[train])
        model = LearnedStallModel().fit(level, stall)
        learned.iloc[test] = components(model, rows.iloc[test]).to_numpy()
    return {"baseline": baseline, "learned": learned}


def _errors(predicted: pd.Series, measured: pd.Series, percent: bool) -> dict[str, float | None]:
    error = (predicted.astype(float) - measured.astype(float)).abs()
    return {
        "mape_pct": float((error / measured.abs()).mean() * 100) if percent else None,
        "mae_ms": float(error.mean()),
        "max_abs_error_ms": float(error.max()),
    }


def evaluate(rows: pd.DataFrame) -> dict[str, Any]:
    """The leave-one-model-out table: per target, baseline vs learned, with n rows and n models."""
    rows = rows.reset_index(drop=True)
    n_models = int(rows["model"].nunique())
    if n_models < 2:
        raise ValueError("leave-one-model-out needs rows of at least two models")
    predictions = lomo_predictions(rows)
    multi_node = rows["nodes"].astype(int) > 1
    targets: dict[str, Any] = {}
    for target in TARGETS:
        if target == "network_stall_ms":
            measured_rows = multi_node & rows[target].notna()
        else:
            measured_rows = rows[target].notna() if target in rows else pd.Series(False, index=rows.index)
        if not measured_rows.any():
            why = "no row measures it"
            if target == "network_stall_ms":
                why = (
                    "every row is a single-node job, whose network stall is 0 by definition: no "
                    "multi-node data, so no prediction of it can be checked"
                )
            targets[target] = {"evaluable": False, "reason": why, "rows": 0, "models": 0}
            continue
        measured = rows.loc[measured_rows, target]
        percent = target == "step_ms"
        entry: dict[str, Any] = {
            "evaluable": True,
            "rows": int(measured_rows.sum()),
            "models": int(rows.loc[measured_rows, "model"].nunique()),
        }
        for name, predicted in predictions.items():
            entry[name] = _errors(predicted.loc[measured_rows, target], measured, percent)
            if "transport" in rows:
                by = rows.loc[measured_rows].groupby("transport", sort=True).groups
                entry[name]["mae_ms_by_transport"] = {
                    str(t): float((predicted.loc[i, target] - rows.loc[i, target]).abs().mean())
                    for t, i in by.items()
                }
        key = "mape_pct" if percent else "mae_ms"
        entry["learned_beats_baseline"] = bool(
            entry["learned"][key] < entry["baseline"][key]
            and entry["learned"]["mae_ms"] < entry["baseline"]["mae_ms"]
        )
        targets[target] = entry
    step = targets["step_ms"]
    return {
        "method": "leave-one-model-out (sklearn LeaveOneGroupOut, groups = model): the learned model is "
        "refitted without each model's rows, then predicts them; the baseline is not fitted",
        "rows": len(rows),
        "models": n_models,
        "world_sizes": sorted(int(w) for w in np.unique(rows["world_size"])),
        "nodes": sorted(int(n) for n in np.unique(rows["nodes"])),
        "targets": targets,
        "target_step_mape_pct": TARGET_STEP_MAPE_PCT,
        "learned_meets_target": bool(
            step["evaluable"] and step["learned"]["mape_pct"] <= TARGET_STEP_MAPE_PCT
        ),
        "learned_beats_baseline": all(
            t["learned_beats_baseline"] for t in targets.values() if t["evaluable"]
        ),
    }
