"""The Pareto front of the options: those that no other option beats in both time and cost."""

from __future__ import annotations

import math
from collections.abc import Sequence


def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For each (time, cost) point, whether no other point is at least as good in both and better in
    one (both minimised). Equal points are all on the front. O(n log n)."""
    order = sorted(range(len(points)), key=lambda i: points[i])
    front = [False] * len(points)
    best_before = math.inf  # lowest cost among strictly faster points
    i = 0
    while i < len(order):
        j = i
        time = points[order[i]][0]
        while j < len(order) and points[order[j]][0] == time:
            j += 1
        group_min = points[order[i]][1]  # sorted by cost within equal times
        for k in order[i:j]:
            cost = points[k][1]
            front[k] = cost == group_min and cost < best_before
        best_before = min(best_before, group_min)
        i = j
    return front
