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
import statistics
import sys
from pathlib import Path
from typing import Any


def held_out_ratios(fit: dict[str, Any], sweep_name: str) -> dict[tuple[str, str, int], float]:
    """(model, precision, batch) -> observed / predicted step of the fit's rows from this sweep."""
    origin = f"measured ({sweep_name})"
    return {
        (r["model"], r["row_precision"], int(r["batch"])): r["observed_ms"] / r["predicted_ms"]
        for r in fit["rows"]
        if r["origin"] == origin
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


def held_out_summary(ratios: dict[tuple[str, str, int], float]) -> str:
    """Per precision: rows, median absolute error and worst factor of the held-out predictions."""
    lines = []
    for precision in sorted({p for _, p, _ in ratios}):
        mine = [x for (_, p, _), x in ratios.items() if p == precision]
        median = statistics.median(abs(x - 1) * 100 for x in mine)
        worst = max(max(x, 1 / x) for x in mine)
        lines.append(f"{precision}: {len(mine)} rows, median error {median:.1f}%, worst {worst:.2f}x")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--fit", type=Path, help="a fit_cross_gpu.py --out file that fitted this sweep")
    parser.add_argument("--models", default="", help="comma-separated: only these models")
    args = parser.parse_args()
    sweep = json.loads(args.sweep.read_text())
    ratios = held_out_ratios(json.loads(args.fit.read_text()), args.sweep.name) if args.fit else None
    print(table(sweep, ratios, [m for m in args.models.split(",") if m]))
    if ratios:
        print()
        print(held_out_summary(ratios))
    return 0


if __name__ == "__main__":
    sys.exit(main())
