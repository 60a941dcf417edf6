"""The single-GPU step time ``ddlprof model predict --gpu`` gives for another GPU type, against the
step time measured there (issue 4: compute on another GPU).

The prediction scales the shipped dataset's H200 step of the model and batch by roofline ratios
(``ddlprof.models.gpus.scale_compute_ms``); the measurement is ``benchmarks/collect_dataset.py
--no-ddp`` on the other GPU (the same training step, no DDP). "unscaled" is the H200 time taken
as it is, the error a prediction must beat to be worth its scaling.

    python benchmarks/cross_gpu_check.py benchmarks/results/gpu-1xh100/single_gpu.csv --gpu H100 \\
        --out benchmarks/results/cpu/cross_gpu_h200_to_h100.json
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path

from ddlprof.models import dataset
from ddlprof.models.predict import predict


def _median_ratio(rows: list[dict], key: str) -> float:
    return round(statistics.median(r[key] / r["h200_ms"] for r in rows), 3)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("measured", type=Path, help="CSV of collect_dataset.py --no-ddp on the other GPU")
    parser.add_argument("--gpu", required=True, help="the other GPU's name in the specs table")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    reference = dataset.load_dataset()
    rows = []
    for row in csv.DictReader(args.measured.open()):
        if row["mode"] != "single" or not row.get("step_ms"):
            continue
        model, batch, measured = row["model"], int(row["batch_per_gpu"]), float(row["step_ms"])
        got = predict(model, batch, 1, 1, gpu=args.gpu)
        ours = reference[(reference["model"] == model) & (reference["batch_per_gpu"] == batch)]
        unscaled = float(ours["single_gpu_step_ms"].median())
        rows.append({
            "model": model, "batch_per_gpu": batch, "measured_ms": measured,
            "predicted_ms": round(got["single_gpu_step_ms"], 3), "h200_ms": round(unscaled, 3),
            "predicted_error_pct": round(100 * (got["single_gpu_step_ms"] - measured) / measured, 2),
            "unscaled_error_pct": round(100 * (unscaled - measured) / measured, 2),
        })  # fmt: skip
    summary = {
        "configs": len(rows),
        "gpu": args.gpu,
        "predicted_mape_pct": round(statistics.fmean(abs(r["predicted_error_pct"]) for r in rows), 2),
        "predicted_worst_pct": max(abs(r["predicted_error_pct"]) for r in rows),
        "unscaled_mape_pct": round(statistics.fmean(abs(r["unscaled_error_pct"]) for r in rows), 2),
        "measured_over_h200_median": round(
            statistics.median(r["measured_ms"] / r["h200_ms"] for r in rows), 3
        ),
        "predicted_over_h200_median": round(
            statistics.median(r["predicted_ms"] / r["h200_ms"] for r in rows), 3
        ),
    }
    for r in rows:
        print(json.dumps(r))
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "summary": summary}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
