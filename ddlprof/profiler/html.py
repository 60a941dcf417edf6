"""``ddlprof report --html``: one self-contained file (plotly.js inlined) that opens anywhere."""

from __future__ import annotations

import html
import json
from typing import Any

import plotly.io as pio

from ddlprof.figures import breakdown_by_rank, gpu_timeline, step_timeline
from ddlprof.profiler.render import own_cost_line
from ddlprof.runs.breakdown import data_line
from ddlprof.runs.energy import energy_line
from ddlprof.runs.gpu_counters import load_samples
from ddlprof.runs.peer_wait import charge_sentence
from ddlprof.runs.rundir import Run
from ddlprof.runs.summary import step_rows


def html_report(summary: dict[str, Any], runs: list[Run]) -> str:
    figures = [breakdown_by_rank(summary), step_timeline(step_rows(runs), summary["steps"]["warmup_dropped"])]
    samples = load_samples([run.path for run in runs])
    if samples is not None:
        figures.append(gpu_timeline(samples))
    parts = [pio.to_html(fig, full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(figures)]
    notes = "".join(
        f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in summary["reasons"].items()
    )
    charged = charge_sentence(summary["job"].get("wait_for_peers_ms"), summary.get("wait_charged_to") or [])
    # the lines the terminal report prints below its table, from the same functions
    lines = [
        data_line(summary),
        energy_line(summary["energy"]) if "energy" in summary else None,
        own_cost_line(summary.get("ddlprof_overhead")),
        charged,
    ]
    measured = "".join(f"<p>{html.escape(line)}</p>" for line in lines if line)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>ddlprof report</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;}} pre{{background:#f6f6f6;padding:1em;}}</style>
</head><body>
<h1>ddlprof report</h1>
<p>Measured from {html.escape(", ".join(summary["runs"]))}: {summary["world_size"]} rank(s) on
{summary["nodes"]} node(s), {summary["steps"]["steady_per_rank"]} steady steps per rank.</p>
{_diagnosis_html(summary.get("diagnosis"), summary["job"]["step_ms"])}
{"".join(parts)}
{measured}
<h2>Notes</h2><ul>{notes}</ul>
<h2>summary.json</h2><pre>{html.escape(json.dumps(summary, indent=2))}</pre>
</body></html>
"""


def _diagnosis_html(diagnosis: dict[str, Any] | None, step_ms: float) -> str:
    """The verdict and the recommendations, as the terminal report prints them after its table."""
    if not diagnosis:
        return ""
    items = []
    for rec in diagnosis["recommendations"]:
        if rec["predicted_step_ms"] is None:
            predicted = f"predicted step: not modelled ({html.escape(rec['basis'])})"
        else:
            predicted = (
                f"predicted step: <b>{rec['predicted_step_ms']:.1f} ms</b> (now {step_ms:.1f} ms); "
                f"{html.escape(rec['basis'])}; {html.escape(rec['uncertainty'])}"
            )
        items.append(
            f"<li><b>{html.escape(rec['limit'])}</b>: {html.escape(rec['action'])}<br>"
            f"evidence: {html.escape(rec['evidence'])}<br>{predicted}</li>"
        )
    listed = f"<ol>{''.join(items)}</ol>" if items else "<p>No recommendation with measured evidence.</p>"
    return f"<h2>Verdict</h2><p><b>{html.escape(diagnosis['sentence'])}</b></p>{listed}"
