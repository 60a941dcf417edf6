"""One GPU's zoo sweep predicted from another's, at the same precision and batch (issue 14: "H100
predicted from H200-only data, and the reverse, under AMP within 10% median over the zoo").

For every (model, precision, batch) that both sweeps (``benchmarks/zoo_sweep.py``) measured with the
same measurement settings, the step on GPU B is ``ddlprof.models.gpus.scale_compute_ms`` of the step
on GPU A, with the shipped exponents, as ``ddlprof advise`` scales a step measured on one GPU type to
another:

- the batch-independent part (kernel launches, host work, the optimizer over the weights) is taken
  from A's own rows: the intercept of the straight line through its two smallest batches of that
  model and precision (0 where the line would go below it), and carried over unscaled;
- the rest is split into compute- and memory-bound shares by the roofline on A, from the shipped
  FLOPs and bytes of dataset models, else the uninformed 50/50 split (``DEFAULT_COMPUTE_FRACTION``),
  and each share scaled by A's and B's peaks and bandwidths.

"unscaled" is A's time taken as B's, the error a prediction must beat to be worth its scaling. Both
directions are reported, per precision, with the rows behind them.

    python benchmarks/zoo_cross_check.py benchmarks/results/gpu-1xh200/zoo_sweep.json \\
        benchmarks/results/gpu-1xh100/zoo_sweep_h100.json --out benchmarks/results/cpu/zoo_cross.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ddlprof.models import dataset, gpus  # noqa: E402
from ddlprof.models.memory import activation_share_per_step, bytes_moved_per_step  # noqa: E402

TARGET_MEDIAN_PCT = 10.0
#: Settings that change what a sweep measures: two sweeps are compared only where these agree.
SETTINGS = ("channels_last", "cudnn_benchmark", "steps", "warmup")


def load(path: Path) -> tuple[str, dict[str, Any], dict[tuple[str, str, int], float]]:
    """A sweep's GPU type, settings and measured steps by (model, precision, batch)."""
    report = json.loads(path.read_text())
    gpu = gpus.get_gpu(report["gpu"]).gpu
    steps = {
        (row["model"], row["precision"], int(row["batch_per_gpu"])): float(row["step_ms"])
        for row in report["rows"]
        if "step_ms" in row
    }
    settings = {key: report["settings"].get(key, False) for key in SETTINGS}
    return gpu, settings, steps


def fixed_ms(steps: dict[tuple[str, str, int], float], model: str, precision: str) -> float:
    """The intercept at batch 0 of the line through the two smallest batches (>= 0)."""
    points = sorted((b, ms) for (m, p, b), ms in steps.items() if m == model and p == precision)
    if len(points) < 2:
        return 0.0
    (b0, t0), (b1, t1) = points[:2]
    return max(0.0, t0 - (t1 - t0) / (b1 - b0) * b0)


def split(model: str, batch: int) -> tuple[dict[str, Any], str]:
    """scale_compute_ms's roofline inputs for a dataset model, else none (its default split)."""
    name = dataset.lookup_model(model)
    if name is None:
        return {}, "default split"
    flops = dataset.shipped_features(name).get("flops_per_sample")
    moved = bytes_moved_per_step(name, batch)
    if not (flops and moved):
        return {}, "default split"
    share = activation_share_per_step(name, batch)
    return {"flops_per_sample": flops, "batch": batch, "bytes_per_step": moved, "activation_share": share}, (
        "roofline split"
    )


def predict_rows(source: Path, target: Path) -> list[dict[str, Any]]:
    from_gpu, from_settings, from_steps = load(source)
    to_gpu, to_settings, to_steps = load(target)
    if from_settings != to_settings:
        raise SystemExit(f"the sweeps were measured with other settings: {from_settings} vs {to_settings}")
    rows = []
    for key in sorted(from_steps.keys() & to_steps.keys()):
        model, precision, batch = key
        measured, known = from_steps[key], to_steps[key]
        inputs, how = split(model, batch)
        fixed = min(fixed_ms(from_steps, model, precision), measured)
        scaled = gpus.scale_compute_ms(measured, from_gpu, to_gpu, precision, fixed_ms=fixed, **inputs)[
            "predicted_ms"
        ]
        rows.append({
            "model": model, "precision": precision, "batch": batch, "from_gpu": from_gpu, "to_gpu": to_gpu,
            "from_ms": round(measured, 3), "observed_ms": round(known, 3), "predicted_ms": round(scaled, 3),
            "fixed_ms": round(fixed, 3), "split": how,
            "error_pct": round(100 * (scaled - known) / known, 1),
            "unscaled_error_pct": round(100 * (measured - known) / known, 1),
        })  # fmt: skip
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    errors = [abs(r["error_pct"]) for r in rows]
    factors = [max(r["predicted_ms"] / r["observed_ms"], r["observed_ms"] / r["predicted_ms"]) for r in rows]
    return {
        "rows": len(rows),
        "models": len({r["model"] for r in rows}),
        "median_abs_error_pct": round(statistics.median(errors), 1),
        "median_abs_unscaled_error_pct": round(
            statistics.median(abs(r["unscaled_error_pct"]) for r in rows), 1
        ),
        "worst_off_by_factor": round(max(factors), 2),
        "meets_target": statistics.median(errors) <= TARGET_MEDIAN_PCT,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("first", type=Path, help="a zoo_sweep.py report")
    parser.add_argument("second", type=Path, help="another GPU type's, measured with the same settings")
    parser.add_argument("--out", type=Path, help="the JSON: summaries and every row")
    args = parser.parse_args()
    report: dict[str, Any] = {"command": " ".join(["python", *sys.argv]), "directions": {}}
    for source, target in ((args.first, args.second), (args.second, args.first)):
        rows = predict_rows(source, target)
        if not rows:
            raise SystemExit("the two sweeps share no measured (model, precision, batch)")
        name = f"{rows[0]['from_gpu']} -> {rows[0]['to_gpu']}"
        by_precision = {
            p: summary([r for r in rows if r["precision"] == p])
            for p in sorted({r["precision"] for r in rows})
        }
        report["directions"][name] = {"all": summary(rows), "by_precision": by_precision, "rows": rows}
        for precision, found in by_precision.items():
            print(
                f"{name} {precision}: {found['rows']} rows of {found['models']} models, median error "
                f"{found['median_abs_error_pct']}% (unscaled {found['median_abs_unscaled_error_pct']}%), "
                f"worst {found['worst_off_by_factor']}x"
            )
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
