"""Single-run attribution against differential ground truth (issue 3's validation).

Ground truth is the differential method on step times measured without ddlprof by
``benchmarks/collect_dataset.py`` (one launch per transport, models looped inside):
interconnect stall = t(DDP on one node) - t(one GPU), network stall = t(full) - t(one node), as %
of the full step, exactly the arithmetic of ``ddlprof stalls`` (which would need 2-3 launches per
model and transport: more than the device budget holds for 10 models x 2 batch sizes x 3 transports).

``run`` launches ``ddlprof wrap`` of ``examples/ddp_train.py`` once per model x batch x transport
and keeps ``ddlprof report --json`` of each (the single-run attribution); ``compare`` joins the two
and prints the errors in percentage points.

    python benchmarks/validate_attribution.py run --models resnet50,vgg16 --batch-sizes 32,64 \\
        --transports nvlink,pcie,socket --out attribution_runs.jsonl
    python benchmarks/validate_attribution.py compare attribution_runs.jsonl --dataset dataset.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "ddp_train.py"
SOCKETS = {"NCCL_P2P_DISABLE": "1", "NCCL_SHM_DISABLE": "1", "NCCL_SOCKET_IFNAME": "lo"}
TRANSPORTS = {"nvlink": {}, "pcie": {"NCCL_P2P_DISABLE": "1"}, "socket": SOCKETS}
JOB_KEYS = ("step_ms", "compute_ms", "interconnect_stall_ms", "network_stall_ms", "other_ms")


def run_one(model: str, batch: int, transport: str, args: argparse.Namespace, out: Path) -> dict:
    job = ["torchrun", "--standalone", f"--nproc_per_node={args.nproc}", str(EXAMPLE), "--model", model,
           "--batch-size", str(batch), "--steps", str(args.steps), "--synthetic"]  # fmt: skip
    wrap = [sys.executable, "-m", "ddlprof", "wrap", "--trace-steps", "0", "--out", str(out), "--", *job]
    env = {**os.environ, **TRANSPORTS[transport]}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    row: dict = {"model": model, "batch_per_gpu": batch, "transport": transport}
    started = time.monotonic()
    done = subprocess.run(wrap, capture_output=True, text=True, env=env, timeout=args.run_timeout)
    row["launch_s"] = round(time.monotonic() - started, 1)
    if done.returncode != 0:
        return {**row, "error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    report = subprocess.run(
        [sys.executable, "-m", "ddlprof", "report", "--json", "--warmup", str(args.warmup), str(out)],
        capture_output=True,
        text=True,
        env=env,
    )
    if report.returncode != 0:
        return {**row, "error": report.stderr.strip()}
    summary = json.loads(report.stdout)
    return {**row, "job": {k: summary["job"][k] for k in JOB_KEYS}, "reasons": summary["reasons"]}


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, args.out.open("a") as out:
        for model in args.models.split(","):
            for batch in map(int, args.batch_sizes.split(",")):
                for transport in args.transports.split(","):
                    if time.monotonic() - started > args.deadline_s:
                        print("deadline reached", flush=True)
                        return 0
                    row = run_one(model, batch, transport, args, Path(tmp) / f"{model}-{batch}-{transport}")
                    out.write(json.dumps(row) + "\n")
                    out.flush()
                    print(json.dumps(row), flush=True)
    return 0


def truth(dataset: list[Path]) -> dict[tuple[str, int, str], dict]:
    """Differential ground truth per (model, batch, transport) from collect_dataset.py rows."""
    rows = [r for path in dataset for r in csv.DictReader(path.open()) if r["step_ms"]]
    single = {
        (r["model"], int(r["batch_per_gpu"])): float(r["step_ms"]) for r in rows if r["mode"] == "single"
    }
    out = {}
    for r in rows:
        key = (r["model"], int(r["batch_per_gpu"]))
        if r["mode"] != "ddp" or key not in single or int(r["nodes"]) != 1:
            continue
        full = float(r["step_ms"])
        out[(*key, r["transport"])] = {
            "single_gpu_ms": single[key],
            "ddp_ms": full,
            "interconnect_pct": 100 * (full - single[key]) / full,
            "network_pct": 0.0,
        }
    return out


def compare(args: argparse.Namespace) -> int:
    truths = truth(args.dataset)
    rows = []
    for line in (line for path in args.runs for line in path.read_text().splitlines()):
        run = json.loads(line)
        key = (run["model"], run["batch_per_gpu"], run["transport"])
        if "error" in run or key not in truths:
            continue
        job, want = run["job"], truths[key]
        got = 100 * job["interconnect_stall_ms"] / job["step_ms"]
        rows.append({
            "model": key[0], "batch_per_gpu": key[1], "transport": key[2],
            "single_gpu_ms": round(want["single_gpu_ms"], 2), "ddp_ms": round(want["ddp_ms"], 2),
            "wrapped_step_ms": round(job["step_ms"], 2),
            "interconnect_truth_pct": round(want["interconnect_pct"], 2),
            "interconnect_single_run_pct": round(got, 2),
            "interconnect_error_pp": round(got - want["interconnect_pct"], 2),
        })  # fmt: skip
    errors = [abs(r["interconnect_error_pp"]) for r in rows]
    summary = {
        "configs": len(rows),
        "interconnect_mae_pp": round(statistics.fmean(errors), 2) if errors else None,
        "interconnect_worst_pp": max(errors, default=None),
        "network": "single-node configurations only: network stall is 0 by construction on both sides",
    }
    for r in rows:
        print(json.dumps(r))
    print(json.dumps(summary, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps({"rows": rows, "summary": summary}, indent=2) + "\n")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    runner = commands.add_parser("run", help="wrapped launches, one per model x batch x transport")
    runner.add_argument("--models", default="resnet50")
    runner.add_argument("--batch-sizes", default="32,64")
    runner.add_argument("--transports", default="nvlink,pcie,socket")
    runner.add_argument("--nproc", type=int, default=2)
    runner.add_argument("--steps", type=int, default=30)
    runner.add_argument("--warmup", type=int, default=10, help="steps report drops")
    runner.add_argument("--run-timeout", type=float, default=180)
    runner.add_argument("--deadline-s", type=float, default=1e9, help="start no launch after this")
    runner.add_argument("--out", type=Path, required=True, help="JSON lines, appended to")
    checker = commands.add_parser("compare", help="errors against the differential ground truth")
    checker.add_argument("runs", type=Path, nargs="+", help="the JSON lines of `run`")
    checker.add_argument(
        "--dataset", type=Path, nargs="+", required=True, help="CSV files of collect_dataset.py"
    )
    checker.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    return run(args) if args.command == "run" else compare(args)


if __name__ == "__main__":
    sys.exit(main())
