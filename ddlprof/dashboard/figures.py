"""Plotly figures, shared by ``ddlprof report --html`` and the dashboard so both show the same thing.

Figures take plain data (a summary dict, step rows) and never compute breakdowns themselves.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from ddlprof.profiler.breakdown import CATEGORIES

LABELS = {
    "compute_ms": "compute",
    "data_stall_ms": "data stall",
    "interconnect_stall_ms": "interconnect stall",
    "network_stall_ms": "network stall",
    "other_ms": "other",
}
COLORS = {
    "compute_ms": "#4c78a8",
    "data_stall_ms": "#f58518",
    "interconnect_stall_ms": "#e45756",
    "network_stall_ms": "#b279a2",
    "other_ms": "#9d9d9d",
}


def breakdown_by_rank(summary: dict[str, Any]) -> go.Figure:
    """Stacked bars: each rank's steady-state step split into the five categories, and the job's."""
    rows = [*summary["ranks"], {**summary["job"], "rank": "job"}]
    labels = [f"rank {r['rank']}" if r["rank"] != "job" else "job" for r in rows]
    figure = go.Figure()
    for key in CATEGORIES:
        figure.add_bar(
            name=LABELS[key],
            x=labels,
            y=[r[key] or 0.0 for r in rows],
            marker_color=COLORS[key],
            hovertemplate="%{x}: %{y:.2f} ms<extra>" + LABELS[key] + "</extra>",
        )
    figure.update_layout(
        barmode="stack",
        title="Where the step time goes (steady state)",
        yaxis_title="ms per step",
        legend_title="category",
    )
    return figure


def step_timeline(rows: list[dict[str, Any]]) -> go.Figure:
    """Step time of every step, one line per rank; traced and warm-up steps are marked, not hidden."""
    figure = go.Figure()
    for rank in sorted({r["rank"] for r in rows}):
        mine = [r for r in rows if r["rank"] == rank]
        figure.add_scatter(
            name=f"rank {rank}",
            x=[r["step"] for r in mine],
            y=[r["step_ms"] for r in mine],
            mode="lines+markers",
            marker_symbol=["x" if r["traced"] else "circle" for r in mine],
            hovertemplate="step %{x}: %{y:.2f} ms<extra>rank " + str(rank) + "</extra>",
        )
    # log scale: the first step (start-up) and trace exports can be 100x a steady step
    figure.update_layout(
        title="Step time per step (x: traced or trace-export step)",
        xaxis_title="step",
        yaxis_title="ms (log scale)",
        yaxis_type="log",
    )
    return figure


def gpu_timeline(samples: Any) -> go.Figure:
    """NVML samples over time (a pandas frame from ``gpu/*.csv``): utilisation and NVLink/PCIe traffic."""
    from plotly.subplots import make_subplots

    figure = make_subplots(
        rows=2, cols=1, shared_xaxes=True, subplot_titles=("utilisation %", "traffic MB/s")
    )
    start = samples["unix"].min()
    for (host, gpu), group in samples.groupby(["host", "gpu"]):
        seconds = group["unix"] - start
        figure.add_scatter(x=seconds, y=group["util_pct"], name=f"{host} GPU {gpu} util", row=1, col=1)
        for column, label in (("nvlink_tx_mb_per_s", "NVLink tx"), ("pcie_rx_mb_per_s", "PCIe rx")):
            if group[column].notna().any():
                figure.add_scatter(x=seconds, y=group[column], name=f"{host} GPU {gpu} {label}", row=2, col=1)
    figure.update_layout(title="GPU counters (NVML)", xaxis2_title="seconds since the first sample")
    return figure
