"""What ``ddlprof wrap`` adds to a host-bound step, the worst case for hooks that run on the training
thread: a one-rank gloo DDP job whose step is all Python and dispatch (a 16-16-4 MLP, batch 8, from a
DataLoader with no workers), launched bare and wrapped (``--trace-steps 0 --no-probe``), in
interleaved rounds. Each launch times itself from the end of step ``steps // 5`` to its last step, so
the figure does not depend on ddlprof's own records; ``--base-tree`` adds launches wrapped by another
checkout of ddlprof (``git worktree add /tmp/base <commit>``) for a before/after pair, and
``--trace-window`` launches wrapped with wrap's default trace window (steps after it show whether the
profiler leaves a cost behind once it stops).

    python benchmarks/hostbound_overhead.py --rounds 3 --steps 3000
    python benchmarks/hostbound_overhead.py --rounds 3 --base-tree /tmp/base --out /tmp/hostbound.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

JOB = """
import json, sys, time
import torch, torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, TensorDataset
torch.set_num_threads(1)
dist.init_process_group("gloo")
model = DDP(torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)))
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
steps = int(sys.argv[1])
data = TensorDataset(torch.randn(8 * (steps + 1), 16), torch.randint(0, 4, (8 * (steps + 1),)))
batches, loss_fn, ends = iter(DataLoader(data, batch_size=8)), torch.nn.CrossEntropyLoss(), []
for _ in range(steps):
    x, y = next(batches)
    loss = loss_fn(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    ends.append(time.perf_counter())
first = steps // 5
print(json.dumps({"ms_per_step": (ends[-1] - ends[first]) / (steps - 1 - first) * 1e3}))
dist.destroy_process_group()
"""


def launch(tree: Path | None, steps: int, work: Path, tag: str, traced: bool = False) -> float:
    script = work / "job.py"
    script.write_text(JOB)
    command = ["torchrun", "--standalone", "--nproc_per_node=1", str(script), str(steps)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if tree is not None:
        window = [] if traced else ["--trace-steps", "0"]
        command = [sys.executable, "-m", "ddlprof", "wrap", *window, "--no-probe",
                   "--out", str(work / tag), "--", *command]  # fmt: skip
        env["PYTHONPATH"] = str(tree)
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["ms_per_step"]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--base-tree", type=Path, help="another ddlprof checkout to wrap with, for a pair")
    parser.add_argument("--trace-window", action="store_true", help="also wrapped with the default window")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    variants: dict[str, Path | None] = {"bare": None, "wrapped": REPO}
    if args.base_tree:
        variants["wrapped_base"] = args.base_tree
    if args.trace_window:
        variants["wrapped_traced"] = REPO
    times: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for name, tree in variants.items():
                traced = name == "wrapped_traced"
                times[name].append(launch(tree, args.steps, Path(tmp), f"{name}-{round_}", traced))
                print(f"round {round_} {name}: {times[name][-1]:.4f} ms/step", flush=True)
    report = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "ms_per_step": times,
        "median_ms": {name: statistics.median(t) for name, t in times.items()},
    }
    print(json.dumps(report["median_ms"]))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
