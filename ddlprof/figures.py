"""Plotly figures, shared by ``ddlprof report --html`` and the dashboard so both show the same thing.

Figures take plain data (a summary dict, step rows) and never compute breakdowns themselves.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from ddlprof.runs.breakdown import CATEGORIES, LABELS

COLORS = {
    "compute_ms": "#4c78a8",
    "data_stall_ms": "#f58518",
    "interconnect_stall_ms": "#e45756",
    "network_stall_ms": "#b279a2",
    "wait_for_peers_ms": "#ff9da6",
    "other_ms": "#9d9d9d",
}


def _rank_bars(figure: go.Figure, summary: dict[str, Any], legend: bool = True, **where: Any) -> None:
    """Each rank's steady-state step split into the categories, and the job's, as stacked bars."""
    rows = [*summary["ranks"], {**summary["job"], "rank": "job"}]
    labels = [f"rank {r['rank']}" if r["rank"] != "job" else "job" for r in rows]
    for key in CATEGORIES:
        figure.add_bar(
            name=LABELS[key],
            x=labels,
            y=[r[key] or 0.0 for r in rows],
            marker_color=COLORS[key],
            legendgroup=key,
            showlegend=legend,
            hovertemplate="%{x}: %{y:.2f} ms<extra>" + LABELS[key] + "</extra>",
            **where,
        )


def breakdown_by_rank(summary: dict[str, Any]) -> go.Figure:
    """Stacked bars: each rank's steady-state step split into the categories, and the job's."""
    figure = go.Figure()
    _rank_bars(figure, summary)
    figure.update_layout(
        barmode="stack",
        title="Where the step time goes (steady state)",
        yaxis_title="ms per step",
        legend_title="category",
    )
    return figure


def breakdown_by_rank_runs(runs: list[tuple[str, dict[str, Any]]]) -> go.Figure:
    """Several runs' per-rank breakdowns side by side, on one shared ms axis with one legend."""
    from plotly.subplots import make_subplots

    figure = make_subplots(
        rows=1, cols=len(runs), shared_yaxes=True, subplot_titles=[name for name, _ in runs],
        horizontal_spacing=0.02,
    )  # fmt: skip
    for column, (_, summary) in enumerate(runs, start=1):
        _rank_bars(figure, summary, legend=column == 1, row=1, col=column)
    figure.update_layout(
        barmode="stack",
        title="Per rank, side by side (steady state, one ms axis)",
        yaxis_title="ms per step",
        legend_title="category",
    )
    return figure


#: One colour per rank, far apart (Plotly's Dark24: blue, pink, green, ...); ranks past 24 reuse them.
RANK_COLORS = (
    "#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#222A2A", "#B68100", "#750D86",
    "#EB663B", "#511CFB", "#00A08B", "#FB00D1", "#FC0080", "#B2828D", "#6C7C32", "#778AAE",
    "#862A16", "#A777F1", "#620042", "#1616A7", "#DA60CA", "#6C4516", "#0D2A63", "#AF0038",
)  # fmt: skip


def rank_color(rank: int) -> str:
    return RANK_COLORS[rank % len(RANK_COLORS)]


def _steady_top(rows: list[dict[str, Any]], warmup: int) -> float | None:
    """The top of a linear axis that shows the steady steps: 1.2 x the slowest steady, untraced step
    (the first step and trace exports can be 100x a steady step and would flatten the rest)."""
    steady = [r["step_ms"] for r in rows if r["step"] > warmup and not r["traced"]]
    return 1.2 * max(steady) if steady else None


def _mark_steps(figure: go.Figure, rows: list[dict[str, Any]], warmup: int, top: float | None) -> None:
    """Shade the warm-up steps (left out of the summary) and the traced steps, and name the steps the
    axis cuts off with their time."""
    if warmup:
        figure.add_vrect(
            x0=0.5, x1=warmup + 0.5, fillcolor="#bbbbbb", opacity=0.25, line_width=0,
            annotation_text="warm-up (not in the summary)", annotation_position="top left",
        )  # fmt: skip
    for step in sorted({r["step"] for r in rows if r["traced"]}):
        figure.add_vrect(x0=step - 0.5, x1=step + 0.5, fillcolor="#f58518", opacity=0.2, line_width=0)
    if top is None:
        return
    cut = {}
    for r in rows:
        if r["step_ms"] > top:
            cut[r["step"]] = max(cut.get(r["step"], 0.0), r["step_ms"])
    if cut:
        shown = ", ".join(f"step {s}: {ms:,.0f} ms" for s, ms in sorted(cut.items())[:4])
        more = f" and {len(cut) - 4} more" if len(cut) > 4 else ""
        figure.add_annotation(
            text=f"off the scale: {shown}{more}", xref="paper", yref="paper", x=1, y=1.08,
            showarrow=False, xanchor="right", font={"size": 11, "color": "#555"},
        )  # fmt: skip
    figure.update_yaxes(range=[0, top])


def step_timeline(rows: list[dict[str, Any]], warmup: int = 0) -> go.Figure:
    """Step time of every step, one line per rank in its own colour, on a linear axis scaled to the
    steady steps; warm-up and traced steps are shaded, not hidden."""
    figure = go.Figure()
    for rank in sorted({r["rank"] for r in rows}):
        mine = [r for r in rows if r["rank"] == rank]
        figure.add_scatter(
            name=f"rank {rank}",
            x=[r["step"] for r in mine],
            y=[r["step_ms"] for r in mine],
            mode="lines+markers",
            line={"color": rank_color(rank)},
            marker={"symbol": ["x" if r["traced"] else "circle" for r in mine], "size": 5},
            hovertemplate="step %{x}: %{y:.2f} ms<extra>rank " + str(rank) + "</extra>",
        )
    _mark_steps(figure, rows, warmup, _steady_top(rows, warmup))
    figure.update_layout(
        title="Step time per step, per rank (grey: warm-up; orange: traced steps)",
        xaxis_title="step",
        yaxis_title="ms",
        legend_title="rank",
    )
    return figure


def step_breakdown(rows: list[dict[str, Any]], rank: int, warmup: int = 0) -> go.Figure:
    """One rank's steps as stacked bars of the categories, on a linear axis scaled to the steady
    steps (warm-up and traced steps shaded): where each step's time went, and how steady it is."""
    mine = sorted((r for r in rows if r["rank"] == rank), key=lambda r: r["step"])
    figure = go.Figure()
    for key in CATEGORIES:
        figure.add_bar(
            name=LABELS[key],
            x=[r["step"] for r in mine],
            y=[r.get(key) or 0.0 for r in mine],
            marker_color=COLORS[key],
            hovertemplate="step %{x}: %{y:.2f} ms<extra>" + LABELS[key] + "</extra>",
        )
    _mark_steps(figure, mine, warmup, _steady_top(mine, warmup))
    figure.update_layout(
        barmode="stack",
        bargap=0.1,
        title=f"Rank {rank}: where each step's time goes",
        xaxis_title="step",
        yaxis_title="ms",
        legend_title="category",
    )
    return figure


GPU_PANELS = (
    ("utilisation %", (("util_pct", "util"),)),
    ("memory used MiB", (("mem_used_mib", "memory"),)),
    ("power W", (("power_w", "power"),)),
    (
        "traffic MB/s",
        (
            ("nvlink_tx_mb_per_s", "NVLink tx"),
            ("nvlink_rx_mb_per_s", "NVLink rx"),
            ("pcie_tx_mb_per_s", "PCIe tx"),
            ("pcie_rx_mb_per_s", "PCIe rx"),
        ),
    ),
)


def gpu_timeline(samples: Any) -> go.Figure:
    """NVML samples over time (a pandas frame from ``gpu/*.csv``): utilisation, memory, power, and
    NVLink/PCIe traffic, one line per GPU (a counter NVML did not report is left out)."""
    from plotly.subplots import make_subplots

    figure = make_subplots(
        rows=len(GPU_PANELS), cols=1, shared_xaxes=True, subplot_titles=[t for t, _ in GPU_PANELS]
    )
    start = samples["unix"].min()
    for (host, gpu), group in samples.groupby(["host", "gpu"]):
        seconds = group["unix"] - start
        for row, (_, series) in enumerate(GPU_PANELS, start=1):
            for column, label in series:
                if column in group and group[column].notna().any():
                    figure.add_scatter(
                        x=seconds, y=group[column], name=f"{host} GPU {gpu} {label}", row=row, col=1
                    )
    figure.update_layout(
        title="GPU counters (NVML)",
        height=220 * len(GPU_PANELS),
        **{f"xaxis{len(GPU_PANELS)}_title": "seconds since the first sample"},
    )
    return figure


def breakdown_by_run(rows: list[dict[str, Any]], share: bool = False) -> go.Figure:
    """Stacked bars side by side: each compared item's step split into the categories.

    ``rows`` are comparables (``ddlprof.dashboard.data.comparable``): a ``label``, a ``source``
    (measured run, or later a predicted instance option) and the categories in ms per step. With
    ``share`` the bars show each category's percentage of the step instead.
    """
    figure = go.Figure()
    labels = [r["label"] for r in rows]
    for key in CATEGORIES:
        values = [r.get(key) or 0.0 for r in rows]
        if share:
            values = [
                100 * v / r["step_ms"] if r.get("step_ms") else 0.0 for v, r in zip(values, rows, strict=True)
            ]
        unit = "%" if share else " ms"
        figure.add_bar(
            name=LABELS[key],
            x=labels,
            y=values,
            marker_color=COLORS[key],
            customdata=[r.get("source", "") for r in rows],
            hovertemplate="%{x}: %{y:.2f}" + unit + "<br>%{customdata}<extra>" + LABELS[key] + "</extra>",
        )
    figure.update_layout(
        barmode="stack",
        title="Step time breakdown side by side (steady state)",
        yaxis_title="% of the step" if share else "ms per step",
        legend_title="category",
    )
    return figure


def throughput_bars(rows: list[dict[str, Any]]) -> go.Figure:
    """Throughput of each compared item, samples/s (items without one are shown as missing)."""
    figure = go.Figure()
    figure.add_bar(
        x=[r["label"] for r in rows],
        y=[r.get("throughput_samples_per_s") for r in rows],
        marker_color="#4c78a8",
        customdata=[r.get("source", "") for r in rows],
        hovertemplate="%{x}: %{y:,.0f} samples/s<br>%{customdata}<extra></extra>",
    )
    figure.update_layout(title="Throughput", yaxis_title="samples / s")
    return figure


def predicted_vs_measured(
    measured: Any,
    predictions: dict[str, Any],
    target: str,
    hover: list[str] | None = None,
    mine: Any = None,
) -> go.Figure:
    """Each model's held-out prediction of ``target`` against the measured value, with the y = x line.

    ``measured`` is a pandas Series, ``predictions`` maps a model name to a Series on the same index
    (``ddlprof.models.evaluate.lomo_predictions``); ``mine`` (booleans on that index) marks the user's
    own runs, drawn again as stars on top.
    """
    figure = go.Figure()
    known = measured.notna()
    values = measured[known].astype(float)
    top = float(values.max()) if len(values) else 1.0
    for name, predicted in predictions.items():
        figure.add_scatter(
            name=name,
            x=values,
            y=predicted[known].astype(float),
            mode="markers",
            text=[h for h, k in zip(hover, known, strict=True) if k] if hover else None,
            hovertemplate="measured %{x:.2f} ms, predicted %{y:.2f} ms<br>%{text}<extra>" + name + "</extra>",
        )
    if mine is not None:
        yours = known & mine
        for name, predicted in predictions.items():
            if yours.any():
                figure.add_scatter(
                    name=f"your runs ({name})",
                    x=measured[yours].astype(float),
                    y=predicted[yours].astype(float),
                    mode="markers",
                    marker={"symbol": "star", "size": 14, "line": {"width": 1, "color": "#222"}},
                    hovertemplate="your run: measured %{x:.2f} ms, predicted %{y:.2f} ms<extra>"
                    + name
                    + "</extra>",
                )
    figure.add_scatter(
        name="y = x", x=[0, top], y=[0, top], mode="lines", line={"dash": "dot", "color": "#777"}
    )
    label = "step time" if target == "step_ms" else LABELS.get(target, target)
    figure.update_layout(
        title=f"{label}: leave-one-model-out prediction vs measured",
        xaxis_title="measured ms",
        yaxis_title="predicted ms",
    )
    return figure


def _priced(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("usd_per_hour") and r.get("throughput_samples_per_s")]


def pareto_flags(points: list[tuple[float, float]]) -> list[bool]:
    """For (cost per hour, throughput) points: True where no other point is at most as dear and at least as
    fast, and better in one of the two."""
    return [
        not any(
            c <= cost and t >= speed and (c < cost or t > speed) for j, (c, t) in enumerate(points) if j != i
        )
        for i, (cost, speed) in enumerate(points)
    ]


def cost_throughput_scatter(rows: list[dict[str, Any]]) -> go.Figure:
    """Throughput vs. cost per hour of the compared items that have a price, with the Pareto frontier
    (no other item both cheaper per hour and faster) drawn as a line through its points."""
    priced = _priced(rows)
    figure = go.Figure()
    points = [(float(r["usd_per_hour"]), float(r["throughput_samples_per_s"])) for r in priced]
    flags = pareto_flags(points)
    for kind, symbol in (("option", "circle"), ("run", "diamond")):
        mine = [(r, p) for r, p in zip(priced, points, strict=True) if r.get("kind", "option") == kind]
        if not mine:
            continue
        figure.add_scatter(
            name="instance options" if kind == "option" else "runs",
            x=[p[0] for _, p in mine],
            y=[p[1] for _, p in mine],
            mode="markers",
            marker={"symbol": symbol, "size": 9, "color": "#4c78a8" if kind == "option" else "#f58518"},
            text=[r["label"] for r, _ in mine],
            customdata=[r.get("source", "") for r, _ in mine],
            hovertemplate="%{text}<br>$%{x:.2f}/h, %{y:,.0f} samples/s<br>%{customdata}<extra></extra>",
        )
    front = sorted(p for p, flag in zip(points, flags, strict=True) if flag)
    if front:
        figure.add_scatter(
            name="Pareto frontier",
            x=[p[0] for p in front],
            y=[p[1] for p in front],
            mode="lines+markers",
            line={"shape": "hv", "color": "#e45756"},
            marker={"symbol": "star", "size": 12, "color": "#e45756"},
            hoverinfo="skip",
        )
    figure.update_layout(
        title="Throughput vs cost per hour, with the Pareto frontier",
        xaxis_title="USD per hour (all instances)",
        yaxis_title="samples / s",
    )
    return figure


def cost_per_million_bars(rows: list[dict[str, Any]]) -> go.Figure:
    """USD per 1M samples (cost per hour / samples per hour) of the compared items that have a price, as
    horizontal bars, cheapest on top: long labels stay level and whole."""
    priced = _priced(rows)
    values = [
        r.get("usd_per_million_samples") or r["usd_per_hour"] / (r["throughput_samples_per_s"] * 3600) * 1e6
        for r in priced
    ]
    figure = go.Figure()
    figure.add_bar(
        y=[r["label"] for r in priced],
        x=values,
        orientation="h",
        marker_color="#54a24b",
        customdata=[r.get("source", "") for r in priced],
        hovertemplate="%{y}: $%{x:,.3f} per 1M samples<br>%{customdata}<extra></extra>",
    )
    figure.update_layout(
        title="USD per 1M samples",
        xaxis_title="USD per 1M samples",
        yaxis={"autorange": "reversed", "automargin": True, "type": "category"},
        height=max(300, 120 + 28 * len(priced)),
    )
    return figure
