"""Ground truth and single-run attribution from the SAME launch (issue 3's validation).

Run under ``ddlprof wrap``. For every model x batch it trains three copies of the model, in blocks
that take turns ``--repeats`` times so that slow drifts (clocks, temperature) hit all three alike:

- ``plain``: the model without DDP, each rank alone on its GPU,
- ``ddp1``: the model under DDP on a process group of this rank alone, which is what the
  ``one_gpu`` variant of ``ddlprof stalls`` runs for a script that always wraps its model in DDP
  (examples/ddp_train.py does): DDP's hooks, bucket copies and a one-rank all-reduce, no wire,
- ``ddp2``: the model under DDP across every rank of the launch (the job as launched).

So the differential ground truth of ``ddlprof stalls`` is ``t(ddp2) - t(ddp1)`` (interconnect on one
node), and ``t(ddp1) - t(plain)`` is DDP's own cost without any wire. Each block is timed like a
training loop (no synchronisation inside, one at each end); every step is also a ``ddlprof.mark_step``
so the wrapped run's records of the ``ddp2`` blocks give the single-run attribution of exactly those
steps. Launches that differ only in when they ran disagree by more than 10% on CNN step times on the
device, which is why truth and attribution are taken from one launch.

    ddlprof wrap --out RUN -- torchrun --standalone --nproc_per_node=2 \\
        benchmarks/attribution_inlaunch.py --models resnet50,bert-base --phases-out RUN/phases.json
    python benchmarks/validate_attribution.py compare RUN
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

sys.path.insert(0, str(Path(__file__).resolve().parent))
from collect_dataset import (
    CLASSES,
    CUDA,
    all_agree,
    build_model,
    device,
    provenance,
    sync,
    synthetic_batch,
    today,
    training_step,
)

import ddlprof

PHASES = ("plain", "ddp1", "ddp2")


class Counter:
    """Step numbers as ``ddlprof wrap`` counts them: one per ``mark_step``."""

    def __init__(self) -> None:
        self.step = 0
        self.mark(0)  # before any optimizer step, so the collectors never count one on their own

    def mark(self, samples: int) -> int:
        ddlprof.mark_step(samples)
        self.step += 1
        return self.step


def train_block(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: tuple,
    warmup: int,
    steps: int,
    counter: Counter,
    group: dist.ProcessGroup | None,
) -> dict:
    """One block: untimed warm-up steps, then ``steps`` timed ones; their step numbers and ms/step."""
    step, labels = training_step(model, optimizer, batch), batch[1]
    for _ in range(warmup):
        step()
        counter.mark(len(labels))
    sync()
    if group is not None:
        dist.barrier()  # both ranks start the timed ddp2 steps together
    counter.mark(len(labels))  # closes the step that holds the drain and the barrier (not counted)
    first, started, unix = counter.step + 1, time.perf_counter(), time.time()
    for _ in range(steps):
        step()
        counter.mark(len(labels))
    sync()
    ms = (time.perf_counter() - started) * 1e3 / steps
    return {"first_step": first, "last_step": counter.step, "ms": ms, "unix": [unix, time.time()]}


def measure(
    name: str, batch_size: int, own: dist.ProcessGroup, counter: Counter, args: argparse.Namespace
) -> dict:
    """Every block of one model x batch on this rank, or the error (agreed among the ranks)."""
    blocks: list[dict] = []
    error = ""
    models: dict[str, nn.Module] = {}
    try:
        torch.manual_seed(0)
        base, shape, vocab = build_model(name, CLASSES)
        base = base.to(device())
        ids = [device().index] if CUDA else None
        cap = args.bucket_cap_mb
        models["ddp2"] = DDP(copy.deepcopy(base), device_ids=ids, bucket_cap_mb=cap)
        models["ddp1"] = DDP(copy.deepcopy(base), device_ids=ids, bucket_cap_mb=cap, process_group=own)
        models["plain"] = base
        optimizers = {k: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for k, m in models.items()}
        batch = synthetic_batch(batch_size, shape, vocab, CLASSES, device())
        for repeat in range(args.repeats):
            for phase in PHASES:
                group = dist.group.WORLD if phase == "ddp2" else None
                block = train_block(
                    models[phase], optimizers[phase], batch, args.warmup, args.steps, counter, group
                )
                blocks.append({"phase": phase, "repeat": repeat, **block})
                dist.barrier()  # the next block starts together on every rank
    except Exception as exc:  # one failed model (out of memory) must not end the launch
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    finally:
        models.clear()
        base = batch = optimizers = None  # free the GPU memory before the next model
        if CUDA:
            torch.cuda.empty_cache()
    if not all_agree(not error):
        return {"error": error or "failed on another rank"}
    return {"blocks": blocks}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="resnet50")
    parser.add_argument("--batch-sizes", default="32,64")
    parser.add_argument("--transport", default="nvlink", help="a label for the rows (set NCCL_* yourself)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per block")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before each block")
    parser.add_argument("--repeats", type=int, default=2, help="turns of the three blocks")
    parser.add_argument("--bucket-cap-mb", type=float, default=25.0)
    parser.add_argument("--deadline-s", type=float, default=1e9, help="start no model after this")
    parser.add_argument("--phases-out", type=Path, required=True, help="JSON written by each rank")
    args = parser.parse_args()

    if CUDA:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if CUDA else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    own = [dist.new_group([r]) for r in range(world)][rank]  # every rank creates every group
    counter = Counter()
    started = time.monotonic()
    configs = []
    for name in args.models.split(","):
        for batch_size in map(int, args.batch_sizes.split(",")):
            if not all_agree(time.monotonic() - started < args.deadline_s):
                break
            result = measure(name, batch_size, own, counter, args)
            configs.append({"model": name, "batch_per_gpu": batch_size, **result})
            if rank == 0:
                print(
                    json.dumps(
                        {
                            "model": name,
                            "batch_per_gpu": batch_size,
                            **{k: v for k, v in result.items() if k != "blocks"},
                            "ms": {b["phase"]: round(b["ms"], 2) for b in result.get("blocks", [])},
                        }
                    ),
                    flush=True,
                )
    out = {"transport": args.transport, "rank": rank, "world_size": world, "steps": args.steps,
           "warmup": args.warmup, "repeats": args.repeats, "date": today(), **provenance(),
           "configs": configs}  # fmt: skip
    path = args.phases_out.with_name(f"{args.phases_out.stem}.rank{rank}{args.phases_out.suffix}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
