"""A Hugging Face ``Trainer`` job as users write it, with no ddlprof in it: bert-base built from its
config (no download), sequence classification on random token ids, bf16 on a GPU, the Trainer's own
DataLoader and DDP set-up. A ``TrainerCallback`` (the job's code, not ddlprof's) times the steps.

    torchrun --standalone --nproc_per_node=1 benchmarks/foreign/hf_trainer.py --steps 120
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from steptimer import StepTimer
from torch.utils.data import Dataset
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)


class RandomTokens(Dataset):
    def __init__(self, size: int, length: int, vocab: int) -> None:
        self.size, self.length, self.vocab = size, length, vocab

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(index)
        return {
            "input_ids": torch.randint(self.vocab, (self.length,), generator=generator),
            "attention_mask": torch.ones(self.length, dtype=torch.long),
            "labels": torch.tensor(index % 2),
        }


class Timing(TrainerCallback):
    def __init__(self, timer: StepTimer) -> None:
        self.timer = timer

    def on_step_end(self, args, state, control, **kwargs):
        self.timer.tick()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--tiny", action="store_true", help="a 2-layer BERT (for CPU tests)")
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    config = BertConfig(num_labels=2)
    if args.tiny:
        config = BertConfig(num_labels=2, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=128)  # fmt: skip
    model = BertForSequenceClassification(config)
    dataset = RandomTokens(args.batch_size * 8 * (args.steps + 8), args.seq_len, config.vocab_size)
    timer = StepTimer(last=args.steps)
    with tempfile.TemporaryDirectory() as out:
        training = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=args.batch_size,
            max_steps=args.steps,
            bf16=cuda,
            use_cpu=not cuda,
            report_to="none",
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=training, train_dataset=dataset, callbacks=[Timing(timer)])
        result = trainer.train()
    timer.save("hf_trainer", model="bert-base" if not args.tiny else "bert-tiny", batch_size=args.batch_size,
               train_runtime_s=result.metrics.get("train_runtime"))  # fmt: skip


if __name__ == "__main__":
    main()
