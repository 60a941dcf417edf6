"""``ddlprof analyze``: the step breakdown from Kineto traces of any torch.profiler run, one file per
rank, no ddlprof wrap needed.

Per rank and step (ProfilerStep#N), on the device timeline (GPU kernels, or on CPU-only traces the
training thread's top-level ops), in ms; the first four add up to the step:

    compute_ms        time some compute kernel runs
    exposed_comm_ms   communication kernels running while no compute runs
    memory_ms         copies and memsets running while neither of the above runs
    idle_ms           nothing running
    data_loader_ms    host time in DataLoader next() during the step (where the trace shows it)
    ddp_cpu_ms        host time in DDP's own work during the step: the reducer's gradient and bucket
                      copies and the collectives it launches (torch's reducer/c10d ops). It only
                      lengthens the step where the device waits for the host (a launch-bound model);
                      compare it with idle_ms. Under the profiler these host ops run slower than
                      without it, so it is an upper estimate.
    comm_ms           time some communication kernel runs (overlapped or not)
    overlap_pct       share of communication time that overlaps compute; per rank and job it is
                      the share of all the steps' communication (HTA's comm/comp overlap), not a
                      mean of per-step shares, so steps with little communication weigh little

On GPUs a kernel belongs to the step in which the host launched it, and a step's device span runs
from its first kernel to the next step's first kernel.
"""

from __future__ import annotations

import os
from bisect import bisect_right
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from ddlprof.errors import DdlprofError
from ddlprof.profiler.kineto import Trace, read
from ddlprof.runs import intervals
from ddlprof.runs.summary import slower_than_median

SCHEMA = "ddlprof.analysis"
KEYS = (
    "step_ms",
    "compute_ms",
    "exposed_comm_ms",
    "memory_ms",
    "idle_ms",
    "data_loader_ms",
    "ddp_cpu_ms",
    "comm_ms",
)


def trace_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.name.endswith((".json", ".json.gz")) and p.is_file()
            )
            # torch.profiler's own file names first, so a ddlprof run directory (manifest.json...) works too
            files += [p for p in found if ".pt.trace.json" in p.name] or found
        elif path.is_file():
            files.append(path)
        else:
            raise DdlprofError(f"{path}: no such file or directory")
    if not files:
        raise DdlprofError(f"{', '.join(map(str, paths))}: no .json or .json.gz trace files")
    return files


def _spans(trace: Trace) -> dict[int, tuple[float, float]]:
    if trace.device == "cpu":
        return dict(trace.steps)
    windows = sorted(trace.steps.items(), key=lambda kv: kv[1][0])
    window_starts = [a for _, (a, _) in windows]
    firsts: dict[int, float] = {}
    lasts: dict[int, float] = {}
    for start, end, corr in (*trace.compute, *trace.comm, *trace.memory):
        launched = trace.launches.get(corr)
        if launched is None:
            continue
        index = bisect_right(window_starts, launched) - 1
        step = windows[index][0] if index >= 0 and launched <= windows[index][1][1] else None
        if step is not None:
            firsts[step] = min(firsts.get(step, start), start)
            lasts[step] = max(lasts.get(step, end), end)
    ordered = sorted(firsts)
    return {
        step: (firsts[step], firsts[ordered[i + 1]] if i + 1 < len(ordered) else lasts[step])
        for i, step in enumerate(ordered)
    }


def step_rows(trace: Trace) -> list[dict[str, Any]]:
    compute = intervals.merge((s, e) for s, e, _ in trace.compute)
    comm = intervals.merge((s, e) for s, e, _ in trace.comm)
    memory = intervals.merge((s, e) for s, e, _ in trace.memory)
    busy = intervals.merge([*compute, *comm, *memory])
    loader = intervals.merge(trace.dataloader)
    ddp_host = intervals.merge(trace.ddp_host)
    rows = []
    for step, (start, end) in sorted(_spans(trace).items()):
        c, m, k = (intervals.clip(x, start, end) for x in (compute, comm, memory))
        compute_us, comm_us = intervals.length(c), intervals.length(m)
        both = intervals.overlap(c, m)
        comm_or_compute = intervals.merge([*c, *m])
        memory_us = intervals.length(k) - intervals.overlap(intervals.merge(k), comm_or_compute)
        idle_us = (end - start) - intervals.length(intervals.clip(busy, start, end))
        cpu_start, cpu_end = trace.steps[step]
        rows.append(
            {
                "rank": trace.rank,
                "step": step,
                "step_ms": (end - start) / 1e3,
                "compute_ms": compute_us / 1e3,
                "exposed_comm_ms": (comm_us - both) / 1e3,
                "memory_ms": memory_us / 1e3,
                "idle_ms": idle_us / 1e3,
                "data_loader_ms": intervals.length(intervals.clip(loader, cpu_start, cpu_end)) / 1e3,
                "ddp_cpu_ms": intervals.length(intervals.clip(ddp_host, cpu_start, cpu_end)) / 1e3,
                "comm_ms": comm_us / 1e3,
                "overlap_pct": 100 * both / comm_us if comm_us else None,
            }
        )
    return rows


def _mean(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r[key] is not None]
    return sum(values) / len(values) if values else None


def _read_rows(path: Path) -> tuple[Trace, list[dict[str, Any]]]:
    """One file's facts and step rows; the timelines are dropped so that only these few numbers
    travel back from a worker process."""
    trace = read(path)
    rows = step_rows(trace)
    trace.compute, trace.comm, trace.memory, trace.launches, trace.dataloader = [], [], [], {}, []
    trace.ddp_host = []
    trace.cpu_ops = {}
    return trace, rows


def read_all(files: list[Path]) -> list[tuple[Trace, list[dict[str, Any]]]]:
    """Analyse the files in parallel, a process per file up to the CPU count: parsing is the cost."""
    workers = min(len(files), os.cpu_count() or 1)
    if workers < 2:
        return [_read_rows(f) for f in files]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(_read_rows, files))


def _overlap_pct(rows: list[dict[str, Any]]) -> float | None:
    comm = sum(r["comm_ms"] or 0.0 for r in rows)
    exposed = sum(r["exposed_comm_ms"] or 0.0 for r in rows)
    return 100 * (comm - exposed) / comm if comm else None


def analyze(paths: list[Path]) -> dict[str, Any]:
    analysed = read_all(trace_files(paths))
    traces = [trace for trace, _ in analysed]
    by_rank: dict[int, Trace] = {}
    rows_of: dict[int, list[dict[str, Any]]] = {}
    for trace, trace_rows in analysed:
        if trace.rank in by_rank:
            raise DdlprofError(
                f"{trace.path}: rank {trace.rank} again (also {by_rank[trace.rank].path}): "
                "mixed runs in one directory; pass one run's traces"
            )
        by_rank[trace.rank], rows_of[trace.rank] = trace, trace_rows
    worlds = {t.world_size for t in traces if t.world_size}
    if len(worlds) > 1:
        raise DdlprofError(
            f"mixed runs: traces of world sizes {sorted(worlds)} ({', '.join(str(t.path) for t in traces)})"
        )
    rows = dict(sorted(rows_of.items()))
    step_sets = {rank: {r["step"] for r in rs} for rank, rs in rows.items()}
    common = set.intersection(*step_sets.values())
    if not common:
        empty = [str(by_rank[rank].path) for rank, steps in step_sets.items() if not steps]
        raise DdlprofError(
            f"{', '.join(empty)}: no step with GPU work launched inside it (a trace cut short, or its "
            "ProfilerStep#N marks and kernels do not line up)"
            if empty
            else f"no step is in every rank's trace ({', '.join(str(t.path) for t in traces)})"
        )
    warnings = [
        f"{t.path}: no ProfilerStep#N marks (profile with a schedule and prof.step()); "
        "the whole trace is one step"
        for t in traces
        if t.whole_trace_as_one_step
    ] + [
        f"{by_rank[rank].path}: steps {sorted(steps - common)} are not in every rank's trace; left out"
        for rank, steps in step_sets.items()
        if steps - common
    ]
    ranks = []
    for rank, rs in rows.items():
        kept = [r for r in rs if r["step"] in common]
        ranks.append(
            {
                "rank": rank,
                "device": by_rank[rank].device,
                "file": str(by_rank[rank].path),
                "steps": len(kept),
                **{k: _mean(kept, k) for k in KEYS},
                "overlap_pct": _overlap_pct(kept),
            }
        )
    job = {k: _mean(ranks, k) for k in KEYS} | {"overlap_pct": _overlap_pct(ranks)}
    return {
        "schema": SCHEMA,
        "schema_version": 1,
        "source": "traces",
        "files": [str(t.path) for t in traces],
        "steps": sorted(common),
        "job": job,
        "ranks": ranks,
        "per_step": [r for rs in rows.values() for r in rs if r["step"] in common],
        "stragglers": slower_than_median(
            {r["rank"]: r["step_ms"] - (r["exposed_comm_ms"] or 0.0) for r in ranks}
        ),
        "warnings": warnings,
    }
