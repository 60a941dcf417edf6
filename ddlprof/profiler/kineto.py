"""Read a Kineto trace (torch.profiler's Chrome JSON, ``.json`` or ``.json.gz``) as a stream.

Traces reach gigabytes, so the file is never loaded whole: ijson walks ``traceEvents`` and only the
few numbers each analysis needs are kept: step windows, device busy intervals (GPU kernels, or on
CPU-only traces the training thread's top-level ops), communication intervals and data-loader time.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ddlprof.errors import DdlprofError

_STEP = re.compile(r"^ProfilerStep#(\d+)$")
_RANK_IN_NAME = re.compile(r"_(\d+)\.(?:\d+\.)?pt\.trace\.json")
_CPU_COMM = ("gloo:", "nccl:", "mpi:")
_DATALOADER = "enumerate(DataLoader)"
_INF = float("inf")
# DDP's own host work as torch records it: the reducer's gradient/bucket copies and the collectives it
# (or its buffer broadcast) launches. Nested ops overlap and are merged, never added twice.
_DDP_HOST = ("torch::distributed::reducer::", "torch.distributed.ddp.reducer::", "c10d::")


@dataclass
class Trace:
    path: Path
    rank: int
    world_size: int | None
    device: str  # "gpu" when the trace has kernels, else "cpu"
    steps: dict[int, tuple[float, float]] = field(default_factory=dict)  # CPU windows, us
    compute: list[tuple[float, float, int]] = field(default_factory=list)  # start, end, correlation
    comm: list[tuple[float, float, int]] = field(default_factory=list)
    memory: list[tuple[float, float, int]] = field(default_factory=list)
    launches: dict[int, float] = field(default_factory=dict)  # correlation -> CPU launch time
    dataloader: list[tuple[float, float]] = field(default_factory=list)
    ddp_host: list[tuple[float, float]] = field(default_factory=list)  # DDP's own host ops
    cpu_ops: dict[int, list[tuple[float, float, str]]] = field(default_factory=dict)  # tid -> ops
    span: tuple[float, float] = (float("inf"), float("-inf"))  # of every timed event
    whole_trace_as_one_step: bool = False


def _open(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def _distributed_info(path: Path) -> dict[str, Any]:
    import ijson

    with _open(path) as file:
        return next(ijson.items(file, "distributedInfo"), None) or {}


def read(path: Path) -> Trace:
    import ijson

    try:
        info = _distributed_info(path)
        if not isinstance(info, dict):
            raise ValueError("distributedInfo is not an object")
        name_rank = _RANK_IN_NAME.search(path.name)
        rank = info.get("rank", int(name_rank.group(1)) if name_rank else None)
        world_size = info.get("world_size")
        if not (rank is None or _count(rank)) or not (world_size is None or _count(world_size)):
            raise ValueError("distributedInfo's rank and world_size must be integers")
        trace = Trace(path, rank if rank is not None else -1, world_size, "cpu")
        with _open(path) as file:
            seen = _take(trace, ijson.items(file, "traceEvents.item", use_float=True))
    # a field of the wrong type (a string for a number, a list for an object) is a TypeError or an
    # AttributeError in the loop, caught here rather than checked per event in the hot loop
    except (OSError, EOFError, ijson.JSONError, ValueError, TypeError, AttributeError, OverflowError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise DdlprofError(f"{path}: not a readable Kineto trace ({type(exc).__name__}: {detail})") from None
    if seen == 0:
        raise DdlprofError(f"{path}: no traceEvents (not a Kineto trace?)")
    if trace.span[0] > trace.span[1]:
        raise DdlprofError(
            f"{path}: no complete (ph X) event among its {seen} traceEvents (not a Kineto trace?)"
        )
    if not trace.steps:  # profiled without schedule/prof.step(): the whole trace is step 0
        trace.steps[0] = trace.span
        trace.whole_trace_as_one_step = True
    trace.device = "gpu" if trace.compute or trace.comm else "cpu"
    if trace.device == "cpu":
        _cpu_timeline(trace)
    return trace


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 20


def _take(trace: Trace, events: Iterable[dict[str, Any]]) -> int:
    """Keep what the analyses need from the events; returns how many events there were.

    One loop with local names rather than a call per event: traces hold millions of events and
    this loop is most of ``ddlprof analyze``'s time."""
    seen = 0
    first, last = trace.span
    compute, comm, memory, launches = trace.compute, trace.comm, trace.memory, trace.launches
    for event in events:
        seen += 1
        if not isinstance(event, dict) or event.get("ph") != "X":
            continue
        start = float(event.get("ts", 0.0))
        end = start + float(event.get("dur", 0.0))
        if not (-_INF < start < _INF and -_INF < end < _INF):  # NaN too (a "NaN" string)
            raise ValueError(f"ts and dur must be finite numbers: {event}")
        first, last = min(first, start), max(last, end)
        cat = event.get("cat")
        if cat == "kernel":
            correlation = int((event.get("args") or {}).get("correlation", -1))
            (comm if str(event.get("name", "")).startswith("nccl") else compute).append(
                (start, end, correlation)
            )
        elif cat in ("cuda_runtime", "cuda_driver"):
            args = event.get("args") or {}
            if "correlation" in args:
                launches[int(args["correlation"])] = start
        elif cat in ("gpu_memcpy", "gpu_memset"):
            memory.append((start, end, int((event.get("args") or {}).get("correlation", -1))))
        elif cat in ("cpu_op", "user_annotation"):
            name = str(event.get("name", ""))
            if cat == "user_annotation" and (match := _STEP.match(name)):
                trace.steps[int(match.group(1))] = (start, end)
                continue
            if name.startswith(_DATALOADER):
                trace.dataloader.append((start, end))
            elif name.startswith(_DDP_HOST):
                trace.ddp_host.append((start, end))
            trace.cpu_ops.setdefault(int(event.get("tid", 0)), []).append((start, end, name))
    trace.span = (first, last)
    return seen


def _cpu_timeline(trace: Trace) -> None:
    """CPU-only (gloo) traces: the training thread's top-level ops are the compute stream, and the
    collective ops run by gloo's threads are the communication."""
    first = next(iter(trace.steps.values()))
    main = max(
        trace.cpu_ops, key=lambda tid: sum(1 for s, _, _ in trace.cpu_ops[tid] if first[0] <= s <= first[1])
    )
    for tid, ops in trace.cpu_ops.items():
        if tid != main:
            trace.comm += [(s, e, -1) for s, e, name in ops if name.startswith(_CPU_COMM)]
    last_end = float("-inf")
    for start, end, name in sorted(trace.cpu_ops[main]):
        if start >= last_end and not name.startswith(("ProfilerStep#", _DATALOADER, *_CPU_COMM)):
            trace.compute.append((start, end, -1))
            last_end = end
    trace.cpu_ops = {}
