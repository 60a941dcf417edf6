"""How uncertain a predicted single-GPU step is, from what it is built on (:func:`step_error`): the one
rule ``ddlprof advise`` (each option) and ``ddlprof model predict`` quote. No torch here.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

#: The batches per GPU at which the shipped dataset measured every model's single-GPU step.
DATASET_BATCHES = (32, 64)


class StepFacts(Protocol):
    """What a step is built on (``ddlprof.advisor.throughput.StepEstimate`` has these)."""

    basis: str  # "scaled from H200 tf32", "measured by ddlprof on H100 ...", ...
    scaled: bool  # scaled from another GPU or precision
    precision: str | None  # the precision the step is for ("amp-bf16", "tf32", ...)
    calibrated: str | None  # a step of this GPU type (the user's calibration or ddlprof's): whence
    calibrated_spread_pct: float  # spread between machines (ddlprof's measurements, also when scaled)
    batch_outside: tuple[int, int, int] | None  # (batch, lowest, highest measured) when extrapolated


def basis_label(gpu: str, precision: str, scaled: bool) -> str:
    """What a single-GPU step rests on, as options and predictions name it."""
    return f"scaled from {gpu} {precision}" if scaled else f"as measured on {gpu} ({precision})"


def batch_doublings(batch: int, low: int, high: int) -> float:
    """How many doublings ``batch`` lies outside the measured batches ``low``-``high`` (0 inside)."""
    return math.log2(batch / high) if batch > high else math.log2(low / batch) if batch < low else 0.0


def batch_outside(batch: int, measured: Iterable[int]) -> tuple[int, int, int] | None:
    """(batch, lowest, highest measured) when ``batch`` lies outside the measured batches, else None."""
    found = list(measured)
    low, high = min(found), max(found)
    return (batch, low, high) if batch_doublings(batch, low, high) else None


@dataclass(frozen=True)
class StepError:
    pct: float  # relative error of the step time, percent: the step lies in [s / (1 + e), s * (1 + e)]
    basis: str  # one sentence: where the error comes from
    referenced: bool = True  # False: scaled to a GPU with no published or measured reference


def gpu_family(gpu: str) -> str:
    """The GPU's name before its first '-': A100-40GB and A100-80GB-PCIe are both 'A100'."""
    return gpu.split("-")[0].upper()


@functools.cache
def published_families() -> frozenset[str]:
    """The GPU families with a published 1-GPU throughput row (``ddlprof/models/data/published.csv``)."""
    from ddlprof.models.published import load_published

    return frozenset(gpu_family(row.gpu) for row in load_published(check_models=False))


def step_error(
    step: StepFacts,
    gpu: str,
    cv_pct: float,
    measured_gpus: Iterable[str],
    scaling: dict,
) -> StepError:
    """The relative error of an option's step time, from what the step is built on.

    - measured on this GPU type at this precision (a run, or the dataset's own GPU): the stall model's
      leave-one-model-out CV (``cv_pct``);
    - calibrated on this GPU type (``ddlprof calibrate``): the stall model's CV (no calibration spread is
      stored); measured by ddlprof on this GPU type (``data/measured_steps.json``): that with the
      measured spread between two machines of the type, in quadrature;
    - scaled from another GPU or precision: the fitted scaling's leave-one-GPU-out median error
      (``benchmarks/fit_cross_gpu.py``): the larger of ``scaling['by_gpu']`` for the option's GPU type
      and ``scaling['by_precision']`` for its precision, where they have rows, else the overall median
      (with the spread between machines where the step scaled was ddlprof's own measurement, as one of
      the same chip's);
    - scaled to a GPU with no published or measured reference at all (no row of its family, the name
      before the first '-', in the published table, and not the GPU measured on): the *worst*
      leave-one-GPU-out error (``worst_off_by_factor`` - 1), since nothing checks the scaling there.

    A scaled step still goes through the stall model, so its error is the scaling's and the stall
    model's CV combined in quadrature (as independent errors): never below the CV of a measured step.
    A step at a batch outside the measured ones (``step.batch_outside``: the dataset's 32-64, or the
    batches calibrated) adds, in quadrature, the measured error of extrapolating in the batch
    (``scaling['batch_extrapolation']``, per doubling, compounded): :func:`with_batch_error`.
    """
    found = _step_error(step, gpu, cv_pct, measured_gpus, scaling)
    return with_batch_error(found, step.batch_outside, scaling.get("batch_extrapolation") or {})


def with_batch_error(
    error: StepError, outside: tuple[int, int, int] | None, extrapolation: dict
) -> StepError:
    """``error`` widened by the batch extrapolation's: ``(1 + p) ** doublings - 1`` for ``p`` per
    doubling, in quadrature; unchanged inside the measured batches or where no error was measured."""
    per_doubling = extrapolation.get("per_doubling_pct")
    if outside is None or per_doubling is None:
        return error
    batch, low, high = outside
    doublings = batch_doublings(batch, low, high)
    pct = ((1 + float(per_doubling) / 100) ** doublings - 1) * 100
    total = math.hypot(error.pct, pct)
    return StepError(
        total,
        f"{error.basis}; batch {batch} lies {doublings:.1f} doubling(s) outside the measured {low}-{high}: "
        f"+{pct:.0f}% ({float(per_doubling):g}% per doubling, the median of {extrapolation.get('pairs')} "
        f"measured large-batch steps, benchmarks/fit_cross_gpu.py --batch-check), {total:.0f}% in all",
        error.referenced,
    )


def _step_error(
    step: StepFacts,
    gpu: str,
    cv_pct: float,
    measured_gpus: Iterable[str],
    scaling: dict,
) -> StepError:
    if step.calibrated and step.calibrated_spread_pct:
        spread = step.calibrated_spread_pct
        total = math.hypot(spread, cv_pct)
        return StepError(
            total,
            f"measured by ddlprof on {gpu}, not on your machine: the measured spread between two {gpu} "
            f"machines, {spread:g}% (data/measured_steps.json), with the stall model's CV {cv_pct:.1f}%: "
            f"{total:.1f}%",
        )
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
        pct = math.hypot((worst - 1) * 100, cv_pct)
        return StepError(
            pct,
            f"{step.basis} to {gpu}: no published or measured reference for GPU {gpu}, so the fitted "
            f"scaling's worst leave-one-GPU-out error ({worst:g}x) instead of its median, with the stall "
            f"model's CV {cv_pct:.1f}%: {pct:.0f}%",
            referenced=False,
        )
    by_gpu = scaling.get("by_gpu") or {}
    by_precision = scaling.get("by_precision") or {}
    known = [
        (float(table[key]), f"the fitted scaling's leave-one-GPU-out median error {where}")
        for table, key, where in (
            (by_gpu, gpu, f"on {gpu}"),
            (by_precision, step.precision, f"at {step.precision}"),
        )
        if key in table
    ]
    if known:  # the larger: a GPU's rows may all be of another precision, a precision's of another GPU
        pct, what = max(known)
    else:
        pct = float(scaling["median_abs_error_pct"])
        what = "the fitted scaling's leave-one-GPU-out median error"
    spread = step.calibrated_spread_pct  # scaled from a step ddlprof measured on its own machine
    total = math.hypot(pct, cv_pct, spread)
    machines = f", the measured spread between two machines {spread:g}%" if spread else ""
    return StepError(
        total,
        f"{step.basis} to {gpu}: {what}, {pct:g}%, with the stall model's CV {cv_pct:.1f}%{machines}: "
        f"{total:.1f}%",
    )
