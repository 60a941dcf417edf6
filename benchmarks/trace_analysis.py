"""ddlprof analyze against HolisticTraceAnalysis (HTA) on the same traces: wall time, peak memory,
and the communication/computation overlap each reports per rank.

Each tool runs in its own interpreter (HTA pulls in jupyterlab, so it lives in a venv of its own),
timed from the outside; peak memory is that of the whole process tree (ddlprof's worker processes
included), the largest sum of the resident set sizes of the tool's processes, sampled every 20 ms.
Without --hta-python only ddlprof runs. Large inputs: benchmarks/replicate_trace.py.

    python benchmarks/trace_analysis.py TRACE_DIR [--hta-python /path/to/hta-venv/bin/python] [--out FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

DDLPROF = """
import json, os, sys
from pathlib import Path
from ddlprof.profiler.trace_analysis import analyze
result = analyze([Path(sys.argv[1])])
if os.environ.get("KEEP_RESULT"):
    Path(os.environ["KEEP_RESULT"]).write_text(json.dumps(result))
print(json.dumps({str(r["rank"]): r["overlap_pct"] for r in result["ranks"]}))
"""
PER_STEP = ("step_ms", "compute_ms", "exposed_comm_ms", "memory_ms", "idle_ms", "comm_ms", "data_loader_ms")

HTA = """
import json, sys, logging
logging.disable(logging.WARNING)
from hta.trace_analysis import TraceAnalysis
analysis = TraceAnalysis(trace_dir=sys.argv[1])
overlap = analysis.get_comm_comp_overlap(visualize=False)
analysis.get_temporal_breakdown(visualize=False)
print(json.dumps({str(int(r)): float(p) for r, p in zip(overlap["rank"], overlap["comp_comm_overlap_pctg"])}))
"""


def run(python: str, code: str, trace_dir: Path, env: dict[str, str] | None = None) -> dict:
    started = time.perf_counter()
    child = subprocess.Popen(
        [python, "-c", code, str(trace_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    peak = 0
    tree = psutil.Process(child.pid)
    while child.poll() is None:
        peak = max(peak, _tree_rss(tree))
        time.sleep(0.02)
    wall = time.perf_counter() - started
    out, err = child.communicate()
    if child.returncode:
        raise SystemExit(f"{python} failed ({child.returncode}): {err[-2000:]}")
    return {
        "wall_s": round(wall, 3),
        "peak_tree_rss_mib": round(peak / 2**20, 1),
        "overlap_pct": json.loads(out.strip().splitlines()[-1]),
    }


def _tree_rss(process: psutil.Process) -> int:
    """Resident memory of a process and all its descendants now (0 for one that just ended)."""
    total = 0
    with contextlib.suppress(psutil.Error):
        for one in [process, *process.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += one.memory_info().rss
    return total


def same_as(result: dict, original: dict) -> dict:
    """How far each window's per-step numbers are from the original trace's (replicated copies: the
    k-th step of each window against the k-th step of the original), largest difference in ms."""

    def by_rank(rows: list[dict], steps: list[int]) -> dict[int, list[dict]]:
        out: dict[int, list[dict]] = {}
        for row in sorted((r for r in rows if r["step"] in steps), key=lambda r: r["step"]):
            out.setdefault(row["rank"], []).append(row)
        return out

    reference = by_rank(original["per_step"], original["steps"])
    worst = 0.0
    for window in result["windows"]:
        first, last = window["steps"]
        copy = by_rank(result["per_step"], list(range(first, last + 1)))
        for rank, rows in reference.items():
            if len(copy.get(rank, [])) != len(rows):
                raise SystemExit(f"window {first}-{last}, rank {rank}: {len(copy.get(rank, []))} steps")
            for a, b in zip(copy[rank], rows, strict=True):
                worst = max(worst, *(abs(a[k] - b[k]) for k in PER_STEP))
    return {"windows": len(result["windows"]), "max_abs_diff_ms": worst}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("trace_dir", type=Path)
    parser.add_argument(
        "--hta-python", help="a Python with HolisticTraceAnalysis installed (else ddlprof only)"
    )
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--same-as",
        type=Path,
        metavar="DIR",
        help="the traces replicated into TRACE_DIR: compare every copy's steps",
    )
    args = parser.parse_args()
    files = sorted(p for p in args.trace_dir.iterdir() if p.name.endswith((".json", ".json.gz")))
    load = psutil.getloadavg()[0]  # other work on the machine slows both tools
    kept = Path(tempfile.mkstemp(suffix=".json")[1])
    ddlprof = run(sys.executable, DDLPROF, args.trace_dir, {"KEEP_RESULT": str(kept)})
    result = {
        "trace_dir": str(args.trace_dir),
        "files": {p.name: p.stat().st_size for p in files},
        "cpu_count": psutil.cpu_count(),
        "load_avg_1m_before": round(load, 2),
        "ddlprof": ddlprof,
    }
    if args.same_as:
        from ddlprof.profiler.trace_analysis import analyze

        result["same_as_original"] = same_as(json.loads(kept.read_text()), analyze([args.same_as]))
    kept.unlink()
    if args.hta_python:
        hta = run(args.hta_python, HTA, args.trace_dir)
        result |= {
            "hta": hta,
            "speedup": round(hta["wall_s"] / ddlprof["wall_s"], 2),
            "overlap_diff_pp": {
                r: round(ddlprof["overlap_pct"][r] - hta["overlap_pct"][r], 2) for r in hta["overlap_pct"]
            },
        }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
