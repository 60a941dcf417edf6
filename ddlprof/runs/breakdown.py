"""The stall breakdown of each step: where its wall time went, in its categories.

    compute_ms              forward, backward and optimizer work not waiting on anything
    data_stall_ms           blocked in next() on a DataLoader iterator
    interconnect_stall_ms   exposed gradient communication between the GPUs of one machine, on the wire
    network_stall_ms        exposed gradient communication between machines, on the wire
    wait_for_peers_ms       exposed gradient communication spent waiting for the last rank to reach the
                            all-reduce (``peer_wait.py``); charged to that rank, not to the wire
    other_ms                the loop's own time before the first forward (logging, host-to-device
                            copies, zero_grad, evaluation) not spent waiting for data

They add up to ``step_ms``. Exposed communication is the part of the all-reduce the step waits for
after backward has finished (see ``collectors/comm.py``). Where the ranks' arrivals at the all-reduce
are on one clock, the wait for the last rank is taken out of it first, and the rest (the wire) is
booked as below; elsewhere ``wait_for_peers_ms`` is null and the stalls hold all of it. A single-node
run books the wire as interconnect. A multi-node run splits it with the bandwidth probe
(``collectors/probe.py``) and the ring all-reduce cost model, per bucket
``latency + 2(n-1)/n * bytes / bus bandwidth``: the interconnect share is what the step's buckets
would cost among the ranks of one node over the intra-node bandwidth, relative to what they cost
among all ranks, which is the single-run counterpart of the differential ``t(one node) - t(one GPU)``
and ``t(full) - t(one node)``. Without a probe, all of it is booked as network and the reasons say so.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

CATEGORIES = (
    "compute_ms",
    "data_stall_ms",
    "interconnect_stall_ms",
    "network_stall_ms",
    "wait_for_peers_ms",
    "other_ms",
)
#: The categories of exposed communication: the two on the wire, and the wait for the last rank.
WIRE = ("interconnect_stall_ms", "network_stall_ms")
EXPOSED = (*WIRE, "wait_for_peers_ms")
#: A straggler's cause (the category of its busy time furthest above the median rank's) in a word:
#: the reason its wait is charged with.
CAUSES = {"compute_ms": "compute", "data_stall_ms": "data", "other_ms": "other"}
#: The data stall's parts, which add up to it: waiting for storage, CPU work, and what neither explains.
DATA_PARTS = ("data_fetch_ms", "data_prep_ms", "data_other_ms")
#: The categories' names in figures, tables and sentences.
LABELS = {
    "compute_ms": "compute",
    "data_stall_ms": "data stall",
    "interconnect_stall_ms": "interconnect stall",
    "network_stall_ms": "network stall",
    "wait_for_peers_ms": "wait for peers",
    "other_ms": "other",
}
SINGLE_NODE = "single node: no traffic between machines"
MULTI_NODE_SPLIT = (
    "multi-node run without a bandwidth probe (--no-probe, or it failed): all exposed communication "
    "is booked as network_stall_ms; the split between interconnect and network is not measured"
)
PROBE_SPLIT = (
    "multi-node run: exposed communication split by the start-of-job bandwidth probe (intra-node "
    "{intra}, all ranks {full}) with the ring all-reduce cost model"
)
LAUNCH_BOUND_LAG_MS = 10.0
LAUNCH_BOUND = (
    "launch-bound: when backward ends the GPU is only {lag:.1f} ms (median) behind the host, so part of "
    "the measured wait on the wire hides under host work the GPU waits for anyway; in such runs on "
    "2 x H200 the single-run figure was {bias} percentage points of the step above the differential "
    "method's on average (BENCHMARKS.md): check it with `ddlprof stalls`"
)
# launch_bound_mae_pp of the two validation launches, benchmarks/results/gpu-2xh200/
# attribution_compare.json (9.47) and attribution_compare_b32.json (12.93)
LAUNCH_BOUND_BIAS_PP = "9 to 13"
NO_PEER_WAIT = (
    "no arrival times at the all-reduce on the host's clock (a GPU run, no DDP, or an older ddlprof): "
    "the stalls hold all exposed communication, waiting for other ranks included"
)
ABSENT_RANK_WAIT = (
    "{ranks} of {world} recorded no step (rank file missing, empty, unreadable or without a step): "
    "waiting for the last rank is measured only at steps where every rank's arrival at the all-reduce is "
    "known, so the stalls hold all exposed communication, waiting for other ranks included"
)
MULTI_HOST_WAIT = (
    "several hosts: their clocks are not aligned, so waiting for other ranks is not told apart from "
    "wire time (the stalls hold both)"
)
NO_DDP = "no DistributedDataParallel module seen: no gradient communication to time"
NO_FORWARD = "no DDP forward seen: loop overhead is not separated from compute"


def ring_factor(n: int) -> float:
    """Bytes a ring all-reduce moves per byte of buffer, per rank: 2(n-1)/n (the probe turns its timings
    into bus bandwidth with it, the split below turns them back into time)."""
    return 2 * (n - 1) / n


def _ring_ms(stats: dict[str, Any], bucket_bytes: list[int]) -> float:
    factor = ring_factor(stats["ranks"])
    return sum(stats["latency_us"] / 1e3 + factor * b / (stats["busbw_gbps"] * 1e6) for b in bucket_bytes)


def interconnect_share(probe: dict[str, Any] | None, bucket_bytes: list[int]) -> float | None:
    """Share of the exposed communication that the interconnect alone would cost (0 to 1)."""
    if not probe or not probe.get("full") or not bucket_bytes:
        return None
    full = _ring_ms(probe["full"], bucket_bytes)
    intra = _ring_ms(probe["intra"], bucket_bytes) if probe.get("intra") else 0.0
    return min(1.0, intra / full) if full > 0 else None


def step_categories(
    step: dict[str, Any],
    multi_node: bool,
    probe: dict[str, Any] | None = None,
    wait_ms: float | None = None,
) -> dict[str, float | None]:
    """The step's categories; ``wait_ms`` is its wait for the last rank (``peer_wait.py``), None where
    not known, and never more than its exposed communication."""
    step_ms = float(step["step_ms"])
    data = step.get("data_wait_ms")
    comm = step.get("comm")
    exposed = comm.get("exposed_ms") if isinstance(comm, dict) else None
    other = step.get("loop_ms")
    interconnect: float | None
    network: float | None
    wait = None if exposed is None or wait_ms is None else min(wait_ms, exposed)
    wire = None if exposed is None else exposed - (wait or 0.0)
    if wire is None:
        interconnect = network = None
    elif multi_node:
        buckets = [b[1] for b in comm.get("per_bucket", [])] if isinstance(comm, dict) else []
        share = interconnect_share(probe, buckets)
        interconnect = None if share is None else wire * share
        network = wire if share is None else wire - interconnect  # type: ignore[operator]
    else:
        interconnect, network = wire, 0.0
    known = sum(v for v in (data, exposed, other) if v is not None)
    return {
        "step_ms": step_ms,
        "compute_ms": max(0.0, step_ms - known),
        "data_stall_ms": data,
        "interconnect_stall_ms": interconnect,
        "network_stall_ms": network,
        "wait_for_peers_ms": wait,
        "other_ms": other,
        **data_split(data, step.get("loader")),
    }


def busy_ms(row: dict[str, Any]) -> float:
    """A rank's time outside exposed communication (wire and waiting alike): what a straggler has more of."""
    return (row["step_ms"] or 0.0) - sum(row.get(key) or 0.0 for key in EXPOSED)


def data_split(data_ms: float | None, loader: Any) -> dict[str, float | None]:
    """The step's data stall in ``DATA_PARTS``, in proportion to what its batches cost to make.

    Up to the producers' wall time per batch, the stall is split as that time was: CPU work and waiting
    for a CPU (prep: decoding, augmentation, collation) against the rest (fetch: blocked on storage or
    the network). A stall longer than the batches took to make is not theirs: the excess is
    ``data_other_ms`` (the hand-over from the workers, pinning, the sampler). Null where a batch of
    the step has no cost (older collectors, a worker that restarted).
    """
    if data_ms is None or not isinstance(loader, dict) or not loader.get("batches") or loader.get("uncosted"):
        return dict.fromkeys(DATA_PARTS)
    wall = float(loader.get("wall_ms") or 0.0)
    explained = min(data_ms, wall)
    prep_share = (
        min(1.0, (float(loader.get("cpu_ms") or 0.0) + float(loader.get("cpu_wait_ms") or 0.0)) / wall)
        if wall > 0
        else 0.0
    )
    return {
        "data_fetch_ms": explained * (1.0 - prep_share),
        "data_prep_ms": explained * prep_share,
        "data_other_ms": data_ms - explained,
    }


def data_line(summary: dict[str, Any]) -> str | None:
    """The job's data stall in its parts, and what a batch cost to make on the rank that waits least."""
    job = summary["job"]
    if not job.get("data_stall_ms") or job.get("data_fetch_ms") is None:
        return None
    line = (
        f"data stall {job['data_stall_ms']:.1f} ms = fetch {job['data_fetch_ms']:.1f} (blocked on storage) "
        f"+ prep {job['data_prep_ms']:.1f} (CPU) + other {job['data_other_ms']:.1f}"
    )
    rank = min(
        (r for r in summary["ranks"] if r.get("loader")),
        key=lambda r: r["data_stall_ms"] or 0.0,
        default=None,
    )
    if rank is not None:
        loader = rank["loader"]
        blocked = max(0.0, loader["batch_ms"] - loader["batch_cpu_ms"] - loader["batch_cpu_wait_ms"])
        cores = f", {loader['cpus']} CPU cores" if loader.get("cpus") else ""
        line += (
            f"; rank {rank['rank']} (the one that waits least, as the job does): {loader['workers']} "
            f"DataLoader worker(s){cores}, a batch took "
            f"{loader['batch_ms']:.1f} ms to make (CPU {loader['batch_cpu_ms']:.1f}, waiting for a free "
            f"core {loader['batch_cpu_wait_ms']:.1f}, blocked {blocked:.1f})"
        )
    return line


def reasons(
    multi_node: bool,
    comm_states: Iterable[str | None],
    saw_forward: bool,
    collector_warnings: dict[str, str],
    probe: dict[str, Any] | None = None,
    gpu_lag_ms: float | None = None,
    wait_reason: str | None = None,
) -> dict[str, str]:
    """Why a category is null, zero or less sure, for the report's footnotes and summary.json
    (``wait_reason``: why waiting for other ranks is not split from the wire, where it is not)."""
    out: dict[str, str] = {}
    comm_reason = collector_warnings.get("comm")
    timed = any(state == "timed" for state in comm_states)
    if comm_reason:
        out["interconnect_stall_ms"] = out["network_stall_ms"] = f"comm collector stopped: {comm_reason}"
    elif not timed:
        out["interconnect_stall_ms"] = out["network_stall_ms"] = NO_DDP
    elif multi_node and probe and probe.get("full"):
        intra = f"{probe['intra']['busbw_gbps']:.1f} GB/s" if probe.get("intra") else "none: one GPU per node"
        text = PROBE_SPLIT.format(intra=intra, full=f"{probe['full']['busbw_gbps']:.1f} GB/s")
        out["interconnect_stall_ms"] = out["network_stall_ms"] = text
    elif multi_node:
        out["interconnect_stall_ms"] = MULTI_NODE_SPLIT
    else:
        out["network_stall_ms"] = SINGLE_NODE
    if gpu_lag_ms is not None and gpu_lag_ms < LAUNCH_BOUND_LAG_MS and not comm_reason:
        caveat = LAUNCH_BOUND.format(lag=gpu_lag_ms, bias=LAUNCH_BOUND_BIAS_PP)
        stalls = ("interconnect_stall_ms", "network_stall_ms") if multi_node else ("interconnect_stall_ms",)
        for key in stalls:
            out[key] = f"{out[key]}; {caveat}" if key in out else caveat
    if wait_reason:  # no communication timed at all says so, as for the stalls
        out["wait_for_peers_ms"] = wait_reason if timed and not comm_reason else out["interconnect_stall_ms"]
    if "data" in collector_warnings:
        out["data_stall_ms"] = f"data collector stopped: {collector_warnings['data']}"
    if not saw_forward:
        out["other_ms"] = NO_FORWARD
    return out


def batch_per_gpu(ranks: list[dict[str, Any]]) -> float | int | None:
    """Mean samples per steady step of the lowest rank: its throughput times its mean step time (a
    summary made by hand or from odd files may hold anything there: no number, no batch)."""
    for rank in ranks:
        rate, step_ms = rank.get("throughput_samples_per_s"), rank.get("step_ms")
        if finite_number(rate) and finite_number(step_ms) and rate >= 0 and step_ms > 0:
            batch = rate * step_ms / 1e3
            return round(batch) if abs(batch - round(batch)) < 1e-6 * max(1.0, batch) else batch
    return None


def finite_number(value: Any) -> bool:
    """A recorded figure that is a finite number of a sane size (a workload record may hold anything,
    an integer of 400 digits among them, which no float holds)."""
    try:
        return isinstance(value, int | float) and math.isfinite(value) and abs(value) < 1e18
    except OverflowError:
        return False
