"""Interval arithmetic on timelines: unions of (start, end) pairs and the time they cover in a range.

Unions are (n, 2) numpy arrays, sorted and disjoint: traces hold millions of intervals, which as
Python tuples would take ten times the memory and time."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

Interval = tuple[float, float]


def merge(intervals: np.ndarray | Iterable[Interval]) -> np.ndarray:
    """Sorted, non-overlapping union of the intervals (touching ones join)."""
    pairs = np.asarray(intervals if isinstance(intervals, np.ndarray) else list(intervals), dtype=np.float64)
    pairs = pairs.reshape(-1, 2)
    pairs = pairs[pairs[:, 1] > pairs[:, 0]]
    if not len(pairs):
        return np.empty((0, 2))
    pairs = pairs[np.argsort(pairs[:, 0], kind="stable")]
    reach = np.maximum.accumulate(pairs[:, 1])
    opens = np.flatnonzero(np.concatenate(([True], pairs[1:, 0] > reach[:-1])))
    closes = np.concatenate((opens[1:] - 1, [len(pairs) - 1]))
    return np.column_stack((pairs[opens, 0], reach[closes]))


def length(merged: np.ndarray) -> float:
    return float((merged[:, 1] - merged[:, 0]).sum())


def covered(merged: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Time the union covers inside each [start, end], for many ranges at once (prefix sums and
    binary search: one pass over the union, however many ranges)."""
    return _covered_before(merged, np.asarray(ends, dtype=np.float64)) - _covered_before(
        merged, np.asarray(starts, dtype=np.float64)
    )


def _covered_before(merged: np.ndarray, times: np.ndarray) -> np.ndarray:
    total = np.concatenate(([0.0], np.cumsum(merged[:, 1] - merged[:, 0])))
    index = np.searchsorted(merged[:, 0], times, side="right")  # intervals starting at or before t
    last_end = np.where(index > 0, merged[np.maximum(index - 1, 0), 1] if len(merged) else 0.0, times)
    return total[index] - np.maximum(last_end - times, 0.0)


def runs_of(numbers: list[int], sep: str = ",") -> str:
    """Sorted integers as runs of consecutive ones: [6, 7, 8, 10] -> "6-8,10" (steps, ranks)."""
    return sep.join(str(a) if a == b else f"{a}-{b}" for a, b in runs(numbers))


def runs(numbers: list[int]) -> list[tuple[int, int]]:
    """Sorted integers as (first, last) of each run of consecutive ones:
    [6, 7, 8, 10] -> [(6, 8), (10, 10)]."""
    spans: list[list[int]] = []
    for number in numbers:
        if spans and number == spans[-1][1] + 1:
            spans[-1][1] = number
        else:
            spans.append([number, number])
    return [(a, b) for a, b in spans]
