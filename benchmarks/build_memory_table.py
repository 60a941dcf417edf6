"""Build the shipped table of training-memory estimates per (model, batch per GPU).

    /tmp/venv/bin/python benchmarks/build_memory_table.py        # or any Python with ddlprof's deps

``ddlprof advise`` checks that a model fits in an instance's GPU memory without importing torch, so
the estimate of ``ddlprof.models.features.macro_features`` (``memory_bytes``: weights and buffers,
gradients, DDP's bucket buffers, optimizer state, activations saved for backward) is computed here,
once, for the 20 models of the shipped stall dataset at the batches below, and written to
``ddlprof/models/data/memory_estimates.csv`` with its provenance in ``memory_estimates.json``.

The estimate is built the way the dataset was measured: float32 parameters and activations, SGD with
momentum (one state tensor per gradient), DDP's default buckets, 224 x 224 images or 128 tokens per
sample (``examples/ddp_train.py``), on PyTorch's meta device (no weights, no GPU). Every part is
linear in the batch (activations) or constant (the rest), so the advisor interpolates between the
batches below and extrapolates beyond them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

OUT = REPO / "ddlprof" / "models" / "data" / "memory_estimates.csv"
BATCHES = (16, 32, 64, 128, 256)
PARTS = ("weights", "gradients", "ddp_buckets", "optimizer_state", "activations", "total")
COMMAND = "python benchmarks/build_memory_table.py"


def build(models: list[str], batches: tuple[int, ...]) -> tuple[pd.DataFrame, dict]:
    import torch

    from ddlprof.models.features import macro_features
    from ddlprof.models.zoo import DEFAULT_SEQ_LEN, import_torchvision

    import_torchvision()
    rows, sources = [], {}
    for model in models:
        for batch in batches:
            print(f"memory {model} batch {batch}", file=sys.stderr, flush=True)
            result = macro_features(model, batch_per_gpu=batch, optimizer="sgd", dtype=torch.float32)
            memory = result["memory_bytes"]
            if memory.get("total") is None:
                raise SystemExit(f"{model} batch {batch}: no memory estimate ({result.get('reasons')})")
            rows.append(
                {"model": model, "batch_per_gpu": batch, **{f"{p}_bytes": int(memory[p]) for p in PARTS}}
            )
            sources[model] = result["source"]
    provenance = {
        "description": "Training-memory estimate per GPU for the 20 models of the shipped stall dataset, "
        "per batch per GPU: what `ddlprof advise` checks GPU fit with, without importing torch.",
        "function": "ddlprof.models.features.macro_features(name, batch_per_gpu=B, optimizer='sgd', "
        "dtype=torch.float32): memory_bytes",
        "parts": {
            "weights_bytes": "parameters and buffers",
            "gradients_bytes": "one gradient per trainable parameter",
            "ddp_buckets_bytes": "DDP's flat bucket buffers (a second copy of the gradients unless "
            "gradient_as_bucket_view=True)",
            "optimizer_state_bytes": "SGD with momentum: one tensor per gradient",
            "activations_bytes": "tensors saved for backward by one forward pass on fake tensors (meta "
            "device), at that batch",
            "total_bytes": "the sum",
        },
        "inputs": f"224 x 224 RGB images; {DEFAULT_SEQ_LEN} tokens per sample for bert-base and gpt2 "
        "(as the stall dataset was measured, examples/ddp_train.py)",
        "not_included": "the CUDA context, cuDNN/cuBLAS workspaces, the caching allocator's "
        "fragmentation, temporary buffers of the forward and backward passes: the advisor adds an "
        "explicit allowance (ddlprof.advisor.filters)",
        "model_heads": "bert-base and gpt2 are the zoo's bare BertModel/GPT2Model; the measured "
        "classifiers add a 768 x 1000 head (about 3 MB of weights, 12 MB with gradients, buckets and "
        "momentum), not counted here",
        "sources": sources,
        "torch": torch.__version__,
        "built_unix": int(time.time()),
        "command": COMMAND,
        "batches": list(batches),
        "rows": len(rows),
    }
    return pd.DataFrame(rows), provenance


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=OUT, help="CSV; the provenance goes beside it as .json")
    parser.add_argument("--models", nargs="*", help="default: the models of the shipped stall dataset")
    args = parser.parse_args()
    from ddlprof.models import dataset

    models = args.models or dataset.known_models()
    frame, provenance = build(models, BATCHES)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False, lineterminator="\n")
    provenance["sha256"] = hashlib.sha256(args.out.read_bytes()).hexdigest()
    args.out.with_suffix(".json").write_text(json.dumps(provenance, indent=2) + "\n")
    print(f"wrote {len(frame)} rows to {args.out} and its provenance", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
