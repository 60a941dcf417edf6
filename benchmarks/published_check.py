"""``ddlprof model predict --gpu G --precision P`` against published single-GPU training throughput
(issue 14; target: median error <= 15%, no row off by more than 1.5x).

For every 1-GPU row of ``ddlprof/models/data/published_throughput.csv`` the predictor runs in-process
exactly as the command does (``ddlprof.models.predict.predict(model, batch, 1, 1, gpu=G,
precision=P)``) at the row's batch size, and its samples/s (batch x 1000 / predicted step ms) is set
against the published figure. The row's precision maps to the predictor's: fp32 -> fp32, tf32 -> tf32,
amp-fp16 -> fp16, amp-bf16 -> bf16 (no source row used bf16: every AMP figure is fp16).

Rows the predictor cannot represent are listed with the reason and left out of the errors: models
it has no measured step for (``--gpu`` needs one of the dataset's 20 models), and inputs other than
the dataset's (sequence length 128 for bert-base; Lambda's and NVIDIA's BERT rows are SQuAD at 384).

    python benchmarks/published_check.py --out benchmarks/results/cpu/published_check.json

The scaling's exponents are fitted on these rows (``benchmarks/fit_cross_gpu.py``, which also states
the leave-one-GPU-out error that advise quotes); the figures here are in-sample.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
from pathlib import Path
from typing import Any

from ddlprof.models import dataset
from ddlprof.models.predict import predict
from ddlprof.models.published import PublishedRow, load_published
from ddlprof.models.zoo import DEFAULT_IMAGE_SIZE, DEFAULT_SEQ_LEN

REPO = Path(__file__).resolve().parent.parent
TARGET_MEDIAN_PCT = 15.0
TARGET_WORST_FACTOR = 1.5
#: The issue's headline set: the two vision models on the V100, A100, H100 and H200 families.
HEADLINE_MODELS = ("resnet50", "efficientnet_b0")
HEADLINE_GPUS = ("V100-16GB", "V100-32GB", "A100-80GB", "A100-80GB-PCIe", "H100", "H100-PCIe", "H200")


def _why_not(row: PublishedRow) -> str | None:
    if dataset.lookup_model(row.model) is None:
        return f"{row.model} has no measured step in the shipped dataset (--gpu needs one)"
    if row.sequence_length is not None and row.sequence_length != DEFAULT_SEQ_LEN:
        return (
            f"sequence length {row.sequence_length}: the dataset's {row.model} step was measured at "
            f"{DEFAULT_SEQ_LEN} and the predictor takes no sequence length"
        )
    if row.image_size is not None and row.image_size != DEFAULT_IMAGE_SIZE:
        return f"image size {row.image_size}: the dataset measured {DEFAULT_IMAGE_SIZE}x{DEFAULT_IMAGE_SIZE}"
    return None


def _source(row: PublishedRow) -> str:
    return row.source.split(":", 1)[0]


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    if not rows:
        return {"rows": 0}
    errors = [abs(r["error_pct"]) for r in rows]
    factors = [r["off_by_factor"] for r in rows]
    worst = max(rows, key=lambda r: r["off_by_factor"])
    return {
        "rows": len(rows),
        "median_abs_error_pct": round(statistics.median(errors), 1),
        "mean_abs_error_pct": round(statistics.fmean(errors), 1),
        "worst_off_by_factor": round(max(factors), 2),
        "worst_row": f"{worst['model']} {worst['gpu']} {worst['precision']} batch {worst['batch_per_gpu']} "
        f"({worst['source']}): predicted {worst['predicted_samples_per_s']:.0f} vs "
        f"{worst['published_samples_per_s']:g} published",
        "median_predicted_over_published": round(statistics.median(r["ratio"] for r in rows), 3),
        "rows_within_15pct": sum(e <= TARGET_MEDIAN_PCT for e in errors),
        "rows_off_by_more_than_1.5x": sum(f > TARGET_WORST_FACTOR for f in factors),
        "meets_target": statistics.median(errors) <= TARGET_MEDIAN_PCT
        and max(factors) <= TARGET_WORST_FACTOR,
    }


def _cross_source(published: list[PublishedRow]) -> list[dict[str, Any]]:
    """NVIDIA's and Lambda's 1-GPU figures for the same model, GPU, precision and input."""
    by_key: dict[tuple[str, str, str, str], dict[str, list[PublishedRow]]] = {}
    for row in published:
        if row.gpus == 1:
            key = (row.model, row.gpu, row.precision, row.input)
            by_key.setdefault(key, {}).setdefault(_source(row), []).append(row)
    out = []
    for (model, gpu, precision, size), rows in sorted(by_key.items()):
        if len(rows) < 2 or any(len(found) != 1 for found in rows.values()):
            continue
        nvidia, lam = rows["NVIDIA/DeepLearningExamples"][0], rows["lambdal/deeplearning-benchmark"][0]
        out.append({
            "model": model, "gpu": gpu, "precision": precision, "input": size,
            "nvidia": nvidia.samples_per_s, "nvidia_batch": nvidia.batch_per_gpu, "nvidia_data": nvidia.data,
            "lambda": lam.samples_per_s, "lambda_batch": lam.batch_per_gpu, "lambda_data": lam.data,
            "lambda_over_nvidia": round(lam.samples_per_s / nvidia.samples_per_s, 3),
        })  # fmt: skip
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, help="write the JSON here")
    args = parser.parse_args()
    published = load_published()
    predicted, skipped = [], []
    for row in published:
        if row.gpus != 1:
            continue
        reason = _why_not(row)
        where = {"model": row.model, "gpu": row.gpu, "precision": row.precision, "source": _source(row)}
        if reason is not None:
            skipped.append({**where, "input": row.input, "line": row.line, "reason": reason})
            continue
        got = predict(row.model, row.batch_per_gpu, 1, 1, gpu=row.gpu, precision=row.predictor_precision)
        ours = got["throughput_samples_per_s"]
        ratio = ours / row.samples_per_s
        predicted.append({
            **where,
            "batch_per_gpu": row.batch_per_gpu,
            "predictor_precision": row.predictor_precision,
            "data": row.data.split(" ", 1)[0],
            "line": row.line,
            "published_samples_per_s": row.samples_per_s,
            "predicted_samples_per_s": round(ours, 1),
            "predicted_step_ms": round(got["single_gpu_step_ms"], 3),
            "ratio": round(ratio, 3),
            "error_pct": round(100 * (ratio - 1), 1),
            "off_by_factor": round(max(ratio, 1 / ratio), 3),
        })  # fmt: skip
    headline = [r for r in predicted if r["model"] in HEADLINE_MODELS and r["gpu"] in HEADLINE_GPUS]
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in predicted:
        groups.setdefault(f"source {r['source']}", []).append(r)
        groups.setdefault(f"model {r['model']}", []).append(r)
        groups.setdefault(f"precision {r['precision']}", []).append(r)
        groups.setdefault(f"gpu {r['gpu']}", []).append(r)
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    result = {
        "description": "ddlprof model predict --gpu G --precision P (batch B, 1 GPU) against published "
        "1-GPU training throughput; error_pct = 100 x (predicted / published - 1), off_by_factor = "
        "max(ratio, 1/ratio)",
        "command": "python benchmarks/published_check.py --out benchmarks/results/cpu/published_check.json",
        "ddlprof_commit": commit,
        "table": "ddlprof/models/data/published_throughput.csv",
        "target": {"median_abs_error_pct": TARGET_MEDIAN_PCT, "worst_off_by_factor": TARGET_WORST_FACTOR},
        "precision_mapping": "row precision -> --precision: fp32 -> fp32, tf32 -> tf32, amp-fp16 -> fp16, "
        "amp-bf16 -> bf16. Every AMP row of both sources is fp16 (torch.cuda.amp or apex O2), none bf16, "
        "so all AMP rows ran at --precision fp16 (on V100 bf16 would fall back to the fp32 peak)",
        "headline": {
            "what": "resnet50 and efficientnet_b0, 1 GPU, V100/A100/H100/H200 families, both sources",
            **_summary(headline),
        },
        "all_predicted": _summary(predicted),
        "by_group": {name: _summary(rows) for name, rows in sorted(groups.items())},
        "rows": predicted,
        "not_predicted": skipped,
        "nvidia_vs_lambda_same_gpu": _cross_source(published),
    }
    for r in predicted:
        print(
            f"{r['model']:16} {r['gpu']:15} {r['precision']:9} b{r['batch_per_gpu']:<5} {r['source'][:6]:6} "
            f"pred {r['predicted_samples_per_s']:8.0f}  pub {r['published_samples_per_s']:8g}  "
            f"{r['error_pct']:+7.1f}%"
        )
    print(json.dumps({"headline": result["headline"], "all_predicted": result["all_predicted"]}, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
