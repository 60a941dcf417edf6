"""Tuned against plain steps of the same GPU, model, precision and batch (issue 14): the speed-up that
NHWC layout and cuDNN's autotuner give a zoo model, from a plain sweep and one or more tuned sweeps
(``benchmarks/zoo_sweep.py`` without and with ``--channels-last --cudnn-benchmark``).

    python benchmarks/zoo_tuned_vs_plain.py benchmarks/results/gpu-1xh100/zoo_sweep_h100.json \\
        benchmarks/results/gpu-1xh100/zoo_tuned_h100.json \\
        benchmarks/results/gpu-1xh100/zoo_tuned_h100_b.json \\
        --out benchmarks/results/cpu/zoo_tuned_vs_plain_h100.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _steps(path: Path) -> dict[tuple[str, str, int], float]:
    rows = json.loads(path.read_text())["rows"]
    return {(r["model"], r["precision"], r["batch_per_gpu"]): r["step_ms"] for r in rows if r.get("step_ms")}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("plain", type=Path, help="the plain sweep")
    parser.add_argument("tuned", type=Path, nargs="+", help="the tuned sweep(s)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    plain = _steps(args.plain)
    rows = []
    for path in args.tuned:
        for (model, precision, batch), tuned_ms in sorted(_steps(path).items()):
            plain_ms = plain.get((model, precision, batch))
            speed_up = round(plain_ms / tuned_ms, 2) if plain_ms else None
            rows.append(
                {"model": model, "precision": precision, "batch_per_gpu": batch, "plain_ms": plain_ms,
                 "tuned_ms": round(tuned_ms, 1), "speed_up": speed_up}
            )  # fmt: skip
            print(f"{model} {precision} batch {batch}: plain {plain_ms and round(plain_ms, 1)} ms, tuned "
                  f"{tuned_ms:.1f} ms, speed-up {speed_up}")  # fmt: skip
    report = {"plain": str(args.plain), "tuned": [str(p) for p in args.tuned], "rows": rows}
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
