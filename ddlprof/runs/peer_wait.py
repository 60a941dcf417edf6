"""Wait for peers vs time on the wire: how much of a rank's exposed communication is waiting for the
last rank to reach the all-reduce, and how much is the all-reduce itself.

Every rank records when its step's last backward ended (``comm.backward_end_ms``, ms into the step) and
when the step started (``start``, the host's clock through one offset per process). On one host the
ranks share that clock (``time.time`` and the monotonic clock are system-wide; the offsets differ by
the microseconds between two reads), so for each step

    wait_for_peers_ms(rank) = min(exposed_ms, last rank's hand-over - this rank's hand-over)
    wire_ms(rank)           = exposed_ms - wait_for_peers_ms

and the wait is charged to the rank that arrived last. Across hosts the clocks differ by more than a
step's wait can be trusted to, so a multi-node run gets no split (the issue's NTP-style offset
estimate in the probe is not built). On GPUs the host's backward end is when backward was queued, not
when the GPU reached it: no split there yet.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any


def _arrival(step: dict[str, Any]) -> float | None:
    comm = step.get("comm") or {}
    if comm.get("clock") != "cpu" or step.get("start") is None or comm.get("exposed_ms") is None:
        return None
    if comm.get("backward_end_ms") is None:
        return None
    return float(step["start"]) + float(comm["backward_end_ms"]) / 1e3


def peer_waits(steps_by_rank: dict[int, list[dict[str, Any]]], world_size: int) -> dict[str, Any]:
    """Per rank: mean ``wait_for_peers_ms`` and ``wire_ms`` over the steps every rank timed, and
    ``caused_wait_ms``, the other ranks' wait per step that this rank made by arriving last."""
    arrivals: dict[int, dict[int, tuple[float, float]]] = defaultdict(dict)
    for rank, steps in steps_by_rank.items():
        for step in steps:
            arrived = _arrival(step)
            if arrived is not None:
                arrivals[step["step"]][rank] = (arrived, float(step["comm"]["exposed_ms"]))
    complete = {n: ranks for n, ranks in arrivals.items() if len(ranks) == world_size}
    waits: dict[int, list[float]] = defaultdict(list)
    wires: dict[int, list[float]] = defaultdict(list)
    caused: dict[int, float] = defaultdict(float)
    for ranks in complete.values():
        last_rank = max(ranks, key=lambda r: ranks[r][0])
        last = ranks[last_rank][0]
        for rank, (arrived, exposed) in ranks.items():
            wait = min(exposed, max(0.0, (last - arrived) * 1e3))
            waits[rank].append(wait)
            wires[rank].append(exposed - wait)
            caused[last_rank] += wait
    return {
        rank: {
            "wait_for_peers_ms": sum(waits[rank]) / len(waits[rank]) if waits[rank] else None,
            "wire_ms": sum(wires[rank]) / len(wires[rank]) if wires[rank] else None,
            "caused_wait_ms": caused[rank] / len(complete) if complete else None,
        }
        for rank in steps_by_rank
    }
