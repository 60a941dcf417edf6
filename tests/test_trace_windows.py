"""Steps end where their ``ProfilerStep#N`` ranges end, on real GPU traces: the two 3-step resnet50
traces of a 2 x H200 NCCL run (``benchmarks/results/gpu-2xh200/runs.tgz``, recorded by
``ddlprof wrap``; no GPU here to record new ones), marked with steps and copied into windows by
``benchmarks/replicate_trace.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import replicate

from ddlprof.profiler.trace_analysis import analyze

KEYS = (
    "step_ms",
    "compute_ms",
    "exposed_comm_ms",
    "memory_ms",
    "idle_ms",
    "comm_ms",
    "overlap_pct",
    "ddp_cpu_ms",
)


def _write(folder: Path, name: str, trace: dict, parts) -> None:
    folder.mkdir(exist_ok=True)
    replicate.write(trace, iter(parts), folder / name)


def _rows(result: dict) -> dict[tuple[int, int], dict]:
    return {(r["rank"], r["step"]): r for r in result["per_step"]}


def test_two_windows_and_an_evaluation_between_give_each_window_alone(marked, tmp_path):
    """Window A (steps 1-3), then an evaluation pass (the same GPU work, launched outside any step),
    then window B (steps 13-15) in one file per rank: the same per-step numbers as each window in a
    file of its own, and the time between them as outside_steps_ms, in no step."""
    dt = {}
    for rank, trace in marked.items():
        events = trace["traceEvents"]
        first, last, _, _, top = replicate.extent(events)
        dt[rank] = last - first + 20_000.0  # 20 ms between the copies
        name = f"vm_{rank}.1.pt.trace.json"
        window_a = replicate.shifted(events, 0, 0, 0)
        evaluation = replicate.shifted(events, dt[rank], 0, top + 1, steps=False)
        window_b = replicate.shifted(events, 2 * dt[rank], 12, 2 * (top + 1))
        _write(tmp_path / "both", name, trace, [window_a, evaluation, window_b])
        _write(tmp_path / "a", name, trace, [replicate.shifted(events, 0, 0, 0)])
        _write(tmp_path / "b", name, trace, [replicate.shifted(events, 2 * dt[rank], 12, 2 * (top + 1))])
    both, alone_a, alone_b = (analyze([tmp_path / d], jobs=1) for d in ("both", "a", "b"))
    assert both["steps"] == [1, 2, 3, 13, 14, 15]
    assert [w["steps"] for w in both["windows"]] == [[1, 3], [13, 15]]
    rows, rows_a, rows_b = _rows(both), _rows(alone_a), _rows(alone_b)
    for (rank, step), row in rows.items():
        alone = rows_a[rank, step] if step < 10 else rows_b[rank, step]
        for key in KEYS:
            assert row[key] == pytest.approx(alone[key], rel=1e-9, abs=1e-9), (rank, step, key)
        if step > 10:  # the copies are the same work: B's steps are A's
            assert row["step_ms"] == pytest.approx(rows[rank, step - 12]["step_ms"], rel=1e-6)
    for rank_row in both["ranks"]:
        rank = rank_row["rank"]
        window_a_ms = sum(rows[rank, s]["step_ms"] for s in (1, 2, 3))
        # step 13 starts 2 dt after step 1; window A's steps run back to back from step 1's start
        assert rank_row["outside_steps_ms"] == pytest.approx(2 * dt[rank] / 1e3 - window_a_ms, rel=1e-6)
        assert rank_row["outside_steps_ms"] > dt[rank] / 1e3  # the evaluation pass is in it
    for window, alone in zip(both["windows"], (alone_a, alone_b), strict=True):
        for key in KEYS:
            assert window["job"][key] == pytest.approx(alone["job"][key], rel=1e-9)
    assert all(r["outside_steps_ms"] == 0 for r in alone_a["ranks"])


def test_a_step_keeps_its_device_work_however_late_it_runs(marked, tmp_path):
    """A step ends at its range's end or at the end of the device work launched in it, whichever is
    later; device work is never split into the next step by time."""
    result = analyze([_one_window(marked, tmp_path)], jobs=1)
    for rank, trace in marked.items():
        marks = {e["name"]: e for e in trace["traceEvents"] if e.get("name", "").startswith("ProfilerStep#")}
        rows = [r for r in result["per_step"] if r["rank"] == rank]
        first = marks["ProfilerStep#1"]["ts"]
        last = marks["ProfilerStep#3"]
        total = sum(r["step_ms"] for r in rows)
        assert total * 1e3 >= last["ts"] + last["dur"] - first - 1e-3  # at least the three ranges
        for row in rows:
            parts = row["compute_ms"] + row["exposed_comm_ms"] + row["memory_ms"] + row["idle_ms"]
            assert parts == pytest.approx(row["step_ms"], rel=1e-9)


def _one_window(marked: dict, folder: Path) -> Path:
    for rank, trace in marked.items():
        _write(
            folder, f"vm_{rank}.1.pt.trace.json", trace, [replicate.shifted(trace["traceEvents"], 0, 0, 0)]
        )
    return folder
