"""A plain torchvision DDP loop as users write it, with no ddlprof in it: resnet50, bf16 autocast,
channels_last, SGD with momentum, fed by a DataLoader (workers, pinned memory, persistent workers)
of random images; or ``--gpu-resident`` batches made once on the GPU.

    torchrun --standalone --nproc_per_node=1 benchmarks/foreign/plain_loop.py --steps 120
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
import torchvision
from steptimer import StepTimer
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler


class RandomImages(Dataset):
    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.rand(3, 224, 224), index % 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--gpu-resident", action="store_true")
    parser.add_argument(
        "--no-cudnn-benchmark",
        action="store_true",
        help="leave cudnn.benchmark off (issue 12: does its first-step autotuning make launches differ?)",
    )
    parser.add_argument(
        "--nchw", action="store_true", help="leave model and images in NCHW order, as a plain script does"
    )
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = not args.no_cudnn_benchmark
    model = torchvision.models.get_model(args.model, num_classes=1000).to(device)
    layout = torch.contiguous_format if args.nchw else torch.channels_last
    model = model.to(memory_format=layout)
    model = DDP(model, device_ids=[local_rank] if cuda else None)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()

    if args.gpu_resident:
        images = torch.rand(args.batch_size, 3, 224, 224, device=device)
        labels = torch.randint(0, 1000, (args.batch_size,), device=device)
        batches = iter(lambda: (images, labels), None)
    else:
        dataset = RandomImages(args.batch_size * dist.get_world_size() * (args.steps + 8))
        loader = DataLoader(
            dataset,
            batch_size=args.batch_size,
            sampler=DistributedSampler(dataset),
            num_workers=args.workers,
            pin_memory=cuda,
            persistent_workers=args.workers > 0,
            drop_last=True,
        )
        batches = iter(loader)

    timer = StepTimer(last=args.steps)
    model.train()
    for _ in range(args.steps):
        images, labels = next(batches)
        images = images.to(device, non_blocking=True).contiguous(memory_format=layout)
        labels = labels.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = loss_fn(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        timer.tick()
    timer.save("plain_loop", model=args.model, batch_size=args.batch_size, gpu_resident=args.gpu_resident)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
