"""Our zoo sweeps against the published single-GPU figures of the same GPU type and model (issue 14):
does ddlprof's own measurement reach what NVIDIA's and Lambda's tuned code reports?

For every published 1-GPU row (the shipped table, ``ddlprof/models/data/published_throughput.csv``)
whose GPU type, model and sample (224x224, seq 128) a sweep measured at the same precision class
(AMP: our bf16 or fp16 against their amp-bf16 or amp-fp16; tf32; fp32), the sweep's row at its
largest measured batch of that precision (the published figures are at large batches too), and the
ratio of samples per second, ours / published. Each sweep file says how it ran (``channels_last``,
``cudnn_benchmark``), so a plain and a tuned sweep of one GPU show how much of a gap tuning closes.

    python benchmarks/zoo_vs_published.py benchmarks/results/gpu-1xh100/zoo_sweep_h100.json \\
        benchmarks/results/gpu-1xh100/zoo_tuned_h100.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ddlprof.models import gpus  # noqa: E402
from ddlprof.models.published import load_published  # noqa: E402

CLASS = {"bf16": "amp", "fp16": "amp", "amp-bf16": "amp", "amp-fp16": "amp", "tf32": "tf32", "fp32": "fp32"}
#: What the zoo built the published table's models with, for sweep rows measured before calibrate
#: recorded its input (torchvision's default-weights crop; transformers at DEFAULT_SEQ_LEN 128).
INPUT_BEFORE_RECORDED = {
    "resnet50": "224x224",
    "efficientnet_b0": "224x224",
    "efficientnet_b4": "380x380",
    "bert-base": "seq 128",
    "bert-large": "seq 128",
}


def input_of(row: dict[str, Any]) -> str | None:
    """A sweep row's sample as the published table writes it ("224x224", "seq 128"), or None."""
    found = row.get("input")
    if not found:
        return INPUT_BEFORE_RECORDED.get(row["model"])
    shape = found.get("shape", [])
    if found.get("kind") == "image" and len(shape) == 3:
        return f"{shape[1]}x{shape[2]}"
    if found.get("kind") == "tokens" and len(shape) == 1:
        return f"seq {shape[0]}"
    return None


def largest_rows(path: Path) -> tuple[str, str, dict[tuple[str, str], dict[str, Any]]]:
    """A sweep's GPU type, its settings in words, and its largest-batch row per (model, class)."""
    report = json.loads(path.read_text())
    settings = report.get("settings", {})
    tuned = [name for name in ("channels_last", "cudnn_benchmark") if settings.get(name)]
    how = " + ".join(tuned) if tuned else "plain (NCHW, cudnn.benchmark off)"
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for row in report["rows"]:
        if "step_ms" not in row:
            continue
        key = (row["model"], CLASS.get(row["precision"], row["precision"]))
        if key not in best or row["batch_per_gpu"] > best[key]["batch_per_gpu"]:
            best[key] = row
    return gpus.get_gpu(report["gpu"]).gpu, how, best


def compare(paths: list[Path]) -> list[dict[str, Any]]:
    published = [row for row in load_published() if row.gpus == 1]
    out = []
    for path in paths:
        gpu, how, best = largest_rows(path)
        for row in published:
            ours = best.get((row.model, CLASS.get(row.precision, row.precision)))
            if row.gpu != gpu or ours is None or input_of(ours) != row.input:
                continue  # another GPU, precision or sample (SQuAD's seq 384 against our 128)
            rate = ours["batch_per_gpu"] * 1e3 / ours["step_ms"]
            out.append({
                "file": path.name, "code": how, "model": row.model, "gpu": gpu,
                "ours": f"{ours['precision']} batch {ours['batch_per_gpu']}",
                "ours_samples_per_s": round(rate, 1),
                "published": f"{row.precision} batch {row.batch_per_gpu}",
                "published_samples_per_s": row.samples_per_s,
                "ratio": round(rate / row.samples_per_s, 3), "source": row.source, "data": row.data,
            })  # fmt: skip
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sweeps", type=Path, nargs="+", help="zoo_sweep.py reports")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = compare(args.sweeps)
    for row in rows:
        print(
            f"{row['model']} {row['gpu']} {row['code']}: ours {row['ours']} "
            f"{row['ours_samples_per_s']:.0f}/s, published {row['published']} "
            f"{row['published_samples_per_s']:.0f}/s: {row['ratio']:.2f}x"
        )
    if args.out:
        report = {"command": " ".join(["python", *sys.argv]), "rows": rows}
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
