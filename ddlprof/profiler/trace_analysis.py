"""``ddlprof analyze``: the step breakdown from Kineto traces of any torch.profiler run, one file per
rank and profiling window (or several windows in one), no ddlprof wrap needed.

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
    wait_for_peers_ms the part of exposed_comm_ms spent waiting for the last rank to reach the
                      all-reduce (below), charged to that rank (``wait_charged_to``)
    wire_ms           the rest of exposed_comm_ms: the all-reduce itself
    comm_ms           time some communication kernel runs (overlapped or not)
    overlap_pct       share of communication time that overlaps compute; per rank and job it is
                      the share of all the steps' communication (HTA's comm/comp overlap), not a
                      mean of per-step shares, so steps with little communication weigh little

A step's span on the device timeline starts where its ``ProfilerStep#N`` range starts (or where the
step before it ended on the device, if later) and ends where its range ends or where the last device
work launched inside it ends, whichever is later. On GPUs that work is matched to the step by its
launch's correlation id, wherever and however late it runs. Time between steps (between profiling
windows, an evaluation pass, a checkpoint) is in no step: per rank it is ``outside_steps_ms``, the
total between the first step and the last. Steps numbered one after the other form a window
(``--trace-steps 6-8,500-502``, or torch.profiler schedules with ``repeat``, in one file or in one
file per window), and ``windows`` gives the same means per window.

A rank reaches a step's all-reduce when the last compute before its last collective began has ended
(on GPUs: the last backward kernel before the last bucket's NCCL kernel, which may itself start late
on the comm stream, behind a bucket that waits for a peer; on CPU traces: the last top-level op of the
training thread before gloo's last op). The arrivals of all ranks are compared on the traces' own
clock, which is the host's wall clock (Kineto's ``ts`` plus ``baseTimeNanoseconds``, CUPTI's GPU times
put on it by Kineto): one clock for ranks of one host. The wait for the last rank is then split from
the wire as in ``runs/peer_wait.py``. Traces of several hosts (``host_name``) get no split; traces
without ``host_name`` (older torch) are taken as one host's, with a warning.
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ddlprof.errors import DdlprofError
from ddlprof.profiler.kineto import COMM, COMPUTE, MEMORY, Trace, read
from ddlprof.runs import intervals, peer_wait
from ddlprof.runs.breakdown import MULTI_HOST_WAIT
from ddlprof.runs.intervals import runs_of
from ddlprof.runs.summary import slower_than_median, with_causes

SCHEMA = "ddlprof.analysis"
KEYS = (
    "step_ms",
    "compute_ms",
    "exposed_comm_ms",
    "memory_ms",
    "idle_ms",
    "data_loader_ms",
    "ddp_cpu_ms",
    "wait_for_peers_ms",
    "wire_ms",
    "comm_ms",
)
# a worker's peak resident memory: the interpreter with numpy and ijson (32 to 38 MiB measured), and what
# it keeps per byte of JSON read (0.10 measured on 1 GB resnet50 traces, BENCHMARKS.md), with room
_WORKER_BASE = 64 << 20
_WORKER_PER_JSON_BYTE = 0.15


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
    """Each step's span on the device timeline, in us.

    A step runs from its ``ProfilerStep#N`` range's start (or where the step before it ended on the
    device, if later) to its range's end or to the end of the last device work launched inside it,
    whichever is later: a step keeps its own GPU work however late it runs, and the time between
    two steps (another profiling window, an evaluation pass, a checkpoint) is in no step. On GPU
    traces work belongs to the step whose range holds its launch (matched by correlation id,
    wherever it runs), and a step that launched none is left out."""
    ordered = sorted(trace.steps.items(), key=lambda kv: kv[1][0])
    cpu = np.array([r for _, r in ordered]).reshape(-1, 2)
    if trace.device == "cpu":
        last = cpu[:, 1]
        kept = np.ones(len(ordered), dtype=bool)
    else:
        work, launched = trace.device_work, _launch_times(trace)
        step = np.searchsorted(cpu[:, 0], launched, side="right") - 1
        ok = (step >= 0) & (launched <= cpu[np.maximum(step, 0), 1])  # False where never launched (NaN)
        last = cpu[:, 1].copy()
        np.maximum.at(last, step[ok], work[ok, 1])
        kept = np.bincount(step[ok], minlength=len(ordered)) > 0
    spans: dict[int, tuple[float, float]] = {}
    ended = -np.inf
    for i in np.flatnonzero(kept):
        start = max(cpu[i, 0], ended)
        ended = max(last[i], start)
        spans[ordered[i][0]] = (float(start), float(ended))
    return spans


def _launch_times(trace: Trace) -> np.ndarray:
    """When the host launched each device interval (NaN where the trace has no launch for it)."""
    work, launches = trace.device_work, trace.launches
    if not len(launches):
        return np.full(len(work), np.nan)
    found = np.minimum(np.searchsorted(launches[:, 0], work[:, 2]), len(launches) - 1)
    return np.where(launches[found, 0] == work[:, 2], launches[found, 1], np.nan)


def _arrivals(work: np.ndarray, spans: dict[int, tuple[float, float]]) -> dict[int, float]:
    """When the rank reached each step's all-reduce (us, the trace's clock): where the last compute
    that began before the step's last collective began ended (no later than that collective's start)."""
    comm, compute = work[work[:, 3] == COMM], work[work[:, 3] == COMPUTE]
    out: dict[int, float] = {}
    for step, (first, end) in spans.items():
        launched = comm[(comm[:, 0] >= first) & (comm[:, 0] < end), 0]
        if not len(launched):
            continue
        last = launched.max()
        before = compute[(compute[:, 0] >= first) & (compute[:, 0] < last)]
        out[step] = float(np.minimum(before[:, 1], last).max()) if len(before) else float(last)
    return out


def step_rows(trace: Trace) -> tuple[list[dict[str, Any]], dict[int, tuple[float, float]]]:
    """The trace's step rows, and each step's span on the device timeline (us)."""
    work = trace.device_work
    kind = work[:, 3]
    compute = intervals.merge(work[kind == COMPUTE, :2])
    comm = intervals.merge(work[kind == COMM, :2])
    either = intervals.merge(work[kind != MEMORY, :2])
    busy = intervals.merge(work[:, :2])
    spans = _spans(trace)
    steps = sorted(spans)
    starts = np.array([spans[s][0] for s in steps])
    ends = np.array([spans[s][1] for s in steps])
    cpu_starts = np.array([trace.steps[s][0] for s in steps])
    cpu_ends = np.array([trace.steps[s][1] for s in steps])
    c, m, cm, b = (intervals.covered(x, starts, ends) for x in (compute, comm, either, busy))
    loader = intervals.covered(intervals.merge(trace.dataloader), cpu_starts, cpu_ends)
    ddp_host = intervals.covered(intervals.merge(trace.ddp_host), cpu_starts, cpu_ends)
    rows = []
    for i, step in enumerate(steps):
        rows.append(
            {
                "rank": trace.rank,
                "step": step,
                "step_ms": (ends[i] - starts[i]) / 1e3,
                "compute_ms": c[i] / 1e3,
                "exposed_comm_ms": (cm[i] - c[i]) / 1e3,
                "memory_ms": (b[i] - cm[i]) / 1e3,
                "idle_ms": (ends[i] - starts[i] - b[i]) / 1e3,
                "data_loader_ms": loader[i] / 1e3,
                "ddp_cpu_ms": ddp_host[i] / 1e3,
                "wait_for_peers_ms": None,  # set across ranks (analyze)
                "wire_ms": None,
                "comm_ms": m[i] / 1e3,
                "overlap_pct": 100 * (c[i] + m[i] - cm[i]) / m[i] if m[i] else None,
            }
        )
    return [{k: float(v) if isinstance(v, np.floating) else v for k, v in row.items()} for row in rows], spans


def _mean(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r[key] is not None]
    return sum(values) / len(values) if values else None


@dataclass
class Analysed:
    """One file's facts and step rows: the timelines are dropped, so that only these few numbers
    travel back from a worker process."""

    trace: Trace
    rows: list[dict[str, Any]]
    spans: dict[int, tuple[float, float]]
    arrivals: dict[int, float]  # step -> when the rank reached its all-reduce (us, the trace's clock)


def _read_rows(path: Path) -> Analysed:
    trace = read(path)
    rows, spans = step_rows(trace)
    arrivals = _arrivals(trace.device_work, spans)
    trace.device_work, trace.launches = np.empty((0, 4)), np.empty((0, 2))
    trace.dataloader, trace.ddp_host = [], []
    return Analysed(trace, rows, spans, arrivals)


def default_jobs(files: list[Path]) -> int:
    """Workers that fit: one per file up to the CPU count, and no more than the available memory holds
    at the measured peak per worker for the largest file (BENCHMARKS.md)."""
    import psutil

    biggest = max(_json_bytes(f) for f in files)
    per_worker = _WORKER_BASE + _WORKER_PER_JSON_BYTE * biggest
    fits = int(psutil.virtual_memory().available // per_worker)
    return max(1, min(len(files), os.cpu_count() or 1, fits))


def _json_bytes(path: Path) -> int:
    """A file's size as JSON: gzip's trailer holds the size mod 4 GiB, so a compressed file counts at
    least ten times its size (the ratio of Kineto traces is 10 to 15)."""
    size = path.stat().st_size
    if path.suffix != ".gz":
        return size
    return max(10 * size, _gzip_size(path))


def _gzip_size(path: Path) -> int:
    with path.open("rb") as file:
        file.seek(-4, os.SEEK_END)
        return int.from_bytes(file.read(4), "little")


def read_all(files: list[Path], jobs: int | None = None) -> list[Analysed]:
    """Analyse the files in parallel, a worker process per file up to ``jobs`` at a time: parsing is
    the cost."""
    workers = min(len(files), jobs or default_jobs(files))
    if workers < 2:
        return [_read_rows(f) for f in files]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(_read_rows, files))


def _overlap_pct(rows: list[dict[str, Any]]) -> float | None:
    comm = sum(r["comm_ms"] or 0.0 for r in rows)
    exposed = sum(r["exposed_comm_ms"] or 0.0 for r in rows)
    return 100 * (comm - exposed) / comm if comm else None


def _rank_of(files: list[Analysed]) -> tuple[list[dict[str, Any]], list[tuple[float, float]]]:
    """One rank's step rows from all its files (one per profiling window, or several windows in one),
    and its step spans in time order; two files with a step in common are two runs."""
    owner: dict[int, Path] = {}
    rows: list[dict[str, Any]] = []
    for one in files:
        for row in one.rows:
            if row["step"] in owner:
                raise DdlprofError(
                    f"{one.trace.path}: rank {one.trace.rank} again (also {owner[row['step']]}): "
                    "mixed runs in one directory; pass one run's traces"
                )
            owner[row["step"]] = one.trace.path
        rows += one.rows
    spans = sorted(span for one in files for span in one.spans.values())
    return sorted(rows, key=lambda r: r["step"]), spans


def _outside_steps_ms(spans: list[tuple[float, float]]) -> float:
    """Time between one step's end and the next one's start (spans in time order, never overlapping)."""
    return sum(max(0.0, b[0] - a[1]) for a, b in itertools.pairwise(spans)) / 1e3


def _means(
    rows_of: dict[int, list[dict[str, Any]]], steps: set[int]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Per rank and for the job, the mean of each key over the given steps."""
    ranks = []
    for rank, rows in rows_of.items():
        kept = [r for r in rows if r["step"] in steps]
        ranks.append(
            {
                "rank": rank,
                "steps": len(kept),
                **{k: _mean(kept, k) for k in KEYS},
                "overlap_pct": _overlap_pct(kept),
            }
        )
    return {k: _mean(ranks, k) for k in KEYS} | {"overlap_pct": _overlap_pct(ranks)}, ranks


def analyze(paths: list[Path], jobs: int | None = None) -> dict[str, Any]:
    analysed = read_all(trace_files(paths), jobs)
    traces = [one.trace for one in analysed]
    files_of: dict[int, list[Analysed]] = {}
    for one in analysed:
        files_of.setdefault(one.trace.rank, []).append(one)
    files_of = dict(sorted(files_of.items()))
    worlds = {t.world_size for t in traces if t.world_size}
    if len(worlds) > 1:
        raise DdlprofError(
            f"mixed runs: traces of world sizes {sorted(worlds)} ({', '.join(str(t.path) for t in traces)})"
        )
    rows_of: dict[int, list[dict[str, Any]]] = {}
    outside: dict[int, float] = {}
    for rank, files in files_of.items():
        rows_of[rank], spans = _rank_of(files)
        outside[rank] = _outside_steps_ms(spans)
    step_sets = {rank: {r["step"] for r in rs} for rank, rs in rows_of.items()}
    common = set.intersection(*step_sets.values())
    if not common:
        empty = [str(files_of[rank][0].trace.path) for rank, steps in step_sets.items() if not steps]
        raise DdlprofError(
            f"{', '.join(empty)}: no step with GPU work launched inside it (a trace cut short, or its "
            "ProfilerStep#N marks and kernels do not line up)"
            if empty
            else f"no step is in every rank's trace ({', '.join(str(t.path) for t in traces)})"
        )
    warnings = (
        [
            f"{t.path}: no ProfilerStep#N marks (profile with a schedule and prof.step()); "
            "the whole trace is one step"
            for t in traces
            if t.whole_trace_as_one_step
        ]
        + [_rank_warning(t) for t in traces if t.rank_from != "distributedInfo"]
        + [
            f"{files_of[rank][0].trace.path}: steps {runs_of(sorted(steps - common))} are not in every "
            "rank's trace; left out"
            for rank, steps in step_sets.items()
            if steps - common
        ]
    )
    world = next(iter(worlds), len(rows_of))
    waits, wait_reason = _split_waits(analysed, rows_of, common, world, warnings)
    job, ranks = _means(rows_of, common)
    for row in ranks:
        row |= {
            "device": files_of[row["rank"]][0].trace.device,
            "files": [str(one.trace.path) for one in files_of[row["rank"]]],
            "outside_steps_ms": outside[row["rank"]],
        }
    job["outside_steps_ms"] = _mean(ranks, "outside_steps_ms")
    windows = []
    for first, last in intervals.runs(sorted(common)):
        window_job, window_ranks = _means(rows_of, set(range(first, last + 1)) & common)
        windows.append({"steps": [first, last], "job": window_job, "ranks": window_ranks})
    stragglers = _stragglers(ranks, waits)
    for row in ranks:
        row["caused_wait_ms"] = waits.caused.get(row["rank"], 0.0) if waits.waits else None
    return {
        "schema": SCHEMA,
        "schema_version": 2,
        "source": "traces",
        "files": [str(t.path) for t in traces],
        "steps": sorted(common),
        "job": job,
        "ranks": ranks,
        "windows": windows,
        "per_step": [r for rs in rows_of.values() for r in rs if r["step"] in common],
        "stragglers": stragglers,
        "wait_charged_to": peer_wait.charges(waits.caused, stragglers, len(ranks)),
        "reasons": {"wait_for_peers_ms": wait_reason} if wait_reason else {},
        "warnings": warnings,
    }


def _stragglers(ranks: list[dict[str, Any]], waits: peer_wait.Split) -> list[dict[str, Any]]:
    """Ranks busy well above the median rank outside exposed communication, each with its cause as the
    report finds it: compute, data (host time in DataLoader next()), or the rest of its busy time."""
    busy = {r["rank"]: r["step_ms"] - (r["exposed_comm_ms"] or 0.0) for r in ranks}
    parts = {
        r["rank"]: {
            "compute_ms": r["compute_ms"] or 0.0,
            "data_stall_ms": r["data_loader_ms"] or 0.0,
            "other_ms": max(0.0, busy[r["rank"]] - (r["compute_ms"] or 0.0) - (r["data_loader_ms"] or 0.0)),
        }
        for r in ranks
    }
    return [
        {**s, "caused_wait_ms": waits.caused.get(s["rank"], 0.0) if waits.waits else None}
        for s in with_causes(slower_than_median(busy), parts)
    ]


NO_STEPS = "no ProfilerStep#N marks: no steps whose arrivals at the all-reduce could be compared"
NO_ARRIVAL = "no step with a collective in every rank's trace: no arrival at an all-reduce to compare"
PART_OF_THE_JOB = (
    "traces of {ranks} of the job's {world} ranks: the last rank to reach the all-reduce may be one "
    "without a trace, so waiting for it is not told apart from the wire"
)
NO_HOST_NAME = (
    "no host_name in {files} (older torch): the ranks are taken as on one host, their traces on its "
    "clock; if they ran on several hosts, the waits for peers are off by the hosts' clock offsets"
)


def _split_waits(
    analysed: list[Analysed],
    rows_of: dict[int, list[dict[str, Any]]],
    common: set[int],
    world_size: int,
    warnings: list[str],
) -> tuple[peer_wait.Split, str | None]:
    """Each rank's wait for the last rank in each common step, set on its rows (``wait_for_peers_ms``,
    ``wire_ms``), and why there is none where there is none. Files of one host share its clock; a
    file's ``baseTimeNanoseconds`` above the others' shifts its times by the difference."""
    hosts = {one.trace.host for one in analysed}
    if len(hosts - {None}) > 1:
        return peer_wait.Split(), MULTI_HOST_WAIT
    if len(rows_of) < world_size:
        return peer_wait.Split(), PART_OF_THE_JOB.format(ranks=len(rows_of), world=world_size)
    if any(one.trace.whole_trace_as_one_step for one in analysed):
        return peer_wait.Split(), NO_STEPS
    bases = [one.trace.base_ns for one in analysed if one.trace.base_ns is not None]
    arrivals: peer_wait.Arrivals = {}
    exposed = {(r["rank"], r["step"]): r["exposed_comm_ms"] for rs in rows_of.values() for r in rs}
    for one in analysed:
        shift_us = (one.trace.base_ns - min(bases)) / 1e3 if one.trace.base_ns is not None else 0.0
        for step, arrived in one.arrivals.items():
            if step in common:
                arrivals.setdefault(step, {})[one.trace.rank] = (
                    (arrived + shift_us) / 1e3,
                    exposed[one.trace.rank, step],
                )
    waits = peer_wait.split(arrivals, world_size)
    if not waits.waits:
        return waits, NO_ARRIVAL
    if None in hosts:
        unnamed = [str(one.trace.path) for one in analysed if one.trace.host is None]
        warnings.append(
            NO_HOST_NAME.format(files=", ".join(unnamed[:2]) + (" ..." if len(unnamed) > 2 else ""))
        )
    for rank, rows in rows_of.items():
        for row in rows:
            wait = waits.waits.get((rank, row["step"]))
            if wait is not None:
                row["wait_for_peers_ms"], row["wire_ms"] = wait, row["exposed_comm_ms"] - wait
    return waits, None


def _rank_warning(trace: Trace) -> str:
    if trace.rank_from == "none":
        return (
            f"{trace.path}: no rank in the trace (no distributedInfo.rank, no collective, no _N before "
            ".pt.trace.json in its name): taken as rank -1"
        )
    return f"{trace.path}: no distributedInfo.rank; rank {trace.rank} taken from its {trace.rank_from}"
