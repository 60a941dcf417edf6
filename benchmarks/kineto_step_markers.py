"""How Kineto mirrors ``ProfilerStep#N`` onto the GPU timeline, for each way of opening a trace window.

torch-tb-profiler lists a step for every ``ProfilerStep#N`` it finds, on the CPU and as a
``gpu_user_annotation`` on the GPU side. ddlprof's windows listed their first step twice. This trains
a small CNN on one GPU and profiles steps 5-8 in several ways, then prints, per way, the CPU and GPU
``ProfilerStep#N`` spans of the exported trace (name, count, ms). A GPU check: needs CUDA.

    python benchmarks/kineto_step_markers.py --out-dir /tmp/markers > markers.json

With ``--check FILE...`` it prints the same for trace files written elsewhere (``ddlprof wrap``'s), on
any machine: a window whose first step's GPU span covers the whole window is the fault.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.profiler import ProfilerAction, ProfilerActivity, profile

WINDOW = (5, 8)
STEPS = 12


def model_and_optimizer() -> tuple[nn.Module, torch.optim.Optimizer]:
    model = nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    ).cuda()  # fmt: skip
    return model, torch.optim.SGD(model.parameters(), lr=0.01)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    x = torch.randn(32, 3, 64, 64, device="cuda")
    loss = model(x).sum()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def make_profiler(way: str) -> Any:
    """A profiler for the window; ``start_before`` is the step at whose start it is started."""
    activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA]
    first = WINDOW[0]
    if way == "record_at_once":  # ddlprof's windows until now: RECORD from the first call on
        prof = profile(activities=activities, schedule=lambda _s: ProfilerAction.RECORD, acc_events=True)
        prof.step_num = first
        return prof, first
    if way == "warmup_step":  # one step of WARMUP before the window (torch's own schedule() does this)
        prof = profile(
            activities=activities,
            schedule=lambda s: ProfilerAction.WARMUP if s < first else ProfilerAction.RECORD,
            acc_events=True,
        )
        prof.step_num = first - 1
        return prof, first - 1
    raise ValueError(way)


def run(way: str, out_dir: Path) -> dict[str, Any]:
    model, optimizer = model_and_optimizer()
    prof, start_at = make_profiler(way)
    for step in range(STEPS):
        if step == start_at:
            prof.start()
        train_step(model, optimizer)
        if start_at <= step < WINDOW[1]:
            prof.step()
        elif step == WINDOW[1]:
            prof.stop()
    torch.cuda.synchronize()
    path = out_dir / f"{way}.pt.trace.json.gz"
    prof.export_chrome_trace(str(path))
    return {"way": way, "torch": torch.__version__, "spans_ms": step_spans(path)}


def step_spans(path: Path) -> dict[str, dict[str, list[float]]]:
    """The ``ProfilerStep#N`` spans of a trace, in ms, by category (CPU ``user_annotation`` and GPU
    ``gpu_user_annotation``) and name."""
    with gzip.open(path, "rt") if path.suffix == ".gz" else open(path) as f:
        events = json.load(f)["traceEvents"]
    spans: dict[str, dict[str, list[float]]] = {}
    for event in events:
        name = event.get("name", "")
        if name.startswith("ProfilerStep#") and event.get("ph") == "X":
            by_name = spans.setdefault(event.get("cat", "?"), {})
            by_name.setdefault(name, []).append(round(event["dur"] / 1e3, 3))
    return spans


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path)
    parser.add_argument("--check", type=Path, nargs="+", help="trace files to print the step spans of")
    args = parser.parse_args()
    if args.check:
        for path in args.check:
            print(json.dumps({"file": str(path), "spans_ms": step_spans(path)}))
        return 0
    if args.out_dir is None:
        parser.error("--out-dir or --check is needed")
    if not torch.cuda.is_available():
        print("needs a CUDA GPU", file=sys.stderr)
        return 2
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for way in ("record_at_once", "warmup_step"):
        print(json.dumps(run(way, args.out_dir)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
