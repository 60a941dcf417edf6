"""Energy (kWh) and emissions (kg CO2e) of each option of ``ddlprof advise``.

Energy, GPUs only (the host, networking and the data centre's cooling overhead, its PUE, are not
counted):

- measured: joules per sample that ``ddlprof share`` measured for the model on that GPU type (the
  packed options, from the local store), x the samples;
- else the GPU's maximum power (``advisor/data/gpu_power.csv``: the datasheet's TDP or max board
  power, sourced per GPU) x GPUs x hours: an upper bound, since training rarely holds a GPU at its
  limit. A GPU with no sourced figure gets no energy, never a guess.

Hours include the work a spot interruption redoes. Emissions = kWh x the grid's carbon intensity of
the option's region (``advisor/data/grid_intensity.csv``, from CodeCarbon's published tables: GCP
regions as Google publishes them, AWS regions as their country's average; source, commit and date per
row); a region without a row gets no emissions figure. Standard library only: advise starts fast.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from importlib import resources
from typing import Any

J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class Intensity:
    g_co2e_per_kwh: float
    basis: str  # "region" or "country"
    source: str
    date: str

    @property
    def description(self) -> str:
        return f"{self.g_co2e_per_kwh:g} g CO2e/kWh ({self.basis} figure; {self.source}; {self.date})"


def _rows(name: str) -> list[dict[str, str]]:
    text = resources.files("ddlprof.advisor").joinpath("data", name).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


@functools.cache
def grid_intensity() -> dict[tuple[str, str], Intensity]:
    """(cloud, region) to its grid intensity."""
    return {
        (r["cloud"], r["region"]): Intensity(
            float(r["g_co2e_per_kwh"]),
            r["basis"],
            f"{r['source_repo']}/{r['source_path']} at {r['source_commit'][:12]}",
            r["source_date"],
        )
        for r in _rows("grid_intensity.csv")
    }


@functools.cache
def gpu_power() -> dict[str, tuple[float | None, str]]:
    """GPU type to (maximum power in W or None, where that figure comes from or why there is none)."""
    return {
        r["gpu"]: (
            float(r["max_power_w"]) if r["max_power_w"] else None,
            f"{r['source']} ({r['source_date']}): {r['notes']}" if r["max_power_w"] else r["notes"],
        )
        for r in _rows("gpu_power.csv")
    }


def emissions_kg(kwh: float, g_co2e_per_kwh: float) -> float:
    return kwh * g_co2e_per_kwh / 1e3


@functools.cache
def _static(gpu: str, gpus: int, cloud: str, region: str) -> tuple[float | None, str, Intensity | None, str]:
    """What an option's energy needs that does not change with its hours (advise prices many)."""
    watts, source = gpu_power().get(gpu, (None, "not in advisor/data/gpu_power.csv"))
    if watts is None:
        basis = f"no sourced power figure for {gpu}: {source}"
    else:
        basis = f"upper bound: {gpus} x {watts:g} W ({gpu} max power, {source}) x hours"
    intensity = grid_intensity().get((cloud, region))
    grid = intensity.description if intensity else f"no grid intensity for {cloud} {region}"
    return (None if watts is None else watts * gpus), basis, intensity, grid


def option_energy(
    gpu: str,
    gpus: int,
    hours: float,
    compute_hours: float,
    samples: float,
    cloud: str,
    region: str,
    joules_per_sample: float | None = None,
    measured: str | None = None,
) -> dict[str, Any]:
    """An option's energy and emissions with where each comes from (nulls with the reason)."""
    watts, basis, intensity, grid = _static(gpu, gpus, cloud, region)
    kwh: float | None
    if joules_per_sample is not None:
        redo = hours / compute_hours if compute_hours > 0 else 1.0  # spot interruptions redo work
        kwh = joules_per_sample * samples * redo / J_PER_KWH
        basis = f"measured {joules_per_sample:.4g} J per sample ({measured}) x samples"
    else:
        kwh = None if watts is None else watts * hours / 1e3
    kg = emissions_kg(kwh, intensity.g_co2e_per_kwh) if kwh is not None and intensity else None
    return {"kwh": kwh, "kg_co2e": kg, "basis": basis, "grid": grid}
