"""The network stall on emulated links of known rate, three ways (issue 18, point 2; CPU, gloo).

For every model x link rate, one ``ddlprof stalls --emulate-nodes 2 --emulate-link RATE`` of
``examples/ddp_train.py`` on 2 emulated nodes x 2 ranks, each node in its own network namespace
(needs root), gives:

- the differential truth: ``t(full) - t(one node)``, in % of the full step;
- the single-run split of ``ddlprof report`` on the same full runs (probe + ring cost model);
- ``ddlprof model predict``'s network term (learned and baseline model) for the same job, from the
  link's nominal rate (the ring's bottleneck is the link between the nodes, so its bus bandwidth is
  RATE / 8 bytes per second), the loopback bandwidth the probe measured inside a node, and the
  measured one-rank step; in % of the measured full step.

The models are ``examples/ddp_train.py``'s MLPs (``mlp_wWIDTH``), whose gradient size is a knob and
whose compute on a CPU is small beside it; their factories below let ``model predict`` build them
(``--model benchmarks/netem_validation.py:mlp_w1024``).

    python benchmarks/netem_validation.py --out /tmp/netem \\
        --json-out benchmarks/results/cpu/netem_validation.json

On a CPU machine the ranks share its cores: the full variant runs twice the processes of the
one-node variant, and any compute slowdown from that lands in the differential "network" stall.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from functools import cache
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "ddp_train.py"
WIDTHS = (512, 1024, 2048)
RATES = ("500mbit", "2gbit", "10gbit")
RATE_BPS = {"500mbit": 5e8, "2gbit": 2e9, "10gbit": 1e10}


@cache
def _example() -> Any:
    spec = importlib.util.spec_from_file_location("ddp_train_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def mlp_w512() -> Any:
    return _example().mlp(512, 10)


def mlp_w1024() -> Any:
    return _example().mlp(1024, 10)


def mlp_w2048() -> Any:
    return _example().mlp(2048, 10)


def _ddlprof(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "ddlprof", *args], capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"ddlprof {' '.join(args)} failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


def one(model: str, rate: str, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    out = args.out / f"{model}-{rate}"
    job = ["torchrun", "--nproc_per_node=4", str(EXAMPLE), "--model", model, "--batch-size", str(args.batch)]
    started = time.monotonic()
    stalls = _ddlprof(
        ["stalls", "--json", "--out", str(out), "--steps", str(args.steps), "--warmup", str(args.warmup),
         "--repeats", str(args.repeats), "--emulate-nodes", "2", "--emulate-link", rate, "--", *job],
        env,
    )  # fmt: skip
    seconds = time.monotonic() - started
    full_ms = stalls["variants"]["full"]["step_ms"]
    last = out / "full" / f"r{args.repeats - 1}"
    report = _ddlprof(["report", "--json", "--warmup", str(args.warmup), str(last)], env)
    probes = list(report["probes"].values())  # one per rank
    intra = statistics.median(p["intra"]["busbw_gbps"] for p in probes)
    full = statistics.median(p["full"]["busbw_gbps"] for p in probes)
    workload = report["workload"]
    predict = [
        "model", "predict", "--json", "--model", f"{Path(__file__).resolve()}:{model}",
        "--batch-per-gpu", str(args.batch), "--gpus-per-node", "2", "--nodes", "2",
        "--single-gpu-step-ms", str(stalls["variants"]["one_gpu"]["step_ms"]),
        "--intra-busbw-gbps", str(intra), "--inter-busbw-gbps", str(RATE_BPS[rate] / 8 / 1e9),
    ]  # fmt: skip
    predicted = {use: _ddlprof([*predict, "--use", use], env) for use in ("learned", "baseline")}
    truth = stalls["network_stall"]
    single = stalls["single_run"]
    return {
        "model": model,
        "grad_bytes": workload["grad_bytes"],
        "rate": rate,
        "rate_gbps": RATE_BPS[rate] / 1e9,
        "probe_full_busbw_gbps": full,
        "probe_intra_busbw_gbps": intra,
        "step_ms": {name: v["step_ms"] for name, v in stalls["variants"].items()},
        "repeats_ms": {name: v["repeats_ms"] for name, v in stalls["variants"].items()},
        "truth_ms": truth["ms"],
        "truth_pct": truth["pct_of_step"],
        "truth_spread_ms": truth["spread_ms"],
        "single_run_ms": single["network_stall_ms"],
        "single_run_pct": single["network_stall_pct"],
        **{f"predict_{use}_ms": p["network_stall_ms"] for use, p in predicted.items()},
        **{f"predict_{use}_pct": 100 * p["network_stall_ms"] / full_ms for use, p in predicted.items()},
        "seconds": round(seconds, 1),
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for key in ("single_run", "predict_learned", "predict_baseline"):
        errors = [r[f"{key}_pct"] - r["truth_pct"] for r in rows]
        out[key] = {
            "mean_abs_error_pp": statistics.fmean(abs(e) for e in errors),
            "mean_signed_error_pp": statistics.fmean(errors),
            "worst_error_pp": max(errors, key=abs),
        }
    return out


def table(rows: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    lines = [
        "| model (gradient) | link | full step ms | differential (truth) | single run (report) | "
        "predict (learned) | predict (baseline) | probe busbw GB/s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} ({r['grad_bytes'] / 1e6:.1f} MB) | {r['rate_gbps']:g} Gbit/s | "
            f"{r['step_ms']['full']:.1f} | {r['truth_ms']:.1f} ms ({r['truth_pct']:.1f}%) | "
            f"{r['single_run_ms']:.1f} ms ({r['single_run_pct']:.1f}%) | "
            f"{r['predict_learned_ms']:.1f} ms ({r['predict_learned_pct']:.1f}%) | "
            f"{r['predict_baseline_ms']:.1f} ms ({r['predict_baseline_pct']:.1f}%) | "
            f"{r['probe_full_busbw_gbps']:.3f} |"
        )
    labels = {
        "single_run": "single run",
        "predict_learned": "predict (learned)",
        "predict_baseline": "predict (baseline)",
    }
    for key, label in labels.items():
        s = summary[key]
        lines.append(
            f"\n{label} vs differential: mean absolute error {s['mean_abs_error_pp']:.1f} pp of the step "
            f"(signed {s['mean_signed_error_pp']:+.1f}), worst {s['worst_error_pp']:+.1f} pp"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="where the stalls runs go (must not exist)")
    parser.add_argument("--json-out", type=Path, help="raw results")
    parser.add_argument("--models", default=",".join(f"mlp_w{w}" for w in WIDTHS))
    parser.add_argument("--rates", default=",".join(RATES), help=f"comma-separated, of {', '.join(RATES)}")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16, help="samples per rank per step")
    args = parser.parse_args()
    env = {
        **os.environ,
        "DDLPROF_NO_STORE": "1",  # CPU rows stay out of the local dataset the GPU models learn from
        "DDLPROF_HOME": str(args.out / "home"),
        "OMP_NUM_THREADS": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    args.out.mkdir(parents=True)
    rows = []
    for model in args.models.split(","):
        for rate in args.rates.split(","):
            rows.append(one(model, rate, args, env))
            print(json.dumps(rows[-1]), flush=True)
    summary = summarise(rows)
    result = {
        "command": " ".join(sys.argv),
        "machine": f"{os.cpu_count()} CPUs, {os.uname().release}",
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "json_out")},
        "rows": rows,
        "summary": summary,
    }
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=1) + "\n")
    print(table(rows, summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
