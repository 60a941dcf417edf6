"""Compare page: measured runs and the Advisor page's instance options against a chosen baseline
(differences per category, a diff of the command lines and settings), then side by side (breakdown,
throughput, per rank on one axis, and for the items with a price: throughput vs cost per hour and USD
per 1M samples).

Everything compared is a *comparable* (``data.comparable``): a label, a kind ("run" or "option"), the
model, where the numbers come from, the categories in ms per step, throughput, and
``usd_per_hour``. Options predicted for another model than the runs' are drawn apart, with a warning.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from ddlprof import figures
from ddlprof.dashboard import data, shared

MS = st.column_config.NumberColumn(format="%.2f")
#: The runs picked and the baseline, kept in the session under keys of no widget: Streamlit forgets a
#: widget's value when its page is left, these survive a visit to another page.
PICKED_KEY = "compare_picked"
BASELINE_KEY = "compare_baseline_label"


def _keep_sorted(names: list[str]) -> None:
    """The multiselect's callback: its value in the order of the runs (by name, so by date), kept."""
    picked = [n for n in names if n in st.session_state["compare_runs"]]
    st.session_state["compare_runs"] = picked
    st.session_state[PICKED_KEY] = picked


def _runs(root: Any) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """The runs picked (name, summary, manifest), in the runs' order whatever the order of the clicks."""
    found, problem = shared.runs(root)
    good = [(run.name, result) for run, result in found if "summary" in result]
    if problem:
        st.warning(f"Runs directory: {problem}")
    if not good:
        st.info("No readable run to compare yet (see the Runs page).")
        return []
    names = [name for name, _ in good]
    if "compare_runs" not in st.session_state:  # a first visit, or back from another page
        kept = st.session_state.get(PICKED_KEY)
        st.session_state["compare_runs"] = [n for n in names if n in kept] if kept is not None else names[-2:]
    st.multiselect("Runs", names, key="compare_runs", on_change=_keep_sorted, args=(names,))
    by_name = dict(good)
    picked = [n for n in names if n in st.session_state["compare_runs"]]
    return [(name, by_name[name]["summary"], by_name[name]["manifest"]) for name in picked]


def _instance_options() -> list[dict[str, Any]]:
    """The instance options picked on the Advisor page (``views/advisor.py``: ``option_comparable``),
    kept in the session: kind "option", the predicted step split, throughput and ``usd_per_hour``."""
    options = list(st.session_state.get(shared.ADVISOR_OPTIONS_KEY) or [])
    if options:
        st.caption(f"{len(options)} instance option(s) from the Advisor page.")
    else:
        st.caption("Instance options: rank them on the Advisor page to compare them here.")
    return options


def _keep_baseline() -> None:
    st.session_state[BASELINE_KEY] = st.session_state["compare_baseline"]


def _baseline(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The item the others are measured against: the one chosen (kept across pages), else the first."""
    labels = [item["label"] for item in items]
    kept = st.session_state.get(BASELINE_KEY)
    if st.session_state.get("compare_baseline") not in labels:
        st.session_state["compare_baseline"] = kept if kept in labels else labels[0]
    chosen = st.selectbox("Baseline", labels, key="compare_baseline", on_change=_keep_baseline)
    return items[labels.index(chosen)]


def _differences(items: list[dict[str, Any]], baseline: dict[str, Any]) -> None:
    st.subheader(f"Against the baseline, {baseline['label']}")
    for item in items:
        if item is not baseline:
            st.markdown(data.difference_sentence(item, baseline))
    shared.table(
        pd.DataFrame(data.differences(items, baseline)),
        column_config={
            "item": st.column_config.TextColumn("compared"),
            "baseline_ms": st.column_config.NumberColumn("baseline ms", format="%.2f"),
            "ms": MS,
            "difference_ms": st.column_config.NumberColumn(
                "difference ms",
                format="%+.2f",
                help=f"this ms - baseline ms; {shared.MISSING} where either is not measured",
            ),
            "difference_pct": st.column_config.NumberColumn(
                "difference %",
                format="%+.1f",
                help=f"of the baseline's ms; {shared.MISSING} where there is no base: the baseline's is 0 or "
                "not measured",
            ),
            "speed_up": st.column_config.NumberColumn(
                "speed-up",
                format="%.2fx",
                help="baseline ms / this ms: above 1, less time than the baseline; "
                f"{shared.MISSING} where this ms is 0 or either is not measured",
            ),
        },
        key="compare_differences",
        whole=True,
    )


def _settings(runs: list[tuple[str, dict[str, Any], dict[str, Any]]], baseline: str) -> None:
    """The runs' command lines against the baseline's, and their settings, those that differ first."""
    st.subheader("Command lines and settings")
    table = pd.DataFrame({name: data.settings(summary, manifest) for name, summary, manifest in runs})
    base = baseline if baseline in table else table.columns[0]
    for name in table.columns:
        if name != base:
            diff = data.command_diff(table.loc["command", base], table.loc["command", name])
            st.markdown(f"**{name}** against **{base}**: `{diff}`")
    differ = table.nunique(axis=1) > 1
    table.insert(0, "differs", differ)
    shared.table(
        table.sort_values("differs", ascending=False, kind="stable").rename_axis("setting").reset_index(),
        column_config={"differs": st.column_config.CheckboxColumn(width="small")},
        key="compare_settings",
        whole=True,
    )


def _charts(items: list[dict[str, Any]], key: str) -> None:
    share = st.toggle("Show each category as a share of the step", key=f"{key}_share")
    left, right = st.columns([3, 2])
    left.plotly_chart(figures.breakdown_by_run(items, share=share), key=f"{key}_breakdown")
    right.plotly_chart(figures.throughput_bars(items), key=f"{key}_throughput")
    if any(item.get("usd_per_hour") for item in items):
        left, right = st.columns(2)
        left.plotly_chart(figures.cost_throughput_scatter(items), key=f"{key}_scatter")
        right.plotly_chart(figures.cost_per_million_bars(items), key=f"{key}_cost_bars")


def _foreign(runs: list[dict[str, Any]], options: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The options predicted for a model that none of the runs trained (their times do not compare)."""
    models = {str(item["model"]).lower() for item in runs}
    return [o for o in options if str(o.get("model")).lower() not in models] if runs else []


def render() -> None:
    st.title("Compare")
    runs = _runs(shared.runs_root())
    measured = [data.comparable(name, summary) for name, summary, _ in runs]
    options = _instance_options()
    foreign = _foreign(measured, options)
    items = measured + [o for o in options if o not in foreign]
    if not items and not foreign:
        if st.session_state.get("compare_runs") == []:
            st.caption("Pick runs above.")
        return
    if items:
        baseline = _baseline(items)
        if len(items) > 1:
            _differences(items, baseline)
        _charts(items, "compare")
    if foreign:
        models = ", ".join(sorted({str(o["model"]) for o in foreign}))
        st.warning(
            f"The instance options are predictions for {models}; the runs are of "
            f"{', '.join(sorted({str(r['model']) for r in measured}))}: another workload, so they are "
            "drawn apart below, not against the runs."
        )
        st.subheader(f"Instance options for {models} (predicted)")
        _charts(foreign, "compare_options")
    shared.table(
        pd.DataFrame(measured + options),
        column_config=shared.NUMBER_COLUMNS
        | {
            "usd_per_hour": st.column_config.NumberColumn(
                "USD/h",
                format="%.2f",
                width="small",
                help="The instance's price per hour, for the Advisor page's options; "
                f"{shared.MISSING} for a measured run (a run records no price)",
            )
        },
        key="compare_table",
    )
    if len(runs) > 1:
        _settings(runs, baseline["label"] if items else runs[0][0])
    if runs:
        shown = [(name, summary) for name, summary, _ in runs[:6]]
        st.plotly_chart(figures.breakdown_by_rank_runs(shown), key="compare_ranks")
        if len(runs) > 6:
            st.caption(f"Per rank for the first 6 of {len(runs)} runs.")


render()
