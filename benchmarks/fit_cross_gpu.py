"""Fit the cross-GPU scaling's two exponents and state its leave-one-GPU-out error (issue 14, point 4).

``ddlprof.models.gpus.scale_compute_ms`` predicts a step on GPU B at precision P from the step
measured on the dataset's GPU (an H200, TF32 CNNs / fp32 transformers) by splitting it into a
compute-bound and a memory-bound part (the model's roofline) and scaling them by the ratio of peak
FLOP/s and of memory bandwidth; the step's batch-independent part (the dataset's line through batches
32 and 64 at batch 0: kernel launches and host work, ``ddlprof.models.predict.fixed_step_ms``) is
carried over unscaled, since no faster GPU launches kernels faster. Raw ratios of peaks overstate the
speed-ups (the median published row was off by 22.9%, the worst by 2.56x): a step reaches less of a
high peak than of a low one. So each ratio is raised to an exponent, ``compute_ratio ** a`` and
``memory_ratio ** b``, and (a, b) are fitted by least squares on log(predicted / observed step time)
over:

- the published 1-GPU rows the predictor can represent (``benchmarks/published_check.py`` says which
  and why the others are left out): NVIDIA DeepLearningExamples and Lambda, V100 to H200;
- with ``--measured FILE`` (repeatable), our own zoo sweeps (``benchmarks/zoo_sweep.py``): each row
  a model of the dataset, a GPU, a precision (bf16 AMP or tf32) and a batch.

Batches beyond the measured ones: the reference step is a line through the dataset's batches 32 and
64, so a prediction at batch 512 is extrapolated three doublings. ``--batch-check FILE`` (a zoo sweep
with a small batch and larger ones per model, GPU and precision; not used for the exponents) states
how far off that is per doubling: for each larger row, the error of its prediction over the error of
the same model, GPU and precision's row at a measured batch (32-64; the cross-GPU and precision error
cancels), in log terms per doubling beyond 64; the median over all such pairs is stored as
``batch_extrapolation`` in the scaling error, which ``advise`` adds to the range of an option predicted
at a batch outside 32-64.

Validation is leave-one-GPU-out: for each GPU type the exponents are refitted without its rows and
its rows predicted; the errors so collected are the figures quoted, per GPU type, per precision and
overall. ``--write`` stores the exponents (fitted on every row) in ``ddlprof/models/data/
cross_gpu_fit.json`` and the leave-one-GPU-out error, which ``advise`` and ``model predict`` use as
the uncertainty of a scaled step, in ``ddlprof/models/data/scaling_error.json``.

    python benchmarks/fit_cross_gpu.py --out benchmarks/results/cpu/fit_cross_gpu.json --write \
        --batch-check benchmarks/results/gpu-1xh100/zoo_sweep_h100.json
    python benchmarks/fit_cross_gpu.py --measured benchmarks/results/gpu-1xh200/zoo_sweep.json ...
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from scipy.optimize import minimize

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.published_check import _source, _why_not  # noqa: E402
from ddlprof.errors import DdlprofError  # noqa: E402
from ddlprof.models import dataset, gpus  # noqa: E402
from ddlprof.models.memory import activation_share_per_step, bytes_moved_per_step  # noqa: E402
from ddlprof.models.predict import (  # noqa: E402
    _reference_gpu,
    _reference_step,
    fixed_step_ms,
    measured_precision,
)
from ddlprof.models.published import load_published  # noqa: E402
from ddlprof.models.step_error import DATASET_BATCHES  # noqa: E402

DATA = REPO / "ddlprof" / "models" / "data"
TARGET_MEDIAN_PCT = 15.0
TARGET_WORST_FACTOR = 1.5


def parts(model: str, batch: int, gpu: str, precision: str) -> dict[str, float]:
    """The predictor's split of the reference step into what the exponents scale (plain ratios) and
    what no GPU ratio scales (``fixed_ms``: the batch-independent launch and host time)."""
    reference, _, _ = _reference_step(model, batch)
    flops = dataset.shipped_features(model).get("flops_per_sample")
    moved = bytes_moved_per_step(model, batch)
    split = {"flops_per_sample": flops, "batch": batch, "bytes_per_step": moved} if flops and moved else {}
    scaled = gpus.scale_compute_ms(
        reference,
        _reference_gpu().gpu,
        gpu,
        precision,
        from_precision=measured_precision(model),
        activation_share=activation_share_per_step(model, batch),
        fixed_ms=min(fixed_step_ms(model), reference),
        exponents=(1.0, 1.0),
        **split,
    )
    return {
        "fixed_ms": scaled["fixed_ms"],
        "compute_ms": scaled["compute_ms_from"],
        "compute_ratio": scaled["compute_ratio"],
        "memory_ms": scaled["memory_ms_from"],
        "memory_ratio": scaled["memory_ratio"],
        "precision": scaled["precision"],
    }


def label(precision: str) -> str:
    """The advisor's name of a row's precision: AMP rows as amp-bf16 / amp-fp16."""
    return {"bf16": "amp-bf16", "fp16": "amp-fp16"}.get(precision, precision)


def published_rows() -> list[dict[str, Any]]:
    rows = []
    for row in load_published():
        if row.gpus != 1 or _why_not(row) is not None:
            continue
        observed = row.batch_per_gpu * 1e3 / row.samples_per_s
        rows.append({
            "origin": _source(row), "model": row.model, "gpu": row.gpu, "batch": row.batch_per_gpu,
            "row_precision": row.precision, "precision_label": label(row.precision), "observed_ms": observed,
            **parts(row.model, row.batch_per_gpu, row.gpu, row.predictor_precision),
        })  # fmt: skip
    return rows


def measured_rows(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """A zoo sweep's rows of dataset models; the others are named with the reason."""
    sweep = json.loads(path.read_text())
    rows, left_out = [], []
    for row in sweep["rows"]:
        if "step_ms" not in row:  # an error, or a batch measured in another row
            continue
        model = dataset.lookup_model(row["model"])
        if model is None:
            left_out.append(f"{row['model']}: no measured step in the shipped dataset to scale from")
            continue
        try:
            gpu = gpus.get_gpu(row["gpu"]).gpu
        except DdlprofError as exc:
            left_out.append(f"{row['model']} on {row['gpu']}: {exc}")
            continue
        rows.append({
            "origin": f"measured ({path.name})", "model": model, "gpu": gpu, "batch": row["batch_per_gpu"],
            "row_precision": row["precision"], "precision_label": label(row["precision"]),
            "observed_ms": row["step_ms"],
            **parts(model, row["batch_per_gpu"], gpu, row["precision"]),
        })  # fmt: skip
    return rows, left_out


def predicted_ms(row: dict[str, Any], exponents: tuple[float, float]) -> float:
    a, b = exponents
    return (
        row["fixed_ms"]
        + row["compute_ms"] * row["compute_ratio"] ** a
        + row["memory_ms"] * row["memory_ratio"] ** b
    )


def fit(rows: list[dict[str, Any]]) -> tuple[float, float]:
    def loss(x: Any) -> float:
        return sum(math.log(predicted_ms(r, (x[0], x[1])) / r["observed_ms"]) ** 2 for r in rows)

    found = minimize(loss, [1.0, 1.0], method="Nelder-Mead", options={"xatol": 1e-4, "fatol": 1e-8})
    return float(found.x[0]), float(found.x[1])


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Errors of predicted throughput against observed: ratio = predicted / observed samples/s."""
    ratios = [r["observed_ms"] / r["predicted_ms"] for r in rows]
    errors = [abs(x - 1) * 100 for x in ratios]
    factors = [max(x, 1 / x) for x in ratios]
    worst = rows[factors.index(max(factors))]
    return {
        "rows": len(rows),
        "median_abs_error_pct": round(statistics.median(errors), 1),
        "worst_off_by_factor": round(max(factors), 2),
        "worst_row": f"{worst['model']} {worst['gpu']} {worst['row_precision']} batch {worst['batch']} "
        f"({worst['origin']})",
        "meets_target": statistics.median(errors) <= TARGET_MEDIAN_PCT
        and max(factors) <= TARGET_WORST_FACTOR,
    }


def grouped(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return {value: summary([r for r in rows if r[key] == value]) for value in sorted({r[key] for r in rows})}


def leave_one_gpu_out(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    held_out = []
    for gpu in sorted({r["gpu"] for r in rows}):
        exponents = fit([r for r in rows if r["gpu"] != gpu])
        for r in rows:
            if r["gpu"] == gpu:
                held_out.append({**r, "predicted_ms": predicted_ms(r, exponents), "fit_without": exponents})
    return held_out


def batch_extrapolation(rows: list[dict[str, Any]], exponents: tuple[float, float]) -> dict[str, Any]:
    """The error per doubling of batch beyond the measured 32-64 (see the module's docstring)."""
    low, high = DATASET_BATCHES
    errors = {}
    for r in rows:
        errors.setdefault((r["model"], r["gpu"], r["row_precision"]), []).append(
            (r["batch"], math.log(r["observed_ms"] / predicted_ms(r, exponents)))
        )
    pairs = []
    for (model, gpu, precision), found in sorted(errors.items()):
        anchors = [e for b, e in found if low <= b <= high]
        if not anchors:
            continue
        anchor = statistics.median(anchors)
        for batch, error in found:
            if batch > high:
                doublings = math.log2(batch / high)
                pairs.append({
                    "model": model, "gpu": gpu, "precision": precision, "batch": batch,
                    "doublings": round(doublings, 2),
                    "per_doubling_pct": round(math.expm1(abs(error - anchor) / doublings) * 100, 1),
                })  # fmt: skip
    if not pairs:
        return {"pairs": 0}
    return {
        "pairs": len(pairs),
        "per_doubling_pct": statistics.median(p["per_doubling_pct"] for p in pairs),
        "measured_batches": [low, high],
        "rows": pairs,
    }


def commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--measured", type=Path, action="append", default=[], help="a zoo_sweep.py JSON")
    parser.add_argument(
        "--batch-check",
        type=Path,
        action="append",
        default=[],
        help="a zoo_sweep.py JSON whose larger batches state the batch extrapolation's error (not fitted)",
    )
    parser.add_argument("--out", type=Path, help="write every row and figure here")
    parser.add_argument("--write", action="store_true", help="store the fit and its error in the package")
    args = parser.parse_args()
    rows, left_out = published_rows(), []
    for path in args.measured:
        found, skipped = measured_rows(path)
        rows += found
        left_out += skipped
    exponents = fit(rows)
    in_sample = [{**r, "predicted_ms": predicted_ms(r, exponents)} for r in rows]
    plain = [{**r, "predicted_ms": predicted_ms(r, (1.0, 1.0))} for r in rows]
    held_out = leave_one_gpu_out(rows)
    checked = []
    for path in args.batch_check:
        found, skipped = measured_rows(path)
        checked += found
        left_out += skipped
    batches = batch_extrapolation(checked, exponents)
    command = " ".join(["python", "benchmarks/fit_cross_gpu.py", *sys.argv[1:]])
    result = {
        "what": "exponents of the cross-GPU scaling (compute_ratio ** a, memory_ratio ** b) fitted on "
        "log step-time error; errors are of predicted vs observed samples/s",
        "command": command,
        "ddlprof_commit": commit(),
        "compute_exponent": round(exponents[0], 4),
        "memory_exponent": round(exponents[1], 4),
        "sources": sorted({r["origin"] for r in rows}),
        "target": {"median_abs_error_pct": TARGET_MEDIAN_PCT, "worst_off_by_factor": TARGET_WORST_FACTOR},
        "leave_one_gpu_out": {
            "all": summary(held_out),
            "by_gpu": grouped(held_out, "gpu"),
            "by_precision": grouped(held_out, "precision_label"),
            # the target is on the published single-GPU rows: those alone, fitted with ours
            "published_rows": summary([r for r in held_out if not r["origin"].startswith("measured")]),
        },
        "batch_extrapolation": {k: v for k, v in batches.items() if k != "rows"},
        "in_sample": summary(in_sample),
        "plain_ratios": summary(plain),
    }
    print(json.dumps({k: v for k, v in result.items() if k != "leave_one_gpu_out"}, indent=1))
    print(json.dumps(result["leave_one_gpu_out"], indent=1))
    if args.out:
        detail = {**result, "rows": held_out, "batch_rows": batches.get("rows", []), "left_out": left_out}
        args.out.write_text(json.dumps(detail, indent=1, default=float) + "\n")
    if args.write:
        (DATA / "cross_gpu_fit.json").write_text(json.dumps(result, indent=2) + "\n")
        logo = result["leave_one_gpu_out"]
        error = {
            "what": "leave-one-GPU-out error of ddlprof's fitted cross-GPU / cross-precision scaling of a "
            "measured single-GPU step, against published and measured 1-GPU training throughput "
            f"({', '.join(result['sources'])})",
            "median_abs_error_pct": logo["all"]["median_abs_error_pct"],
            "worst_off_by_factor": logo["all"]["worst_off_by_factor"],
            "rows": logo["all"]["rows"],
            "by_precision": {p: s["median_abs_error_pct"] for p, s in logo["by_precision"].items()},
            "by_gpu": {g: s["median_abs_error_pct"] for g, s in logo["by_gpu"].items()},
            "batch_extrapolation": result["batch_extrapolation"],
            "source": f"{command} (ddlprof commit {result['ddlprof_commit']})",
        }
        (DATA / "scaling_error.json").write_text(json.dumps(error, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
