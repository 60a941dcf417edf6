"""How long ``benchmarks/zoo_sweep.py`` will take on an H200, per model, before it is run: to plan
the 10-minute device calls (the sweep is resumable, so the plan only says how many calls to expect).

A step at batch b is the shipped dataset's H200 step (TF32 CNNs, fp32 transformers, batches 32 and
64) extended along its line: ``s(b) = s32 + (s64 - s32) / 32 * (b - 32)``. Models outside the dataset
take resnet50's milliseconds per FLOP times their FLOPs per sample (``macro_features``, on the meta
device). bf16 is costed as TF32 (mostly an upper bound; bert-base at batch 32 was the exception on
the H100). The largest batch is the
sweep's cap by the zoo's input kind (1024 images, 256 tokens; an H100's 80 GB held it under bf16 for
the three models its run reached). A measurement is ``warmup + steps`` steps plus 1 s (building the
model on the GPU); the search is two steps per power of two from 32 to the cap plus 0.5 s each. The
wall times of the H100 run's rows (``results/gpu-1xh100/zoo_sweep_h100.json``) are printed
beside, where there are any.

    python benchmarks/zoo_sweep_estimate.py
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ddlprof.models import dataset, zoo  # noqa: E402
from ddlprof.models.features import macro_features  # noqa: E402

_spec = importlib.util.spec_from_file_location("zoo_sweep", REPO / "benchmarks" / "zoo_sweep.py")
zoo_sweep = importlib.util.module_from_spec(_spec)
sys.modules["zoo_sweep"] = zoo_sweep
_spec.loader.exec_module(zoo_sweep)

H100_RUN = REPO / "benchmarks" / "results" / "gpu-1xh100" / "zoo_sweep_h100.json"
BUILD_S, TRIAL_S, STEPS = 1.0, 0.5, 20  # 5 warm-up + 15 timed, the sweep's defaults


def line(model: str, per_flop: float) -> tuple[float, float, str]:
    """(ms at batch 32, ms per extra sample) on the H200, and where they come from."""
    rows = dataset.model_rows(model)
    single = rows[(rows["world_size"] == 2) & (rows["transport"] == "nvlink")]
    steps = single.groupby("batch_per_gpu")["single_gpu_step_ms"].median()
    if {32, 64} <= set(steps.index):
        return float(steps[32]), float(steps[64] - steps[32]) / 32, "dataset"
    per_sample = macro_features(model, 1)["flops_per_sample"] * per_flop
    return 32 * per_sample, per_sample, "FLOPs x resnet50's ms/FLOP"


def main() -> int:
    r50 = dataset.model_rows("resnet50")
    r50 = r50[(r50["world_size"] == 2) & (r50["transport"] == "nvlink")]
    slope = (
        r50[r50.batch_per_gpu == 64].single_gpu_step_ms.median()
        - r50[r50.batch_per_gpu == 32].single_gpu_step_ms.median()
    ) / 32
    per_flop = slope / dataset.shipped_features("resnet50")["flops_per_sample"]
    h100 = json.loads(H100_RUN.read_text()) if H100_RUN.exists() else {"rows": [], "searches": {}}
    total = 0.0
    print("| model | basis | largest | search s | measurements s | all s | H100 run s (2 batches) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for model in zoo_sweep.MODELS.split(","):
        s32, per_sample, basis = line(model, per_flop)

        def step_s(batch: int, s32: float = s32, per_sample: float = per_sample) -> float:
            return max(s32 + per_sample * (batch - 32), s32 * batch / 32 if batch < 32 else 0.0) / 1e3

        cap = zoo_sweep.MAX_BATCH[zoo.resolve(model).input.kind]
        search = sum(2 * step_s(b) + TRIAL_S for b in (32 << i for i in range(10)) if b <= cap)
        measured = sum(STEPS * step_s(b) + BUILD_S for _, b, _ in zoo_sweep.plan(32, cap)) * 2
        seen = [r.get("wall_s", 0) for r in h100["rows"] if r["model"] == model]
        seen_s = sum(seen) + h100["searches"].get(model, {}).get("wall_s", 0) if seen else None
        total += search + measured
        print(
            f"| {model} | {basis} | {cap} | {search:.0f} | {measured:.0f} | {search + measured:.0f} | "
            f"{'' if seen_s is None else f'{seen_s:.0f}'} |"
        )
    print(f"\nall {len(zoo_sweep.MODELS.split(','))} models: {total:.0f} s ({total / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
