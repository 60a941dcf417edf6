"""The ranges an option's relative step-time error ``e`` gives its throughput, hours and cost,
``[x / (1 + e), x * (1 + e)]``, and which options' ranges overlap the top choice's
(``within_error_of_top``). The error itself: ``ddlprof.models.step_error``."""

from __future__ import annotations


def widen(value: float, pct: float) -> tuple[float, float]:
    """``[value / (1 + e), value * (1 + e)]`` for a relative error of ``pct`` percent."""
    factor = 1 + pct / 100
    return value / factor, value * factor


def overlaps(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]
