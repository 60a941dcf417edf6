"""A small DDP training script to try ddlprof on: CPU with gloo when there is no GPU, NCCL on GPUs.

    ddlprof wrap torchrun --nproc_per_node=2 examples/ddp_train.py
    ddlprof wrap torchrun --nproc_per_node=2 examples/ddp_train.py --model resnet50 --batch-size 64

It is an ordinary script with no ddlprof in it. Knobs for experiments: --data-delay-ms sleeps in the
dataset's __getitem__ (a slow input pipeline; --data-delay-ranks limits it to some ranks, a straggler),
--bucket-cap-mb sets DDP's gradient bucket size, --comm-delay-ms registers a DDP comm hook that sleeps
before each all-reduce (a slow network), --exit-code ends the job with that code after training.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import sys
import time

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler


class RandomSamples(Dataset):
    """Random images (or token ids, with a vocabulary) and labels, made deterministically per index;
    optionally slow to load."""

    def __init__(
        self, size: int, shape: tuple[int, ...], classes: int, delay_ms: float, vocab: int | None = None
    ) -> None:
        self.size, self.shape, self.classes, self.delay_s = size, shape, classes, delay_ms / 1e3
        self.vocab = vocab

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self.delay_s:
            time.sleep(self.delay_s)
        generator = torch.Generator().manual_seed(index)
        if self.vocab:
            return torch.randint(self.vocab, self.shape, generator=generator), index % self.classes
        return torch.randn(self.shape, generator=generator), index % self.classes


def small_cnn(classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
        nn.Flatten(), nn.Linear(32 * 16, 64), nn.ReLU(), nn.Linear(64, classes),
    )  # fmt: skip


def mlp(width: int, classes: int) -> nn.Module:
    """Two hidden layers of ``width`` on flattened 3x32x32 images: a model whose gradient size is a
    knob (about 3072w + w^2 parameters) and whose compute on a CPU is small beside it."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(3 * 32 * 32, width), nn.ReLU(),
        nn.Linear(width, width), nn.ReLU(), nn.Linear(width, classes),
    )  # fmt: skip


# transformers models by the config class defaults, which are these published sizes
TRANSFORMERS = {"bert-base": "bert", "gpt2": "gpt2"}
SEQUENCE_LENGTH = 128


class Classifier(nn.Module):
    """A transformers sequence classifier that returns the logits tensor, like a vision model."""

    def __init__(self, model_type: str, classes: int) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModelForSequenceClassification

        config = AutoConfig.for_model(model_type, num_labels=classes)
        config.pad_token_id = config.pad_token_id if config.pad_token_id is not None else config.eos_token_id
        self.model = AutoModelForSequenceClassification.from_config(config)
        self.vocab = config.vocab_size

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=tokens).logits


def build_model(name: str, classes: int) -> tuple[nn.Module, tuple[int, ...], int | None]:
    """The model, the shape of one sample, and the vocabulary size for token inputs (else None)."""
    if name == "small_cnn":
        return small_cnn(classes), (3, 32, 32), None
    if name.startswith("mlp_w") and name[5:].isdigit():
        return mlp(int(name[5:]), classes), (3, 32, 32), None
    if name in TRANSFORMERS:
        model = Classifier(TRANSFORMERS[name], classes)
        return model, (SEQUENCE_LENGTH,), model.vocab
    import torchvision

    size = 299 if name == "inception_v3" else 224
    return torchvision.models.get_model(name, num_classes=classes), (3, size, size), None


def synthetic_batch(
    batch: int, shape: tuple[int, ...], vocab: int | None, classes: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """One random batch on the device: pure compute, no input pipeline."""
    labels = torch.randint(0, classes, (batch,), device=device)
    if vocab:
        return torch.randint(vocab, (batch, *shape), device=device), labels
    return torch.randn(batch, *shape, device=device), labels


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model",
        default="small_cnn",
        help=f"small_cnn, mlp_wWIDTH (e.g. mlp_w1024), any torchvision model name, or "
        f"{', '.join(TRANSFORMERS)} (random weights)",
    )
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps to run")
    parser.add_argument("--batch-size", type=int, default=32, help="samples per GPU (per process) per step")
    parser.add_argument("--accumulate", type=int, default=1, help="micro-batches per optimizer step")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument(
        "--synthetic",
        action="store_true",
        help="no DataLoader: one random batch kept on the device (pure compute)",
    )
    parser.add_argument(
        "--amp", action="store_true", help="bf16 autocast around the forward and loss (mixed precision)"
    )
    parser.add_argument("--data-delay-ms", type=float, default=0.0, help="sleep per sample in __getitem__")
    parser.add_argument(
        "--data-delay-ranks",
        type=lambda text: {int(part) for part in text.split(",")},
        help="comma-separated ranks that --data-delay-ms slows (default: every rank)",
    )
    parser.add_argument("--bucket-cap-mb", type=float, help="DDP's bucket_cap_mb (default: DDP's own, 25 MB)")
    parser.add_argument(
        "--comm-delay-ms", type=float, default=0.0, help="sleep before each bucket all-reduce"
    )
    parser.add_argument(
        "--python-comm-hook",
        action="store_true",
        help="register DDP's Python allreduce_hook (to compare with the built-in C++ path)",
    )
    parser.add_argument("--exit-code", type=int, default=0, help="exit with this code after training")
    parser.add_argument(
        "--step-times",
        metavar="FILE",
        help="rank 0 writes the wall time of every optimizer step (ms) to FILE as JSON",
    )
    parser.add_argument(
        "--torch-profiler",
        action="store_true",
        help="run the whole loop under torch.profiler (to compare its overhead)",
    )
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    use_cuda = torch.cuda.is_available()
    if "RANK" not in os.environ:  # started as `python ddp_train.py`: a world of one process
        os.environ.update(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    dist.init_process_group("nccl" if use_cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    torch.manual_seed(0)

    classes = 10 if args.model == "small_cnn" or args.model.startswith("mlp_w") else 1000
    model, shape, vocab = build_model(args.model, classes)
    buckets = {} if args.bucket_cap_mb is None else {"bucket_cap_mb": args.bucket_cap_mb}
    ddp = DDP(model.to(device), device_ids=[device.index] if use_cuda else None, **buckets)
    if args.python_comm_hook:
        ddp.register_comm_hook(dist.group.WORLD, allreduce_hook)
    elif args.comm_delay_ms:
        delay_s = args.comm_delay_ms / 1e3

        def slow_allreduce(state, bucket):  # no annotations: DDP checks them as real types
            time.sleep(delay_s)
            return allreduce_hook(state, bucket)

        ddp.register_comm_hook(dist.group.WORLD, slow_allreduce)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    micro_batches = args.steps * args.accumulate
    if args.synthetic:
        fixed = synthetic_batch(args.batch_size, shape, vocab, classes, device)
        batches = (fixed for _ in range(micro_batches))
    else:
        samples = micro_batches * args.batch_size * world
        slowed = args.data_delay_ranks is None or rank in args.data_delay_ranks
        dataset = RandomSamples(samples, shape, classes, args.data_delay_ms if slowed else 0.0, vocab)
        loader = DataLoader(
            dataset,
            batch_size=args.batch_size,
            num_workers=args.workers,
            sampler=DistributedSampler(dataset, shuffle=False),
            pin_memory=use_cuda,
        )
        batches = iter(loader)

    profiler = contextlib.nullcontext()
    if args.torch_profiler:
        activities = [torch.profiler.ProfilerActivity.CPU] + (
            [torch.profiler.ProfilerActivity.CUDA] if use_cuda else []
        )
        profiler = torch.profiler.profile(activities=activities)
    step_ends = [time.perf_counter()]
    started = step_ends[0]
    with profiler:
        for index, (images, labels) in enumerate(batches):
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp):
                loss = loss_fn(ddp(images), labels) / args.accumulate
            loss.backward()
            if (index + 1) % args.accumulate == 0:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step_ends.append(time.perf_counter())
        if use_cuda:
            torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    if args.step_times and rank == 0:
        with open(args.step_times, "w") as file:
            json.dump([(b - a) * 1e3 for a, b in itertools.pairwise(step_ends)], file)
    if rank == 0:
        print(
            f"trained {args.model} for {args.steps} steps on {world} process(es) in {elapsed:.2f} s "
            f"(loss {loss.item() * args.accumulate:.3f})",
            flush=True,
        )
    leave_process_group(device)
    return args.exit_code


_HELD_TO_EXIT: list[dist.Work] = []


def leave_process_group(device: torch.device) -> None:
    """Wait for every rank, then destroy the process group, with no gloo thread left to take the GIL.

    Not ``dist.barrier()``: torch 2.13's gloo barrier holds the work in flight when it starts (the last
    gradient all-reduce) and its thread releases that work after the barrier, taking the GIL for a
    Python object the all-reduce captured during backward; a rank that is shutting down by then aborts
    ("terminate called without an active exception"; see benchmarks/gloo_thread_gil.py). An all-reduce
    holds no other work, and held here until exit it is released by the main thread, not by gloo's.
    """
    work = dist.all_reduce(torch.zeros(1, device=device), async_op=True)
    work.wait()
    _HELD_TO_EXIT.append(work)
    dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
