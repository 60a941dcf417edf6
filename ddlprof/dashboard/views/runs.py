"""Runs page: the runs under the runs directory and the local dataset; one run in detail."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
import streamlit as st

from ddlprof import figures
from ddlprof.dashboard import data, shared
from ddlprof.errors import DdlprofError
from ddlprof.runs.energy import energy_line
from ddlprof.runs.summary import missing_label

MS = st.column_config.NumberColumn(format="%.2f")
RATE = st.column_config.NumberColumn(format="%.0f")


def _no_runs(root: Any) -> None:
    st.info(f"No runs under `{root}` yet. Profile one (the README's example, from a clone of ddlprof):")
    st.code(data.EXAMPLE_COMMAND, language="bash")
    st.markdown(
        "It writes a run directory under `./ddlprof-runs/`; start the dashboard where that folder is, "
        "or point it there with `ddlprof dashboard --runs DIR` (or the runs directory in the sidebar)."
    )


def _runs_table(good: list[tuple[data.FoundRun, dict[str, Any]]]) -> None:
    table = pd.DataFrame([data.table_row(run.name, summary) for run, summary in good])
    shared.table(
        table,
        column_config={
            "step_ms": st.column_config.NumberColumn("step ms", format="%.2f"),
            "throughput_samples_per_s": st.column_config.NumberColumn("samples/s", format="%.0f"),
            "steady_steps": st.column_config.NumberColumn("steady steps"),
        },
        key="runs_table",
    )


def _broken(bad: list[tuple[data.FoundRun, str]]) -> None:
    st.subheader(f"{len(bad)} run director{'y' if len(bad) == 1 else 'ies'} could not be read")
    shared.table(pd.DataFrame([{"run": run.name, "error": error} for run, error in bad]), key="broken_table")


def _gpu_table(gpus: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for gpu in gpus:
        row: dict[str, Any] = {"host": gpu["host"], "gpu": gpu["gpu"], "samples": gpu["samples"]}
        for key, value in gpu.items():
            if isinstance(value, dict):
                row[f"{key} median"], row[f"{key} max"] = value["median"], value["max"]
        rows.append(row)
    return pd.DataFrame(rows)


def _verdict(summary: dict[str, Any]) -> None:
    """The run's verdict and ranked recommendations first (``ddlprof report`` prints the same): a
    summary cached by an older ddlprof has none, so it is diagnosed here."""
    from ddlprof.runs.diagnosis import diagnose

    diagnosis = summary.get("diagnosis") or diagnose(summary)
    st.info(f"**Verdict:** {diagnosis['sentence']}")
    step = summary["job"]["step_ms"]
    for number, rec in enumerate(diagnosis["recommendations"], 1):
        predicted = rec["predicted_step_ms"]
        gain = (
            f"predicted step {predicted:.1f} ms (now {step:.1f} ms, {100 * (predicted - step) / step:+.0f}%)"
            if predicted is not None and step
            else "predicted step: not modelled"
        )
        st.markdown(f"**{number}. {rec['limit']}**: {rec['action']}  \n{gain}; evidence: {rec['evidence']}")


def _one_run(run: data.FoundRun, summary: dict[str, Any]) -> None:
    job, steps = summary["job"], summary["steps"]
    traced = steps["traced_excluded"]
    _verdict(summary)
    st.caption(
        f"Measured from `{', '.join(summary['runs'])}` (the same summary as `ddlprof report`): "
        f"{summary['world_size']} rank(s) on {summary['nodes']} node(s), "
        f"{steps['steady_per_rank']} steady steps per rank "
        f"(the first {steps['warmup_dropped']} dropped as warm-up"
        + (f", traced steps {', '.join(map(str, traced))} left out)." if traced else ").")
    )
    columns = st.columns(4)
    columns[0].metric("step time", f"{job['step_ms']:.2f} ms")
    rate = job["throughput_samples_per_s"]
    columns[1].metric("throughput, samples/s", "n/a" if rate is None else f"{rate:,.0f}")
    columns[2].metric("ranks", summary["world_size"])
    columns[3].metric("nodes", summary["nodes"])

    st.plotly_chart(figures.breakdown_by_rank(summary), key="breakdown")
    breakdown = pd.DataFrame([*summary["ranks"], {**job, "rank": "job"}])
    shared.table(
        breakdown[["rank", "step_ms", *figures.LABELS, "throughput_samples_per_s"]].astype({"rank": str}),
        column_config={k: MS for k in ("step_ms", *figures.LABELS)} | {"throughput_samples_per_s": RATE},
        key="breakdown_table",
    )
    for key, reason in summary["reasons"].items():
        st.caption(f"**{key}**: {reason}")

    try:
        detail = shared.detail(str(run.path), run.signature)
    except DdlprofError as exc:  # changed or removed since the listing
        st.error(f"{run.name}: {exc}")
        return
    st.plotly_chart(figures.step_timeline(detail["steps"]), key="timeline")

    st.subheader("Stragglers")
    if summary["stragglers"]:
        shared.table(pd.DataFrame(summary["stragglers"]), key="stragglers")
    else:
        st.success(
            "No straggler: no rank's time outside communication is 10% and 1 ms above the median rank's."
        )
    for missing in summary["missing_ranks"]:
        st.warning(f"{missing_label(missing)}: {missing['problem']}")
    for warning in summary["warnings"]:
        st.warning(f"rank {warning['rank']}, {warning['collector']}: {warning['reason']}")

    st.caption(energy_line(summary.get("energy")))

    st.subheader("GPU counters")
    if detail["samples"] is None:
        st.caption("No GPU counters in this run (`gpu/*.csv`): a CPU job, or `--no-gpu-sampling`.")
    else:
        st.plotly_chart(figures.gpu_timeline(detail["samples"]), key="gpu_timeline")
        if summary["gpus"]:
            st.caption("Over the steady steps (as in `ddlprof report`):")
            shared.table(_gpu_table(summary["gpus"]), key="gpu_table")


def _local_dataset() -> None:
    state = data.store_state()
    st.subheader("Local dataset")
    result = shared.store_rows(*state)
    if result["error"]:
        st.warning(f"The local dataset cannot be read: {result['error']}")
        return
    rows = result["rows"]
    st.caption(f"`{state[0]}`: one row per run `ddlprof report` summarised ({len(rows)} row(s)).")
    if len(rows):
        rows = rows.assign(
            reported=[
                datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M") for t in rows["reported_unix"]
            ]
        ).drop(columns=["reported_unix"])
        shared.table(
            rows,
            column_config={
                "step_ms": MS,
                "interconnect_stall_ms": MS,
                "network_stall_ms": MS,
                "throughput_samples_per_s": RATE,
            },
            key="store_table",
        )


def render() -> None:
    st.title("Runs")
    root = shared.runs_root()
    with st.spinner("Reading the runs..."):  # the first view summarises every run; later ones hit the cache
        found, problem = shared.runs(root)
    good = [(run, result["summary"]) for run, result in found if "summary" in result]
    bad = [(run, result["error"]) for run, result in found if "error" in result]
    if problem:
        st.warning(f"Runs directory: {problem}")
    elif not found:
        st.caption(f"`{root}` holds no run directory (a folder with a `manifest.json`).")
    if not good:
        _no_runs(root)
    else:
        st.subheader(f"{len(good)} run(s) under `{root}`")
        _runs_table(good)
    if bad:
        _broken(bad)
    if good:
        st.header("One run")
        names = [run.name for run, _ in good]
        chosen = st.selectbox("Run", names, index=len(names) - 1, key="run")
        run, summary = good[names.index(chosen)]
        _one_run(run, summary)
    _local_dataset()


render()
