"""Build the shipped stall dataset from the raw measurements (issue 4).

    /tmp/venv/bin/python benchmarks/build_stall_dataset.py            # or any Python with ddlprof's deps

reads ``benchmarks/results/gpu-2xh200/dataset.csv`` (written by ``benchmarks/gpu_dataset.sh``) and
writes ``ddlprof/models/data/stall_dataset.csv`` and ``stall_dataset.json`` (provenance). One output
row per (model, batch_per_gpu, transport): the single-GPU step time (``mode=single``, measured in the
nvlink launch), the DDP step time of that transport's launch (``mode=ddp``), the transport's measured
all-reduce bus bandwidth and 8 KiB latency (``mode=allreduce``), the differential stalls, and the
model's macro features from ``ddlprof.models.features.macro_features`` (torch needed here, never at
prediction time for these models).

What the raw data is, and is not: 2 x H200 in one host, world size 2 only. The three transports are
NVLink, PCIe (NCCL peer-to-peer off) and sockets over loopback (peer-to-peer and shared memory off):
the socket launch emulates a slow network, but its ranks share one machine, so its stall is counted
as an interconnect stall (``nodes`` = 1, ``network_stall_ms`` = 0). No multi-node, no 4- or 8-GPU data.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

RAW = REPO / "benchmarks" / "results" / "gpu-2xh200" / "dataset.csv"
OUT = REPO / "ddlprof" / "models" / "data" / "stall_dataset.csv"
COMMANDS = [
    "OUT=benchmarks/results/gpu-2xh200 bash benchmarks/gpu_dataset.sh",
    "python benchmarks/build_stall_dataset.py",
]

# What fp32 training runs on under PyTorch's defaults: convolutions on TF32 tensor cores
# (torch.backends.cudnn.allow_tf32 = True), matmuls in full fp32 (torch.backends.cuda.matmul.allow_tf32
# = False). Models whose FLOPs are mostly matmuls (transformers; ConvNeXt, whose pointwise convolutions
# are nn.Linear layers) are "fp32", the convolutional ones "tf32". Used to scale the measured H200
# step to another GPU (ddlprof model predict --gpu).
MATMUL_MODELS = {"vit_b_16", "swin_t", "bert-base", "gpt2", "convnext_tiny"}

# The measured bert-base and gpt2 are transformers *SequenceClassification models with 1000 labels
# (examples/ddp_train.py Classifier); the zoo's bert-base and gpt2 are the bare BertModel/GPT2Model.
HEADS = {
    "bert-base": "BertForSequenceClassification(num_labels=1000) adds a classifier Linear(768, 1000): "
    "769,000 parameters in 2 tensors (3,076,000 bytes, 0.70% of grad_bytes) and 1 layer that the "
    "features (zoo BertModel with pooler) do not count",
    "gpt2": "GPT2ForSequenceClassification(num_labels=1000) adds a score Linear(768, 1000, bias=False): "
    "768,000 parameters in 1 tensor (3,072,000 bytes, 0.62% of grad_bytes) and 1 layer that the "
    "features (zoo GPT2Model) do not count",
}

FEATURES = ("num_layers", "num_grad_tensors", "num_params", "grad_bytes", "num_buckets", "flops_per_sample")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(raw: Path) -> tuple[pd.DataFrame, dict]:
    from ddlprof.models.features import macro_features
    from ddlprof.models.zoo import import_torchvision

    import_torchvision()
    frame = pd.read_csv(raw)
    if frame["error"].notna().any():
        bad = frame[frame["error"].notna()]
        raise SystemExit(
            f"{len(bad)} raw row(s) failed: {bad[['model', 'mode', 'error']].to_dict('records')}"
        )
    links = frame[frame["mode"] == "allreduce"].set_index("transport")
    single = frame[frame["mode"] == "single"].set_index(["model", "batch_per_gpu"])
    ddp = frame[frame["mode"] == "ddp"]
    features: dict[tuple[str, int], dict] = {}
    rows = []
    for record in ddp.itertuples(index=False):
        key = (record.model, int(record.batch_per_gpu))
        if key not in features:
            print(f"features {key[0]} batch {key[1]}", file=sys.stderr, flush=True)
            features[key] = macro_features(key[0], batch_per_gpu=key[1])
        f = features[key]
        if f.get("reasons"):
            raise SystemExit(f"features of {key} incomplete: {f['reasons']}")
        one = single.loc[key]
        link = links.loc[record.transport]
        if int(record.nodes) != 1:
            raise SystemExit("multi-node rows are not handled yet: split the stall into interconnect/network")
        rows.append(
            {
                "model": record.model,
                "batch_per_gpu": int(record.batch_per_gpu),
                "transport": record.transport,
                "gpus_per_node": int(record.gpus_per_node),
                "nodes": int(record.nodes),
                "world_size": int(record.world_size),
                "single_gpu_step_ms": float(one["step_ms"]),
                "step_ms": float(record.step_ms),
                "intra_busbw_gbps": float(link["busbw_gbps"]),
                "inter_busbw_gbps": None,
                "latency_us": float(link["latency_us"]),
                "interconnect_stall_ms": round(float(record.step_ms) - float(one["step_ms"]), 3),
                "network_stall_ms": 0.0,
                **{name: f[name] for name in FEATURES},
                "last_bucket_bytes": f["bucket_bytes"][-1],
                "precision": "fp32" if record.model in MATMUL_MODELS else "tf32",
                "gpu": record.gpu,
                "single_gpu_step_ms_ranks": one["step_ms_ranks"],
                "step_ms_ranks": record.step_ms_ranks,
            }
        )
    out = pd.DataFrame(rows)
    sample = next(iter(features.values()))
    facts = {
        column: sorted(frame[column].dropna().astype(str).unique())
        for column in ("gpu", "driver", "torch", "nccl", "date")
    }
    provenance = {
        "description": "Step times of 20 models x batch 32/64 on one GPU and under DDP on 2 GPUs of one "
        "host, over three transports, with the transports' measured all-reduce bandwidth and latency, "
        "and the models' macro features: the training data of the stall and step-time models.",
        "hardware": "2 x NVIDIA H200 (141 GB) in one host, NVLink NV18 between them",
        **{column: values[0] if len(values) == 1 else values for column, values in facts.items()},
        "transports": {
            t: {
                "intra_busbw_gbps": float(links.loc[t, "busbw_gbps"]),
                "latency_us": float(links.loc[t, "latency_us"]),
            }
            for t in links.index
        },
        "transport_meaning": {
            "nvlink": "NCCL defaults (NVLink peer-to-peer)",
            "pcie": "NCCL_P2P_DISABLE=1: through host memory over PCIe",
            "socket": "NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1 NCCL_SOCKET_IFNAME=lo: TCP sockets over "
            "loopback; emulates a slow network, but both ranks share one host, so it is counted as "
            "interconnect (nodes = 1)",
        },
        "bandwidth_and_latency": "busbw_gbps as nccl-tests reports it, 2(n-1)/n x 256 MiB / time of one "
        "all-reduce; latency_us: time of one 8 KiB all-reduce (benchmarks/collect_dataset.py)",
        "step_times": "mean ms per optimizer step over 15 steps after 5 warm-up steps, synthetic batch "
        "on the GPU, SGD with momentum, fp32, DDP bucket_cap_mb 25; averaged over the 2 ranks (per-rank "
        "values in *_ranks). single_gpu_step_ms: both ranks ran the model without DDP at the same time, "
        "each on its own GPU, in the nvlink launch; every transport's row uses that same single-GPU time",
        "targets": "interconnect_stall_ms = step_ms - single_gpu_step_ms (one node); network_stall_ms = 0 "
        "(no multi-node data)",
        "limits": [
            "world size 2 only, one node: no 4- or 8-GPU data, no multi-node data could be measured",
            "batch per GPU 32 and 64 only",
            "one GPU type (H200); other GPUs are predicted by roofline scaling of the single-GPU step",
            "single-GPU times are noisy where the two concurrent ranks disagree (see "
            "single_gpu_step_ms_ranks), so a few stalls are small or negative",
        ],
        "features": {
            "function": "ddlprof.models.features.macro_features(name, batch_per_gpu=B), float32, DDP "
            "default buckets (25 MiB after a 1 MiB first bucket); last_bucket_bytes = bucket_bytes[-1], "
            "the bucket DDP all-reduces last",
            "source_example": sample["source"],
            "torch": sample["torch"],
            "model_heads": HEADS,
        },
        "precision": "per model, what fp32 training runs its dominant ops on under PyTorch defaults: "
        "tf32 for convolutional models (cudnn.allow_tf32 = True), fp32 for matmul-heavy ones "
        "(cuda.matmul.allow_tf32 = False): " + ", ".join(sorted(MATMUL_MODELS)),
        "commands": COMMANDS,
        "raw": {"path": str(raw.relative_to(REPO)), "sha256": sha256(raw)},
        "rows": len(out),
        "models": sorted(out["model"].unique()),
    }
    return out, provenance


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--raw", type=Path, default=RAW)
    parser.add_argument("--out", type=Path, default=OUT, help="CSV; the provenance goes beside it as .json")
    args = parser.parse_args()
    frame, provenance = build(args.raw.resolve())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False, lineterminator="\n")
    provenance["sha256"] = sha256(args.out)
    args.out.with_suffix(".json").write_text(json.dumps(provenance, indent=2) + "\n")
    print(f"wrote {len(frame)} rows to {args.out} and its provenance", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
