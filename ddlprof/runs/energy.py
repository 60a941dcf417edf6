"""Energy of a run from its NVML samples (``gpu/<host>.csv``): joules per step and per sample over the
steady window, and kWh for the whole run.

Where the GPU has NVML's total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``, mJ since the
driver loaded; Volta and later), energy is the counter's difference between two samples: exact, with
no sampling error. Elsewhere the power samples (``power_w``) are integrated over time (trapezoids),
and the result says so: a sampled power misses what happens between samples.

Only the GPUs the job's ranks ran on count (the sampler sees every GPU the job may use); a job whose
ranks ran on the CPU has no energy figure, with the reason, as has a run without GPU samples.
"""

from __future__ import annotations

import math
from typing import Any

COUNTER = "nvml_energy_counter"
INTEGRATED = "integrated_power_samples"
J_PER_KWH = 3.6e6


def _null(reason: str) -> dict[str, Any]:
    return {
        "joules_per_step": None,
        "joules_per_sample": None,
        "mean_power_w": None,
        "run_kwh": None,
        "gpus": 0,
        "method": None,
        "reason": reason,
    }


def _used_gpus(ranks: list[dict[str, Any]], nodes: list[dict[str, Any]]) -> dict[str, set[int] | None]:
    """Per host, the NVML indices the ranks' CUDA devices are (None: every sampled GPU of the host,
    where CUDA_VISIBLE_DEVICES does not give the mapping); hosts whose ranks are all on the CPU are
    absent."""
    visible_by_host: dict[str, list[str] | None] = {}
    for node in nodes:
        value = (node.get("env") or {}).get("CUDA_VISIBLE_DEVICES")
        visible_by_host[str(node.get("host"))] = [p.strip() for p in value.split(",")] if value else None
    used: dict[str, set[int] | None] = {}
    for rank in ranks:
        device, host = str(rank.get("device") or "cpu"), str(rank.get("host"))
        if not device.startswith("cuda"):
            continue
        local = device.partition(":")[2]
        visible = visible_by_host.get(host)
        if not local.isdigit():
            used[host] = None
            continue
        if visible is not None:
            if int(local) >= len(visible) or not visible[int(local)].isdigit():
                used[host] = None  # UUIDs or MIG devices: no NVML index to map to
                continue
            index = int(visible[int(local)])
        else:
            index = int(local)
        if host not in used or used[host] is not None:
            used.setdefault(host, set()).add(index)  # type: ignore[union-attr]
    return used


def joules(group: Any) -> tuple[float, float, str] | None:
    """(joules, seconds, method) over the samples of one GPU, or None with fewer than two samples."""
    group = group.sort_values("unix")
    if "energy_mj" in group:
        counted = group.dropna(subset=["energy_mj"])
        if len(counted) >= 2:
            seconds = float(counted["unix"].iloc[-1] - counted["unix"].iloc[0])
            joules = float(counted["energy_mj"].iloc[-1] - counted["energy_mj"].iloc[0]) / 1e3
            if seconds > 0 and joules >= 0:  # a counter reset (driver reload) falls back to power
                return joules, seconds, COUNTER
    powered = group.dropna(subset=["power_w"]) if "power_w" in group else group.iloc[0:0]
    if len(powered) < 2:
        return None
    t, p = powered["unix"].to_numpy(dtype=float), powered["power_w"].to_numpy(dtype=float)
    seconds = float(t[-1] - t[0])
    if seconds <= 0:
        return None
    return float(((p[1:] + p[:-1]) / 2 * (t[1:] - t[:-1])).sum()), seconds, INTEGRATED


def energy(
    samples: Any,
    window: tuple[float, float],
    ranks: list[dict[str, Any]],
    nodes: list[dict[str, Any]],
    step_ms: float | None,
    throughput: float | None,
) -> dict[str, Any]:
    """The run's energy figures, or nulls with the reason.

    Mean power over the steady window (summed over the job's GPUs) x the job's step time gives joules
    per step; divided by the job's throughput, joules per sample. kWh covers every sample of the run.
    """
    used = _used_gpus(ranks, nodes)
    if not used:
        return _null("the job ran on the CPU: NVML measures GPUs only")
    if samples is None or not len(samples):
        reasons = sorted(
            {
                str((n.get("gpu_sampling") or {}).get("reason"))
                for n in nodes
                if not (n.get("gpu_sampling") or {}).get("enabled", True)
            }
        )
        return _null("no GPU samples in the run" + (f" ({'; '.join(reasons)})" if reasons else ""))
    mine = samples[
        [
            host in used and (used[host] is None or int(gpu) in used[host])  # type: ignore[operator]
            for host, gpu in zip(samples["host"], samples["gpu"], strict=True)
        ]
    ]
    start, end = window
    steady = mine[(mine["unix"] >= start) & (mine["unix"] <= end)]
    power, methods, gpus, run_j = 0.0, set(), 0, 0.0
    for key, group in mine.groupby(["host", "gpu"]):
        whole = joules(group)
        if whole is not None:
            run_j += whole[0]
        part = steady[(steady["host"] == key[0]) & (steady["gpu"] == key[1])]
        found = joules(part)
        if found is None:
            length = max(0.0, end - start) if math.isfinite(end - start) else 0.0
            return {
                **_null(
                    f"fewer than two GPU samples of GPU {key[1]} on {key[0]} in the steady window "
                    f"({length:.1f} s): sample more often (--gpu-sample-interval) or run more steps"
                ),
                "run_kwh": round(run_j / J_PER_KWH, 9) if whole is not None else None,
            }
        spent, seconds, method = found
        power += spent / seconds
        methods.add(method)
        gpus += 1
    if gpus == 0:
        return _null("no GPU samples of the GPUs the ranks ran on")
    return {
        "joules_per_step": round(power * step_ms / 1e3, 4) if step_ms else None,
        "joules_per_sample": round(power / throughput, 6) if throughput else None,
        "mean_power_w": round(power, 2),
        "run_kwh": round(run_j / J_PER_KWH, 9),
        "gpus": gpus,
        "method": COUNTER if methods == {COUNTER} else INTEGRATED,
        "reason": None
        if methods == {COUNTER}
        else "NVML has no energy counter on this GPU: power samples integrated over time (misses "
        "changes between samples)",
    }


def energy_line(figures: dict[str, Any] | None) -> str:
    """One line for the report and the dashboard."""
    if not figures:
        return "energy: not in this summary (written by an older ddlprof)"
    if figures["joules_per_step"] is None and figures["joules_per_sample"] is None:
        kwh = f"; {figures['run_kwh'] * 1e3:.3f} Wh for the run" if figures.get("run_kwh") else ""
        return f"energy: n/a ({figures['reason']}){kwh}"
    parts = []
    if figures["joules_per_step"] is not None:
        parts.append(f"{figures['joules_per_step']:.2f} J per step")
    if figures["joules_per_sample"] is not None:
        parts.append(f"{figures['joules_per_sample']:.4f} J per sample")
    how = "NVML energy counter" if figures["method"] == COUNTER else "integrated NVML power samples"
    return (
        f"energy: {', '.join(parts)} ({figures['mean_power_w']:.0f} W over {figures['gpus']} GPU(s)); "
        f"{figures['run_kwh']:.6f} kWh for the run ({how})"
    )
