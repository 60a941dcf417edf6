"""Wait for peers vs wire on a real gloo job, in ``ddlprof report`` and ``ddlprof analyze`` (issue 18,
point 3; CPU).

``examples/ddp_train.py`` (small_cnn, batch 4 per rank) under ``ddlprof wrap torchrun`` with 2 ranks
and a trace window, once with rank 0's DataLoader sleeping ``--delay-ms`` per step (spread over the
batch's samples) and once with no rank slowed, ``--repeats`` times each, interleaved. For each run:
per rank the exposed communication, its wait for the last rank and its wire time from the report
(steps outside the trace window, after the warm-up) and from analyze (the traced steps), and who the
wait is charged to, with its reason.

    python benchmarks/peer_wait_check.py --out /tmp/peer-wait \\
        --json-out benchmarks/results/cpu/peer_wait_check.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "ddp_train.py"
BATCH = 4


def _ddlprof(*args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DDLPROF_NO_STORE": "1"}
    done = subprocess.run([sys.executable, "-m", "ddlprof", *args], capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"ddlprof {args[0]} failed: {done.stderr[-2000:]}")
    return done.stdout


def _rows(result: dict[str, Any], exposed_key: str | None) -> list[dict[str, Any]]:
    out = []
    for row in result["ranks"]:
        wait = row["wait_for_peers_ms"]
        exposed = row[exposed_key] if exposed_key else (wait or 0.0) + (row["wire_ms"] or 0.0)
        out.append(
            {
                "rank": row["rank"],
                "step_ms": round(row["step_ms"], 2),
                "exposed_ms": round(exposed, 2),
                "wait_ms": None if wait is None else round(wait, 2),
                "wire_ms": None if row["wire_ms"] is None else round(row["wire_ms"], 2),
                "wait_pct_of_exposed": round(100 * wait / exposed, 1)
                if wait is not None and exposed
                else None,
            }
        )
    return out


def one_run(out: Path, delay_ms: float, steps: int, window: str, warmup: int) -> dict[str, Any]:
    load = os.getloadavg()[0]
    slow = ["--data-delay-ms", str(delay_ms / BATCH), "--data-delay-ranks", "0"] if delay_ms else []
    example = [str(EXAMPLE), "--model", "small_cnn", "--batch-size", str(BATCH), "--steps", str(steps), *slow]
    _ddlprof("wrap", "--out", str(out), "--trace-steps", window, "--", "torchrun", "--nproc_per_node=2",
             "--standalone", *example)  # fmt: skip
    report = json.loads(_ddlprof("report", "--json", "--no-store", "--warmup", str(warmup), str(out)))
    traced = json.loads(_ddlprof("analyze", "--json", str(out / "traces")))
    return {
        "delay_ms_rank0": delay_ms,
        "load_average_1m_before": round(load, 2),
        "report": {
            "steady_steps": report["steps"]["steady_per_rank"],
            "ranks": _rows(report, None),
            "job_interconnect_stall_ms": round(report["job"]["interconnect_stall_ms"], 2),
            "job_wait_for_peers_ms": round(report["job"]["wait_for_peers_ms"], 2),
            "charged": report["wait_charged_to"],
        },
        "analyze": {
            "steps": traced["steps"],
            "ranks": _rows(traced, "exposed_comm_ms"),
            "job_wait_for_peers_ms": round(traced["job"]["wait_for_peers_ms"], 2),
            "charged": traced["wait_charged_to"],
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for the run directories")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--delay-ms", type=float, default=30.0, help="rank 0's DataLoader sleep per step")
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--trace-steps", default="10-12")
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    runs = []
    for repeat in range(args.repeats):
        for delay in (args.delay_ms, 0.0):
            name = f"{'slow' if delay else 'even'}-{repeat}"
            runs.append(
                {"run": name, **one_run(args.out / name, delay, args.steps, args.trace_steps, args.warmup)}
            )
            print(json.dumps(runs[-1]), flush=True)
    result = {"command": sys.argv, "load_average_after": [round(x, 2) for x in os.getloadavg()], "runs": runs}
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
