"""The stall breakdown of each step: where its wall time went, in the five categories.

    compute_ms              forward, backward and optimizer work not waiting on anything
    data_stall_ms           blocked in next() on a DataLoader iterator
    interconnect_stall_ms   exposed gradient communication between the GPUs of one machine
    network_stall_ms        exposed gradient communication between machines
    other_ms                the loop's own time before the first forward (logging, host-to-device
                            copies, zero_grad, evaluation) not spent waiting for data

They add up to ``step_ms``. Exposed communication is the part of the all-reduce the step waits for
after backward has finished (see ``collectors/comm.py``). Until exact attribution exists, a
single-node run books all of it as interconnect, and a multi-node run books all of it as network
and says so in the reasons.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

CATEGORIES = ("compute_ms", "data_stall_ms", "interconnect_stall_ms", "network_stall_ms", "other_ms")
SINGLE_NODE = "single node: no traffic between machines"
MULTI_NODE_SPLIT = (
    "multi-node run: all exposed communication is booked as network_stall_ms; the exact split "
    "between interconnect and network is not measured yet"
)
NO_DDP = "no DistributedDataParallel module seen: no gradient communication to time"
NO_FORWARD = "no DDP forward seen: loop overhead is not separated from compute"


def step_categories(step: dict[str, Any], multi_node: bool) -> dict[str, float | None]:
    step_ms = float(step["step_ms"])
    data = step.get("data_wait_ms")
    comm = step.get("comm")
    exposed = comm.get("exposed_ms") if isinstance(comm, dict) else None
    other = step.get("loop_ms")
    interconnect: float | None
    network: float | None
    if exposed is None:
        interconnect = network = None
    elif multi_node:
        interconnect, network = None, exposed
    else:
        interconnect, network = exposed, 0.0
    known = sum(v for v in (data, exposed, other) if v is not None)
    return {
        "step_ms": step_ms,
        "compute_ms": max(0.0, step_ms - known),
        "data_stall_ms": data,
        "interconnect_stall_ms": interconnect,
        "network_stall_ms": network,
        "other_ms": other,
    }


def reasons(
    multi_node: bool, comm_states: Iterable[str | None], saw_forward: bool, collector_warnings: dict[str, str]
) -> dict[str, str]:
    """Why a category is null or zero, for the report's footnotes and summary.json."""
    out: dict[str, str] = {}
    comm_reason = collector_warnings.get("comm")
    if comm_reason:
        out["interconnect_stall_ms"] = out["network_stall_ms"] = f"comm collector stopped: {comm_reason}"
    elif not any(state == "timed" for state in comm_states):
        out["interconnect_stall_ms"] = out["network_stall_ms"] = NO_DDP
    elif multi_node:
        out["interconnect_stall_ms"] = MULTI_NODE_SPLIT
    else:
        out["network_stall_ms"] = SINGLE_NODE
    if "data" in collector_warnings:
        out["data_stall_ms"] = f"data collector stopped: {collector_warnings['data']}"
    if not saw_forward:
        out["other_ms"] = NO_FORWARD
    return out
