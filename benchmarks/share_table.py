"""BENCHMARKS.md's table of ``ddlprof share`` results: one row per model, mode and number of copies.

    python3 benchmarks/share_table.py benchmarks/results/gpu-share/share_*.json

Prints Markdown: aggregate samples/s and its gain over one copy alone, each copy's slowdown, peak GPU
memory in total, median utilisation, power and samples per joule, then each model's verdict (the best
K and mode per GPU-hour and per joule, and where adding a copy stops paying).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _cell(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def table(results: list[dict]) -> str:
    lines = [
        "| model | GPU | mode | K | samples/s (all) | gain | slowdown per copy | memory MiB | util % | W "
        "| samples/J |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for result in results:
        model = (
            result["command"][result["command"].index("--model") + 1]
            if "--model" in result["command"]
            else "?"
        )
        gpu = result["gpu"]["name"] or "CPU"
        for row in result["groups"]:
            head = f"| {model} | {gpu} | {row['mode']} | {row['copies']} "
            if row["status"] != "ok":
                lines.append(f"{head}| {row['status']}: {row['reason']} |")
                continue
            cells = [
                _cell(row["aggregate_samples_per_s"], ",.0f"),
                _cell(row.get("gain_over_one"), ".2f") + "x",
                " ".join(_cell(c.get("slowdown"), ".2f") for c in row["copy_results"]),
                _cell(row.get("memory_peak_mib"), ",.0f"),
                _cell(row.get("util_pct_median"), ".0f"),
                _cell(row.get("power_w"), ".0f"),
                _cell(row.get("samples_per_joule"), ".2f"),
            ]
            lines.append(head + "".join(f"| {c} " for c in cells) + "|")
        found = result["verdict"]
        best, joule = found["best_per_gpu_hour"], found["best_per_joule"]
        parts = [f"most per GPU-hour {best['mode']} K={best['copies']}" if best else "no best"]
        parts.append(f"most per joule {joule['mode']} K={joule['copies']}" if joule else "no energy figure")
        parts += [f"{mode} stops paying at {where}" for mode, where in found["stops_paying"].items()]
        parts += [f"not run: {why}" for why in result["modes_skipped"].values()]
        verdicts.append(f"- {model}: " + "; ".join(parts))
    return "\n".join([*lines, "", *verdicts])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("results", nargs="+", type=Path)
    args = parser.parse_args()
    print(table([json.loads(p.read_text()) for p in args.results]))


if __name__ == "__main__":
    main()
