"""Models page: the stall models' leave-one-model-out predictions against the measured step time and
stalls, and the cross-validation errors (the numbers of ``ddlprof model evaluate``)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ddlprof import figures
from ddlprof.dashboard import data, shared
from ddlprof.models.stall_models import TARGET_LABELS

MS = st.column_config.NumberColumn(format="%.2f")


def _why_equal(evaluation: dict, rows: pd.DataFrame, predictions: dict) -> None:
    """Say why the step time's and the interconnect stall's errors in ms are the same, when they are."""
    targets = evaluation["targets"]
    if not (targets["step_ms"]["evaluable"] and targets["interconnect_stall_ms"]["evaluable"]):
        return
    if data.same_errors(rows, predictions, "step_ms", "interconnect_stall_ms"):
        st.info(
            "**Why the step time and interconnect stall rows agree:** both models predict the step time as "
            "the measured single-GPU step plus the predicted interconnect and network stalls, and every row "
            "here is a single-node job (network stall 0). So each prediction's step-time error in ms *is* "
            "its interconnect-stall error: the same MAE and max error, not a coincidence or a copy. Only the "
            "step time has a MAPE (it divides by the step, which is never near 0).",
            icon=":material/info:",
        )


def _errors(evaluation: dict) -> None:
    st.subheader("Cross-validation errors")
    sizes, nodes = (", ".join(map(str, evaluation[k])) for k in ("world_sizes", "nodes"))
    st.caption(
        f"Leave-one-model-out over {evaluation['rows']} rows of {evaluation['models']} models (world size "
        f"{sizes}, nodes {nodes}): "
        "the same numbers as `ddlprof model evaluate --json`. MAPE for the step time only (stalls are "
        f"often near 0). Target: learned step MAPE <= {evaluation['target_step_mape_pct']:g}%."
    )
    table = pd.DataFrame(data.error_rows(evaluation)).set_index("target").rename(index=TARGET_LABELS)
    table["rows"] = table["rows"].astype(int)
    table["models"] = table["models"].astype(int)
    style = (
        table.style.format(precision=2, na_rep="—")
        .format("{:d}", subset=["rows", "models"])
        .format(lambda v: "—" if v is None or v != v else ("yes" if v else "no"), subset=["learned better"])
    )
    st.table(style)
    step = evaluation["targets"]["step_ms"]
    if step["evaluable"]:
        st.markdown(
            f"Step time: learned **{step['learned']['mape_pct']:.1f}%** MAPE against the baseline's "
            f"**{step['baseline']['mape_pct']:.1f}%**; the learned model "
            f"{'meets' if evaluation['learned_meets_target'] else 'misses'} the target."
        )
    st.caption(evaluation["method"])


def _training(info: dict) -> None:
    parts = [f"{info['shipped_rows']} shipped rows (`ddlprof/models/data/stall_dataset.csv`)"]
    if "store" in info:
        parts.append(info["store"])
    if info.get("store_rows_used") is not None:
        parts.append(f"{info['store_rows_used']} of them usable")
    st.caption("Training rows: " + "; ".join(parts) + ".")
    dropped = info.get("store_rows_dropped") or {}
    if dropped:
        st.caption(
            "Reported runs not used: "
            + ", ".join(f"{count} with {reason}" for reason, count in dropped.items())
            + " (a single wrapped run cannot know its single-GPU step time: `ddlprof stalls` measures it)."
        )


def _local_rows() -> None:
    result = shared.store_rows(*data.store_state())
    st.subheader("Local dataset")
    if result["error"]:
        st.warning(f"The local dataset cannot be read: {result['error']}")
        return
    rows = result["rows"]
    if not len(rows):
        st.caption("No reported run yet: every `ddlprof report` adds its run here.")
        return
    st.caption(
        "Measured step time and stalls of the runs you reported: a run with what the models need (its "
        "single-GPU step, which `ddlprof stalls` measures beside the job) is a point of the chart above."
    )
    shared.table(
        rows.drop(columns=["reported_unix"]),
        column_config=shared.STORE_COLUMNS,
        key="models_store_table",
    )


def render() -> None:
    st.title("Models")
    result = shared.model_validation(data.training_sha256())
    evaluation, rows, predictions = result["evaluation"], result["rows"], result["predictions"]
    _training(evaluation["training"])
    _errors(evaluation)
    _why_equal(evaluation, rows, predictions)

    st.subheader("Predicted vs measured")
    target = st.radio(
        "Target",
        [t for t, entry in evaluation["targets"].items() if entry["evaluable"]],
        format_func=TARGET_LABELS.get,
        horizontal=True,
        key="models_target",
    )
    hover = [
        f"{r.model} batch {r.batch_per_gpu:g} {r.transport or ''} ({r.source})".replace("  ", " ")
        for r in rows.itertuples()
    ]
    by_model = {name: frame[target] for name, frame in predictions.items()}
    mine = rows.index >= evaluation["training"]["shipped_rows"]  # the reported runs follow the shipped rows
    st.plotly_chart(
        figures.predicted_vs_measured(rows[target], by_model, target, hover, mine), key="models_scatter"
    )
    if mine.any():
        st.caption(
            f"★: your {int(mine.sum())} reported run(s), held out with their model's rows as every row is."
        )
    else:
        st.caption("None of your reported runs is in the chart: none has what the models need (see above).")
    for name, entry in evaluation["targets"].items():
        if not entry["evaluable"]:
            st.caption(f"Not shown, the {TARGET_LABELS.get(name, name)}: {entry['reason']}.")
    with st.expander("Every row: measured and held-out predictions"):
        label = TARGET_LABELS[target]
        table = rows[["model", "batch_per_gpu", "transport", "source", "single_gpu_step_ms", target]].copy()
        table["source"] = table["source"].where(~mine, "your run")
        table = table.rename(
            columns={
                "batch_per_gpu": "batch/GPU",
                "single_gpu_step_ms": "single-GPU step ms",
                target: f"{label} ms",
            }
        )
        for name, frame in predictions.items():
            table[f"{name}: predicted {label} ms"] = frame[target].astype(float)
        shared.table(table, column_config={c: MS for c in table if c.endswith(" ms")}, key="models_rows")
    _local_rows()


render()
