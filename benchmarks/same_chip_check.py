"""The same-chip basis (an H200 step from the H100's measured one, ``ddlprof.models.gpus.same_chip``)
against published figures ddlprof did not measure: Lambda's single-GPU resnet50 rows on both GPUs.

For each precision with a published 1-GPU row on the H100 and on the H200, the published H200 / H100
throughput ratio beside ddlprof's: ``model predict`` on the H100 (its measured step) and on the H200
(scaled from it) at the H100 sweep's largest measured batch of that precision. Lambda ran the H200 at
twice the H100's batch (its memory allows), ddlprof at one batch on both, so the published ratio also
holds some of a larger batch's gain.

    python benchmarks/same_chip_check.py
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ddlprof.models import published  # noqa: E402
from ddlprof.models.calibration import shipped_table  # noqa: E402
from ddlprof.models.predict import predict  # noqa: E402

MODEL = "resnet50"
#: the published precision and the one ddlprof's H100 sweep ran it at
PRECISIONS = {"amp-fp16": "bf16", "tf32": "tf32"}


def main() -> int:
    rows = published.load_published()
    for label, swept in PRECISIONS.items():
        figure = {
            r.gpu: (r.samples_per_s, r.batch_per_gpu)
            for r in rows
            if (r.model, r.precision, r.gpus, r.nodes) == (MODEL, label, 1, 1)
        }
        if not {"H100", "H200"} <= set(figure):
            continue
        batch = max(
            int(r["batch_per_gpu"])
            for r in shipped_table()["rows"]
            if (r["gpu"], r["model"], r["precision"]) == ("H100", MODEL, swept)
        )
        asked = "amp" if label.startswith("amp") else label
        h100, h200 = (predict(MODEL, batch, 1, 1, gpu=g, precision=asked) for g in ("H100", "H200"))
        ours = h100["single_gpu_step_ms"] / h200["single_gpu_step_ms"]
        theirs = figure["H200"][0] / figure["H100"][0]
        print(
            f"{MODEL} {label}: published H200/H100 {theirs:.2f}x (Lambda: {figure['H200'][0]:,.0f} at batch "
            f"{figure['H200'][1]} / {figure['H100'][0]:,.0f} at {figure['H100'][1]}); ddlprof {ours:.2f}x at "
            f"batch {batch} ({h200['single_gpu_step_ms']:.1f} / {h100['single_gpu_step_ms']:.1f} ms; "
            f"H200 basis: {h200['scaling']['basis'] if h200['scaling'] else 'not scaled'})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
