"""Host time a Python comm hook adds to each DDP backward, against DDP's built-in C++ all-reduce (why
ddlprof registers no hook of its own). A stack of linear layers split into ``--buckets`` buckets; each
variant gets a fresh DDP instance, warm-up steps, then timed steps, variants interleaved over rounds.
The figure is host time from the start of backward to its return (no synchronisation on a GPU: the
host-side cost a host-bound job cannot hide), median per variant, and its difference per bucket.

    torchrun --standalone --nproc_per_node=1 benchmarks/hook_host_cost.py              # CPU: gloo
    torchrun --standalone --nproc_per_node=1 benchmarks/hook_host_cost.py --device cuda  # GPU: NCCL
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from torch.nn.parallel import DistributedDataParallel as DDP


def mean_allreduce(process_group, bucket):  # no annotations: DDP checks them as real types
    """ddlprof's former stand-in for DDP's C++ hook (torch's allreduce_hook without its ``then``)."""
    group = process_group if process_group is not None else dist.group.WORLD
    tensor = bucket.buffer().div_(group.size())
    return dist.all_reduce(tensor, group=group, async_op=True).get_future()


def mean_allreduce_then(process_group, bucket):
    """As ddlprof registered it: with a ``then`` that takes the tensor out of the future's list."""
    return mean_allreduce(process_group, bucket).then(lambda done: done.value()[0])


VARIANTS = {"builtin": None, "allreduce_hook": allreduce_hook, "mean_allreduce_then": mean_allreduce_then}


def backward_ms(model: DDP, batch: torch.Tensor, steps: int) -> list[float]:
    times = []
    for _ in range(steps):
        loss = model(batch).sum()
        started = time.perf_counter()
        loss.backward()
        times.append((time.perf_counter() - started) * 1e3)
        model.zero_grad(set_to_none=True)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--buckets", type=int, default=14)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    cuda = args.device == "cuda"
    rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo")
    layer_mb = args.width * args.width * 4 / 2**20
    layers = [torch.nn.Linear(args.width, args.width) for _ in range(args.buckets)]
    batch = torch.randn(8, args.width, device=device)
    results: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name, hook in VARIANTS.items():
            model = DDP(torch.nn.Sequential(*layers).to(device), bucket_cap_mb=layer_mb * 1.01)
            if hook is not None:
                model.register_comm_hook(None, hook)
            backward_ms(model, batch, 5)
            results[name] += backward_ms(model, batch, args.steps)
            if cuda:
                torch.cuda.synchronize()
    if dist.get_rank() == 0:
        medians = {name: statistics.median(times) for name, times in results.items()}
        base = medians["builtin"]
        print(
            json.dumps(
                {
                    "device": torch.cuda.get_device_name(device) if cuda else "cpu",
                    "torch": torch.__version__,
                    "buckets": args.buckets,
                    "bucket_mb": round(layer_mb, 3),
                    "backward_ms_median": {k: round(v, 4) for k, v in medians.items()},
                    "extra_us_per_bucket": {
                        k: round((v - base) * 1e3 / args.buckets, 1) for k, v in medians.items()
                    },
                },
                indent=1,
            )
        )
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
