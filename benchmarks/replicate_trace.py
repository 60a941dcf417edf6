"""Make a large Kineto trace from a small real one: copies of its events one after the other, each
shifted in time (by the trace's span plus a gap), in step numbers (``ProfilerStep#N``) and in ids
(correlation, External id, flow ids), so that every copy is a profiling window of its own with the
same per-step numbers as the original. For ``ddlprof analyze`` at any size (issue 21).

    python benchmarks/replicate_trace.py SOURCE.pt.trace.json.gz OUT.pt.trace.json --size-gb 1
    python benchmarks/replicate_trace.py SOURCE OUT --copies 2 --mark-steps-at "enumerate(DataLoader)"

``--mark-steps-at NAME`` first marks steps in a trace profiled without them (the 2 x H200 resnet50
traces of ``benchmarks/results/gpu-2xh200/runs.tgz``): a ``ProfilerStep#N`` range on the thread that
runs the first op named NAME, from each such op to the next, the last one to the end of the thread's
last ``Optimizer.step`` (``--last-step-ends-at``).
"""

from __future__ import annotations

import argparse
import copy
import gzip
import itertools
import json
import math
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

_STEP = re.compile(r"^ProfilerStep#(\d+)$")
_IDS = ("correlation", "External id")


def load(path: Path) -> dict[str, Any]:
    with gzip.open(path, "rt") if path.suffix == ".gz" else path.open() as file:
        return json.load(file)


def mark_steps(trace: dict[str, Any], at: str, last_ends_at: str, first_step: int = 1) -> None:
    """Add ProfilerStep#N ranges (user_annotation), one from each op whose name starts with ``at``; the
    last one ends where the thread's last op named ``last_ends_at`` ends."""
    events = trace["traceEvents"]
    starts = sorted((e for e in events if e.get("ph") == "X" and str(e.get("name", "")).startswith(at)),
                    key=lambda e: e["ts"])  # fmt: skip
    if not starts:
        raise SystemExit(f"no op named {at}* to mark steps at")
    pid, tid = starts[0].get("pid"), starts[0].get("tid")
    ends = [e for e in events if e.get("tid") == tid and str(e.get("name", "")).startswith(last_ends_at)]
    end = max(e["ts"] + e.get("dur", 0) for e in ends)
    bounds = [e["ts"] for e in starts if e.get("tid") == tid] + [end]
    marks = [
        {"ph": "X", "cat": "user_annotation", "name": f"ProfilerStep#{first_step + i}", "pid": pid,
         "tid": tid, "ts": a, "dur": b - a, "args": {}}
        for i, (a, b) in enumerate(itertools.pairwise(bounds))
    ]  # fmt: skip
    trace["traceEvents"] = marks + events  # Kineto writes a thread's ops in order of their start


def extent(events: list[dict[str, Any]]) -> tuple[float, float, int, int, int]:
    """Time span, first and last step number, and the largest id among the events."""
    timed = [e for e in events if isinstance(e.get("ts"), (int, float))]
    first = min(e["ts"] for e in timed)
    last = max(e["ts"] + (e.get("dur") or 0) for e in timed)
    steps = [int(m.group(1)) for e in events if (m := _STEP.match(str(e.get("name", ""))))]
    ids = [e["args"][k] for e in events for k in _IDS if isinstance((e.get("args") or {}).get(k), int)]
    ids += [e["id"] for e in events if isinstance(e.get("id"), int)]
    return first, last, min(steps, default=0), max(steps, default=0), max(ids, default=0)


def shifted(
    events: list[dict[str, Any]], dt: float, dstep: int, did: int, steps: bool = True
) -> Iterator[dict]:
    """The events moved by dt us, dstep steps and did ids; without steps, less their step marks (the
    work of a step done outside any step, as in an evaluation pass)."""
    for event in events:
        name = str(event.get("name", ""))
        match = _STEP.match(name)
        if match and not steps:
            continue
        out = copy.copy(event)
        if isinstance(out.get("ts"), (int, float)):
            out["ts"] = out["ts"] + dt
        if match:
            out["name"] = f"ProfilerStep#{int(match.group(1)) + dstep}"
        if isinstance(out.get("id"), int):
            out["id"] += did
        args = out.get("args")
        if isinstance(args, dict) and any(isinstance(args.get(k), int) for k in _IDS):
            out["args"] = {**args, **{k: args[k] + did for k in _IDS if isinstance(args.get(k), int)}}
        yield out


def write(trace: dict[str, Any], parts: Iterator[Iterator[dict]], out: Path) -> None:
    """The header of the source, then the events of every part, streamed (never all in memory)."""
    with gzip.open(out, "wt", compresslevel=1) if out.suffix == ".gz" else out.open("w") as file:
        _write(file, trace, parts)


def _write(file: IO[str], trace: dict[str, Any], parts: Iterator[Iterator[dict]]) -> None:
    file.write("{\n")
    for key, value in trace.items():
        if key != "traceEvents":
            file.write(f"{json.dumps(key)}: {json.dumps(value)},\n")
    file.write('"traceEvents": [\n')
    sep = ""
    for part in parts:
        for event in part:
            file.write(sep + json.dumps(event))
            sep = ",\n"
    file.write("\n]}\n")


def copies_of(trace: dict[str, Any], copies: int, gap_us: float) -> Iterator[Iterator[dict]]:
    events = trace["traceEvents"]
    first, last, low, high, top_id = extent(events)
    for k in range(copies):
        yield shifted(events, k * (last - first + gap_us), k * (high - low + 10), k * (top_id + 1))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--copies", type=int)
    size.add_argument("--size-gb", type=float, help="copies enough for about this much JSON")
    parser.add_argument("--gap-ms", type=float, default=50.0, help="time between copies (default 50)")
    parser.add_argument("--mark-steps-at", metavar="NAME", help="first mark steps at each op named NAME*")
    parser.add_argument("--last-step-ends-at", metavar="NAME", default="Optimizer.step")
    args = parser.parse_args()
    trace = load(args.source)
    if args.mark_steps_at:
        mark_steps(trace, args.mark_steps_at, args.last_step_ends_at)
    copies = args.copies
    if copies is None:
        one = sum(len(json.dumps(e)) + 2 for e in trace["traceEvents"])
        copies = max(1, math.ceil(args.size_gb * 1e9 / one))
    write(trace, copies_of(trace, copies, args.gap_ms * 1e3), args.out)
    print(json.dumps({"out": str(args.out), "copies": copies, "bytes": args.out.stat().st_size}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
