"""Run directories for the dashboard tests: one real wrapped gloo job, and hand-made ones in the
real format (as ``tests/test_report_input.py`` makes them) for what a CPU job cannot produce."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from conftest import EXAMPLE, ddlprof, torchrun

from ddlprof.profiler.gpu_sampler import COLUMNS as GPU_COLUMNS

T0 = 1_790_000_000.0  # unix seconds of the hand-made runs' first step


def real_run(out: Path, steps: int = 20) -> Path:
    """A real 2-rank gloo DDP job of the example under ``ddlprof wrap torchrun``."""
    done = ddlprof(
        "wrap",
        "--out",
        str(out),
        "--trace-steps",
        "0",
        "--",
        *torchrun(2),
        str(EXAMPLE),
        "--steps",
        str(steps),
    )
    assert done.returncode == 0, done.stderr
    return out


def _write(run: Path, ranks: dict[int, list[dict]], run_id: str) -> Path:
    (run / "ranks").mkdir(parents=True)
    (run / "nodes").mkdir()
    (run / "gpu").mkdir()
    manifest = {"schema": "ddlprof.run", "schema_version": 1, "run_id": run_id, "nnodes": 1}
    (run / "manifest.json").write_text(json.dumps(manifest))
    for rank, records in ranks.items():
        (run / "ranks" / f"rank-{rank}.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return run


def _step(n: int, step_ms: float, exposed: float, data_wait: float = 1.0) -> dict:
    start = T0 + (n - 1) * step_ms / 1e3
    return {
        "type": "step",
        "step": n,
        "start": start,
        "end": start + step_ms / 1e3,
        "step_ms": step_ms,
        "data_wait_ms": data_wait,
        "loop_ms": 0.5,
        "samples": 8,
        "traced": False,
        "comm": {"buckets": 1, "exposed_ms": exposed},
    }


def straggler_run(out: Path) -> Path:
    """Two ranks of 50 ms steps where rank 1 computes 30 ms longer (rank 0 waits for it in the
    all-reduce), with NVML samples of two GPUs in the sampler's CSV format over the steps."""
    ranks = {
        rank: [
            {"type": "rank", "rank": rank, "world_size": 2, "host": "h", "device": "cuda:0"},
            *[_step(n, 50.0, 31.0 if rank == 0 else 1.0) for n in range(1, 21)],
            {"type": "end"},
        ]
        for rank in (0, 1)
    }
    run = _write(out, ranks, out.name)
    with (run / "gpu" / "h.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(GPU_COLUMNS)
        for i in range(21):
            for gpu in (0, 1):
                values = {
                    "unix": T0 + i * 0.05,
                    "gpu": gpu,
                    "util_pct": 80 + gpu * 10,
                    "mem_util_pct": 30,
                    "mem_used_mib": 4000 + 10 * i,
                    "power_w": 250.0 + gpu,
                    "sm_clock_mhz": 1980,
                    "pcie_tx_mb_per_s": 100.0,
                    "pcie_rx_mb_per_s": 120.0,
                    "nvlink_tx_mb_per_s": 9000.0 + i,
                    "nvlink_rx_mb_per_s": 9100.0,
                    "energy_mj": int(5e9 + (250.0 + gpu) * 1e3 * i * 0.05),
                }
                writer.writerow([values[c] for c in GPU_COLUMNS])
    return run


def skewed_run(out: Path) -> Path:
    """Two ranks of 100 ms steps with no straggler (busy 90 and 84 ms), where rank 0 waits 10 ms for data
    and 10 ms on the all-reduce, and rank 1 waits 1 ms for data and 16 ms on the all-reduce (it waits for
    rank 0 there): the issue's "No straggler" run whose ranks differ."""
    ranks = {
        rank: [
            {"type": "rank", "rank": rank, "world_size": 2, "host": "h", "device": "cpu"},
            *[_step(n, 100.0, 10.0 if rank == 0 else 16.0, 10.0 if rank == 0 else 1.0) for n in range(1, 21)],
            {"type": "end"},
        ]
        for rank in (0, 1)
    }
    return _write(out, ranks, out.name)


def waited_run(out: Path) -> Path:
    """Two CPU ranks of 50 ms steps on one host: rank 1 waits 30 ms for data and reaches the all-reduce
    at 40 ms into the step, rank 0 at 10 ms, so rank 0 waits 30 ms of its 31 ms of exposed communication
    for rank 1 and 1 ms is on the wire, as it is for rank 1."""
    ranks = {}
    for rank, (data, exposed, arrival) in {0: (1.0, 31.0, 10.0), 1: (30.0, 1.0, 40.0)}.items():
        steps = []
        for n in range(1, 21):
            step = _step(n, 50.0, exposed, data)
            step["comm"] |= {"clock": "cpu", "backward_end_ms": arrival}
            steps.append(step)
        header = {"type": "rank", "rank": rank, "world_size": 2, "host": "h", "device": "cpu"}
        ranks[rank] = [header, *steps, {"type": "end"}]
    return _write(out, ranks, out.name)


def broken_runs(root: Path) -> dict[str, str]:
    """Run directories ``ddlprof report`` refuses, by name, with a word of the error it gives."""
    truncated = root / "broken-manifest"
    truncated.mkdir()
    (truncated / "manifest.json").write_text('{"schema": "ddlprof.r')
    _write(root / "no-steps", {0: [{"type": "rank", "rank": 0, "world_size": 2, "host": "h"}]}, "no-steps")
    return {"broken-manifest": "unreadable manifest", "no-steps": "no rank recorded a step"}


def copy_run(run: Path, out: Path, run_id: str) -> Path:
    """A copy of ``run`` under another run id (as another run of the same job would be)."""
    shutil.copytree(run, out)
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "run_id": run_id}))
    return out
