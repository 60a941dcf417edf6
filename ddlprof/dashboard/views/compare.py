"""Compare page: measured runs and the Advisor page's instance options side by side (breakdown,
throughput, and for the items with a price: throughput vs cost per hour with the Pareto frontier, and
USD per 1M samples).

Everything compared is a *comparable* (``data.comparable``): a label, a kind ("run" or "option"), where
the numbers come from, the five categories in ms per step, throughput, and ``usd_per_hour``. The
figures take comparables only, so runs and instance options share the same charts.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from ddlprof import figures
from ddlprof.dashboard import data, shared

MS = st.column_config.NumberColumn(format="%.2f")


def _runs(root: Any) -> list[tuple[str, dict[str, Any]]]:
    """The runs picked, by name, with their summaries."""
    found, problem = shared.runs(root)
    good = [(run, result["summary"]) for run, result in found if "summary" in result]
    if problem:
        st.warning(f"Runs directory: {problem}")
    if not good:
        st.info("No readable run to compare yet (see the Runs page).")
        return []
    names = [run.name for run, _ in good]
    picked = st.multiselect("Runs", names, default=names[-2:], key="compare_runs")
    by_name = dict(zip(names, (summary for _, summary in good), strict=True))
    return [(name, by_name[name]) for name in picked]


def _instance_options() -> list[dict[str, Any]]:
    """The instance options picked on the Advisor page (``views/advisor.py``: ``option_comparable``),
    kept in the session: kind "option", the predicted step split, throughput and ``usd_per_hour``."""
    options = list(st.session_state.get(shared.ADVISOR_OPTIONS_KEY) or [])
    if options:
        st.caption(f"{len(options)} instance option(s) from the Advisor page.")
    else:
        st.caption("Instance options: rank them on the Advisor page to compare them here.")
    return options


def render() -> None:
    st.title("Compare")
    runs = _runs(shared.runs_root())
    items = [data.comparable(name, summary) for name, summary in runs] + _instance_options()
    if not items:
        if st.session_state.get("compare_runs") == []:
            st.caption("Pick runs above.")
        return
    share = st.toggle("Show each category as a share of the step", key="compare_share")
    st.plotly_chart(figures.breakdown_by_run(items, share=share), key="compare_breakdown")
    st.plotly_chart(figures.throughput_bars(items), key="compare_throughput")
    if any(item.get("usd_per_hour") for item in items):
        left, right = st.columns(2)
        left.plotly_chart(figures.cost_throughput_scatter(items), key="compare_scatter")
        right.plotly_chart(figures.cost_per_million_bars(items), key="compare_cost_bars")
    table = pd.DataFrame(items)
    shared.table(
        table,
        column_config={k: MS for k in ("step_ms", *figures.LABELS)}
        | {"throughput_samples_per_s": st.column_config.NumberColumn("samples/s", format="%.0f")}
        | {"usd_per_hour": st.column_config.NumberColumn("USD/h", format="%.2f")},
        key="compare_table",
    )
    if runs:
        st.subheader("Per rank, side by side")
        for column, (name, summary) in zip(st.columns(min(len(runs), 4)), runs[:4], strict=False):
            column.caption(name)
            column.plotly_chart(figures.breakdown_by_rank(summary), key=f"compare_ranks_{name}")
        if len(runs) > 4:
            st.caption(f"Per-rank charts for the first 4 of {len(runs)} runs.")


render()
