"""The shared figures show what a person needs to read: steady steps on a linear axis, warm-up and
traced steps marked, one colour per rank."""

from __future__ import annotations

from ddlprof import figures


def _rows(ranks: int = 2, steps: int = 30, traced: tuple[int, ...] = (12,)) -> list[dict]:
    """Per-step rows as ``step_rows`` gives them: a 1.5 s first step, then ~20 ms steps with jitter."""
    rows = []
    for rank in range(ranks):
        for step in range(1, steps + 1):
            total = 1500.0 if step == 1 else 20.0 + (step % 3) + rank
            rows.append(
                {
                    "rank": rank,
                    "step": step,
                    "traced": step in traced,
                    "step_ms": total,
                    "compute_ms": total - 6.0,
                    "data_stall_ms": 2.0,
                    "interconnect_stall_ms": 3.0,
                    "network_stall_ms": 0.0,
                    "other_ms": 1.0,
                }
            )
    return rows


def test_step_timeline_keeps_the_steady_steps_readable():
    figure = figures.step_timeline(_rows(), warmup=5)
    assert figure.layout.yaxis.type in (None, "linear")
    top = figure.layout.yaxis.range[1]
    assert 22.0 < top < 40.0  # scaled to the steady steps (max 23 ms), not to the 1.5 s first step
    notes = " ".join(a.text for a in figure.layout.annotations)
    assert "off the scale: step 1: 1,500 ms" in notes and "warm-up" in notes
    shapes = [(s.x0, s.x1) for s in figure.layout.shapes]
    assert (0.5, 5.5) in shapes  # the warm-up steps
    assert (11.5, 12.5) in shapes  # the traced step
    colours = [trace.line.color for trace in figure.data]
    assert len(colours) == 2 and colours[0] != colours[1]


def test_rank_colours_are_distinct():
    assert len({figures.rank_color(rank) for rank in range(24)}) == 24


def test_step_breakdown_stacks_the_categories_of_each_step():
    figure = figures.step_breakdown(_rows(), rank=1, warmup=5)
    assert figure.layout.barmode == "stack"
    assert [t.name for t in figure.data] == list(figures.LABELS.values())
    compute = next(t for t in figure.data if t.name == "compute")
    assert list(compute.x) == list(range(1, 31)) and compute.y[1] == 20.0 + 2 + 1 - 6.0
    assert figure.layout.yaxis.range[1] < 40.0


def test_per_rank_breakdowns_of_several_runs_share_one_axis_and_one_legend():
    job = {"step_ms": 10.0, **{k: 2.0 for k in figures.LABELS}}
    run = {"ranks": [{**job, "rank": 0}, {**job, "rank": 1}], "job": job}
    figure = figures.breakdown_by_rank_runs([("a", run), ("b", run), ("c", run)])
    assert figure.layout.yaxis2.matches == "y" and figure.layout.yaxis3.matches == "y"
    assert sum(bool(t.showlegend) for t in figure.data) == len(figures.LABELS)  # one legend entry each


def test_cost_bars_are_horizontal_with_whole_labels_cheapest_first():
    items = [
        {
            "label": f"{n} x p5.48xlarge eu-north-1 spot",
            "usd_per_hour": 7.3 * n,
            "throughput_samples_per_s": 20000.0,
        }
        for n in (1, 2, 3)
    ]
    figure = figures.cost_per_million_bars(items)
    bars = figure.data[0]
    assert bars.orientation == "h" and list(bars.y) == [item["label"] for item in items]
    assert figure.layout.yaxis.autorange == "reversed" and figure.layout.yaxis.automargin
