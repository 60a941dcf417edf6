"""Packed options for ``ddlprof advise --jobs N``: a sweep of N runs of one model may put k copies on
each GPU, but only where ``ddlprof share`` measured the packing factor for that model and GPU type
(the local store's ``packing`` table); elsewhere no option packs copies, and the advice says that
none is measured. No factor is ever guessed.

A packed option runs the N jobs as independent one-GPU jobs, k at a time on each of its GPUs (no DDP):
throughput = GPUs x factor x one copy's throughput alone (batch x 1000 / its single-GPU step), the
factor being the measured aggregate samples/s of k copies over one copy's alone.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ddlprof.advisor.options import AdviseRequest, Option
from ddlprof.advisor.spot import interruption_for


def measured_factors(model: str) -> dict[str, list[dict[str, Any]]]:
    """GPU type to the packing rows measured for ``model`` (GPU names the specs table does not know
    are left out)."""
    from ddlprof.errors import DdlprofError
    from ddlprof.models.calibration import model_key
    from ddlprof.models.gpus import get_gpu
    from ddlprof.runs.packing import load_packing

    found: dict[str, list[dict[str, Any]]] = {}
    for row in load_packing(model_key(model)):
        try:
            gpu = get_gpu(row["gpu_name"]).gpu
        except DdlprofError:
            continue
        found.setdefault(gpu, []).append(row)
    return found


def best_factor(rows: list[dict[str, Any]], most_copies: int) -> dict[str, Any] | None:
    """The measured (mode, k) with the highest factor over 1 among k from 2 to ``most_copies``."""
    usable = [r for r in rows if 2 <= r["copies"] <= most_copies and r["factor"] > 1]
    return max(usable, key=lambda r: (r["factor"], -r["copies"]), default=None)


def packed(option: Option, row: dict[str, Any], request: AdviseRequest) -> Option:
    """``option`` with k copies of the job on each GPU, at the measured factor."""
    single = option.batch_per_gpu * 1000 / option.step.single_gpu_step_ms
    throughput = option.world_size * row["factor"] * single
    samples = request.total_samples
    compute_hours = samples / throughput / 3600
    hourly = option.usd_per_instance_hour
    interruption = (
        interruption_for(
            option.price,
            option.count,
            compute_hours,
            hourly,
            request.checkpoint_interval_min,
            request.restart_min,
            request.interruptions_per_day,
        )
        if option.spot
        else None
    )
    hours = compute_hours + (interruption["overhead_hours"] if interruption else 0.0)
    cost = hours * hourly * option.count
    return dataclasses.replace(
        option,
        throughput_samples_per_s=throughput,
        compute_hours=compute_hours,
        interruption=interruption,
        hours=hours,
        total_cost_usd=cost,
        usd_per_million_samples=cost / samples * 1e6,
        packing={
            "copies_per_gpu": row["copies"],
            "mode": row["mode"],
            "factor": round(row["factor"], 4),
            "joules_per_sample": row.get("joules_per_sample"),
            "source": f"ddlprof share on {row['gpu_name']}, {row['date']} ({row.get('share_dir')})",
        },
    )


def packed_options(options: list[Option], request: AdviseRequest, factors: dict[str, list]) -> list[Option]:
    """A packed twin of each option on a GPU type with a measured factor, where the sweep has enough
    jobs to give every GPU k copies."""
    out = []
    for option in options:
        rows = factors.get(option.gpu)
        if not rows or not request.jobs:
            continue
        row = best_factor(rows, math.floor(request.jobs / option.world_size))
        if row is not None:
            out.append(packed(option, row, request))
    return out
