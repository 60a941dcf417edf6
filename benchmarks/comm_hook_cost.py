"""What each piece of per-bucket communication timing costs a DDP step (why ddlprof times the way
it does). One process per GPU, resnet50, synthetic data; each variant gets a fresh DDP instance with
its own comm hook, runs warm-up steps, then timed steps; variants are interleaved over rounds.

    torchrun --standalone --nproc_per_node=2 benchmarks/comm_hook_cost.py
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torchvision
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from torch.nn.parallel import DistributedDataParallel as DDP


def timed(hook, ready_event: bool, done_event: bool, then: bool, timing: bool = True):
    def wrapper(state, bucket):
        if ready_event:
            torch.cuda.Event(enable_timing=timing).record()
        future = hook(state, bucket)
        if not then:
            return future

        def on_done(fut):
            value = fut.value()
            if done_event:
                torch.cuda.Event(enable_timing=timing).record()
            return value

        return future.then(on_done)

    return wrapper


VARIANTS = {
    "builtin": None,
    "python_allreduce_hook": allreduce_hook,
    "then_only": timed(allreduce_hook, False, False, True),
    "ready_event": timed(allreduce_hook, True, False, False),
    "then_done_event": timed(allreduce_hook, False, True, True),
    "both_events": timed(allreduce_hook, True, True, True),
    "both_events_no_timing": timed(allreduce_hook, True, True, True, timing=False),
}


def main() -> int:
    dist.init_process_group("nccl")
    rank, local = dist.get_rank(), int(os.environ["LOCAL_RANK"])
    torch.cuda.set_device(local)
    model = torchvision.models.resnet50().cuda()
    images = torch.randn(64, 3, 224, 224, device="cuda")
    labels = torch.randint(0, 1000, (64,), device="cuda")
    loss_fn = torch.nn.CrossEntropyLoss()
    ddps = {}
    for name, hook in VARIANTS.items():
        ddp = DDP(model, device_ids=[local])
        if hook is not None:
            ddp.register_comm_hook(dist.group.WORLD, hook)
        ddps[name] = ddp
    results: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _round in range(3):
        for name, ddp in ddps.items():
            opt = torch.optim.SGD(ddp.parameters(), lr=0.01)
            ends = []
            for step in range(40):
                loss_fn(ddp(images), labels).backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                torch.cuda.synchronize() if step == 9 else None
                ends.append(time.perf_counter())
            results[name] += [(b - a) * 1e3 for a, b in itertools.pairwise(ends)]
    if rank == 0:
        summary = {name: round(statistics.median(times), 3) for name, times in results.items()}
        print(json.dumps(summary, indent=2))
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
