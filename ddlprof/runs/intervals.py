"""Interval arithmetic on timelines: unions, overlaps and differences of (start, end) pairs."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable

Interval = tuple[float, float]


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, non-overlapping union of the intervals."""
    merged: list[list[float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        elif end > start:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def length(merged: list[Interval]) -> float:
    return sum(b - a for a, b in merged)


def overlap(a: list[Interval], b: list[Interval]) -> float:
    """Total time covered by both of two merged interval lists."""
    total, i, j = 0.0, 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if hi > lo:
            total += hi - lo
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def clip(merged: list[Interval], start: float, end: float) -> list[Interval]:
    """The part of a merged list inside [start, end]; binary search, as traces hold 10^5 intervals."""
    lo = bisect_right(merged, (start, float("inf"))) - 1  # the last interval starting at or before start
    hi = bisect_left(merged, (end, float("-inf")))  # the first interval starting at or after end
    return [(max(a, start), min(b, end)) for a, b in merged[max(lo, 0) : hi] if b > start and a < end]


def runs_of(numbers: list[int], sep: str = ",") -> str:
    """Sorted integers as runs of consecutive ones: [6, 7, 8, 10] -> "6-8,10" (steps, ranks)."""
    spans: list[list[int]] = []
    for number in numbers:
        if spans and number == spans[-1][1] + 1:
            spans[-1][1] = number
        else:
            spans.append([number, number])
    return sep.join(str(a) if a == b else f"{a}-{b}" for a, b in spans)
