"""Count py-spy's samples of a training process per thread, and those with a ddlprof frame (issue 12).

Reads ``py-spy record --threads --format raw`` files (one line per distinct stack: ``thread (TID):
NAME;frame;...;frame COUNT``, frames as ``function (file:line)``), as
``benchmarks/gpu_pyspy_overhead.sh`` writes them, named ``pyspy_<job>_<variant>_<round>.txt``. Per
file and thread: the on-CPU samples, their share of the recording (``--rate`` x ``--duration``
samples per thread that never stops running), and ddlprof's samples (``is_ours``: ddlprof's code,
and what it calls, but not the job's code under ddlprof's wrappers); for those, the innermost
ddlprof function of each, and the innermost frame of all (with ``--native`` a C function: waiting for
the GIL, ``take_gil``, or in the CUDA driver). Recorded with ``--idle``, every thread has a sample at
every tick, so the shares are of wall time, waits included, not of time on a CPU. A variant whose main
thread runs more than the unwrapped one by more than ddlprof's own frames account for points at a cost
outside ddlprof's code (in torch, the driver or the interpreter, caused by it).

    python benchmarks/pyspy_share.py OUT/pyspy_plain_*.txt --rate 250 --duration 10 --out share.json
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any

OURS = re.compile(r"\(ddlprof/|/ddlprof/")  # a frame of the ddlprof package (relative or absolute path)
THREAD = re.compile(r"^thread \((\d+)\)(?:: (.*))?$")
#: ddlprof's wrappers around the job's own code (a DDP forward, a DataLoader next(), a comm hook, a
#: dataset fetch, torch's import): a sample below one of them, in the job's code, is the job's time.
WRAPPERS = frozenset(
    ("forward", "__init__", "register_comm_hook", "timed_hook", "__next__", "_reset", "_process_data",
     "fetch", "_next_data", "__iter__", "exec_module")
)  # fmt: skip


def is_ours(frames: list[str]) -> tuple[bool, str]:
    """Whether a stack (outermost first) is ddlprof's time, and ddlprof's innermost function: a
    ddlprof frame that is the innermost, or that called into other code itself; not a wrapper's frame
    with the job's code running below it."""
    found = [i for i, frame in enumerate(frames) if OURS.search(frame)]
    if not found:
        return False, ""
    function = frames[found[-1]].split(" (")[0]
    below = found[-1] < len(frames) - 1
    return not (below and function.rsplit(".", 1)[-1] in WRAPPERS), function


def parse(path: Path) -> dict[str, dict[str, Any]]:
    """Per thread ("MainThread" or "thread TID"): samples, ddlprof's samples, ddlprof's functions.
    py-spy names a thread on some of its lines only, so lines are joined by thread id first."""
    by_tid: dict[str, dict[str, Any]] = {}
    names: dict[str, str] = {}
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()  # committed: .gz
    for line in raw.decode(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        head, *frames = stack.split(";")
        match = THREAD.match(head)
        if match is None:
            continue
        tid = match.group(1)
        if match.group(2):
            names[tid] = match.group(2)
        row = by_tid.setdefault(tid, {"samples": 0, "ddlprof": 0})
        row.setdefault("functions", collections.Counter())
        row.setdefault("innermost", collections.Counter())
        count = int(count_text)
        row["samples"] += count
        ours, function = is_ours(frames)
        if ours:
            row["ddlprof"] += count
            row["functions"][function] += count
            row["innermost"][frames[-1]] += count
    return {names.get(tid, f"thread {tid}"): row for tid, row in by_tid.items()}


def shares(thread: dict[str, Any], full: float) -> dict[str, Any]:
    return {
        "busy_pct": round(100 * thread["samples"] / full, 2),
        "ddlprof_pct": round(100 * thread["ddlprof"] / full, 3),
        "ddlprof_functions": dict(thread["functions"].most_common(8)),
        "ddlprof_innermost": dict(thread["innermost"].most_common(6)),
    }


def busiest(item: tuple[str, dict[str, Any]]) -> int:
    return -item[1]["samples"]


def variant_of(path: Path) -> tuple[str, str]:
    """(job, variant) from ``pyspy_<job>_<variant>_<round>.txt``."""
    parts = path.stem.split("_")
    return (parts[1], parts[2]) if len(parts) >= 4 else (path.stem, "")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("files", type=Path, nargs="+")
    parser.add_argument("--rate", type=float, required=True, help="py-spy's --rate (samples per second)")
    parser.add_argument("--duration", type=float, required=True, help="py-spy's --duration (s)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    full = args.rate * args.duration
    launches = []
    for path in args.files:
        job, variant = variant_of(path)
        threads = parse(path)
        main_thread = threads.get(
            "MainThread", {"samples": 0, "ddlprof": 0, "functions": collections.Counter()}
        )
        launches.append({
            "file": path.name, "job": job, "variant": variant,
            "main_busy_pct": round(100 * main_thread["samples"] / full, 2),
            "main_ddlprof_pct": round(100 * main_thread["ddlprof"] / full, 3),
            "threads": {name: shares(t, full) for name, t in sorted(threads.items(), key=busiest)},
        })  # fmt: skip
    by_variant: dict[str, Any] = {}
    for key in sorted({(r["job"], r["variant"]) for r in launches}):
        mine = [r for r in launches if (r["job"], r["variant"]) == key]
        by_variant[" ".join(key)] = {
            "launches": len(mine),
            "median_main_busy_pct": round(statistics.median(r["main_busy_pct"] for r in mine), 2),
            "median_main_ddlprof_pct": round(statistics.median(r["main_ddlprof_pct"] for r in mine), 3),
        }
    report = {"command": " ".join(["python", *sys.argv]), "by_variant": by_variant, "launches": launches}
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(json.dumps(by_variant, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
