"""Measure step times on one GPU and with DDP for many models in ONE launch per transport.

The stall dataset (issue 4) and the ground truth of the attribution check (issue 3): a launch costs
10-15 s of start-up (torch, CUDA, NCCL), so the models and batch sizes are looped inside one
process group instead of one launch each. For every model x batch it measures, on every rank:

- ``single``: the model without DDP on this rank's GPU (with ``--single-gpu``; the ranks run it at
  the same time, each on its own GPU, so nothing is shared but the host's CPUs),
- ``ddp``: the same model under DistributedDataParallel across the launch's ranks,

each as the mean step time of ``--steps`` steps after ``--warmup`` steps, timed like a training loop
(no synchronisation inside the loop, one at each end). The training step is the one of
``examples/ddp_train.py`` (synthetic batch on the GPU, SGD with momentum, cross-entropy), so the
numbers compare with wrapped runs of that script. It also measures the all-reduce bus bandwidth
and small-message latency of the launch's transport. Rows are appended to ``--out`` (CSV) as they
come, so a launch cut short by ``--deadline-s`` keeps what it measured.

    NCCL_P2P_DISABLE=1 torchrun --standalone --nproc_per_node=2 benchmarks/collect_dataset.py \\
        --transport pcie --models resnet50,bert-base --batch-sizes 32,64 --out dataset.csv
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from ddp_train import build_model, synthetic_batch

from ddlprof.runs.breakdown import ring_factor

CLASSES = 1000
CUDA = torch.cuda.is_available()  # CPU (gloo) only to try the script out
FIELDS = (
    "model",
    "batch_per_gpu",
    "mode",
    "transport",
    "world_size",
    "gpus_per_node",
    "nodes",
    "step_ms",
    "step_ms_ranks",
    "busbw_gbps",
    "latency_us",
    "error",
    "gpu",
    "driver",
    "torch",
    "nccl",
    "date",
)


def sync() -> None:
    if CUDA:
        torch.cuda.synchronize()


def device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if CUDA else torch.device("cpu")


def training_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, batch: tuple[torch.Tensor, torch.Tensor]
) -> Callable[[], None]:
    """examples/ddp_train.py's step on a fixed batch: cross-entropy, backward, optimizer step."""
    loss_fn = nn.CrossEntropyLoss()
    inputs, labels = batch

    def step() -> None:
        loss_fn(model(inputs), labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def time_steps(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], warmup: int, steps: int) -> float:
    """Mean ms per optimizer step over ``steps`` steps, after ``warmup`` untimed ones."""
    step = training_step(model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), batch)
    for _ in range(warmup):
        step()
    sync()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return (time.perf_counter() - started) * 1e3 / steps


def allreduce_busbw(world: int, nbytes: int, iters: int) -> tuple[float, float]:
    """(bus bandwidth in GB/s, time per all-reduce in us) as nccl-tests reports them."""
    tensor = torch.ones(nbytes // 4, device=device())
    for _ in range(3):
        dist.all_reduce(tensor)
    sync()
    started = time.perf_counter()
    for _ in range(iters):
        dist.all_reduce(tensor)
    sync()
    seconds = (time.perf_counter() - started) / iters
    return ring_factor(world) * nbytes / seconds / 1e9, seconds * 1e6


def provenance() -> dict[str, str]:
    try:
        import pynvml

        pynvml.nvmlInit()
        driver = pynvml.nvmlSystemGetDriverVersion()
    except Exception:  # provenance is best effort
        driver = ""
    if not CUDA:
        return {"gpu": "cpu", "driver": "", "torch": torch.__version__, "nccl": "", "date": today()}
    return {
        "gpu": torch.cuda.get_device_name(),
        "driver": driver if isinstance(driver, str) else driver.decode(),
        "torch": torch.__version__,
        "nccl": ".".join(map(str, torch.cuda.nccl.version())),
        "date": today(),
    }


def today() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")


def all_agree(flag: bool) -> bool:
    """True when every rank says True (so all ranks take the same branch)."""
    value = torch.tensor([0 if flag else 1], device=device())
    dist.all_reduce(value)
    return int(value.item()) == 0


def gathered(value: float) -> list[float]:
    out = [torch.zeros(1, device=device()) for _ in range(dist.get_world_size())]
    dist.all_gather(out, torch.tensor([value], device=device()))
    return [float(t.item()) for t in out]


def measure(name: str, batch_size: int, ddp: bool, args: argparse.Namespace) -> tuple[list[float], str]:
    """Per-rank mean step ms (empty on failure) and the error, agreed among the ranks."""
    error, step_ms = "", float("nan")
    try:
        torch.manual_seed(0)
        model, shape, vocab = build_model(name, CLASSES)
        model = model.to(device())
        if ddp:
            ids = [device().index] if CUDA else None
            model = DDP(model, device_ids=ids, bucket_cap_mb=args.bucket_cap_mb)
        batch = synthetic_batch(batch_size, shape, vocab, CLASSES, device())
        step_ms = time_steps(model, batch, args.warmup, args.steps)
    except Exception as exc:  # one failed model (out of memory) must not end the launch
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    finally:
        model = batch = None  # free the GPU memory before the next model
        if CUDA:
            torch.cuda.empty_cache()
    if not all_agree(not error):
        return [], error or "failed on another rank"
    return gathered(step_ms), ""


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", required=True, help="comma-separated names (see examples/ddp_train.py)")
    parser.add_argument("--batch-sizes", default="32,64")
    parser.add_argument("--transport", required=True, help="label: nvlink, pcie, socket, ...")
    parser.add_argument("--nodes", type=int, default=1, help="emulated nodes in this launch (a label)")
    parser.add_argument("--single-gpu", action="store_true", help="also measure each model without DDP")
    parser.add_argument(
        "--no-ddp", action="store_true", help="only the models without DDP (one-GPU times of a GPU type)"
    )
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--bucket-cap-mb", type=float, default=25.0)
    parser.add_argument("--deadline-s", type=float, default=1e9, help="start no new model after this")
    parser.add_argument("--out", type=Path, required=True, help="CSV, appended to")
    args = parser.parse_args()

    dist.init_process_group("nccl" if CUDA else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if CUDA:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    started = time.monotonic()
    facts = provenance()
    base = {"transport": args.transport, "nodes": args.nodes, "gpus_per_node": world // args.nodes, **facts}
    busbw, _ = allreduce_busbw(world, 256 << 20, 20)
    _, latency_us = allreduce_busbw(world, 8 << 10, 200)
    rows = [{**base, "mode": "allreduce", "world_size": world, "busbw_gbps": round(busbw, 2),
             "latency_us": round(latency_us, 1)}]  # fmt: skip
    if rank == 0:
        print(f"{socket.gethostname()} {args.transport}: {busbw:.1f} GB/s, {latency_us:.0f} us", flush=True)
    write = rank == 0 and args.out
    if write:
        new = not args.out.exists()
        file = args.out.open("a", newline="")
        writer = csv.DictWriter(file, FIELDS, extrasaction="ignore")
        if new:
            writer.writeheader()
    modes = (["single"] if args.single_gpu or args.no_ddp else []) + ([] if args.no_ddp else ["ddp"])
    for name in args.models.split(","):
        for batch_size in map(int, args.batch_sizes.split(",")):
            if not all_agree(time.monotonic() - started < args.deadline_s):
                break
            for mode in modes:
                per_rank, error = measure(name, batch_size, mode == "ddp", args)
                row = {**base, "model": name, "batch_per_gpu": batch_size, "mode": mode,
                       "world_size": 1 if mode == "single" else world, "error": error}  # fmt: skip
                if per_rank:
                    row["step_ms"] = round(sum(per_rank) / len(per_rank), 3)
                    row["step_ms_ranks"] = ";".join(f"{v:.3f}" for v in per_rank)
                rows.append(row)
                if rank == 0:
                    print(f"{name} b{batch_size} {mode}: {row.get('step_ms', error)}", flush=True)
        if write:
            writer.writerows(rows)
            file.flush()
            rows = []
    if write:
        writer.writerows(rows)
        file.close()
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
