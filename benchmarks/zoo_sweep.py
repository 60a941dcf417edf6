"""Single-GPU training throughput of the model zoo: every model at a small batch and at the largest
power of two that fits, under AMP (bf16 autocast) and TF32, on synthetic data (issue 14, point 3).

Each measurement is ``ddlprof.models.benchmark.calibrate`` (the standard benchmark of
``ddlprof calibrate``: real weights on the GPU, zeros as the batch, SGD with momentum, the median of
the timed steps), so the numbers are those ``calibrate`` would record. Per model:

1. the largest batch: doubling from ``--small-batch`` with short trial steps under bf16 (or the first
   of ``--precisions`` when bf16 is not among them) up to ``--max-batch`` (1024 for image models,
   256 for token models unless given); a trial that runs out of memory ends the search. When
   ``--small-batch`` itself does not fit, the search goes down instead, and the small batch becomes
   half the largest;
2. for every precision: the small batch, then the largest one. Where the largest does not fit under
   a precision (tf32 keeps activations in fp32), it is halved until it does, and the row says so
   (``halved_from``).

The rows say which batch they are (``batch_role``: small or largest) and whether the largest was
the cap (``capped``: a bigger batch may fit).

One failing model or measurement is a row with an ``error`` and the sweep goes on. Before each model
the wall time is checked against ``--budget-s``; the models left are listed in ``skipped``. The JSON
is rewritten after every measurement, so a run that is killed keeps what it measured.

    python3 benchmarks/zoo_sweep.py --out benchmarks/results/gpu-1xh100/zoo_sweep.json
    python3 benchmarks/zoo_sweep.py --models resnet50,bert-base --precisions bf16 --out /tmp/zs.json
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from ddlprof.errors import DdlprofError  # noqa: E402
from ddlprof.models import benchmark, zoo  # noqa: E402

MODELS = (
    "resnet18,resnet50,resnet101,resnet152,vgg16,densenet121,mobilenet_v2,mobilenet_v3_large,"
    "efficientnet_b0,efficientnet_b4,convnext_tiny,regnet_y_16gf,vit_b_16,swin_t,bert-base,bert-large,"
    "distilbert-base,roberta-base,gpt2,gpt2-medium,t5-small,vit-base"
)
MAX_BATCH = {"image": 1024, "tokens": 256, "seq2seq": 256}
TOKEN_KINDS = ("tokens", "seq2seq")


def one_line(exc: BaseException) -> str:
    if isinstance(exc, DdlprofError):
        text = str(exc).strip().splitlines()
        return text[0] if text else "DdlprofError"
    return zoo._one_line(exc)


def power_of_two_at_most(n: int) -> int:
    return 1 << (n.bit_length() - 1) if n >= 1 else 0


def fits(
    resolved: zoo.ResolvedModel, batch: int, precision: str, where: torch.device, steps: int, tolerate: bool
) -> str | None:
    """None when ``steps`` training steps of ``batch`` run, else why not: out of memory, or (when
    ``tolerate``) any RuntimeError, as huge batches can also fail otherwise (32-bit indexing, cuBLAS
    workspace allocation). The memory is freed outside the ``except``: its traceback holds the step's
    tensors (PyTorch FAQ, "my out of memory exception handler can't allocate memory")."""
    benchmark._free(where)
    failure = None
    try:
        benchmark._steps(resolved, batch, precision, where, steps)
    except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
        if not (benchmark._is_oom(exc) or tolerate):
            raise
        failure = "out of memory" if benchmark._is_oom(exc) else one_line(exc)
    benchmark._free(where)
    return failure


def largest_batch(
    resolved: zoo.ResolvedModel, small: int, cap: int, precision: str, where: torch.device, steps: int
) -> tuple[int, bool, list[dict[str, Any]]]:
    """The largest batch that fits (0: none), whether it is the cap, and the trials."""
    trials: list[dict[str, Any]] = []

    def trial(batch: int, tolerate: bool) -> bool:
        start = time.perf_counter()
        failure = fits(resolved, batch, precision, where, steps, tolerate)
        trials.append(
            {"batch": batch, "fits": failure is None, "wall_s": round(time.perf_counter() - start, 2)}
        )
        if failure not in (None, "out of memory"):
            trials[-1]["error"] = failure
        return failure is None

    if not trial(small, tolerate=False):  # go down: the largest power of two below the small batch
        batch = power_of_two_at_most(small - 1)
        while batch >= 1 and not trial(batch, tolerate=False):
            batch //= 2
        return batch, False, trials
    best = small
    batch = power_of_two_at_most(small) * 2
    while batch <= cap and trial(batch, tolerate=True):
        best = batch
        batch *= 2
    return best, best == cap, trials


def measure(
    resolved: zoo.ResolvedModel,
    batch: int,
    precision: str,
    args: argparse.Namespace,
    where: torch.device,
    halve: bool,
    pretrial: bool,
) -> tuple[dict[str, Any], int]:
    """``calibrate`` at ``batch``; the row and the batch it ran. With ``halve``, a batch that does not
    fit is halved until it does; with ``pretrial`` too, first by trial steps (cheaper than a failing
    ``calibrate``, which searches downwards itself while the failed step's memory is still held)."""
    trials: list[dict[str, Any]] = []
    while halve and pretrial and batch > 1:
        start = time.perf_counter()
        failure = fits(resolved, batch, precision, where, args.trial_steps, tolerate=True)
        trials.append(
            {"batch": batch, "fits": failure is None, "wall_s": round(time.perf_counter() - start, 2)}
        )
        if failure is None:
            break
        if failure != "out of memory":
            trials[-1]["error"] = failure
        print(f"    {resolved.name} {precision} batch {batch}: {failure}; halving", flush=True)
        batch //= 2
    while True:
        start = time.perf_counter()
        try:
            result = benchmark.calibrate(
                resolved.name, batch, precision, steps=args.steps, warmup=args.warmup
            )
        except DdlprofError as exc:
            if halve and batch > 1 and "does not fit" in str(exc):
                print(f"    {resolved.name} {precision} batch {batch} does not fit; halving", flush=True)
                trials.append({"batch": batch, "fits": False, "calibrate": True})
                batch //= 2
                continue
            raise
        wall = time.perf_counter() - start
        result["wall_s"] = round(wall, 2)
        if trials:
            result["fit_trials"] = trials
        return result, batch


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for package in ("torchvision", "transformers"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


def write(path: Path, report: dict[str, Any]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(report, indent=1) + "\n")
    os.replace(temporary, path)


def progress(started: float, row: dict[str, Any]) -> None:
    head = f"[{time.perf_counter() - started:6.0f}s] {row['model']}"
    if "error" in row:
        where = (
            f" {row['precision']} batch {row['batch_per_gpu']} ({row['batch_role']})"
            if "precision" in row
            else ""
        )
        print(f"{head}{where}: ERROR {row['error']}", flush=True)
        return
    head += f" {row['precision']}"
    peak = row.get("peak_memory_bytes")
    memory = f", peak {peak / 2**30:.1f} GiB" if peak else ""
    print(
        f"{head} batch {row['batch_per_gpu']} ({row['batch_role']}{', capped' if row.get('capped') else ''}"
        f"): {row['step_ms']:.1f} ms/step, {row['samples_per_s']:.1f} samples/s{memory}, "
        f"{row['wall_s']:.0f}s",
        flush=True,
    )


def sweep_model(
    name: str, args: argparse.Namespace, report: dict[str, Any], started: float, where: torch.device
) -> None:
    rows: list[dict[str, Any]] = report["rows"]

    def add(row: dict[str, Any]) -> None:
        rows.append(row)
        write(args.out, report)
        progress(started, row)

    resolved = zoo.resolve(name)
    kind = resolved.input.kind if resolved.input is not None else None
    cap = power_of_two_at_most(args.max_batch or MAX_BATCH.get(kind or "", MAX_BATCH["image"]))
    search = "bf16" if "bf16" in args.precisions else args.precisions[0]
    start = time.perf_counter()
    largest, capped, trials = largest_batch(resolved, args.small_batch, cap, search, where, args.trial_steps)
    search_row = {"precision": search, "cap": cap, "largest": largest, "capped": capped, "trials": trials}
    search_row["wall_s"] = round(time.perf_counter() - start, 2)
    report.setdefault("searches", {})[name] = search_row
    write(args.out, report)
    print(
        f"[{time.perf_counter() - started:6.0f}s] {name}: largest {search} batch {largest}"
        f"{' (the cap)' if capped else ''} of {cap}, {search_row['wall_s']:.0f}s search",
        flush=True,
    )
    if largest == 0:
        add(
            {
                "model": name,
                "precision": search,
                "batch_per_gpu": 1,
                "batch_role": "largest",
                "error": f"not even batch 1 fits under {search}",
            }
        )
        return
    small = args.small_batch if args.small_batch < largest else largest // 2
    plan = (
        [("small", small, False), ("largest", largest, True)] if small >= 1 else [("largest", largest, True)]
    )
    for precision in args.precisions:
        for role, batch, halve in plan:
            base = {"model": name, "batch_role": role, "precision": precision}
            try:
                pretrial = role == "largest" and precision != search
                result, used = measure(resolved, batch, precision, args, where, halve, pretrial)
            except Exception as exc:  # one measurement failing is a row; the sweep goes on
                benchmark._free(where)
                add({**base, "batch_per_gpu": batch, "error": one_line(exc)})
                continue
            steps = result.pop("steps_ms")
            row = {**base, "model_key": result.pop("model"), "gpu": result["device_name"], **result}
            row["precision"] = precision
            if args.keep_steps:
                row["steps_ms"] = steps
            if role == "largest":
                row["capped"] = capped and used == largest
                row["search_precision"] = search
                if used != batch:
                    row["halved_from"] = batch
            if small != args.small_batch and role == "small":
                row["small_batch_asked"] = args.small_batch
            add(row)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models", default=MODELS, help="comma-separated zoo names (default: the 22 of the sweep)"
    )
    parser.add_argument("--precisions", default="bf16,tf32", help="comma-separated: bf16, tf32, fp16, fp32")
    parser.add_argument("--small-batch", type=int, default=32, help="the fixed small batch per GPU")
    parser.add_argument(
        "--max-batch",
        type=int,
        default=None,
        help="cap of the largest-batch search (1024 images, 256 tokens)",
    )
    parser.add_argument("--steps", type=int, default=15, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before them")
    parser.add_argument(
        "--trial-steps",
        type=int,
        default=2,
        help="steps of each search trial (2: the first step allocates no momentum buffers yet)",
    )
    parser.add_argument(
        "--budget-s", type=float, default=540.0, help="start no model after this many seconds"
    )
    parser.add_argument("--keep-steps", action="store_true", help="keep every timed step (steps_ms)")
    parser.add_argument("--out", type=Path, required=True, help="the JSON file, rewritten after each row")
    args = parser.parse_args()
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    if args.small_batch < 1 or args.trial_steps < 1 or not args.precisions:
        parser.error("--small-batch and --trial-steps must be at least 1, --precisions not empty")

    started = time.perf_counter()
    where, device_name = benchmark.device()
    report: dict[str, Any] = {
        "command": shlex.join(["python3", *sys.argv]),
        "gpu": device_name,
        "gpu_memory_bytes": torch.cuda.get_device_properties(where).total_memory
        if where.type == "cuda"
        else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        **versions(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "settings": {
            "models": args.models,
            "precisions": args.precisions,
            "small_batch": args.small_batch,
            "max_batch": args.max_batch or MAX_BATCH,
            "steps": args.steps,
            "warmup": args.warmup,
            "trial_steps": args.trial_steps,
            "budget_s": args.budget_s,
        },
        "started_unix": time.time(),
        "rows": [],
        "skipped": [],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write(args.out, report)
    print(
        f"{device_name}, torch {torch.__version__}, cuda {torch.version.cuda}: "
        f"{len(args.models)} models x {args.precisions}",
        flush=True,
    )
    for index, name in enumerate(args.models):
        if time.perf_counter() - started > args.budget_s:
            report["skipped"] = args.models[index:]
            print(f"budget of {args.budget_s:.0f}s spent: skipped {', '.join(report['skipped'])}", flush=True)
            break
        try:
            sweep_model(name, args, report, started, where)
        except Exception as exc:  # one model failing is a row; the sweep goes on
            benchmark._free(where)
            report["rows"].append({"model": name, "error": one_line(exc)})
            progress(started, report["rows"][-1])
        write(args.out, report)
    report["wall_s"] = round(time.perf_counter() - started, 1)
    write(args.out, report)
    errors = sum("error" in row for row in report["rows"])
    print(
        f"done in {report['wall_s']:.0f}s: {len(report['rows'])} rows, {errors} errors, "
        f"{len(report['skipped'])} skipped -> {args.out}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
