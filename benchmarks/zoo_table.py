"""The markdown table of a zoo sweep (``benchmarks/zoo_sweep.py``) that BENCHMARKS.md shows: per model
and precision, each measured batch's ms per step and samples/s, and, from a ``benchmarks/fit_cross_gpu.py``
output, each row's measured step over the one the fit predicted with the sweep's GPU held out, and
per precision the median error and the worst factor of those (as ``fit_cross_gpu.py`` states them:
of predicted against observed samples/s).

    python benchmarks/zoo_table.py benchmarks/results/gpu-1xh100/zoo_sweep_h100.json \\
        --fit benchmarks/results/cpu/fit_cross_gpu_with_h100_zoo.json --models gpt2,t5-small
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.fit_cross_gpu import summary  # noqa: E402


def held_out_rows(fit: dict[str, Any], sweep_name: str) -> list[dict[str, Any]]:
    """The fit's held-out rows (leave-one-GPU-out) that came from this sweep."""
    return [r for r in fit["rows"] if r["origin"] == f"measured ({sweep_name})"]


def ratios_of(rows: list[dict[str, Any]]) -> dict[tuple[str, str, int], float]:
    """(model, precision, batch) -> observed / predicted step."""
    return {
        (r["model"], r["row_precision"], int(r["batch"])): r["observed_ms"] / r["predicted_ms"] for r in rows
    }


def table(sweep: dict[str, Any], ratios: dict[tuple[str, str, int], float] | None, models: list[str]) -> str:
    lines = []
    if ratios is not None:
        lines += [
            "| model | precision | batch: ms per step (samples/s) | observed / predicted, GPU held out |",
            "| --- | --- | --- | --- |",
        ]
    else:
        lines += ["| model | precision | batch: ms per step (samples/s) |", "| --- | --- | --- |"]
    rows = [r for r in sweep["rows"] if "step_ms" in r and (not models or r["model"] in models)]
    for model in dict.fromkeys(r["model"] for r in rows):
        for precision in dict.fromkeys(r["precision"] for r in rows if r["model"] == model):
            mine = sorted(
                (r for r in rows if r["model"] == model and r["precision"] == precision),
                key=lambda r: r["batch_per_gpu"],
            )
            cells = ", ".join(
                f"{r['batch_per_gpu']}: {r['step_ms']:.1f} ({r['batch_per_gpu'] * 1000 / r['step_ms']:,.0f})"
                for r in mine
            )
            line = f"| {model} | {precision} | {cells} |"
            if ratios is not None:
                found = [ratios.get((model, precision, int(r["batch_per_gpu"]))) for r in mine]
                held = " / ".join(f"{x:.2f}" for x in found if x is not None)
                line += f" {held or '— (no dataset step)'} |"
            lines.append(line)
    return "\n".join(lines)


def held_out_summary(rows: list[dict[str, Any]]) -> str:
    """Per precision: rows, median absolute error and worst factor, as ``fit_cross_gpu.py`` states them."""
    by_precision = {
        p: summary([r for r in rows if r["row_precision"] == p])
        for p in sorted({r["row_precision"] for r in rows})
    }
    return "\n".join(
        f"{p}: {found['rows']} rows, median error {found['median_abs_error_pct']:.1f}%, "
        f"worst {found['worst_off_by_factor']:.2f}x"
        for p, found in by_precision.items()
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--fit", type=Path, help="a fit_cross_gpu.py --out file that fitted this sweep")
    parser.add_argument("--models", default="", help="comma-separated: only these models")
    args = parser.parse_args()
    sweep = json.loads(args.sweep.read_text())
    rows = held_out_rows(json.loads(args.fit.read_text()), args.sweep.name) if args.fit else None
    print(
        table(sweep, ratios_of(rows) if rows is not None else None, [m for m in args.models.split(",") if m])
    )
    if rows:
        print()
        print(held_out_summary(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
