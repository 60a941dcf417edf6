"""How uncertain each option's step time is, and so its throughput, hours and cost: a relative error
``e`` per option (:func:`step_error`), the ranges ``[x / (1 + e), x * (1 + e)]`` it gives, and which
options' cost-per-sample ranges overlap the top choice's (``within_error_of_top``)."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from ddlprof.advisor.throughput import StepEstimate


@dataclass(frozen=True)
class StepError:
    pct: float  # relative error of the step time, percent: the step lies in [s / (1 + e), s * (1 + e)]
    basis: str  # one sentence: where the error comes from


def gpu_family(gpu: str) -> str:
    """The GPU's name before its first '-': A100-40GB and A100-80GB-PCIe are both 'A100'."""
    return gpu.split("-")[0].upper()


@functools.cache
def published_families() -> frozenset[str]:
    """The GPU families with a published 1-GPU throughput row (``ddlprof/models/data/published.csv``)."""
    from ddlprof.models.published import load_published

    return frozenset(gpu_family(row.gpu) for row in load_published(check_models=False))


def step_error(
    step: StepEstimate,
    gpu: str,
    cv_pct: float,
    measured_gpus: Iterable[str],
    scaling: dict,
) -> StepError:
    """The relative error of an option's step time, from what the step is built on.

    - measured on this GPU type at this precision (a run, or the dataset's own GPU): the stall model's
      leave-one-model-out CV (``cv_pct``);
    - calibrated on this GPU type (``ddlprof calibrate``): the stall model's CV (no calibration spread is
      stored);
    - scaled from another GPU or precision: the published check's median error of that scaling
      (``scaling['by_precision']`` for the option's precision where given, else the overall median);
    - scaled to a GPU with no published or measured reference at all (no row of its family, the name
      before the first '-', in the published table, and not the GPU measured on): the published
      check's *worst* error (``worst_off_by_factor`` - 1), since nothing checks the scaling there.
    """
    if step.calibrated:
        return StepError(
            cv_pct,
            f"calibrated on this GPU type ({gpu}): the stall model's CV {cv_pct:.1f}% (no calibration "
            "spread stored)",
        )
    if not step.scaled:
        return StepError(cv_pct, f"{step.basis}: the stall model's leave-one-model-out CV {cv_pct:.1f}%")
    referenced = published_families() | {gpu_family(g) for g in measured_gpus}
    if gpu_family(gpu) not in referenced:
        worst = float(scaling["worst_off_by_factor"])
        pct = (worst - 1) * 100
        return StepError(
            pct,
            f"{step.basis} to {gpu}: no published or measured reference for GPU {gpu}, so the published "
            f"check's worst error ({worst:g}x, {pct:.0f}%) instead of its median",
        )
    by_precision = scaling.get("by_precision") or {}
    if step.precision in by_precision:
        pct = float(by_precision[step.precision])
        what = f"the published check's median error at {step.precision}"
    else:
        pct = float(scaling["median_abs_error_pct"])
        what = "the published check's median error of the scaling"
    return StepError(pct, f"{step.basis} to {gpu}: {what}, {pct:g}%")


def widen(value: float, pct: float) -> tuple[float, float]:
    """``[value / (1 + e), value * (1 + e)]`` for a relative error of ``pct`` percent."""
    factor = 1 + pct / 100
    return value / factor, value * factor


def overlaps(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]
