"""How much of the shipped memory estimate's activations a measured step held at its peak (issue 14,
``ddlprof.models.memory.SIXTEEN_BIT_ACTIVATIONS``): for each row of a zoo sweep with a peak, (peak -
the estimate's fixed part) / the estimate's activations, by precision. The table's activations are
fp32: about 1 at TF32 says the estimate is right, about half at bf16 that autocast keeps them in 16 bits.

    python benchmarks/memory_share.py benchmarks/results/gpu-1xh100/zoo_sweep_h100.json \\
        --out benchmarks/results/cpu/memory_activation_share_h100.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ddlprof.models.memory import shipped_memory_estimate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = []
    for row in json.loads(args.sweep.read_text())["rows"]:
        model, batch, peak = row["model"], row["batch_per_gpu"], row.get("peak_memory_bytes")
        total = shipped_memory_estimate(model, batch)
        activations = shipped_memory_estimate(model, batch, "activations_bytes")
        if not peak or total is None or activations is None or not activations[0]:
            continue
        share = (peak - (total[0] - activations[0])) / activations[0]
        rows.append({"model": model, "precision": row["precision"], "batch_per_gpu": batch,
                     "peak_gb": round(peak / 1e9, 2), "activation_share": round(share, 3)})  # fmt: skip
    summary = {}
    for precision in sorted({r["precision"] for r in rows}):
        for group, chosen in (
            ("cnn", lambda r: r["model"] != "bert-base"),
            ("bert-base", lambda r: r["model"] == "bert-base"),
        ):
            shares = [r["activation_share"] for r in rows if r["precision"] == precision and chosen(r)]
            if shares:
                summary[f"{precision} {group}"] = {
                    "rows": len(shares),
                    "min": min(shares),
                    "max": max(shares),
                }
    print(json.dumps(summary, indent=1))
    args.out.write_text(
        json.dumps({"sweep": str(args.sweep), "summary": summary, "rows": rows}, indent=1) + "\n"
    )


if __name__ == "__main__":
    main()
