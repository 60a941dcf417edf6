"""Runs page: one run in detail first (its verdict, then where the time goes and what it ran), then every
run under the runs directory and the local dataset."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import streamlit as st

from ddlprof import figures
from ddlprof.dashboard import data, shared
from ddlprof.errors import DdlprofError
from ddlprof.runs.breakdown import data_line
from ddlprof.runs.energy import energy_line
from ddlprof.runs.peer_wait import charge_sentence
from ddlprof.runs.summary import missing_label

MS = st.column_config.NumberColumn(format="%.2f")
#: The data stall's parts (``ddlprof report``'s words), which add up to it.
DATA_COLUMNS = {
    "data_stall_ms": st.column_config.NumberColumn("data stall ms", format="%.2f"),
    "data_fetch_ms": st.column_config.NumberColumn("fetch ms (blocked on storage)", format="%.2f"),
    "data_prep_ms": st.column_config.NumberColumn("prep ms (CPU)", format="%.2f"),
    "data_other_ms": st.column_config.NumberColumn("other ms", format="%.2f"),
}


def _no_runs(root: Any) -> None:
    st.info(f"No runs under `{root}` yet. Profile one (the README's example, from a clone of ddlprof):")
    st.code(data.EXAMPLE_COMMAND, language="bash")
    st.markdown(
        "It writes a run directory under `./ddlprof-runs/`; start the dashboard where that folder is, "
        "or point it there with `ddlprof dashboard --runs DIR` (or the runs directory in the sidebar)."
    )


def _runs_table(good: list[tuple[data.FoundRun, dict[str, Any]]], root: Any) -> None:
    st.subheader(f"{len(good)} run(s) under `{root}`")
    table = pd.DataFrame([data.table_row(run.name, r["summary"], r["manifest"]) for run, r in good])
    # The grid draws the command from its script on (what tells runs apart) and keeps the whole command in
    # the cell, which a double-click shows; through a Styler, where pandas renders one (its cell limit).
    shown = (
        table.style.format(na_rep=shared.MISSING).format(
            data.short_command, subset=["command"], na_rep=shared.MISSING
        )
        if table.size <= pd.get_option("styler.render.max_elements")
        else table
    )
    shared.table(
        shown,
        column_config={
            "run": st.column_config.TextColumn(width="small"),
            "date": st.column_config.TextColumn("date (UTC)", width=118),  # "2026-12-07 01:47" (99 px)
            "command": st.column_config.TextColumn(
                width=105,  # what the other columns leave at 1440 px, and 15 px to spare
                help="From its script on (… stands for the launcher and the script's folder): "
                "double-click a cell for the whole command. The run picked above has it in its context.",
            ),
            "model": st.column_config.TextColumn(width="small"),
            "where": st.column_config.TextColumn(width=115),  # "2 x cpu, 1 node(s)"
            "verdict": st.column_config.TextColumn(width=150),  # "communication-bound" (135 px)
            **shared.NUMBER_COLUMNS,
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
    """The run's verdict and ranked recommendations first (``ddlprof report`` prints the same)."""
    diagnosis = data.diagnosis(summary)
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


def _context(summary: dict[str, Any], manifest: dict[str, Any], software: dict[str, Any]) -> None:
    """What the run was, in a two-column table (``data.run_context``)."""
    context = data.run_context(summary, manifest, software)
    with st.container(key="run_context"):
        st.table(pd.DataFrame({"": list(context), "this run": list(context.values())}).set_index(""))


def _trace_and_downloads(run: data.FoundRun, summary: dict[str, Any]) -> None:
    """How to open the run's GPU timeline, and its summary.json and HTML report to download."""
    if summary["traces"]:
        st.markdown(
            f"**Open the trace**: {len(summary['traces'])} trace file(s) under `{run.path / 'traces'}`. "
            "All ranks of a window in one Perfetto tab (load the file in ui.perfetto.dev), or TensorBoard:"
        )
        st.code(
            f"ddlprof trace {run.path} --merge window.json.gz\ntensorboard --logdir {run.path / 'traces'}",
            language="bash",
            wrap_lines=True,
        )
    else:
        st.caption(
            "No trace in this run (`ddlprof wrap --trace-steps 0`); by default `ddlprof wrap` traces a "
            "window of steps for Perfetto and TensorBoard."
        )

    def report() -> str:
        from ddlprof.profiler.html import html_report
        from ddlprof.runs.rundir import load_run

        return html_report(summary, [load_run(run.path)])

    with st.container(horizontal=True):
        st.download_button(
            "Download summary.json",
            json.dumps(summary, indent=2),
            file_name="summary.json",
            key="download_summary",
        )
        st.download_button(
            "Download the HTML report",
            report,
            file_name=f"{run.path.name}-report.html",
            mime="text/html",
            key="download_html",
        )


def _skew(summary: dict[str, Any]) -> None:
    """Stragglers, and the ranks' differences that the straggler rule does not see (time in waits)."""
    st.subheader("Ranks")
    skew = data.skew(summary)
    if summary["stragglers"]:
        shared.table(
            pd.DataFrame(summary["stragglers"]).assign(cause=lambda f: f["cause"].map(figures.LABELS)),
            column_config={
                "busy_ms": st.column_config.NumberColumn("busy ms a step", format="%.2f"),
                "median_busy_ms": st.column_config.NumberColumn("median rank's busy ms", format="%.2f"),
                "excess_pct": st.column_config.NumberColumn("above the median, %", format="%.1f"),
                "cause": st.column_config.TextColumn("mostly"),
                "caused_wait_ms": st.column_config.NumberColumn(
                    "the others' wait for it, ms a step", format="%.2f"
                ),
            },
            key="stragglers",
        )
    elif skew:
        st.warning(
            "No straggler (no rank's time outside communication is 10% and 1 ms above the median rank's), "
            f"but the ranks differ: {data.skew_sentence(skew)}."
        )
    else:
        st.success("No straggler, and no category differs between ranks by 1 ms and 5% of the step.")
    if skew:
        shared.table(
            pd.DataFrame(skew).assign(category=lambda f: f["category"].map(figures.LABELS)),
            column_config={
                "low_rank": st.column_config.NumberColumn("lowest rank"),
                "low_ms": st.column_config.NumberColumn("its ms a step", format="%.2f"),
                "high_rank": st.column_config.NumberColumn("highest rank"),
                "high_ms": st.column_config.NumberColumn("its ms a step ", format="%.2f"),
                "spread_ms": st.column_config.NumberColumn("difference ms", format="%.2f"),
            },
            key="skew_table",
        )


def _waits(summary: dict[str, Any]) -> None:
    """Who the waiting for other ranks is charged to, where it is split from the wire (as the report)."""
    sentence = charge_sentence(summary["job"].get("wait_for_peers_ms"), summary.get("wait_charged_to") or [])
    if sentence:
        with st.container(key="wait_charged"):
            st.markdown(
                "**Exposed communication = wire + wait for peers**: the interconnect and network columns "
                f"are time on the wire; {sentence}."
            )


def _data_split(summary: dict[str, Any]) -> None:
    """The data stall in its parts per rank (fetch, prep, other) and what a batch cost to make, where
    the summary has them: which fix a data stall needs depends on its part."""
    line = data_line(summary)
    if line is None:
        return
    rows = pd.DataFrame([*summary["ranks"], {**summary["job"], "rank": "job"}])
    st.caption(line[0].upper() + line[1:])
    shared.table(
        rows[["rank", *DATA_COLUMNS]].astype({"rank": str}), column_config=DATA_COLUMNS, key="data_split"
    )


def _one_run(run: data.FoundRun, summary: dict[str, Any], manifest: dict[str, Any]) -> None:
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
    try:
        detail = shared.detail(str(run.path), run.signature)
    except DdlprofError as exc:  # changed or removed since the listing
        st.error(f"{run.name}: {exc}")
        return
    left, right = st.columns([3, 2])
    with left:
        _context(summary, manifest, detail["software"])
    with right:
        _trace_and_downloads(run, summary)

    left, right = st.columns(2)
    left.plotly_chart(figures.breakdown_by_rank(summary), key="breakdown")
    ranks = sorted({r["rank"] for r in detail["steps"]})
    with right:
        chart = st.empty()  # the rank picker goes below the chart, so that both charts line up
        rank = (
            st.selectbox("Rank of the per-step chart", ranks, key="step_rank") if len(ranks) > 1 else ranks[0]
        )
        chart.plotly_chart(
            figures.step_breakdown(detail["steps"], rank, steps["warmup_dropped"]), key="step_breakdown"
        )
    breakdown = pd.DataFrame([*summary["ranks"], {**job, "rank": "job"}])
    shared.table(
        breakdown[["rank", "step_ms", *figures.LABELS, "throughput_samples_per_s"]].astype({"rank": str}),
        column_config=shared.NUMBER_COLUMNS,
        key="breakdown_table",
    )
    _waits(summary)
    for key, reason in summary["reasons"].items():
        st.caption(f"**{figures.LABELS.get(key, key)}**: {reason}")
    _data_split(summary)
    st.plotly_chart(figures.step_timeline(detail["steps"], steps["warmup_dropped"]), key="timeline")

    _skew(summary)
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


def _local_dataset(root: Any) -> None:
    state = data.store_state()
    st.subheader("Local dataset")
    result = shared.store_rows(*state)
    if result["error"]:
        st.warning(f"The local dataset cannot be read: {result['error']}")
        return
    every = result["rows"]
    everywhere = st.toggle(f"Also the runs outside `{root}`", key="store_everywhere")
    rows = every if everywhere else data.under(every, root)
    where = "" if everywhere else f" under `{root}`"
    st.caption(
        f"`{state[0]}`: one row per run `ddlprof report` summarised; "
        f"{len(rows)} of its {len(every)} row(s){where}."
    )
    if len(rows):
        rows = rows.assign(
            reported=[
                datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M") for t in rows["reported_unix"]
            ]
        ).drop(columns=["reported_unix"])
        shared.table(
            rows,
            column_config=shared.STORE_COLUMNS,
            key="store_table",
        )


def render() -> None:
    st.title("Runs")
    root = shared.runs_root()
    with st.spinner("Reading the runs..."):  # the first view summarises every run; later ones hit the cache
        found, problem = shared.runs(root)
    good = [(run, result) for run, result in found if "summary" in result]
    bad = [(run, result["error"]) for run, result in found if "error" in result]
    if problem:
        st.warning(f"Runs directory: {problem}")
    elif not found:
        st.caption(f"`{root}` holds no run directory (a folder with a `manifest.json`).")
    if not good:
        _no_runs(root)
    else:
        names = [run.name for run, _ in good]
        chosen = st.selectbox("Run", names, index=len(names) - 1, key="run")
        run, result = good[names.index(chosen)]
        _one_run(run, result["summary"], result["manifest"])
        _runs_table(good, root)
    if bad:
        _broken(bad)
    _local_dataset(root)


render()
