"""Single-run attribution against differential ground truth (issue 3's validation).

For every model x batch size x transport it runs ``ddlprof stalls --json`` once: the differential
variants give the ground truth (interconnect = t(one node) - t(one GPU), network = t(full) -
t(one node), % of the full step), and ``ddlprof report`` of the same full-variant runs gives the
single-run attribution. Prints a table and the mean absolute and worst errors in percentage points.

Transports (../shared/TESTBED.md): ``nvlink`` (NCCL's default), ``pcie`` (peer-to-peer off),
``socket`` (all traffic over NCCL's socket transport on loopback), ``2nodes`` (the GPUs split into 2
emulated nodes: NVLink inside, sockets between).

    python benchmarks/validate_attribution.py --models resnet50,vgg16 --batch-sizes 32,64 \\
        --transports nvlink,pcie,socket --nproc 2 --out results.json
    python benchmarks/validate_attribution.py --transports 2nodes --nproc 4 ...   # needs 4 GPUs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "ddp_train.py"
TRANSPORTS = {
    "nvlink": ([], {}),
    "pcie": (["--emulate-pcie"], {}),
    "socket": ([], {"NCCL_P2P_DISABLE": "1", "NCCL_SHM_DISABLE": "1", "NCCL_SOCKET_IFNAME": "lo"}),
    "2nodes": (["--emulate-nodes", "2"], {}),
}


def run_config(model: str, batch: int, transport: str, args: argparse.Namespace, out: Path) -> dict:
    options, env = TRANSPORTS[transport]
    job = [
        "torchrun",
        f"--nproc_per_node={args.nproc}",
        str(EXAMPLE),
        "--model",
        model,
        "--batch-size",
        str(batch),
    ]
    if args.synthetic:
        job.append("--synthetic")
    cmd = [
        sys.executable,
        "-m",
        "ddlprof",
        "stalls",
        "--json",
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--repeats",
        str(args.repeats),
        "--out",
        str(out),
        *options,
        "--",
        *job,
    ]
    pythonpath = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    done = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, **env, "PYTHONPATH": pythonpath}
    )
    row = {"model": model, "batch_per_gpu": batch, "transport": transport}
    if done.returncode != 0:
        return {**row, "error": done.stderr.strip().splitlines()[-1:]}
    result = json.loads(done.stdout)
    single = result.get("single_run") or {}
    for key in ("interconnect", "network"):
        truth = result[f"{key}_stall"]
        row[f"{key}_truth_pct"] = truth["pct_of_step"] if truth else (0.0 if key == "network" else None)
        row[f"{key}_single_pct"] = single.get(f"{key}_stall_pct")
        if row[f"{key}_truth_pct"] is not None and row[f"{key}_single_pct"] is not None:
            row[f"{key}_error_pp"] = abs(row[f"{key}_single_pct"] - row[f"{key}_truth_pct"])
    row["variants_ms"] = {name: v["step_ms"] for name, v in result["variants"].items()}
    return row


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="resnet50")
    parser.add_argument("--batch-sizes", default="32,64")
    parser.add_argument("--transports", default="nvlink,pcie,socket")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--synthetic", action="store_true", help="data on the GPU: no DataLoader")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            for batch in map(int, args.batch_sizes.split(",")):
                for transport in args.transports.split(","):
                    out = Path(tmp) / f"{model}-{batch}-{transport}"
                    rows.append(run_config(model, batch, transport, args, out))
                    print(json.dumps(rows[-1]), flush=True)
    errors = [r[k] for r in rows for k in ("interconnect_error_pp", "network_error_pp") if k in r]
    summary = {
        "configs": len(rows),
        "failed": sum("error" in r for r in rows),
        "mae_pp": sum(errors) / len(errors) if errors else None,
        "worst_pp": max(errors, default=None),
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(
            json.dumps(
                {"args": vars(args) | {"out": str(args.out)}, "rows": rows, "summary": summary}, indent=2
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
