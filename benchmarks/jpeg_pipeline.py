"""A real image input pipeline, as users write it, with no ddlprof in it: JPEG files generated here
(random images saved with Pillow), read by torchvision's ``ImageFolder``, decoded and augmented
(RandomResizedCrop, flip, ToTensor, Normalize) in DataLoader workers, feeding a torchvision model
under DDP. For ``ddlprof wrap``'s data-stall split (fetch vs prep) and its worker advice.

    python benchmarks/jpeg_pipeline.py --make /tmp/jpegs --images 2000            # once
    ddlprof wrap -- torchrun --nproc_per_node=1 benchmarks/jpeg_pipeline.py --data /tmp/jpegs --workers 2
    ddlprof stalls --data -- torchrun --nproc_per_node=1 benchmarks/jpeg_pipeline.py --data /tmp/jpegs
    # (the input pipeline's whole cost: as launched, and with its first 8 batches replayed from memory)
    # CPU: --model resnet18 --image-size 64 --batch-size 16; drop the page cache between runs to read
    # from disk (echo 3 > /proc/sys/vm/drop_caches) or keep it warm to see prep alone.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path


def make_images(root: Path, images: int, size: int, classes: int = 10) -> None:
    """``images`` random JPEGs of ``size`` x ``size`` in ``classes`` folders (quality 90)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(images):
        folder = root / f"class{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        # smooth noise compresses like a photograph more than white noise does
        small = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((size, size), Image.BILINEAR).save(folder / f"{i}.jpg", quality=90)


def train(args: argparse.Namespace) -> None:
    import torch
    import torch.distributed as dist
    import torchvision
    from torchvision import transforms

    cuda = torch.cuda.is_available()
    local = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo")
    augment = transforms.Compose(
        [
            transforms.RandomResizedCrop(args.image_size),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )
    data = torchvision.datasets.ImageFolder(str(args.data), transform=augment)
    sampler = torch.utils.data.distributed.DistributedSampler(data)
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=args.batch_size,
        sampler=sampler,
        num_workers=args.workers,
        pin_memory=cuda,
        persistent_workers=args.workers > 0,
        drop_last=True,
    )
    model = torchvision.models.get_model(args.model, num_classes=10).to(device)
    model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local] if cuda else None)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    step, started = 0, None
    while step < args.steps:
        sampler.set_epoch(step)
        for images, labels in loader:
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                loss = loss_fn(model(images), labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if step == 10:
                if cuda:
                    torch.cuda.synchronize()
                started = time.perf_counter()
            if step >= args.steps:
                break
    if cuda:
        torch.cuda.synchronize()
    if dist.get_rank() == 0 and started is not None:
        print(f"jpeg_pipeline: {(time.perf_counter() - started) * 1e3 / (args.steps - 10):.2f} ms per step")
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--make", type=Path, help="write the JPEGs here and exit")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--source-size", type=int, default=256, help="side of the generated JPEGs")
    parser.add_argument("--data", type=Path)
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    if args.make is not None:
        make_images(args.make, args.images, args.source_size)
    elif args.data is not None:
        train(args)
    else:
        parser.error("give --make DIR or --data DIR")


if __name__ == "__main__":
    main()
