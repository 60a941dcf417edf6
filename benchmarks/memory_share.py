"""How much of the shipped memory estimate's activations a measured step held at its peak (issue 14):
for each row of a zoo sweep with a peak, (peak - the estimate's fixed part) / the estimate's
activations, by precision. The table's activations are fp32: about 1 at TF32 says the estimate is
right, about half at bf16 that autocast keeps them in 16 bits.

``--write`` ships the bf16 shares as ``ddlprof/models/data/activation_share_16bit.json``, which
``ddlprof.models.memory`` uses for a 16-bit estimate: per model its highest share (rounded up to two
decimals, so the estimate stays at or above every peak measured), and for a model not measured the
highest of all.

    python benchmarks/memory_share.py benchmarks/results/gpu-1xh100/zoo_sweep_h100.json \\
        --out benchmarks/results/cpu/memory_activation_share_h100.json --write
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ddlprof.models.memory import shipped_memory_estimate, sixteen_bit_activation_share  # noqa: E402

SHIPPED = REPO / "ddlprof" / "models" / "data" / "activation_share_16bit.json"


def rounded_up(share: float) -> float:
    return math.ceil(share * 100 - 1e-9) / 100


def shipped(by_model: dict[str, float], sweep: Path) -> dict:
    """Per model its highest bf16 share (unrounded in ``by_model``), and the highest of all for models
    not measured, each rounded up."""
    return {
        "what": "share of the fp32 activations of ddlprof/models/data/memory_estimates.csv that a step under "
        "bf16 autocast held at its peak, per model (its highest, rounded up); default: the highest of all",
        "command": "python benchmarks/memory_share.py " + " ".join(sys.argv[1:]),
        "sweep": sweep.as_posix(),
        "default": rounded_up(max(by_model.values())),
        "models": {model: rounded_up(share) for model, share in sorted(by_model.items())},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--write", action="store_true", help=f"ship the bf16 shares as {SHIPPED}")
    args = parser.parse_args()
    rows = []
    highest: dict[str, float] = {}  # per model, its highest bf16 share, unrounded
    bf16_peaks: list[tuple[str, int, float]] = []
    for row in json.loads(args.sweep.read_text())["rows"]:
        model, batch, peak = row["model"], row["batch_per_gpu"], row.get("peak_memory_bytes")
        total = shipped_memory_estimate(model, batch)
        activations = shipped_memory_estimate(model, batch, "activations_bytes")
        if not peak or total is None or activations is None or not activations[0]:
            continue
        share = (peak - (total[0] - activations[0])) / activations[0]
        if row["precision"] == "bf16":
            highest[model] = max(highest.get(model, 0.0), share)
            bf16_peaks.append((model, batch, peak))
        rows.append({"model": model, "precision": row["precision"], "batch_per_gpu": batch,
                     "peak_gb": round(peak / 1e9, 2), "activation_share": round(share, 3)})  # fmt: skip
    summary = {}
    for precision in sorted({r["precision"] for r in rows}):
        mine = [r for r in rows if r["precision"] == precision]
        top = max(mine, key=lambda r: r["activation_share"])
        summary[precision] = {
            "rows": len(mine),
            "models": len({r["model"] for r in mine}),
            "min": min(r["activation_share"] for r in mine),
            "max": top["activation_share"],
            "max_at": f"{top['model']} batch {top['batch_per_gpu']}",
        }
    if args.write:
        SHIPPED.write_text(json.dumps(shipped(highest, args.sweep), indent=1) + "\n")
        sixteen_bit_activation_share.cache_clear()
    # what the shipped shares make of each bf16 peak: at or above 1 everywhere, else a batch may not fit
    over = [shipped_memory_estimate(m, b, precision="amp-bf16")[0] / peak for m, b, peak in bf16_peaks]
    summary["bf16"]["shipped_estimate_over_peak"] = [round(min(over), 2), round(max(over), 2)]
    print(json.dumps(summary, indent=1))
    args.out.write_text(
        json.dumps({"sweep": str(args.sweep), "summary": summary, "rows": rows}, indent=1) + "\n"
    )


if __name__ == "__main__":
    main()
