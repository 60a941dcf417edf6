"""Build the shipped table of single-GPU steps ddlprof measured itself on a GPU type (issue 14, point 5).

    python benchmarks/build_measured_steps.py benchmarks/results/gpu-1xh100/zoo_sweep_h100.json

``ddlprof advise`` and ``ddlprof model predict`` scale a model's step from the dataset's GPU (an H200)
to every other GPU type; where ddlprof's own zoo sweep (``benchmarks/zoo_sweep.py``) measured the
model on the option's GPU type at its precision, that measurement is the better basis: "measured on
this GPU type" instead of "scaled from H200". This script keeps, from each sweep, the rows of models
the predictor knows (the stall dataset's), as ``ddlprof/models/data/measured_steps.json``: GPU type,
model, precision, batch, median step, and the sweep's date, device, torch and settings (a plain
script's NCHW and cuDNN defaults, or tuned code's).

A measurement from our machine is not one from the user's: at small batches the host sets the
step, and hosts differ. ``machine_spread_pct`` states by how much, measured, not assumed: the median
difference between two H100 machines' steps of the same model and batch (``--other-machine``, the
single-GPU rows of ``benchmarks/collect_dataset.py --no-ddp`` on another H100, issue 4; TF32
convolutions on both), which ``ddlprof.advisor.uncertainty`` adds to such a step's error.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ddlprof.models import dataset  # noqa: E402
from ddlprof.models.calibration import default_precision  # noqa: E402
from ddlprof.models.gpus import get_gpu  # noqa: E402

OUT = REPO / "ddlprof" / "models" / "data" / "measured_steps.json"
OTHER_MACHINE = REPO / "benchmarks" / "results" / "gpu-1xh100" / "single_gpu.csv"


def sweep_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a zoo sweep that a prediction can use: a known model, measured without error."""
    report = json.loads(path.read_text())
    settings = report["settings"]
    kept = []
    for row in report["rows"]:
        model = dataset.lookup_model(str(row.get("model", "")))
        if "step_ms" not in row or model is None:  # an error, or a batch measured in another row
            continue
        kept.append(
            {
                "gpu": get_gpu(row["device_name"]).gpu,
                "model": model,
                "precision": row["precision"],
                "batch_per_gpu": int(row["batch_per_gpu"]),
                "step_ms": round(float(row["step_ms"]), 3),
                "timed_steps": int(settings["steps"]),
                "date": row["date"],
                "device_name": row["device_name"],
                "torch": row["torch"],
                "channels_last": bool(settings.get("channels_last", False)),
                "cudnn_benchmark": bool(settings.get("cudnn_benchmark", False)),
                "source": str(path.relative_to(REPO)),
            }
        )
    return kept


def machine_spread(rows: list[dict[str, Any]], other: Path) -> dict[str, Any]:
    """The median |other machine / this machine - 1| over the (model, batch) both measured at TF32."""
    mine = {(r["model"], r["batch_per_gpu"]): r["step_ms"] for r in rows if r["precision"] == "tf32"}
    pairs = []
    with other.open() as handle:
        for row in csv.DictReader(handle):
            if row["mode"] != "single" or not row["model"] or not row["step_ms"]:
                continue
            key = (row["model"], int(row["batch_per_gpu"]))
            if key in mine and default_precision(row["model"]) == "tf32":  # TF32 convolutions on both
                pairs.append(
                    {"model": key[0], "batch_per_gpu": key[1], "other_ms": float(row["step_ms"]),
                     "ms": mine[key], "ratio": round(float(row["step_ms"]) / mine[key], 3)}
                )  # fmt: skip
    if not pairs:
        raise SystemExit(f"{other}: no (model, batch) in common with the sweeps at TF32")
    return {
        "median_pct": round(100 * statistics.median(abs(p["ratio"] - 1) for p in pairs), 1),
        "pairs": pairs,
        "other_machine": str(other.relative_to(REPO)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sweeps", type=Path, nargs="+", help="zoo_sweep.py JSON files")
    parser.add_argument("--other-machine", type=Path, default=OTHER_MACHINE)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    rows = [row for path in args.sweeps for row in sweep_rows(path.resolve())]
    spread = machine_spread(rows, args.other_machine.resolve())
    table = {
        "description": "Single-GPU training steps measured by ddlprof's zoo sweep (ddlprof.models.benchmark: "
        "real weights, synthetic batch, SGD with momentum, median of the timed steps), per GPU type, model, "
        "precision and batch: the 'measured on this GPU type' basis of advise and model predict.",
        "command": "python benchmarks/build_measured_steps.py "
        + " ".join(str(p.resolve().relative_to(REPO)) for p in args.sweeps),
        "machine_spread_pct": spread["median_pct"],
        "machine_spread": spread,
        "rows": sorted(rows, key=lambda r: (r["gpu"], r["model"], r["precision"], r["batch_per_gpu"])),
    }
    args.out.write_text(json.dumps(table, indent=1) + "\n")
    print(
        f"{len(rows)} steps, machine spread {spread['median_pct']}% "
        f"({len(spread['pairs'])} pairs) -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
