"""Wait for peers vs time on the wire: how much of a rank's exposed communication is waiting for the
last rank to reach the all-reduce, and how much is the all-reduce itself.

For each step, given when every rank reached the all-reduce on one clock (its *arrival*) and its
exposed communication,

    wait_for_peers_ms(rank) = min(exposed_ms, last rank's arrival - this rank's arrival)
    wire_ms(rank)           = exposed_ms - wait_for_peers_ms

and the wait is charged to the rank that arrived last, with the reason the straggler rule gives it
(its busy time's part furthest above the median rank's: data, compute or other).

Two sources of arrivals share this arithmetic. ``ddlprof report``: every rank records when its step's
last backward ended (``comm.backward_end_ms``, ms into the step) and when the step started (``start``,
the host's clock through one offset per process); on one host the ranks share that clock
(``time.time`` and the monotonic clock are system-wide; the offsets differ by the microseconds
between two reads). On GPUs the host's backward end is when backward was queued, not when the GPU
reached it, so only host-clock (CPU) steps count. ``ddlprof analyze``: the traces' own timestamps
(``trace_analysis.py``). Across hosts the clocks differ by more than a step's wait can be trusted to,
so a multi-host run gets no split (the issue's NTP-style offset estimate in the probe is not built).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from ddlprof.runs.breakdown import CAUSES

#: step -> rank -> (arrival at the all-reduce in ms on the ranks' shared clock, exposed ms)
Arrivals = dict[int, dict[int, tuple[float, float]]]


@dataclass
class Split:
    """Each (rank, step)'s wait for the last rank, over the steps every rank has an arrival for, and per
    rank the other ranks' wait it caused per such step."""

    waits: dict[tuple[int, int], float] = field(default_factory=dict)
    caused: dict[int, float] = field(default_factory=dict)


def split(arrivals: Arrivals, world_size: int) -> Split:
    complete = {n: ranks for n, ranks in arrivals.items() if len(ranks) == world_size}
    out = Split()
    caused: dict[int, float] = defaultdict(float)
    for step, ranks in complete.items():
        last_rank = max(ranks, key=lambda r: ranks[r][0])
        last = ranks[last_rank][0]
        for rank, (arrived, exposed) in ranks.items():
            wait = min(exposed, max(0.0, last - arrived))
            out.waits[rank, step] = wait
            caused[last_rank] += wait
    out.caused = {rank: total / len(complete) for rank, total in caused.items()}
    return out


def host_arrivals(steps_by_rank: dict[int, list[dict[str, Any]]]) -> Arrivals:
    """Arrivals from the ranks' step records: host-clock (CPU) steps with a backward end only."""
    out: Arrivals = defaultdict(dict)
    for rank, steps in steps_by_rank.items():
        for step in steps:
            comm = step.get("comm") or {}
            if comm.get("clock") != "cpu" or None in (
                step.get("start"),
                comm.get("exposed_ms"),
                comm.get("backward_end_ms"),
            ):
                continue
            arrived = float(step["start"]) * 1e3 + float(comm["backward_end_ms"])
            out[step["step"]][rank] = (arrived, float(comm["exposed_ms"]))
    return out


def charges(caused: dict[int, float], stragglers: list[dict[str, Any]], ranks: int) -> list[dict[str, Any]]:
    """Who the waiting is charged to, most first: per rank that arrived last at some step, its share of
    the job's ``wait_for_peers_ms`` (``wait_ms``: the charges add up to it), the other ranks' wait per
    step it caused in all (``caused_wait_ms``), and ``reason``, its straggler cause in a word, or null
    where the rank is no straggler (then the waits it caused are step-to-step jitter)."""
    cause = {s["rank"]: CAUSES.get(s.get("cause", ""), "other") for s in stragglers}
    return sorted(
        (
            {"rank": rank, "wait_ms": total / ranks, "caused_wait_ms": total, "reason": cause.get(rank)}
            for rank, total in caused.items()
            if total > 0
        ),
        key=lambda charge: -charge["wait_ms"],
    )


def charge_sentence(wait_ms: float | None, charged: list[dict[str, Any]]) -> str | None:
    """Who the job's waiting for other ranks is charged to, in a sentence (``ddlprof report`` and
    ``analyze``, the dashboard), or None where waits are not split."""
    if wait_ms is None:
        return None
    shown = [
        f"rank {c['rank']} {c['wait_ms']:.2f} ms ("
        + (f"straggler, {c['reason']}" if c["reason"] else "no straggler: jitter")
        + ")"
        for c in charged[:3]
    ]
    more = f" and {len(charged) - 3} more rank(s)" if len(charged) > 3 else ""
    return (
        f"wait for peers {wait_ms:.2f} ms per step (job mean; waiting for the last rank to reach the "
        "all-reduce, not on the wire), charged to the rank that arrived last: "
        + (", ".join(shown) + more if shown else "none")
    )
