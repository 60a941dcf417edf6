"""What always-on collection costs a training job: paired, interleaved runs of the same DDP job
unwrapped, under ``ddlprof wrap`` (default settings: a 3-step trace window at steps 6-8), and under
a continuously running torch.profiler, for comparison.

Each run's rank 0 records its own step times (``examples/ddp_train.py --step-times``), so every
variant is timed the same way. The figure is the median step time over the steps after warm-up
(which also leaves out ddlprof's trace window), as a ratio to the unwrapped run of the same pair.

    python benchmarks/overhead.py --models resnet50,resnet18 --batch-size 64 --steps 150 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "ddp_train.py"
VARIANTS = ("unwrapped", "ddlprof", "torch_profiler", "ddlprof_no_gpu_sampling")


def run_once(variant: str, model: str, args: argparse.Namespace, workdir: Path, tag: str) -> float:
    times = workdir / f"{tag}.json"
    job = [
        "torchrun",
        f"--nproc_per_node={args.nproc}",
        "--standalone",
        str(EXAMPLE),
        "--model",
        model,
        "--batch-size",
        str(args.batch_size),
        "--steps",
        str(args.steps),
        "--step-times",
        str(times),
    ]
    if args.synthetic:
        job.append("--synthetic")
    if variant == "torch_profiler":
        job.append("--torch-profiler")
    if variant.startswith("ddlprof"):
        sampling = ["--no-gpu-sampling"] if variant == "ddlprof_no_gpu_sampling" else []
        job = [
            sys.executable,
            "-m",
            "ddlprof",
            "wrap",
            *sampling,
            "--out",
            str(workdir / f"{tag}-run"),
            "--",
            *job,
        ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    subprocess.run(
        job,
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=args.run_timeout,
    )
    steps = json.loads(times.read_text())[args.warmup :]
    return statistics.median(steps)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="resnet50,resnet18")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument(
        "--warmup", type=int, default=20, help="steps left out at the start (covers steps 6-8)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--variants",
        default="unwrapped,ddlprof,torch_profiler",
        help=f"comma-separated, from: {', '.join(VARIANTS)}",
    )
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--synthetic", action="store_true", help="data kept on the GPU (no DataLoader)")
    parser.add_argument("--run-timeout", type=float, default=150, help="seconds one launch may take")
    parser.add_argument("--out", type=Path, help="write the raw results here as JSON")
    args = parser.parse_args()

    variants = tuple(args.variants.split(","))
    if "unwrapped" not in variants or not set(variants) <= set(VARIANTS):
        parser.error(f"--variants must include unwrapped and come from {', '.join(VARIANTS)}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for model in args.models.split(","):
                shift = repeat % len(variants)
                order = variants[shift:] + variants[:shift]  # rotate, so no variant always runs first
                medians = {v: run_once(v, model, args, Path(tmp), f"{model}-{repeat}-{v}") for v in order}
                results.append(
                    {"model": model, "repeat": repeat, "order": list(order), "median_step_ms": medians}
                )
                print(json.dumps(results[-1]), flush=True)
    summary = {}
    for model in args.models.split(","):
        pairs = [r["median_step_ms"] for r in results if r["model"] == model]
        summary[model] = {"unwrapped_ms": statistics.median(p["unwrapped"] for p in pairs)}
        for variant in (v for v in variants if v != "unwrapped"):
            summary[model][f"{variant}_ratio"] = statistics.median(p[variant] / p["unwrapped"] for p in pairs)
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(
            json.dumps(
                {"args": {k: str(v) for k, v in vars(args).items()}, "runs": results, "summary": summary},
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
