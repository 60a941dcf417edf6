"""Read a Kineto trace (torch.profiler's Chrome JSON, ``.json`` or ``.json.gz``) as a stream.

Traces reach gigabytes, so the file is never loaded whole: ijson walks ``traceEvents`` and only the
few numbers each analysis needs are kept, in flat arrays (8 bytes a number, not a Python object an
event): step ranges, device intervals (GPU kernels, copies and memsets) with their correlation ids,
launch times by correlation id, and per host thread only its top-level ops (the device timeline of
CPU-only traces) and its collectives; data-loader and DDP host ranges are few.
"""

from __future__ import annotations

import ast
import gzip
import io
import re
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from ddlprof.errors import DdlprofError

_STEP = re.compile(r"^ProfilerStep#(\d+)$")
# ddlprof's own layout (<host>_<rank>.<first step>.pt.trace.json.gz) and worker names like "w_1"
_RANK_IN_NAME = re.compile(r"_(\d+)\.(?:\d+\.)?pt\.trace\.json")
_CPU_COMM = ("gloo:", "nccl:", "mpi:")
# NCCL's kernels: ncclKernel_* before NCCL 2.19, ncclDevKernel_* since; RCCL (ROCm) keeps ncclKernel_*
_COMM_KERNEL = "nccl"
_DATALOADER = "enumerate(DataLoader)"
_INF = float("inf")
# DDP's own host work as torch records it: the reducer's gradient/bucket copies and the collectives it
# (or its buffer broadcast) launches. Nested ops overlap and are merged, never added twice.
_DDP_HOST = ("torch::distributed::reducer::", "torch.distributed.ddp.reducer::", "c10d::")
_NOT_COMPUTE = ("ProfilerStep#", _DATALOADER, *_CPU_COMM)
_HEADER_LIMIT = 1 << 22  # bytes read for the metadata Kineto writes before traceEvents
COMPUTE, COMM, MEMORY = 0, 1, 2  # kinds of device interval


@dataclass
class Trace:
    path: Path
    rank: int
    world_size: int | None
    device: str  # "gpu" when the trace has kernels, else "cpu"
    rank_from: str = "distributedInfo"  # or "process group" (record_param_comms), "file name", "none"
    steps: dict[int, tuple[float, float]] = field(default_factory=dict)  # CPU ranges, us
    # device intervals: columns start, end, correlation (-1: none), kind (COMPUTE, COMM, MEMORY)
    device_work: np.ndarray = field(default_factory=lambda: np.empty((0, 4)))
    launches: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))  # correlation, start; sorted
    dataloader: list[tuple[float, float]] = field(default_factory=list)
    ddp_host: list[tuple[float, float]] = field(default_factory=list)  # DDP's own host ops
    span: tuple[float, float] = (float("inf"), float("-inf"))  # of every timed event
    whole_trace_as_one_step: bool = False
    host: str | None = None  # the host_name Kineto writes (recent torch), else None
    # what ts counts from, in ns since the epoch (the year's start since Kineto PR 919), where the head says
    base_ns: int | None = None


def _open(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


_HEADER_KEYS = ("distributedInfo", "host_name", "baseTimeNanoseconds")


def _header(path: Path) -> dict[str, Any]:
    """``_HEADER_KEYS`` from the metadata Kineto writes ahead of ``traceEvents``; read from that head
    alone, so a trace without them is not parsed twice."""
    import ijson

    with _open(path) as file:
        head = file.read(_HEADER_LIMIT)
    cut = head.find(b'"traceEvents"')
    # closed where traceEvents begins, so that the parser (which reads ahead) gives the last key too
    text = head[:cut] + b'"traceEvents": []}' if cut >= 0 else head
    found: dict[str, Any] = {}
    try:
        for key, value in ijson.kvitems(io.BytesIO(text), ""):
            if key in _HEADER_KEYS:
                found[key] = value
    except ijson.JSONError:  # no traceEvents in the head: keep what came before the error
        pass
    return found


class _Collector:
    """What the analyses keep of the events, gathered in one pass."""

    def __init__(self) -> None:
        self.device = array("d")  # start, end, correlation, kind; four numbers an interval
        self.launches = array("d")  # correlation, start
        self.steps: dict[int, tuple[float, float]] = {}
        self.step_tids: dict[int, int] = {}  # tid -> step marks on it
        self.top: dict[int, array] = {}  # tid -> start, end of its top-level ops (CPU timeline)
        self.top_end: dict[int, float] = {}
        self.cpu_comm: dict[int, list[tuple[float, float]]] = {}
        self.dataloader: list[tuple[float, float]] = []
        self.ddp_host: list[tuple[float, float]] = []
        self.comm_rank: int | None = None  # from record_param_comms
        self.first, self.last = _INF, -_INF

    def take(self, events: Iterable[dict[str, Any]]) -> int:
        """Keep what the analyses need; returns how many events there were.

        One loop with local names rather than a call per event: traces hold millions of events and
        this loop is most of ``ddlprof analyze``'s time. Kineto writes each thread's host ops in
        order of their start, so an op that starts before the thread's last top-level op ended is
        nested in it, and only top-level ops are kept."""
        seen = 0
        first, last = self.first, self.last
        device, launches, top, top_end = self.device, self.launches, self.top, self.top_end
        for event in events:
            seen += 1
            if not isinstance(event, dict) or event.get("ph") != "X":
                continue
            start = float(event.get("ts", 0.0))
            end = start + float(event.get("dur", 0.0))
            if not (-_INF < start < _INF and -_INF < end < _INF):  # NaN too (a "NaN" string)
                raise ValueError(f"ts and dur must be finite numbers: {event}")
            if start < first:
                first = start
            if end > last:
                last = end
            cat = event.get("cat")
            if cat == "kernel":
                correlation = float(int((event.get("args") or {}).get("correlation", -1)))
                kind = COMM if str(event.get("name", "")).startswith(_COMM_KERNEL) else COMPUTE
                device.extend((start, end, correlation, kind))
            elif cat in ("cuda_runtime", "cuda_driver"):
                args = event.get("args") or {}
                if "correlation" in args:
                    launches.extend((float(int(args["correlation"])), start))
            elif cat in ("gpu_memcpy", "gpu_memset"):
                correlation = float(int((event.get("args") or {}).get("correlation", -1)))
                device.extend((start, end, correlation, MEMORY))
            elif cat in ("cpu_op", "user_annotation"):
                name = str(event.get("name", ""))
                tid = int(event.get("tid", 0))
                if cat == "user_annotation" and (match := _STEP.match(name)):
                    self.steps[int(match.group(1))] = (start, end)
                    self.step_tids[tid] = self.step_tids.get(tid, 0) + 1
                    continue
                if name.startswith(_DATALOADER):
                    self.dataloader.append((start, end))
                elif name.startswith(_DDP_HOST):
                    self.ddp_host.append((start, end))
                elif name == "record_param_comms" and self.comm_rank is None:
                    self.comm_rank = _global_rank(event.get("args") or {})
                if name.startswith(_CPU_COMM):
                    self.cpu_comm.setdefault(tid, []).append((start, end))
                elif not name.startswith(_NOT_COMPUTE) and start >= top_end.get(tid, -_INF):
                    top.setdefault(tid, array("d")).extend((start, end))
                    top_end[tid] = end
        self.first, self.last = first, last
        return seen


def _global_rank(args: dict[str, Any]) -> int | None:
    """This process's global rank from a collective's process group info (torch's record_param_comms):
    its rank in the group, mapped through the group's ranks. Only collectives without a root count:
    for a broadcast, a reduce, a gather or a scatter "Rank" is the root's, and for send/recv the peer's."""
    rank, name = args.get("Rank"), str(args.get("Collective name", ""))
    if not _count(rank) or not (name.startswith("all") or "reduce_scatter" in name or name == "barrier"):
        return None
    try:
        ranks = ast.literal_eval(str(args.get("Process Group Ranks", "")))
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        ranks = None
    if isinstance(ranks, list) and rank < len(ranks) and _count(ranks[rank]):
        return ranks[rank]
    start, stride = args.get("Global rank start"), args.get("Global rank stride")
    if _count(start) and _count(stride):
        return start + stride * rank
    return None


def read(path: Path) -> Trace:
    import ijson

    try:
        header = _header(path)
        info = header.get("distributedInfo") or {}
        if not isinstance(info, dict):
            raise ValueError("distributedInfo is not an object")
        rank, world_size = info.get("rank"), info.get("world_size")
        if not (rank is None or _count(rank)) or not (world_size is None or _count(world_size)):
            raise ValueError("distributedInfo's rank and world_size must be integers")
        found = _Collector()
        with _open(path) as file:
            seen = found.take(ijson.items(file, "traceEvents.item", use_float=True))
    # a field of the wrong type (a string for a number, a list for an object) is a TypeError or an
    # AttributeError in the loop, caught here rather than checked per event in the hot loop
    except (OSError, EOFError, ijson.JSONError, ValueError, TypeError, AttributeError, OverflowError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise DdlprofError(f"{path}: not a readable Kineto trace ({type(exc).__name__}: {detail})") from None
    if seen == 0:
        raise DdlprofError(f"{path}: no traceEvents (not a Kineto trace?)")
    if found.first > found.last:
        raise DdlprofError(
            f"{path}: no complete (ph X) event among its {seen} traceEvents (not a Kineto trace?)"
        )
    rank_from = "distributedInfo"
    if rank is None:
        name_rank = _RANK_IN_NAME.search(path.name)
        if found.comm_rank is not None:
            rank, rank_from = found.comm_rank, "process group"
        elif name_rank and _count(int(name_rank.group(1))):
            rank, rank_from = int(name_rank.group(1)), "file name"
        else:
            rank, rank_from = -1, "none"
    trace = Trace(path, rank, world_size, "cpu", rank_from, found.steps)
    host, base = header.get("host_name"), header.get("baseTimeNanoseconds")
    trace.host = host if isinstance(host, str) else None
    trace.base_ns = base if isinstance(base, int) and not isinstance(base, bool) else None
    trace.span = (found.first, found.last)
    trace.dataloader, trace.ddp_host = found.dataloader, found.ddp_host
    if not trace.steps:  # profiled without schedule/prof.step(): the whole trace is step 0
        trace.steps[0] = trace.span
        trace.whole_trace_as_one_step = True
    work = np.frombuffer(found.device, dtype=np.float64).reshape(-1, 4)
    if len(work) and (work[:, 3] != MEMORY).any():
        trace.device = "gpu"
        launches = np.frombuffer(found.launches, dtype=np.float64).reshape(-1, 2)
        trace.device_work, trace.launches = work, launches[np.argsort(launches[:, 0], kind="stable")]
    else:
        trace.device_work = _cpu_timeline(found)
    return trace


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 20


def _cpu_timeline(found: _Collector) -> np.ndarray:
    """CPU-only (gloo) traces: the training thread's top-level ops are the compute stream, and the
    collective ops run by other threads (gloo's) are the communication. The training thread is the
    one that marks the steps, or where there are no marks the one with the most top-level time."""
    if not found.top:
        return np.empty((0, 4))
    if found.step_tids:
        main = max(found.step_tids, key=found.step_tids.__getitem__)
    else:
        main = max(found.top, key=lambda tid: float(np.diff(_pairs(found.top[tid]), axis=1).sum()))
    compute = _pairs(found.top.get(main, array("d")))
    comm = np.array([op for tid, ops in found.cpu_comm.items() if tid != main for op in ops]).reshape(-1, 2)
    rows = [np.column_stack([pairs, np.full(len(pairs), -1.0), np.full(len(pairs), kind)])
            for pairs, kind in ((compute, COMPUTE), (comm, COMM))]  # fmt: skip
    return np.concatenate(rows)


def _pairs(values: array) -> np.ndarray:
    return np.frombuffer(values, dtype=np.float64).reshape(-1, 2)
