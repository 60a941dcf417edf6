"""A PyTorch Lightning job as users write it, with no ddlprof in it: torchvision's vit_b_16, bf16-mixed
precision, AdamW, the DDP strategy, a DataLoader over random images held in memory. A Lightning
``Callback`` (the job's code, not ddlprof's) times the steps.

    torchrun --standalone --nproc_per_node=1 benchmarks/foreign/lightning_job.py --steps 120
"""

from __future__ import annotations

import argparse
import os

import lightning as L
import torch
from steptimer import StepTimer
from torch.utils.data import DataLoader, TensorDataset


def _net(model: str, image_size: int) -> torch.nn.Module:
    if model == "mlp":  # a small net for CPU tests, where torchvision may not be at hand
        flat = 3 * image_size * image_size
        layers = [torch.nn.Flatten(), torch.nn.Linear(flat, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1000)]
        return torch.nn.Sequential(*layers)
    import torchvision

    size = {"image_size": image_size} if model.startswith("vit") else {}  # only ViTs take it
    return torchvision.models.get_model(model, num_classes=1000, **size)


class Classifier(L.LightningModule):
    def __init__(self, model: str, image_size: int) -> None:
        super().__init__()
        self.net = _net(model, image_size)
        self.loss = torch.nn.CrossEntropyLoss()

    def training_step(self, batch, batch_idx):
        images, labels = batch
        return self.loss(self.net(images), labels)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-4)


class Timing(L.Callback):
    def __init__(self, timer: StepTimer) -> None:
        self.timer = timer

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.timer.tick()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="vit_b_16", help="a torchvision model, or mlp (CPU tests)")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    n = 256
    data = TensorDataset(torch.rand(n, 3, args.image_size, args.image_size), torch.randint(0, 1000, (n,)))
    workers = {"num_workers": args.workers, "persistent_workers": args.workers > 0, "pin_memory": cuda}
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True, drop_last=True, **workers)
    timer = StepTimer(last=args.steps)
    trainer = L.Trainer(
        accelerator="gpu" if cuda else "cpu",
        devices=int(os.environ.get("LOCAL_WORLD_SIZE", 1)),
        num_nodes=int(os.environ.get("WORLD_SIZE", 1)) // int(os.environ.get("LOCAL_WORLD_SIZE", 1)),
        strategy="ddp",
        precision="bf16-mixed" if cuda else "32-true",
        max_steps=args.steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Timing(timer)],
    )
    trainer.fit(Classifier(args.model, args.image_size), loader)
    timer.save("lightning", model=args.model, batch_size=args.batch_size)


if __name__ == "__main__":
    main()
