"""Single-GPU training throughput of the model zoo: every model at a small batch, a middle one and the
largest power of two that fits, under AMP (bf16 autocast) and TF32, on synthetic data (issue 14,
point 3).

Each measurement is ``ddlprof.models.benchmark.calibrate`` (the standard benchmark of
``ddlprof calibrate``: real weights on the GPU, zeros as the batch, SGD with momentum, the median of
the timed steps), so the numbers are those ``calibrate`` would record. Per model:

1. the largest batch: doubling from ``--small-batch`` with short trial steps under bf16 (or the first
   of ``--precisions`` when bf16 is not among them) up to ``--max-batch`` (1024 for image models,
   256 for token models unless given); a trial that runs out of memory ends the search. When
   ``--small-batch`` itself does not fit, the search goes down instead, and the small batch becomes
   half the largest;
2. for every precision: the small batch, the middle one (the power of two at or below the geometric
   mean of the two, where it lies strictly between them: the batch scaling is then fitted on three
   batches, not extrapolated from two), then the largest one. Where the middle or the largest does
   not fit under a precision (tf32 keeps activations in fp32), it is halved until it does, and the
   row says so (``halved_from``).

The rows say which batch they are (``batch_role``: small, middle or largest) and whether the largest
was the cap (``capped``: a bigger batch may fit).

One failing model or measurement is a row with an ``error`` and the sweep goes on. Before each
search and each measurement the wall time is checked against ``--budget-s``; the models not finished
are listed in ``skipped``. The JSON is rewritten (atomically) after every search and measurement, so
a run that is killed loses only the measurement in flight, and ``--resume`` continues from such a
file: its searches and rows are kept and only the measurements it lacks are made (on the same GPU
model, torch version and measurement settings, else exit 2). A 10-minute device call therefore loses
nothing: run it again with the last call's JSON as ``--resume`` until ``skipped`` is empty.

    python3 benchmarks/zoo_sweep.py --out $OUT/zoo_sweep.json
    python3 benchmarks/zoo_sweep.py --resume benchmarks/results/gpu-1xh200/zoo_sweep.json \
        --out $OUT/zoo_sweep.json
    python3 benchmarks/zoo_sweep.py --models resnet50,bert-base --precisions bf16 --out /tmp/zs.json

By default the models run as a plain script leaves PyTorch (NCHW, ``cudnn.benchmark`` off);
``--channels-last --cudnn-benchmark`` measures them as tuned code runs (a file of its own: the two are
measurement settings, which ``--resume`` checks).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass
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
# Settings a resumed file must share with the call that resumes it: they change what is measured.
MEASUREMENT_SETTINGS = (
    "precisions",
    "small_batch",
    "max_batch",
    "steps",
    "warmup",
    "trial_steps",
    "channels_last",
    "cudnn_benchmark",
)
#: What a file written before a setting existed was measured with.
SETTING_BEFORE = {"channels_last": False, "cudnn_benchmark": False}


class BudgetSpent(Exception):
    """The call's ``--budget-s`` is spent: start nothing more."""


class MeasuredAlready(Exception):
    """Halving a batch that does not fit reached one that this precision has measured already."""

    def __init__(self, batch: int) -> None:
        super().__init__(batch)
        self.batch = batch


def one_line(exc: BaseException) -> str:
    if isinstance(exc, DdlprofError):
        text = str(exc).strip().splitlines()
        return text[0] if text else "DdlprofError"
    return zoo._one_line(exc)


def power_of_two_at_most(n: int) -> int:
    return 1 << (n.bit_length() - 1) if n >= 1 else 0


def plan(small_asked: int, largest: int) -> list[tuple[str, int, bool]]:
    """The (role, batch, halve when it does not fit) measured per precision, given the largest batch."""
    small = small_asked if small_asked < largest else largest // 2
    roles = [("small", small, False)] if small >= 1 else []
    middle = power_of_two_at_most(math.isqrt(small * largest))
    if small < middle < largest:
        roles.append(("middle", middle, True))
    return [*roles, ("largest", largest, True)]


def trial_row(batch: int, failure: str | None, start: float) -> dict[str, Any]:
    row: dict[str, Any] = {"batch": batch, "fits": failure is None}
    row["wall_s"] = round(time.perf_counter() - start, 2)
    if failure not in (None, "out of memory"):
        row["error"] = failure
    return row


def largest_batch(
    resolved: zoo.ResolvedModel,
    small: int,
    cap: int,
    precision: str,
    where: torch.device,
    steps: int,
    tuning: benchmark.Tuning,
) -> tuple[int, bool, list[dict[str, Any]]]:
    """The largest batch that fits (0: none), whether it is the cap, and the trials."""
    trials: list[dict[str, Any]] = []

    def trial(batch: int, tolerate: bool) -> bool:
        start = time.perf_counter()
        failure = benchmark.fit_failure(resolved, batch, precision, where, steps, tolerate, tuning)
        trials.append(trial_row(batch, failure, start))
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


@dataclass
class Sweep:
    """One call's state: its settings, the report it keeps rewriting, its clock and device."""

    args: argparse.Namespace
    report: dict[str, Any]
    started: float
    where: torch.device

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def check_budget(self) -> None:
        if self.elapsed() > self.args.budget_s:
            raise BudgetSpent

    def save(self) -> None:
        write(self.args.out, self.report)

    def add(self, row: dict[str, Any]) -> None:
        self.report["rows"].append(row)
        self.save()
        progress(self.elapsed(), row)

    def done(self, model: str) -> set[tuple[str, str]]:
        """The (precision, role) measured already; ("", "") for a model that failed as a whole."""
        return {
            (row.get("precision", ""), row.get("batch_role", "")) if "batch_role" in row else ("", "")
            for row in self.report["rows"]
            if row["model"] == model
        }


def measure(
    sweep: Sweep,
    resolved: zoo.ResolvedModel,
    batch: int,
    precision: str,
    halve: bool,
    pretrial: bool,
    measured: frozenset[int] = frozenset(),
) -> tuple[dict[str, Any], int]:
    """``calibrate`` at ``batch``; the row and the batch it ran. With ``halve``, a batch that does not
    fit is halved until it does; with ``pretrial`` too, first by trial steps (cheaper than a failing
    ``calibrate``, which searches downwards itself while the failed step's memory is still held).
    Halving down to a batch in ``measured`` raises MeasuredAlready: that row exists."""
    args = sweep.args
    trials: list[dict[str, Any]] = []

    def halved(batch: int) -> int:
        if batch // 2 in measured:
            raise MeasuredAlready(batch // 2)
        return batch // 2

    while halve and pretrial and batch > 1:
        start = time.perf_counter()
        failure = benchmark.fit_failure(
            resolved, batch, precision, sweep.where, args.trial_steps, True, tuning(args)
        )
        trials.append(trial_row(batch, failure, start))
        if failure is None:
            break
        print(f"    {resolved.name} {precision} batch {batch}: {failure}; halving", flush=True)
        batch = halved(batch)
    while True:
        start = time.perf_counter()
        try:
            result = benchmark.calibrate(
                resolved.name, batch, precision, steps=args.steps, warmup=args.warmup, tuning=tuning(args)
            )
        except DdlprofError as exc:
            if halve and batch > 1 and "does not fit" in str(exc):
                print(f"    {resolved.name} {precision} batch {batch} does not fit; halving", flush=True)
                trials.append({"batch": batch, "fits": False, "calibrate": True})
                batch = halved(batch)
                continue
            raise
        result["wall_s"] = round(time.perf_counter() - start, 2)
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


def progress(elapsed: float, row: dict[str, Any]) -> None:
    head = f"[{elapsed:6.0f}s] {row['model']}"
    if "error" in row:
        where = (
            f" {row['precision']} batch {row['batch_per_gpu']} ({row['batch_role']})"
            if "batch_role" in row
            else ""
        )
        print(f"{head}{where}: ERROR {row['error']}", flush=True)
        return
    if row.get("measured_already"):
        print(
            f"{head} {row['precision']} {row['batch_role']}: halved from {row['halved_from']} to batch "
            f"{row['batch_per_gpu']}, measured already",
            flush=True,
        )
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


def search(sweep: Sweep, name: str, resolved: zoo.ResolvedModel) -> dict[str, Any]:
    """Find (and record) the model's largest batch under the search precision."""
    args = sweep.args
    kind = resolved.input.kind if resolved.input is not None else None
    cap = power_of_two_at_most(args.max_batch or MAX_BATCH.get(kind or "", MAX_BATCH["image"]))
    precision = "bf16" if "bf16" in args.precisions else args.precisions[0]
    start = time.perf_counter()
    largest, capped, trials = largest_batch(
        resolved, args.small_batch, cap, precision, sweep.where, args.trial_steps, tuning(args)
    )
    found = {"precision": precision, "cap": cap, "largest": largest, "capped": capped, "trials": trials}
    found["wall_s"] = round(time.perf_counter() - start, 2)
    sweep.report["searches"][name] = found
    sweep.save()
    print(
        f"[{sweep.elapsed():6.0f}s] {name}: largest {precision} batch {largest}"
        f"{' (the cap)' if capped else ''} of {cap}, {found['wall_s']:.0f}s search",
        flush=True,
    )
    return found


def sweep_model(sweep: Sweep, name: str) -> None:
    """Measure what the report lacks of ``name``; BudgetSpent before anything that would start late."""
    args = sweep.args
    done = sweep.done(name)
    if ("", "") in done:  # the model failed as a whole in an earlier call
        return
    resolved: zoo.ResolvedModel | None = None
    found = sweep.report["searches"].get(name)
    if found is None:
        sweep.check_budget()
        resolved = zoo.resolve(name)
        found = search(sweep, name, resolved)
    largest, search_precision = found["largest"], found["precision"]
    if largest == 0:
        if not done:
            sweep.add({
                "model": name, "precision": search_precision, "batch_per_gpu": 1, "batch_role": "largest",
                "error": f"not even batch 1 fits under {search_precision}",
            })  # fmt: skip
        return
    for precision in args.precisions:
        for role, batch, halve in plan(args.small_batch, largest):
            if (precision, role) in done:
                continue
            sweep.check_budget()
            resolved = resolved or zoo.resolve(name)
            base = {"model": name, "batch_role": role, "precision": precision}
            measured = frozenset(
                row["batch_per_gpu"]
                for row in sweep.report["rows"]
                if row["model"] == name and row.get("precision") == precision and "step_ms" in row
            )
            try:
                pretrial = role != "small" and precision != search_precision
                result, used = measure(sweep, resolved, batch, precision, halve, pretrial, measured)
            except MeasuredAlready as same:  # e.g. the largest under tf32 is the middle batch
                row = {**base, "batch_per_gpu": same.batch, "halved_from": batch, "measured_already": True}
                sweep.add(row)
                continue
            except Exception as exc:  # one measurement failing is a row; the sweep goes on
                benchmark._free(sweep.where)
                sweep.add({**base, "batch_per_gpu": batch, "error": one_line(exc)})
                continue
            steps = result.pop("steps_ms")
            row = {**base, "model_key": result.pop("model"), "gpu": result["device_name"], **result}
            row["precision"] = precision
            if args.keep_steps:
                row["steps_ms"] = steps
            if role == "largest":
                row["capped"] = found["capped"] and used == largest
                row["search_precision"] = search_precision
            if used != batch:
                row["halved_from"] = batch
            if role == "small" and batch != args.small_batch:
                row["small_batch_asked"] = args.small_batch
            sweep.add(row)


def new_report(args: argparse.Namespace, device_name: str, where: torch.device) -> dict[str, Any]:
    return {
        "gpu": device_name,
        "gpu_memory_bytes": torch.cuda.get_device_properties(where).total_memory
        if where.type == "cuda"
        else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        **versions(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "settings": settings(args),
        "started_unix": time.time(),
        "calls": [],
        "searches": {},
        "rows": [],
        "skipped": [],
    }


def tuning(args: argparse.Namespace) -> benchmark.Tuning:
    return benchmark.Tuning(channels_last=args.channels_last, cudnn_benchmark=args.cudnn_benchmark)


def settings(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "channels_last": args.channels_last,
        "cudnn_benchmark": args.cudnn_benchmark,
        "models": args.models,
        "precisions": args.precisions,
        "small_batch": args.small_batch,
        "max_batch": args.max_batch or MAX_BATCH,
        "steps": args.steps,
        "warmup": args.warmup,
        "trial_steps": args.trial_steps,
    }


def resumed(path: Path, args: argparse.Namespace, device_name: str) -> dict[str, Any]:
    """An earlier call's report, checked to be of this GPU model, torch and measurement settings."""
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DdlprofError(f"--resume {path}: {one_line(exc)}") from None
    if not (
        isinstance(report, dict)
        and isinstance(report.get("settings"), dict)
        and isinstance(report.get("rows"), list)
    ):
        raise DdlprofError(f"--resume {path}: not a zoo_sweep.py report (no settings or rows)")
    old = report["settings"]
    report.setdefault("searches", {})
    if report.get("gpu") != device_name or report.get("torch") != torch.__version__:
        raise DdlprofError(
            f"--resume {path} was measured on {report.get('gpu')} with torch {report.get('torch')}, this is "
            f"{device_name} with torch {torch.__version__}: start a new file"
        )
    new = settings(args)
    differ = [key for key in MEASUREMENT_SETTINGS if old.get(key, SETTING_BEFORE.get(key)) != new[key]]
    if differ:
        raise DdlprofError(
            f"--resume {path} was measured with other {', '.join(differ)} "
            f"({', '.join(f'{key}={old.get(key)}' for key in differ)}): pass the same, or start a new file"
        )
    if "command" in report:  # a report written before --resume existed: its one call
        report.setdefault("calls", []).insert(0, {"command": report.pop("command")})
    report.setdefault("calls", [])
    old["models"] = [*old.get("models", []), *(m for m in args.models if m not in old.get("models", []))]
    return report


def parse() -> argparse.Namespace:
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
        "--budget-s",
        type=float,
        default=450.0,
        help="start no search or measurement after this many seconds (450: the slowest measurement, "
        "about a minute, and torch's import still end inside a 10-minute call)",
    )
    parser.add_argument("--keep-steps", action="store_true", help="keep every timed step (steps_ms)")
    parser.add_argument(
        "--channels-last",
        action="store_true",
        help="run the models and their 4-D inputs in NHWC memory order, as tuned CNN code does",
    )
    parser.add_argument(
        "--cudnn-benchmark", action="store_true", help="turn on cuDNN's autotuner (off: PyTorch's default)"
    )
    parser.add_argument("--resume", type=Path, help="an earlier call's JSON: keep it, measure what it lacks")
    parser.add_argument("--out", type=Path, required=True, help="the JSON file, rewritten after each row")
    args = parser.parse_args()
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    if args.small_batch < 1 or args.trial_steps < 1 or not args.precisions:
        parser.error("--small-batch and --trial-steps must be at least 1, --precisions not empty")
    return args


def main() -> int:
    args = parse()
    started = time.perf_counter()
    where, device_name = benchmark.device()
    try:
        if args.resume:
            report = resumed(args.resume, args, device_name)
        else:
            report = new_report(args, device_name, where)
    except DdlprofError as exc:
        print(f"zoo_sweep: {exc}", file=sys.stderr)
        return 2
    call = {"command": shlex.join(["python3", *sys.argv]), "budget_s": args.budget_s}
    call["started_unix"] = time.time()
    report["calls"].append(call)
    sweep = Sweep(args, report, started, where)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sweep.save()
    print(
        f"{device_name}, torch {torch.__version__}, cuda {torch.version.cuda}: "
        f"{len(args.models)} models x {args.precisions}"
        + (f", resuming {len(report['rows'])} rows of {args.resume}" if args.resume else ""),
        flush=True,
    )
    skipped: list[str] = []
    for name in args.models:
        try:  # after the budget is spent, this only passes over the models an earlier call finished
            sweep_model(sweep, name)
        except BudgetSpent:
            skipped.append(name)
        except Exception as exc:  # one model failing is a row; the sweep goes on
            benchmark._free(where)
            sweep.add({"model": name, "error": one_line(exc)})
    if skipped:
        print(f"budget of {args.budget_s:.0f}s spent: not finished {', '.join(skipped)}", flush=True)
    report["skipped"] = skipped
    call["wall_s"] = round(sweep.elapsed(), 1)
    sweep.save()
    errors = sum("error" in row for row in report["rows"])
    print(
        f"done in {call['wall_s']:.0f}s: {len(report['rows'])} rows, {errors} errors, "
        f"{len(skipped)} models not finished -> {args.out}"
        + (" (run again with --resume)" if skipped else ""),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
