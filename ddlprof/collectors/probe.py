"""A short bandwidth probe at the start of a multi-GPU job: the interconnect/network split, and
the bandwidth that makes a reported run a row the stall models can learn from.

Right after the first DDP module is built (a collective point every rank reaches), the ranks learn
which of them share a machine; in a multi-node job they time all-reduces among the ranks of each
node (the interconnect) and among all ranks (what the job's own all-reduce crosses), and record
the bus bandwidth and latency of each. On one node the two are the same all-reduce, timed once.
It takes a fraction of a second and every rank runs the same collectives in the same order.

Every collective's work goes into ``keep``, which the session holds until the first step has ended.
A work that the backend's thread releases last releases its tensors there, and a tensor that Python
has seen takes the GIL to do so, which aborts a job that exits at that moment (see ``comm.py``); held
by the session, the works and their tensors (33 MiB) are released on the training thread.
"""

from __future__ import annotations

import time
import zlib
from typing import Any

from ddlprof.collectors.config import host_id
from ddlprof.runs.breakdown import ring_factor

SMALL, LARGE = 1 << 20, 32 << 20  # bytes: latency-bound and bandwidth-bound messages
WARMUP, TIMED = 2, 3


def _allocate(device: Any) -> tuple[Any, Any]:
    """The probe's two messages; allocated before any timing so that a rank short of memory can say
    so while every rank still reaches the same collectives."""
    import torch

    return torch.ones(LARGE // 4, device=device), torch.ones(SMALL // 4, device=device)


def _wait(work: Any, keep: list[Any]) -> None:
    """Wait for a collective launched with ``async_op=True``, as its synchronous form would, and keep it."""
    work.wait()
    keep.append(work)


def _everyone_has(dist: Any, device: Any, mine: bool, keep: list[Any]) -> bool:
    import torch

    flag = torch.tensor([1 if mine else 0], dtype=torch.int64, device=device)
    _wait(dist.all_reduce(flag, op=dist.ReduceOp.MIN, async_op=True), keep)
    return bool(flag.item())


def _time_allreduce(dist: Any, tensor: Any, group: Any, keep: list[Any]) -> float:
    import torch

    for _ in range(WARMUP):
        _wait(dist.all_reduce(tensor, group=group, async_op=True), keep)
    if tensor.is_cuda:
        torch.cuda.synchronize(tensor.device)
    start = time.perf_counter()
    for _ in range(TIMED):
        _wait(dist.all_reduce(tensor, group=group, async_op=True), keep)
    if tensor.is_cuda:
        torch.cuda.synchronize(tensor.device)
    return (time.perf_counter() - start) / TIMED


def _measure(dist: Any, buffers: tuple[Any, Any], group: Any, size: int, keep: list[Any]) -> dict[str, float]:
    """Bus bandwidth (GB/s) from the large message, latency (us) from the small one."""
    factor = ring_factor(size)
    large = _time_allreduce(dist, buffers[0], group, keep)
    small = _time_allreduce(dist, buffers[1], group, keep)
    busbw = factor * LARGE / large / 1e9
    latency = max(0.0, small - factor * SMALL / (busbw * 1e9))
    return {"busbw_gbps": round(busbw, 3), "latency_us": round(latency * 1e6, 1), "ranks": size}


def run_probe(ddp: Any, keep: list[Any]) -> dict[str, Any] | None:
    """The probe record, or None when there is nothing to probe (no process group, one rank)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    if ddp.process_group != dist.distributed_c10d._get_default_group():
        return {"type": "probe", "skipped": "DDP runs on a process subgroup"}
    started = time.perf_counter()
    device = next(ddp.module.parameters()).device
    world = dist.get_world_size()
    mine = torch.tensor([zlib.crc32(host_id().encode())], dtype=torch.int64, device=device)
    everyone = [torch.zeros_like(mine) for _ in range(world)]
    _wait(dist.all_gather(everyone, mine, async_op=True), keep)
    hosts = [int(t.item()) for t in everyone]
    nodes = sorted(set(hosts), key=hosts.index)
    record: dict[str, Any] = {"type": "probe", "nodes": len(nodes), "world_size": world}
    try:
        buffers: tuple[Any, Any] | None = _allocate(device)
    except (RuntimeError, MemoryError):  # out of memory on this rank: no rank times anything
        buffers = None
    all_allocated = _everyone_has(dist, device, buffers is not None, keep)
    if buffers is None or not all_allocated:
        record["skipped"] = f"a rank could not allocate the probe's {(LARGE + SMALL) >> 20} MiB"
        return record
    if len(nodes) == 1:
        record["local_size"] = world
        record["intra"] = record["full"] = _measure(dist, buffers, None, world, keep)
        dist.barrier()
        record["seconds"] = round(time.perf_counter() - started, 3)
        return record
    groups = [dist.new_group([r for r in range(world) if hosts[r] == node]) for node in nodes]
    local = groups[nodes.index(hosts[dist.get_rank()])]
    local_size = hosts.count(hosts[dist.get_rank()])
    record["local_size"] = local_size
    # Every rank runs the same collectives in the same order: ranks alone on their node time nothing
    # intra-node, but every local group still reaches the world all-reduce together.
    record["intra"] = _measure(dist, buffers, local, local_size, keep) if local_size > 1 else None
    record["full"] = _measure(dist, buffers, None, world, keep)
    dist.barrier()
    # Free the node group's communicator (NCCL buffers) now rather than holding it for the whole job.
    dist.destroy_process_group(local)
    record["seconds"] = round(time.perf_counter() - started, 3)
    return record
