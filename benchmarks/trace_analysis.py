"""ddlprof analyze against HolisticTraceAnalysis (HTA) on the same traces: wall time, peak memory,
and the communication/computation overlap each reports per rank.

Each tool runs in its own interpreter (HTA pulls in jupyterlab, so it lives in a venv of its own),
timed from the outside; peak memory is the child's maximum resident set size.

    python benchmarks/trace_analysis.py TRACE_DIR --hta-python /path/to/hta-venv/bin/python [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

DDLPROF = """
import json, sys
from pathlib import Path
from ddlprof.profiler.trace_analysis import analyze
result = analyze([Path(sys.argv[1])])
print(json.dumps({str(r["rank"]): r["overlap_pct"] for r in result["ranks"]}))
"""

HTA = """
import json, sys, logging
logging.disable(logging.WARNING)
from hta.trace_analysis import TraceAnalysis
analysis = TraceAnalysis(trace_dir=sys.argv[1])
overlap = analysis.get_comm_comp_overlap(visualize=False)
analysis.get_temporal_breakdown(visualize=False)
print(json.dumps({str(int(r)): float(p) for r, p in zip(overlap["rank"], overlap["comp_comm_overlap_pctg"])}))
"""


def run(python: str, code: str, trace_dir: Path) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    done = subprocess.run([python, "-c", code, str(trace_dir)], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "wall_s": round(wall, 3),
        "peak_rss_mib": round(max(peak_kib, before) / 1024, 1),
        "overlap_pct": json.loads(done.stdout.strip().splitlines()[-1]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("trace_dir", type=Path)
    parser.add_argument("--hta-python", required=True, help="a Python with HolisticTraceAnalysis installed")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    files = sorted(p for p in args.trace_dir.iterdir() if p.name.endswith((".json", ".json.gz")))
    ddlprof = run(sys.executable, DDLPROF, args.trace_dir)  # first, so the peak RSS is its own
    hta = run(args.hta_python, HTA, args.trace_dir)
    result = {
        "trace_dir": str(args.trace_dir),
        "files": {p.name: p.stat().st_size for p in files},
        "ddlprof": ddlprof,
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
