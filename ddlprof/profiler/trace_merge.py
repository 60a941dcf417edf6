"""``ddlprof trace RUN --merge OUT``: one trace window of every rank in one Chrome-trace file.

Each rank's Kineto file of the window (``traces/<run>/<host>_<rank>.<first step>.pt.trace.json.gz``,
named by the rank's ``trace`` records) is copied into one ``traceEvents`` array that Perfetto
(ui.perfetto.dev) or chrome://tracing opens in one tab, with ddlprof's own tracks beside it.

One clock. Kineto writes ``ts`` (and ``dur``) in microseconds relative to a top-level
``baseTimeNanoseconds``, nanoseconds since the Unix epoch on the process's system clock: an event
happened at ``baseTimeNanoseconds / 1000 + ts`` microseconds of Unix time (HTA reads it the same
way). torch 2.11 and 2.13 write the key before ``traceEvents``; a file without it (older Kineto) has
Unix microseconds in ``ts`` and counts as base 0. ddlprof's step records hold ``time.time()`` of the
same clock: in a 2-rank gloo run with torch 2.13 each rank's ``ProfilerStep#7`` began 0.4 ms after
its record's step 7 ``start``, and in the 2 x H200 runs (torch 2.11) each step's first DDP forward
0.5 to 0.9 ms after it. The merged file keeps Kineto's convention with one base for all ranks: the
smallest of theirs, which it writes as its own ``baseTimeNanoseconds``. Each rank's ``ts`` moves by
``(its base - that base) / 1000`` (nothing at all where the bases are equal, as on one host with
torch 2.13, so every ``ts`` stays exactly as Kineto wrote it) and a step record's Unix seconds ``t``
become ``(t - base / 1e9) * 1e6``. Ranks of different hosts line up as well as the hosts' clocks
agree: nothing here corrects clock skew between machines.

Processes. Kineto puts a rank's CPU ops under its OS pid and its GPU's kernels under pid = device
index, so two ranks' files can share pids (every rank of one host has a GPU pid 0 to 15 with
metadata, and device pids repeat across hosts). Every (rank, original pid) that has events gets a
new pid of its own, in a block per rank (rank order), named ``rank 0 CPU (host)``, ``rank 0 GPU 0``,
... with ``process_sort_index`` in rank order; Kineto's own process metadata is dropped (pids with
metadata only, the devices a rank does not use, disappear), its thread names are kept under the new
pid. Flow and async ids (``ph`` s/t/f, b/n/e) become ``id * ranks + the rank's position``, so that a
flow stays whole within its rank and never joins one of another rank. Kineto's global instants
(``s: g``) become process-scoped, or every rank would draw them across the whole trace.

ddlprof's tracks: per rank a process ``rank N ddlprof`` with one complete event ``ddlprof step N``
per step of the window and the step before and after it (from the rank's step records, so steps
show where Kineto's ``ProfilerStep#N`` is missing), and a counter ``ddlprof step breakdown (ms)``
set at each step's start to the step's categories as ``ddlprof report`` computes them
(``summary.step_rows``); it returns to 0 at the end of the last step shown.

Memory. Files are streamed with ijson one event at a time and written straight into the output
(gzip for ``.json.gz``), so what is held is a chunk of events plus the pid map and the thread names
of one rank, however large the traces: merging two ranks of 131 MB (1.3 million events) peaked at
21 MB resident, 18 MB of it the interpreter and imports, where ``json.load`` of one of the files alone
takes 626 MB. The output is written to ``OUT.part`` and linked to ``OUT`` only when complete; an
existing ``OUT`` is never replaced.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shlex
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ddlprof.errors import DdlprofError
from ddlprof.runs.intervals import runs_of
from ddlprof.runs.rundir import RankLog, Run

COUNTER = "ddlprof step breakdown (ms)"
STEP_CAT = "ddlprof"
PID_BLOCK = 1000  # new pids of the rank at position p: (p + 1) * PID_BLOCK + 0 .. 999
_PROCESS_META = frozenset(("process_name", "process_labels", "process_sort_index"))
_WITH_IDS = frozenset("stfbneSTFp")  # flow and async phases
_GPU_LABEL = re.compile(r"^GPU (\d+)$")
_GPU_CATS = frozenset(("kernel", "gpu_memcpy", "gpu_memset", "gpu_user_annotation"))
_READ_ERRORS = (OSError, EOFError, ValueError, zlib.error)  # and ijson.JSONError
_CHUNK = 2000  # events joined per write
_BIG_ID = 1 << 48


@dataclass
class MergeResult:
    out: Path
    window: tuple[int, int]
    windows: list[tuple[int, int]]
    ranks: list[int]
    missing_ranks: list[int]
    events: int
    kineto_events: int
    ddlprof_events: int
    processes: list[str]
    base_time_ns: int
    bytes: int
    # per rank: ms from the record's start of the window's first step to Kineto's ProfilerStep#first
    marker_offset_ms: dict[int, float | None] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "window": list(self.window),
            "windows": [list(w) for w in self.windows],
            "ranks": self.ranks,
            "missing_ranks": self.missing_ranks,
            "events": self.events,
            "kineto_events": self.kineto_events,
            "ddlprof_events": self.ddlprof_events,
            "processes": self.processes,
            "base_time_ns": self.base_time_ns,
            "bytes": self.bytes,
            "marker_offset_ms": {str(k): v for k, v in self.marker_offset_ms.items()},
        }

    def line(self) -> str:
        first, last = self.window
        steps = f"step {first}" if first == last else f"steps {first}-{last}"
        which = ""
        if len(self.windows) > 1:
            others = ", ".join(str(w[0]) for w in self.windows if w != self.window)
            which = (
                f" (window {self.windows.index(self.window) + 1} of {len(self.windows)}; --window {others})"
            )
        missing = ""
        if self.missing_ranks:
            missing = f"; no trace of this window from rank(s) {', '.join(map(str, self.missing_ranks))}"
        return (
            f"ddlprof: wrote {self.out}: trace window {steps}{which}, {_ranges(self.ranks)} as "
            f"{len(self.processes)} processes, {self.events:,} events"
            f"{missing}; open it in ui.perfetto.dev"
        )


@dataclass
class _Source:
    log: RankLog
    path: Path
    base_ns: int
    display_time_unit: str | None


def windows(run: Run) -> list[tuple[int, int]]:
    """The trace windows the ranks recorded, by first step."""
    found: dict[int, int] = {}
    for log in run.ranks:
        for record in log.traces:
            steps = record.get("steps")
            if isinstance(steps, list) and len(steps) == 2 and record.get("file"):
                first, last = int(steps[0]), int(steps[1])
                found[first] = max(found.get(first, last), last)
    return sorted(found.items())


def _rank_record(log: RankLog | None, first: int) -> dict[str, Any] | None:
    """The rank's (last) trace record of the window that starts at step ``first``, when it names a file."""
    records = [r for r in (log.traces if log else []) if (r.get("steps") or [None])[0] == first]
    return records[-1] if records and records[-1].get("file") else None


def _world(run: Run) -> list[int]:
    """Every rank the job had (by its world size) or that left a log."""
    world = max((int(log.meta.get("world_size") or 1) for log in run.ranks), default=1)
    return sorted(set(range(world)) | {log.rank for log in run.ranks})


def _no_windows(run: Run) -> str:
    return (
        f"{run.path}: no trace window recorded (wrapped with --trace-steps 0, or no rank reached its window)"
    )


def _check_window(run: Run, found: list[tuple[int, int]], window: int) -> None:
    starts = [w[0] for w in found]
    if window not in starts:
        raise DdlprofError(
            f"--window {window}: {run.path} has no trace window starting there; windows start at step "
            f"{', '.join(map(str, starts))}"
        )


def list_windows(run: Run, window: int | None = None) -> dict[str, Any]:
    """``ddlprof trace RUN`` without ``--merge``: the run's trace windows (or the one that starts at step
    ``window``), each with every rank's steps, file (relative to the run) and size in bytes (None for a
    file that is missing), the ranks without a trace of it, and the command that merges one."""
    found = windows(run)
    if window is not None and found:
        _check_window(run, found, window)
        found = [w for w in found if w[0] == window]
    logs = {log.rank: log for log in run.ranks}
    listed = []
    for first, last in found:
        ranks, missing = [], []
        for rank in _world(run):
            record = _rank_record(logs.get(rank), first)
            if record is None:
                missing.append(rank)
                continue
            path = run.path / str(record["file"])
            steps = record["steps"]
            ranks.append(
                {
                    "rank": rank,
                    "steps": [int(steps[0]), int(steps[-1])],
                    "file": str(record["file"]),
                    "bytes": path.stat().st_size if path.is_file() else None,
                }
            )
        listed.append({"steps": [first, last], "ranks": ranks, "missing_ranks": missing})
    return {
        "run": str(run.path),
        "windows": listed,
        "note": None if listed else _no_windows(run),
        "merge": f"ddlprof trace --merge window.json.gz {shlex.quote(str(run.path))}" if listed else None,
    }


def windows_lines(listing: dict[str, Any]) -> list[str]:
    """``list_windows``'s result as lines for the terminal."""
    found = listing["windows"]
    if not found:
        return [str(listing["note"])]
    count = f"{len(found)} trace window" + ("s" if len(found) > 1 else "")
    lines = [f"{listing['run']}: {count}"]
    for window in found:
        first, last = window["steps"]
        sizes = [r["bytes"] for r in window["ranks"] if r["bytes"] is not None]
        lines.append(
            f"  window of {_steps(first, last)} (--window {first}): "
            f"{_ranges([r['rank'] for r in window['ranks']])}, {_size(sum(sizes))} in all"
            + (f"; no trace from {_ranges(window['missing_ranks'])}" if window["missing_ranks"] else "")
        )
        for rank in window["ranks"]:
            size = "missing" if rank["bytes"] is None else _size(rank["bytes"])
            lines.append(f"    rank {rank['rank']}  {_steps(*rank['steps'])}  {rank['file']}  {size}")
    another = " --window FIRST_STEP" if len(found) > 1 else ""
    lines.append(
        f"Merge a window of every rank into one file for ui.perfetto.dev: {listing['merge']}{another}"
        + (" (default: the first window)" if another else "")
    )
    return lines


def _steps(first: int, last: int) -> str:
    return f"step {first}" if first == last else f"steps {first}-{last}"


def _size(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


def merge_window(run: Run, out: Path, window: int | None = None) -> MergeResult:
    """Merge the trace window starting at step ``window`` (default: the first) of every rank of
    ``run`` into ``out`` (``.json.gz`` or ``.json``); see the module's docstring."""
    out = Path(out)
    if not out.name.endswith((".json", ".json.gz")):
        raise DdlprofError(f"--merge {out}: name the output .json.gz (gzip) or .json")
    if out.exists() or out.is_symlink():
        raise DdlprofError(f"--merge {out}: exists; not overwritten (choose another name)")
    found = windows(run)
    if not found:
        raise DdlprofError(_no_windows(run))
    if window is None:
        window = found[0][0]
    _check_window(run, found, window)
    chosen = (window, dict(found)[window])
    sources, missing = _sources(run, chosen)
    base = min(source.base_ns for source in sources)
    rows = _categories(run)
    part = out.with_name(out.name + ".part")
    try:
        stats = _write(part, out.name.endswith(".gz"), sources, chosen, base, rows, run)
        _link(part, out)
    except OSError as exc:
        raise DdlprofError(f"--merge {out}: cannot write ({exc.strerror or exc})") from None
    finally:
        part.unlink(missing_ok=True)
    return MergeResult(
        out=out,
        window=chosen,
        windows=found,
        ranks=[s.log.rank for s in sources],
        missing_ranks=missing,
        events=stats["events"],
        kineto_events=stats["kineto"],
        ddlprof_events=stats["ddlprof"],
        processes=stats["processes"],
        base_time_ns=base,
        bytes=out.stat().st_size,
        marker_offset_ms=stats["offsets"],
    )


def _sources(run: Run, window: tuple[int, int]) -> tuple[list[_Source], list[int]]:
    """Every rank's file of the window (checked and its header read), and the ranks without one."""
    sources, missing = [], []
    logs = {log.rank: log for log in run.ranks}
    for rank in _world(run):
        log = logs.get(rank)
        record = _rank_record(log, window[0])
        if record is None:
            missing.append(rank)
            continue
        path = run.path / str(record["file"])
        if not path.is_file():
            raise DdlprofError(f"{path}: missing (rank {rank}'s trace of steps {window[0]}-{window[1]})")
        header = _header(path)
        base = header.get("baseTimeNanoseconds")
        sources.append(
            _Source(
                log=log,  # type: ignore[arg-type]
                path=path,
                base_ns=int(base) if isinstance(base, (int, float)) else 0,
                display_time_unit=header.get("displayTimeUnit"),
            )
        )
    return sources, missing


def _open(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")


def _unreadable(path: Path, exc: BaseException) -> DdlprofError:
    detail = " ".join(str(exc).split())[:200]
    return DdlprofError(f"{path}: not a readable Kineto trace ({type(exc).__name__}: {detail})")


def _header(path: Path) -> dict[str, Any]:
    """The file's top-level scalars (baseTimeNanoseconds, displayTimeUnit...) from the part before
    ``traceEvents``; the rest of the file is read only where the base comes after the events."""
    import ijson

    top: dict[str, Any] = {}
    try:
        with _open(path) as file:
            for prefix, event, value in ijson.parse(file):
                if prefix == "traceEvents":
                    break
                if prefix and "." not in prefix and event in ("number", "string", "boolean"):
                    top[prefix] = value
            else:
                raise DdlprofError(f"{path}: no traceEvents (not a Kineto trace?)")
        if "baseTimeNanoseconds" not in top:
            with _open(path) as file:
                base = next(ijson.items(file, "baseTimeNanoseconds"), None)
            if base is not None:
                top["baseTimeNanoseconds"] = base
    except (*_READ_ERRORS, ijson.JSONError) as exc:
        raise _unreadable(path, exc) from None
    return top


def _events(path: Path) -> Iterator[dict[str, Any]]:
    """The file's events one at a time; a read or parse error becomes a DdlprofError (errors of the
    consumer, such as writing the output, are not caught here)."""
    import ijson

    try:
        with _open(path) as file:
            yield from ijson.items(file, "traceEvents.item", use_float=True)
    except (*_READ_ERRORS, ijson.JSONError) as exc:
        raise _unreadable(path, exc) from None


def _categories(run: Run) -> dict[tuple[int, int], dict[str, Any]]:
    """(rank, step) -> the step's categories, as the report computes them."""
    from ddlprof.runs.summary import step_rows

    return {(row["rank"], row["step"]): row for row in step_rows([run])}


class _Writer:
    """Events into the open output, joined a chunk at a time."""

    def __init__(self, file: IO[str]) -> None:
        self.file = file
        self.pending: list[str] = []
        self.written = 0
        self.dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

    def add(self, event: dict[str, Any]) -> None:
        self.pending.append(self.dumps(event))
        if len(self.pending) >= _CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.file.write((",\n" if self.written else "") + ",\n".join(self.pending))
            self.written += len(self.pending)
            self.pending = []


def _write(
    part: Path,
    gz: bool,
    sources: list[_Source],
    window: tuple[int, int],
    base: int,
    rows: dict[tuple[int, int], dict[str, Any]],
    run: Run,
) -> dict[str, Any]:
    stats: dict[str, Any] = {"kineto": 0, "ddlprof": 0, "processes": [], "offsets": {}, "events": 0}
    with _create(part, gz) as file:
        head = {
            "schemaVersion": 1,
            "displayTimeUnit": next((s.display_time_unit for s in sources if s.display_time_unit), "ms"),
            "baseTimeNanoseconds": base,
            "ddlprof_merge": {
                "run_id": run.manifest.get("run_id"),
                "window": list(window),
                "clock": "Unix us = baseTimeNanoseconds / 1000 + ts, for every rank",
                "ranks": [
                    {
                        "rank": s.log.rank,
                        "host": s.log.meta.get("host"),
                        "file": os.path.relpath(s.path, run.path),
                        "baseTimeNanoseconds": s.base_ns,
                    }
                    for s in sources
                ],
            },
        }
        file.write(json.dumps(head)[:-1] + ', "traceEvents": [\n')
        writer = _Writer(file)
        for position, source in enumerate(sources):
            ddlprof_pid = (position + 1) * PID_BLOCK
            stats["ddlprof"] += _ddlprof_events(source.log, ddlprof_pid, window, base, rows, writer)
            copied = _copy_rank(source, position, len(sources), base, window, writer)
            stats["kineto"] += copied["events"]
            stats["processes"] += [f"rank {source.log.rank} ddlprof", *copied["processes"]]
            stats["offsets"][source.log.rank] = _marker_offset(source.log, window[0], copied["marker"], base)
        writer.flush()
        stats["events"] = writer.written
        file.write("\n]}\n")
    return stats


def _new_id(old: Any, position: int, ranks: int, other_ids: dict[Any, int]) -> int:
    """A flow or async id unique to the rank at ``position`` of ``ranks``: an int id below 2**48 (all
    of Kineto's) becomes ``id * ranks + position``, with no table; any other id is numbered from
    2**48 on first sight, in the same residue class. Ids equal within a rank stay equal, so its flows
    stay whole (Perfetto binds a flow's ends by id, category and name), and no two ranks share one."""
    if type(old) is int and 0 <= old < _BIG_ID:
        return old * ranks + position
    number = other_ids.setdefault(old, _BIG_ID + len(other_ids))
    return number * ranks + position


def _create(part: Path, gz: bool) -> IO[str]:
    if gz:
        return gzip.open(part, "wt", encoding="utf-8", compresslevel=6)
    return part.open("w", encoding="utf-8")


def _copy_rank(
    source: _Source,
    position: int,
    ranks: int,
    base: int,
    window: tuple[int, int],
    writer: _Writer,
) -> dict[str, Any]:
    """Copy one rank's events with new pids, flow ids and ts; then its processes' metadata."""
    rank, log = source.log.rank, source.log
    host_pid = log.meta.get("pid")
    block = (position + 1) * PID_BLOCK
    pids: dict[Any, int] = {}
    process_meta: dict[Any, dict[str, Any]] = {}
    thread_meta: dict[Any, list[dict[str, Any]]] = {}
    gpu_pids: set[Any] = set()
    marker_name = f"ProfilerStep#{window[0]}"
    add = writer.add
    try:
        copied, count, marker = _copy_events(
            source, position, ranks, base, marker_name, add, pids, process_meta, thread_meta, gpu_pids
        )
    # a field of the wrong type (a list for a pid, a string for a ts) is a TypeError in the loop,
    # caught here rather than checked per event; errors of writing the output are not caught
    except (TypeError, ValueError, OverflowError) as exc:
        raise _unreadable(source.path, exc) from None
    if count == 0:
        raise DdlprofError(f"{source.path}: no traceEvents (not a Kineto trace?)")
    # Metadata of the processes that have events, under their new pids, in the block's order.
    processes = []
    for pid, new in sorted(pids.items(), key=lambda item: _role(item[0], host_pid, process_meta, gpu_pids)):
        role, name = _process_name(pid, host_pid, process_meta, gpu_pids, log)
        processes.append(f"rank {rank} {name}")
        add(
            {"ph": "M", "name": "process_name", "pid": new, "tid": 0, "args": {"name": f"rank {rank} {name}"}}
        )
        sort_index = block + role
        add(
            {
                "ph": "M",
                "name": "process_sort_index",
                "pid": new,
                "tid": 0,
                "args": {"sort_index": sort_index},
            }
        )
        for event in thread_meta.get(pid, []):
            event.pop("ts", None)
            add({**event, "pid": new})
    return {"events": copied, "processes": processes, "marker": marker}


def _copy_events(
    source: _Source,
    position: int,
    ranks: int,
    base: int,
    marker_name: str,
    add: Any,
    pids: dict[Any, int],
    process_meta: dict[Any, dict[str, Any]],
    thread_meta: dict[Any, list[dict[str, Any]]],
    gpu_pids: set[Any],
) -> tuple[int, int, float | None]:
    """The rank's events into ``add`` with new pids, flow ids and ts (its process and thread
    metadata into the maps instead); returns (events copied, events read, the marker's ts). An
    event that is not an object is skipped, as analyze skips it."""
    host_pid = source.log.meta.get("pid")
    block = (position + 1) * PID_BLOCK
    other_ids: dict[Any, int] = {}  # ids that are not small ints (Kineto writes none)
    shift = (source.base_ns - base) / 1000
    marker: float | None = None
    count = copied = 0
    for event in _events(source.path):
        count += 1
        if not isinstance(event, dict):
            continue
        ph = event.get("ph")
        pid = event.get("pid")
        if ph == "M":
            name = event.get("name")
            if name in _PROCESS_META:
                process_meta.setdefault(pid, {})[name] = event.get("args") or {}
            else:
                thread_meta.setdefault(pid, []).append(event)
            continue
        new = pids.get(pid)
        if new is None:
            new = pids[pid] = _new_pid(pid, block, pids, host_pid, process_meta, gpu_pids, source.path)
        event["pid"] = new
        if shift and "ts" in event:
            event["ts"] = round(event["ts"] + shift, 3)
        if ph in _WITH_IDS and "id" in event:
            event["id"] = _new_id(event["id"], position, ranks, other_ids)
        elif ph in ("i", "I") and event.get("s") == "g":
            event["s"] = "p"
        cat = event.get("cat")
        if cat in _GPU_CATS:
            gpu_pids.add(pid)
        elif cat == "user_annotation" and marker is None and event.get("name") == marker_name:
            marker = event.get("ts")
        add(event)
        copied += 1
    return copied, count, marker


def _new_pid(
    pid: Any,
    block: int,
    pids: dict[Any, int],
    host_pid: Any,
    process_meta: dict[Any, dict[str, Any]],
    gpu_pids: set[Any],
    path: Path,
) -> int:
    """A pid in the rank's block by the role the first event shows: block + 1 the host, + 10 + d
    GPU d, + 500 on the rest, so that the numbers sort like the names. torch 2.13 writes the process
    metadata first, 2.11 last, so a small pid other than the host's counts as a GPU here; the names
    and the sort index, written after the events, come from everything seen."""
    taken = set(pids.values())
    role = _role(pid, host_pid, process_meta, gpu_pids)[0]
    if role == 500 and isinstance(pid, int) and 0 <= pid < 490 and pid != host_pid:
        role = 10 + pid
    new = block + role if role < 500 else block + 500
    while new in taken:
        new += 1
    if new >= block + PID_BLOCK:
        raise DdlprofError(f"{path}: too many processes in one trace (at most {PID_BLOCK // 2})")
    return new


def _role(
    pid: Any, host_pid: Any, process_meta: dict[Any, dict[str, Any]], gpu_pids: set[Any]
) -> tuple[int, str]:
    """Sort key of a process within its rank: host CPU, then GPUs by device, then the rest."""
    label = str((process_meta.get(pid, {}).get("process_labels") or {}).get("labels", ""))
    if pid == host_pid or (label == "CPU" and pid not in gpu_pids):
        return (1, "")
    gpu = _GPU_LABEL.match(label)
    if gpu:
        return (10 + int(gpu.group(1)), "")
    if pid in gpu_pids and isinstance(pid, int):
        return (10 + pid, "")
    return (500, str(pid))


def _process_name(
    pid: Any, host_pid: Any, process_meta: dict[Any, dict[str, Any]], gpu_pids: set[Any], log: RankLog
) -> tuple[int, str]:
    role = _role(pid, host_pid, process_meta, gpu_pids)[0]
    if role == 1:
        return role, f"CPU ({log.meta.get('host', 'host')})"
    if role < 500:
        return role, f"GPU {role - 10}"
    if isinstance(pid, str):  # Kineto's own "Spans", "Traces" and ""
        return role, pid or "profiler"
    kineto = (process_meta.get(pid, {}).get("process_name") or {}).get("name")
    return role, f"{kineto} (pid {pid})" if kineto else f"pid {pid}"


def _us(unix_s: float, base: int) -> float:
    """Unix seconds as ``ts`` against ``base`` (ns): whole seconds and nanoseconds apart, so that no
    float of 1e9 seconds is subtracted (that alone costs up to 0.2 us)."""
    whole = int(unix_s // 1)
    base_s, base_ns = divmod(base, 1_000_000_000)
    return round((whole - base_s) * 1e6 + (unix_s - whole) * 1e6 - base_ns / 1e3, 3)


def _ddlprof_events(
    log: RankLog,
    pid: int,
    window: tuple[int, int],
    base: int,
    rows: dict[tuple[int, int], dict[str, Any]],
    writer: _Writer,
) -> int:
    """The rank's ddlprof process: a step marker and a counter sample per step of the window and the
    step before and after it; returns how many markers and samples (not metadata) it wrote."""
    from ddlprof.runs.breakdown import CATEGORIES

    first, last = window
    name = f"rank {log.rank} ddlprof"
    events: list[dict[str, Any]] = [
        {"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": name}},
        {"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "args": {"sort_index": pid}},
        {"ph": "M", "name": "thread_name", "pid": pid, "tid": 0, "args": {"name": "steps"}},
    ]
    shown = [
        s
        for s in log.steps
        if first - 1 <= int(s.get("step", 0)) <= last + 1
        and isinstance(s.get("start"), (int, float))
        and isinstance(s.get("end"), (int, float))
    ]
    keys: list[str] = []
    for step in shown:
        n = int(step["step"])
        row = rows.get((log.rank, n), {})
        values = {k: row[k] for k in CATEGORIES if row.get(k) is not None}
        keys = keys or list(values)
        ts = _us(step["start"], base)
        args = {
            "step": n,
            "step_ms": step.get("step_ms"),
            **{k: row.get(k) for k in CATEGORIES},
            "traced": bool(step.get("traced")),
            "in_window": first <= n <= last,
        }
        events.append(
            {
                "ph": "X",
                "cat": STEP_CAT,
                "name": f"ddlprof step {n}",
                "pid": pid,
                "tid": 0,
                "ts": ts,
                "dur": round((step["end"] - step["start"]) * 1e6, 3),
                "args": args,
            }
        )
        events.append(
            {"ph": "C", "cat": STEP_CAT, "name": COUNTER, "pid": pid, "tid": 0, "ts": ts, "args": values}
        )
    if shown and keys:
        end = _us(shown[-1]["end"], base)
        events.append(
            {
                "ph": "C",
                "cat": STEP_CAT,
                "name": COUNTER,
                "pid": pid,
                "tid": 0,
                "ts": end,
                "args": dict.fromkeys(keys, 0),
            }
        )
    for event in events:
        writer.add(event)
    return len(events) - 3


def _marker_offset(log: RankLog, first: int, marker: float | None, base: int) -> float | None:
    step = next((s for s in log.steps if s.get("step") == first), None)
    if marker is None or step is None or not isinstance(step.get("start"), (int, float)):
        return None
    return round((marker - _us(step["start"], base)) / 1e3, 3)


def _link(part: Path, out: Path) -> None:
    """``part`` becomes ``out``, which must not exist (checked again here, atomically where the file
    system has hard links)."""
    try:
        os.link(part, out)
    except FileExistsError:
        raise DdlprofError(f"--merge {out}: exists; not overwritten (choose another name)") from None
    except OSError:  # no hard links here
        if out.exists():
            raise DdlprofError(f"--merge {out}: exists; not overwritten (choose another name)") from None
        os.replace(part, out)


def _ranges(ranks: list[int]) -> str:
    text = runs_of(ranks, sep=", ")
    return f"rank {text}" if len(ranks) == 1 else f"ranks {text}"
