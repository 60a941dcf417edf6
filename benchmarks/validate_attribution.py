"""Single-run attribution against the differential ground truth (issue 3's validation).

Both sides come from one wrapped launch of ``benchmarks/attribution_inlaunch.py`` (see its docstring):
the ground truth is the arithmetic of ``ddlprof stalls`` on the timed blocks,

    interconnect stall = t(ddp2) - t(ddp1)     (all GPUs of the node minus ``ddlprof stalls``' one_gpu)
    DDP's own cost     = t(ddp1) - t(plain)    (hooks, bucket copies, no wire)

each in % of t(ddp2), and the single-run attribution is ``ddlprof report``'s summary of exactly the
ddp2 blocks' steps, read from the run directory: their mean ``interconnect_stall_ms`` as % of the
step. Network stall is zero on both sides on one node.

Which step time: each block starts right after a synchronisation, so a GPU-bound model's host runs
ahead of its GPU during the block (by up to 300 ms on the device), and the host-side ``step_ms`` of
15 steps comes out up to 15% short of the GPU's period; in a long run the two agree. The comparison
divides by the GPU's own period over the block, from the hand-over times on the GPU that the records
hold (host time of the last bucket + ``gpu_lag_ms``), and also gives the host-side figure.

    python benchmarks/validate_attribution.py compare RUN_NVLINK RUN_PCIE RUN_SOCKET \\
        --json-out attribution_compare.json

How far the ground truth itself reproduces: ``launches`` takes two such comparisons and, for every
configuration in both, how much the truth (and the single-run figure) moved between the launches:

    python benchmarks/validate_attribution.py launches attribution_compare.json attribution_compare_b32.json

A candidate correction for launch-bound configurations (GPU < 10 ms behind the host at the hand-over),
not in ``ddlprof report``: a GPU that idles waiting for its host hides the wire wait in that idle time,
so the stall is at most ``max(0, wait - idle)``, idle = (1 - NVML utilisation) x period, utilisation
the mean of the run's NVML samples inside the ddp2 blocks (rank r on GPU r, as the script places
them; samples in a block's first 1/6 s, which NVML's utilisation window may reach back before, left
out). Its columns are ``interconnect_idle_corrected_pct`` and the summary's ``idle_corrected_*``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from ddlprof.runs.gpu_counters import load_samples
from ddlprof.runs.rundir import Run, load_run
from ddlprof.runs.summary import summarize

JOB_KEYS = ("step_ms", "compute_ms", "interconnect_stall_ms", "network_stall_ms", "other_ms")
LAUNCH_BOUND_LAG_MS = 10.0  # the GPU is this close behind the host at the hand-over: launch-bound


def sliced(run: Run, ranges: list[tuple[int, int]]) -> Run:
    """The run with only the steps inside ``ranges`` (inclusive step numbers) on every rank."""

    def keep(step: dict[str, Any]) -> bool:
        return any(first <= step["step"] <= last for first, last in ranges)

    ranks = [dataclasses.replace(log, steps=[s for s in log.steps if keep(s)]) for log in run.ranks]
    return dataclasses.replace(run, ranks=ranks)


def step_offset(run: Run, ranges: list[tuple[int, int]]) -> int:
    """How far ddlprof's step numbers run ahead of the script's count (0, or 1 for launches made
    before the script marked a step ahead of its first optimizer step, which the collectors count
    as a step of its own). Every step of a ddp2 block holds one DDP forward; the untimed step before
    it (the drain and barrier) holds none."""
    steps = {s["step"]: s for s in run.ranks[0].steps}
    for offset in (0, 1):
        if all(steps.get(n + offset, {}).get("forwards") for a, b in ranges for n in range(a, b + 1)):
            return offset
    raise SystemExit(f"{run.path}: the ddp2 blocks' steps do not line up with the run's records")


def handover_ms(step: dict[str, Any]) -> float | None:
    """When the GPU reached the end of backward, on the host clock (ms), if recorded (runs of
    collectors before the default comm hook was dropped recorded the last bucket's hand-over)."""
    comm = step.get("comm") or {}
    if comm.get("clock") != "cuda" or "gpu_lag_ms" not in comm:
        return None
    if "backward_end_ms" in comm:
        return step["start"] * 1e3 + comm["backward_end_ms"] + comm["gpu_lag_ms"]
    if not comm.get("per_bucket") or comm["per_bucket"][-1][2] is None:
        return None
    return step["start"] * 1e3 + comm["per_bucket"][-1][2] + comm["gpu_lag_ms"]


def gpu_side_pct(run: Run, ranges: list[tuple[int, int]]) -> tuple[float, float] | None:
    """(mean exposed wire wait as % of the GPU's step period, that period in ms), mean of ranks."""
    shares, rank_periods = [], []
    for log in run.ranks:
        steps = {s["step"]: s for s in log.steps}
        exposed, periods = [], []
        for first, last in ranges:
            start, end = handover_ms(steps[first]), handover_ms(steps[last])
            if start is None or end is None:
                return None
            periods.append((end - start) / (last - first))
            exposed += [steps[n]["comm"]["exposed_ms"] for n in range(first + 1, last + 1)]
        shares.append(100 * statistics.fmean(exposed) / statistics.fmean(periods))
        rank_periods.append(statistics.fmean(periods))
    return statistics.fmean(shares), statistics.fmean(rank_periods)


def phase_ms(configs: list[dict[str, Any]], phase: str) -> list[float]:
    """One block mean per repeat: the mean over ranks of each repeat's ms/step."""
    by_repeat: dict[int, list[float]] = {}
    for config in configs:
        for block in config["blocks"]:
            if block["phase"] == phase:
                by_repeat.setdefault(block["repeat"], []).append(block["ms"])
    return [statistics.fmean(values) for _, values in sorted(by_repeat.items())]


NVML_WINDOW_S = 1 / 6  # NVML's utilisation covers up to this long before a sample on these GPUs


def block_utilisation(samples: Any, per_rank: list[dict[str, Any]]) -> float | None:
    """Mean NVML GPU utilisation (0-1) over the ddp2 blocks, each rank's on its own GPU."""
    if samples is None:
        return None
    values: list[float] = []
    for rank, config in enumerate(per_rank):
        gpu = samples[samples["gpu"] == rank]
        for block in config["blocks"]:
            if block["phase"] == "ddp2":
                start, end = block["unix"]
                inside = gpu[(gpu["unix"] >= start + NVML_WINDOW_S) & (gpu["unix"] <= end)]
                values += [float(v) for v in inside["util_pct"].dropna()]
    return statistics.fmean(values) / 100 if values else None


def compare_one(
    run: Run, transport: str, per_rank: list[dict[str, Any]], samples: Any = None
) -> dict[str, Any]:
    """One model x batch: truth from every rank's blocks, attribution from the ddp2 steps."""
    ddp2, ddp1, plain = (phase_ms(per_rank, p) for p in ("ddp2", "ddp1", "plain"))
    t2, t1, t0 = (statistics.fmean(v) for v in (ddp2, ddp1, plain))
    ranges = [(b["first_step"], b["last_step"]) for b in per_rank[0]["blocks"] if b["phase"] == "ddp2"]
    offset = step_offset(run, ranges)
    ranges = [(a + offset, b + offset) for a, b in ranges]
    job = summarize([sliced(run, ranges)], warmup=0)["job"]
    host_side = 100 * job["interconnect_stall_ms"] / job["step_ms"]
    gpu_side = gpu_side_pct(run, ranges)
    got = host_side if gpu_side is None else gpu_side[0]
    truth = 100 * (t2 - t1) / t2
    lag = gpu_lag(run, ranges)
    util = block_utilisation(samples, per_rank)
    corrected = got
    if lag is not None and lag < LAUNCH_BOUND_LAG_MS and util is not None:
        corrected = max(0.0, got - 100 * (1 - util))  # wait - idle, both as % of the GPU's period
    row = {
        "model": per_rank[0]["model"], "batch_per_gpu": per_rank[0]["batch_per_gpu"], "transport": transport,
        "plain_ms": round(t0, 3), "ddp1_ms": round(t1, 3), "ddp2_ms": round(t2, 3),
        "ddp2_ms_repeats": [round(v, 3) for v in ddp2], "ddp1_ms_repeats": [round(v, 3) for v in ddp1],
        "wrapped_step_ms": round(job["step_ms"], 3),
        "gpu_period_ms": None if gpu_side is None else round(gpu_side[1], 3),
        "interconnect_truth_pct": round(truth, 2),
        "interconnect_single_run_pct": round(got, 2),
        "interconnect_error_pp": round(got - truth, 2),
        "interconnect_single_run_host_step_pct": round(host_side, 2),
        "ddp2_spread_pct": round(100 * (max(ddp2) - min(ddp2)) / t2, 2),
        "ddp_cpu_cost_truth_pct": round(100 * (t1 - t0) / t2, 2),
        "gpu_lag_ms": lag,
        "nvml_util_pct": None if util is None else round(100 * util, 1),
        "interconnect_idle_corrected_pct": round(corrected, 2),
        "idle_corrected_error_pp": round(corrected - truth, 2),
        "job": {k: None if job.get(k) is None else round(job[k], 3) for k in JOB_KEYS},
    }  # fmt: skip
    return row


def gpu_lag(run: Run, ranges: list[tuple[int, int]]) -> float | None:
    """Median lag of the GPU behind the host at the hand-over: near zero when launch-bound."""
    lags = [
        s["comm"]["gpu_lag_ms"]
        for log in run.ranks
        for s in log.steps
        if any(a <= s["step"] <= b for a, b in ranges) and "gpu_lag_ms" in (s.get("comm") or {})
    ]
    return round(statistics.median(lags), 2) if lags else None


def _rounded(statistic: Any, values: list[float]) -> float | None:
    return round(statistic(values), 2) if values else None


def summary_of(rows: list[dict[str, Any]]) -> dict[str, Any]:
    errors = [abs(r["interconnect_error_pp"]) for r in rows]
    out: dict[str, Any] = {
        "configs": len(rows),
        "models": len({r["model"] for r in rows}),
        "interconnect_mae_pp": round(statistics.fmean(errors), 2) if errors else None,
        "interconnect_worst_pp": max(errors, default=None),
        "interconnect_bias_pp": _rounded(statistics.fmean, [r["interconnect_error_pp"] for r in rows]),
        "single_run_over": sum(r["interconnect_error_pp"] > 0 for r in rows),
        "truth_mean_pct": _rounded(statistics.fmean, [r["interconnect_truth_pct"] for r in rows]),
        "ddp2_spread_median_pct": _rounded(statistics.median, [r["ddp2_spread_pct"] for r in rows]),
        "network": "single-node configurations only: network stall is 0 by construction on both sides",
    }
    for transport in sorted({r["transport"] for r in rows}):
        part = [abs(r["interconnect_error_pp"]) for r in rows if r["transport"] == transport]
        bias = [r["interconnect_error_pp"] for r in rows if r["transport"] == transport]
        out[f"{transport}_mae_pp"] = round(statistics.fmean(part), 2)
        out[f"{transport}_bias_pp"] = round(statistics.fmean(bias), 2)
    periods = [abs(r["gpu_period_ms"] / r["ddp2_ms"] - 1) for r in rows if r["gpu_period_ms"]]
    if periods:
        out["gpu_period_vs_timed_median_pct"] = round(100 * statistics.median(periods), 2)
        out["gpu_period_vs_timed_worst_pct"] = round(100 * max(periods), 2)
    host = [abs(r["interconnect_single_run_host_step_pct"] - r["interconnect_truth_pct"]) for r in rows]
    out["host_step_mae_pp"] = round(statistics.fmean(host), 2) if host else None
    out["host_step_worst_pp"] = round(max(host), 2) if host else None
    bound = [r for r in rows if r["gpu_lag_ms"] is not None and r["gpu_lag_ms"] < LAUNCH_BOUND_LAG_MS]
    rest = [r for r in rows if r not in bound]
    for name, part in (("launch_bound", bound), ("gpu_bound", rest)):
        errors = [abs(r["interconnect_error_pp"]) for r in part]
        out[f"{name}_configs"] = len(part)
        out[f"{name}_mae_pp"] = round(statistics.fmean(errors), 2) if errors else None
        out[f"{name}_worst_pp"] = max(errors, default=None)
    for name, part in (("idle_corrected", rows), ("idle_corrected_launch_bound", bound)):
        errors = [abs(r["idle_corrected_error_pp"]) for r in part]
        out[f"{name}_mae_pp"] = round(statistics.fmean(errors), 2) if errors else None
        out[f"{name}_worst_pp"] = max(errors, default=None)
    out["launch_bound_with_nvml_samples"] = sum(r["nvml_util_pct"] is not None for r in bound)
    out["idle_corrected_to_zero"] = sum(r["interconnect_idle_corrected_pct"] == 0 for r in bound)
    return out


def compare(args: argparse.Namespace) -> int:
    rows, failed = [], []
    for run_dir in args.runs:
        run = load_run(run_dir)
        samples = load_samples([run_dir])
        ranks = [json.loads(path.read_text()) for path in sorted(run_dir.glob("phases.rank*.json"))]
        if not ranks:
            print(
                f"{run_dir}: no phases.rank*.json (run attribution_inlaunch.py with --phases-out "
                f"{run_dir}/phases.json)",
                file=sys.stderr,
            )
            return 2
        for index, config in enumerate(ranks[0]["configs"]):
            per_rank = [r["configs"][index] for r in ranks]
            if any("error" in c for c in per_rank):
                failed.append(
                    {
                        "transport": ranks[0]["transport"],
                        **{k: config.get(k) for k in ("model", "batch_per_gpu", "error")},
                    }
                )
                continue
            rows.append(compare_one(run, ranks[0]["transport"], per_rank, samples))
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "job"}), flush=True)
    summary = summary_of(rows)
    print(json.dumps(summary, indent=2))
    if args.json_out:
        result = {"rows": rows, "failed": failed, "summary": summary}
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def launches(args: argparse.Namespace) -> int:
    """The same configurations in two launches: how much each side moved, in percentage points."""
    first, second = (
        {(r["model"], r["batch_per_gpu"], r["transport"]): r for r in json.loads(path.read_text())["rows"]}
        for path in (args.first, args.second)
    )
    shared = sorted(first.keys() & second.keys())
    if not shared:
        print(f"{args.first} and {args.second} have no configuration in common", file=sys.stderr)
        return 2
    out: dict[str, Any] = {"configs": len(shared)}
    for side in ("interconnect_truth_pct", "interconnect_single_run_pct"):
        moved = [round(second[k][side] - first[k][side], 2) for k in shared]
        out[side] = {
            "mean_abs_change_pp": round(statistics.fmean(abs(m) for m in moved), 2),
            "median_abs_change_pp": round(statistics.median(abs(m) for m in moved), 2),
            "worst_abs_change_pp": max(abs(m) for m in moved),
            "changes_pp": {"/".join(map(str, k)): m for k, m in zip(shared, moved, strict=True)},
        }
    print(json.dumps(out, indent=2))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    checker = commands.add_parser("compare", help="errors against the differential ground truth")
    checker.add_argument(
        "runs", type=Path, nargs="+", help="run directories of wrapped attribution_inlaunch.py launches"
    )
    checker.add_argument("--json-out", type=Path)
    checker.set_defaults(run=compare)
    again = commands.add_parser("launches", help="how far the same configurations moved between launches")
    again.add_argument("first", type=Path, help="a --json-out of compare")
    again.add_argument("second", type=Path, help="a --json-out of compare, from another launch")
    again.set_defaults(run=launches)
    args = parser.parse_args()
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
