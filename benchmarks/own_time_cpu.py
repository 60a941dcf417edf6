"""ddlprof's own host time per step on the CPU example (2 gloo ranks), as the CI guard measures it
(tests/test_overhead_guard.py): several wrapped launches, each run's ``ddlprof_overhead``.

    python benchmarks/own_time_cpu.py --launches 5 --out benchmarks/results/cpu/own_time_gloo.json
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--launches", type=int, default=5)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    from ddlprof.runs.rundir import load_run
    from ddlprof.runs.summary import summarize

    bin_dir = Path(sys.executable).parent
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.launches):
            run = Path(tmp) / f"run{i}"
            job = [
                str(bin_dir / "torchrun"),
                "--standalone",
                "--nproc_per_node=2",
                str(REPO / "examples/ddp_train.py"),
            ]
            command = [
                sys.executable,
                "-m",
                "ddlprof",
                "wrap",
                "--trace-steps",
                "0",
                "--out",
                str(run),
                "--",
                *job,
            ]
            subprocess.run([*command, "--steps", str(args.steps)], check=True, capture_output=True, env={
                "OMP_NUM_THREADS": "1", "PATH": f"{bin_dir}:/usr/bin:/bin"})  # fmt: skip
            summary = summarize([load_run(run)])
            rows.append({"step_ms": summary["job"]["step_ms"], **summary["ddlprof_overhead"]})
            print(rows[-1], flush=True)
    own = sorted(r["own_ms_per_step"] for r in rows)
    result = {
        "command": " ".join(["python", "benchmarks/own_time_cpu.py", *sys.argv[1:]]),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        "own_ms_per_step": {"min": own[0], "median": own[len(own) // 2], "max": own[-1]},
        "launches": rows,
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["own_ms_per_step"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
