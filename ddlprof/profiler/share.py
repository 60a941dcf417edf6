"""``ddlprof share``: K copies of a one-GPU training job on one GPU, for each K and sharing mode.

Many jobs leave a modern GPU idle part of the time; several copies of them (a sweep) can share it:

    timeslice   plain concurrent processes (the GPU time-slices between their contexts)
    mps         the same under NVIDIA's Multi-Process Service: ddlprof starts its own MPS daemon with
                its own pipe and log directories (CUDA_MPS_PIPE_DIRECTORY, CUDA_MPS_LOG_DIRECTORY), never
                changes the GPU's compute mode, and always stops the daemon (Ctrl-C and failures too)
    mig         one copy per MIG device (by UUID) of a GPU that is already partitioned; ddlprof never
                creates or changes partitions

Every copy is an ordinary ``ddlprof wrap`` run under ``OUT/<mode>/k<K>/copy<i>``; the parent samples
the GPU itself (power, energy counter, memory per process) into ``OUT/<mode>/k<K>/gpu.csv``. Each
copy's throughput and step time are measured over the window in which every copy of its group was
stepping (after its warm-up), so a copy that started late or finished early does not pass for a
faster one, and its slowdown and the group's gain come from the same figures (:func:`measure_copies`).
Copies start seconds apart, so none stops at its own last step: each steps on until every copy has
done its steps, then all stop together (:func:`_wait`, the collectors' ``DDLPROF_STOP_TOGETHER``).
On a machine without an NVIDIA GPU the copies run on the CPU (time-slicing only).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ddlprof
from ddlprof.collectors.config import STOP_AFTER, STOP_TOGETHER
from ddlprof.errors import DdlprofError
from ddlprof.profiler.wrap import script_name, wrap_command
from ddlprof.runs.energy import joules
from ddlprof.runs.rundir import json_text, load_run, make_out_folder, write_atomic

SCHEMA = "ddlprof.share"
SCHEMA_VERSION = 1
MODES = ("timeslice", "mps", "mig")
MPS_CONTROL = "nvidia-cuda-mps-control"
#: Words a copy's output has when it ran out of memory (PyTorch's OutOfMemoryError, CUDA and cuBLAS).
OOM_MARKERS = ("out of memory", "outofmemoryerror", "cublas_status_alloc_failed")
#: One more copy pays when the aggregate throughput grows by at least this factor; below it the
#: gain is within the spread of repeated runs on a shared GPU.
PAYS_MIN_GAIN = 1.05
MIN_OVERLAP_STEPS = 3
NOT_TOGETHER = (
    f"the copies stepped together for under {MIN_OVERLAP_STEPS} steps each (a copy's job ended before "
    "another's measured steps began): no aggregate from steps that did not share the GPU; the job must "
    "run past --warmup + --steps steps (share ends it when every copy has done them)"
)


@dataclass
class Gpu:
    """The one GPU the copies share: its NVML index, name, memory and MIG devices (None: no GPU)."""

    index: int | None
    name: str | None = None
    memory_mib: int | None = None
    mig_uuids: list[str] = field(default_factory=list)
    mig_reason: str | None = None
    reason: str | None = None  # why there is no GPU


def find_gpu() -> Gpu:
    """The first GPU the job may use (CUDA_VISIBLE_DEVICES's first entry, else 0), as NVML sees it."""
    try:
        import pynvml
    except ImportError:
        return Gpu(None, reason="nvidia-ml-py is not installed")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return Gpu(None, reason=f"no NVIDIA driver or GPU ({exc})")
    try:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
        if visible and not visible.isdigit():
            return Gpu(None, reason=f"CUDA_VISIBLE_DEVICES={visible}: give the GPU by its index")
        index = int(visible) if visible else 0
        if index >= pynvml.nvmlDeviceGetCount():
            return Gpu(None, reason=f"NVML has no GPU {index}")
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        gpu = Gpu(index, pynvml.nvmlDeviceGetName(handle), pynvml.nvmlDeviceGetMemoryInfo(handle).total >> 20)
        gpu.mig_uuids, gpu.mig_reason = _mig_devices(pynvml, handle)
        return gpu
    finally:
        pynvml.nvmlShutdown()


def _mig_devices(pynvml: Any, handle: Any) -> tuple[list[str], str | None]:
    """The UUIDs of the GPU's MIG devices as they are partitioned now, or the reason there are none."""
    try:
        current, _ = pynvml.nvmlDeviceGetMigMode(handle)
    except pynvml.NVMLError:
        return [], "this GPU has no MIG"
    if current != pynvml.NVML_DEVICE_MIG_ENABLE:
        return [], "MIG is off on this GPU (ddlprof never enables it or creates partitions)"
    uuids = []
    for i in range(pynvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
        try:
            uuids.append(pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, i)))
        except pynvml.NVMLError:
            continue
    return uuids, None if uuids else "MIG is on but no MIG device is created (ddlprof never creates one)"


def unavailable(mode: str, gpu: Gpu) -> str | None:
    """Why ``mode`` cannot run here, in one line; None when it can."""
    if mode == "timeslice":
        return None
    if gpu.index is None:
        return f"{mode}: needs an NVIDIA GPU ({gpu.reason})"
    if mode == "mps" and shutil.which(MPS_CONTROL) is None:
        return f"mps: {MPS_CONTROL} is not installed here"
    if mode == "mig" and not gpu.mig_uuids:
        return f"mig: {gpu.mig_reason}"
    return None


@contextlib.contextmanager
def mps_daemon(folder: Path) -> Iterator[dict[str, str]]:
    """An MPS control daemon of ddlprof's own (its pipe and log directories under ``folder``); yields
    the environment its clients need, and stops the daemon on the way out, whatever happened."""
    env = {
        "CUDA_MPS_PIPE_DIRECTORY": str((folder / "pipe").resolve()),
        "CUDA_MPS_LOG_DIRECTORY": str((folder / "log").resolve()),
    }
    for path in env.values():
        Path(path).mkdir(parents=True, exist_ok=True)
    control = shutil.which(MPS_CONTROL) or MPS_CONTROL
    full = {**os.environ, **env}
    started = subprocess.run([control, "-d"], env=full, capture_output=True, text=True, timeout=60)
    if started.returncode != 0:
        detail = " ".join((started.stderr or started.stdout).split())[:200]
        raise DdlprofError(f"mps: {MPS_CONTROL} -d failed (exit {started.returncode}): {detail}")
    try:
        yield env
    finally:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run([control], input="quit\n", env=full, capture_output=True, text=True, timeout=60)


@dataclass
class Copy:
    index: int
    run_dir: Path
    log: Path
    proc: subprocess.Popen | None = None
    exit_code: int | None = None


def _launch(
    job: list[str], copies: int, mode: str, group: Path, gpu: Gpu, extra_env: dict[str, str], stop_after: int,
    started: list[Copy],
) -> None:  # fmt: skip
    """Start the copies, each into ``started`` as soon as it runs (so that an interrupt stops it).
    Each steps on past ``stop_after`` until :func:`_wait` tells them all to stop (``sync_folder``)."""
    for i in range(copies):
        copy = Copy(i, group / f"copy{i}", group / f"copy{i}.log")
        env = {**os.environ, **extra_env, STOP_AFTER: str(stop_after), STOP_TOGETHER: str(sync_folder(group))}
        if mode == "mig":
            env["CUDA_VISIBLE_DEVICES"] = gpu.mig_uuids[i]
        elif gpu.index is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(gpu.index)
        argv = wrap_command(copy.run_dir, job, "--trace-steps", "0", "--no-gpu-sampling")
        with copy.log.open("w") as log:  # stdin apart: no copy takes the terminal's foreground
            copy.proc = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        started.append(copy)


def sync_folder(group: Path) -> Path:
    """Where a group's copies say they have done their steps and learn when to stop."""
    return group / "sync"


def _wait(copies: list[Copy], deadline: float, sync: Path) -> bool:
    """Wait for every copy; False when time ran out (the rest are stopped). Copies started seconds
    apart (imports, CUDA start-up under contention) would otherwise step together for a moment or not
    at all: each goes on past its steps until every copy has done them (or one has ended), then all
    stop at their next step."""
    while any(c.proc is not None and c.proc.poll() is None for c in copies):
        if time.monotonic() > deadline:
            _stop(copies)
            return False
        if not (sync / "stop").exists():
            done = len(list(sync.glob("done-*")))
            if done >= len(copies) or any(c.proc is not None and c.proc.poll() is not None for c in copies):
                (sync / "stop").touch()
        time.sleep(0.2)
    for copy in copies:
        copy.exit_code = copy.proc.wait() if copy.proc is not None else None
    return True


def _stop(copies: list[Copy]) -> None:
    """SIGTERM to every copy still running (wrap passes it to the job), SIGKILL after 10 s."""
    for copy in copies:
        if copy.proc is not None and copy.proc.poll() is None:
            copy.proc.terminate()
    for copy in copies:
        if copy.proc is None:
            continue
        try:
            copy.exit_code = copy.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            copy.proc.kill()
            copy.exit_code = copy.proc.wait()


def _out_of_memory(log: Path) -> bool:
    try:
        text = log.read_text(errors="replace").lower()
    except OSError:
        return False
    return any(marker in text for marker in OOM_MARKERS)


#: A traceback's last line ("RuntimeError: ...", "torch.OutOfMemoryError: ..."), and launch errors.
_CAUSE = re.compile(
    r"^([\w.]*(Error|Exception)\b|KeyboardInterrupt\b|SystemExit\b)|: (command not found|No such file)"
)
#: Lines torchrun writes around a child's failure, after the child's own traceback.
_LAUNCHER = ("ChildFailedError", "torch.distributed.elastic")


def _last_line(log: Path) -> str:
    """The cause of a copy's failure in its log: the last line of the job's own traceback (not the
    launcher's summary of it, nor a line of ``=`` or ``-``), else its last line, else ddlprof wrap's
    own line on why the command did not start."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError as exc:
        return f"no log ({exc.strerror})"
    own = [line for line in lines if not line.startswith("ddlprof:") and any(c.isalnum() for c in line)]
    causes = [line for line in own if _CAUSE.search(line) and not any(w in line for w in _LAUNCHER)]
    if causes or own:
        return (causes or own)[-1][:300]
    wrap = [
        line.removeprefix("ddlprof: ")
        for line in lines
        if line.startswith("ddlprof:") and _CAUSE.search(line)
    ]
    return wrap[-1][:300] if wrap else "no output of its own"


def _exit(code: int | None) -> str:
    if code is None:
        return "no exit code"
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"


def _failure(copy: Copy, cause: str | None = None) -> str:
    """One line: which copy, how it ended, why (its log's last line unless ``cause``), and its log."""
    return f"copy {copy.index} {_exit(copy.exit_code)}: {cause or _last_line(copy.log)} (log: {copy.log})"


def _steps(copy: Copy, warmup: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The copy's steps after the warm-up and its rank header (one rank: a one-GPU job)."""
    run = load_run(copy.run_dir)
    if not run.ranks:
        raise DdlprofError(f"no rank file in {copy.run_dir}")
    if len(run.ranks) > 1:
        raise DdlprofError(f"{len(run.ranks)} ranks; ddlprof share packs one-GPU jobs")
    log = run.ranks[0]
    steady = [s for s in log.steps if s["step"] > warmup and not s.get("traced")]
    if not steady:
        raise DdlprofError(f"no step after the {warmup} warm-up step(s)")
    return steady, log.meta


def measure_copies(steps: list[list[dict[str, Any]]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Each copy's throughput and mean step over the window where every copy was stepping, and the
    window; a copy with fewer than MIN_OVERLAP_STEPS steps in it makes every copy use its own steps.

    One measure makes every figure: the steps and samples a copy completed inside the window (a step
    across its edge counts by the fraction inside), over the window's seconds. Its samples/s is samples
    over seconds, its step time is seconds over steps (the mean, the time it waited for its turn
    included), so K copies' samples/s add up to what the shared device gives, and at one batch size
    a group's gain over one copy alone is the sum of 1/slowdown of its copies. (A median step would
    leave out the long steps of a copy that waited for its turn: on a time-sliced CPU it came out at a
    third of the mean.)"""
    start = max(s[0]["start"] for s in steps)
    end = min(s[-1]["end"] for s in steps)
    inside = [_completed(s, start, end) for s in steps]
    overlapped = end > start and all(done >= MIN_OVERLAP_STEPS for done, _, _ in inside)
    windows = [(start, end)] * len(steps) if overlapped else [(s[0]["start"], s[-1]["end"]) for s in steps]
    rows = []
    for own, (first, last) in zip(steps, windows, strict=True):
        done, samples, batches = _completed(own, first, last)
        seconds = last - first
        rows.append(
            {
                "steps": round(done, 3),
                "seconds": round(seconds, 3),
                "step_ms": round(seconds * 1e3 / done, 3) if done > 0 else None,
                "samples_per_s": samples / seconds if seconds > 0 and samples is not None else None,
                "batch": _whole(statistics.median(batches)) if batches and samples is not None else None,
            }
        )
    window = {
        "start_unix": start if overlapped else min(s[0]["start"] for s in steps),
        "end_unix": end if overlapped else max(s[-1]["end"] for s in steps),
        "all_copies_stepping": overlapped,
        "seconds": round(max(0.0, end - start), 3),
    }
    return rows, window


def _whole(value: float) -> float | int:
    """A median batch as the whole number it nearly always is (8, not 8.0 for an even count)."""
    return int(value) if float(value).is_integer() else value


def _completed(
    steps: list[dict[str, Any]], start: float, end: float
) -> tuple[float, float | None, list[int]]:
    """The steps and samples of ``steps`` done between ``start`` and ``end`` (a step across an edge by
    the fraction of it inside; samples None when a step inside has no count), and their batches."""
    done, samples, batches = 0.0, 0.0, []
    for step in steps:
        length = step["end"] - step["start"]
        inside = min(step["end"], end) - max(step["start"], start)
        if length <= 0 or inside <= 0:
            continue
        part = inside / length
        done += part
        batch = step.get("samples")
        batches.append(batch)
        samples = samples + part * batch if samples is not None and batch else None
    return done, samples, batches


def gpu_figures(group: Path, window: dict[str, Any], pids: list[int | None]) -> dict[str, Any]:
    """Utilisation, memory (in total and per copy, by process id) and power over the window, from the
    parent's samples of the shared GPU."""
    import pandas as pd

    none = {"util_pct_median": None, "memory_peak_mib": None, "copy_memory_peak_mib": [None] * len(pids)}
    try:
        frame = pd.read_csv(group / "gpu.csv")
    except (OSError, ValueError, pd.errors.ParserError):
        return {**none, "power_w": None, "energy_method": None}
    inside = frame[(frame["unix"] >= window["start_unix"]) & (frame["unix"] <= window["end_unix"])]
    util = inside["util_pct"].dropna()
    memory = inside["mem_used_mib"].dropna()
    found = joules(inside)
    per_copy: list[float | None] = [None] * len(pids)
    with contextlib.suppress(OSError, ValueError, pd.errors.ParserError, KeyError):
        processes = pd.read_csv(group / "processes.csv")
        for i, pid in enumerate(pids):
            used = processes[processes["pid"] == pid]["used_mib"]
            per_copy[i] = float(used.max()) if len(used) else None
    return {
        "util_pct_median": float(util.median()) if len(util) else None,
        "memory_peak_mib": float(memory.max()) if len(memory) else None,
        "copy_memory_peak_mib": per_copy,
        "power_w": round(found[0] / found[1], 2) if found else None,
        "energy_method": found[2] if found else None,
    }


def run_group(
    job: list[str], mode: str, copies: int, out: Path, gpu: Gpu, env: dict[str, str], steps: int, warmup: int,
    timeout_s: float,
) -> dict[str, Any]:  # fmt: skip
    """Run K copies in one mode and measure them; the row of the result."""
    group = out / mode / f"k{copies}"
    group.mkdir(parents=True)
    sync_folder(group).mkdir()
    sampler = None
    if gpu.index is not None:
        from ddlprof.profiler.gpu_sampler import GpuSampler

        sampler = GpuSampler(group / "gpu.csv", [gpu.index], 0.2, processes=group / "processes.csv")
        sampler.start()
    launched: list[Copy] = []
    try:
        _launch(job, copies, mode, group, gpu, env, warmup + steps, launched)
        finished = _wait(launched, time.monotonic() + timeout_s, sync_folder(group))
    finally:
        _stop(launched)
        if sampler is not None:
            sampler.stop()
    row: dict[str, Any] = {"mode": mode, "copies": copies, "dir": str(group)}
    details = [
        {"copy": c.index, "run_dir": str(c.run_dir), "log": str(c.log), "exit_code": c.exit_code}
        for c in launched
    ]
    row["copy_results"] = details
    failed = [c for c in launched if c.exit_code != 0]
    if not finished:
        for c in failed:
            details[c.index].update(status="timeout", error=_last_line(c.log))
        logs = group / "copy<i>.log"
        return {
            **row,
            "status": "timeout",
            "reason": f"not finished in {timeout_s:g} s (--timeout); logs: {logs}",
        }
    if failed:
        oom = [c for c in failed if _out_of_memory(c.log)]
        for c in failed:
            details[c.index].update(status="out_of_memory" if c in oom else "failed", error=_last_line(c.log))
        if oom:
            return {
                **row,
                "status": "out_of_memory",
                "reason": f"{len(oom)} of {copies} copies ran out of GPU memory",
            }
        return {**row, "status": "failed", "reason": _failed(failed, copies)}
    measured, unmeasured = [], []
    for c in launched:
        try:
            measured.append(_steps(c, warmup))
        except DdlprofError as exc:
            details[c.index].update(status="failed", error=str(exc))
            unmeasured.append(c)
    if unmeasured:
        causes = {c.index: details[c.index]["error"] for c in unmeasured}
        return {**row, "status": "failed", "reason": _failed(unmeasured, copies, causes)}
    short = [(c.index, len(m[0])) for c, m in zip(launched, measured, strict=True) if len(m[0]) < steps]
    if short:
        index, done = short[0]
        return {
            **row,
            "status": "too_short",
            "reason": f"copy {index} ended after {done} of the {steps} measured steps (its job stopped by "
            f"itself): run the job for more than --warmup + --steps = {warmup + steps} steps",
        }
    per_copy, window = measure_copies([m[0] for m in measured])
    figures = gpu_figures(group, window, [m[1].get("pid") for m in measured]) if sampler else {}
    for detail, copy_row, memory in zip(
        details, per_copy, figures.get("copy_memory_peak_mib") or [None] * copies, strict=True
    ):
        detail.update(copy_row, status="ok", memory_peak_mib=memory)
    if copies > 1 and not window["all_copies_stepping"]:
        return {**row, "status": "not_together", "window": window, "reason": NOT_TOGETHER}
    rates = [r["samples_per_s"] for r in per_copy]
    aggregate = sum(rates) if all(r is not None for r in rates) else None  # type: ignore[misc]
    power = figures.get("power_w")
    return {
        **row,
        "status": "ok",
        "reason": None,
        "window": window,
        "aggregate_samples_per_s": round(aggregate, 3) if aggregate is not None else None,
        "samples_per_gpu_hour": round(aggregate * 3600) if aggregate is not None else None,
        "util_pct_median": figures.get("util_pct_median"),
        "memory_peak_mib": figures.get("memory_peak_mib"),
        "power_w": power,
        "energy_method": figures.get("energy_method"),
        "joules_per_sample": round(power / aggregate, 6) if power and aggregate else None,
        "samples_per_joule": round(aggregate / power, 6) if power and aggregate else None,
    }


def _failed(failed: list[Copy], copies: int, causes: dict[int, str] | None = None) -> str:
    """The reason of a failed group: the first failed copy's exit, last log line and log path."""
    first = failed[0]
    line = _failure(first, (causes or {}).get(first.index))
    return line if len(failed) == 1 else f"{len(failed)} of {copies} copies failed; {line}"


def baseline(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """One copy alone on the whole GPU: the time-sliced K=1 run, else MPS's (a MIG slice is not it)."""
    for mode in ("timeslice", "mps"):
        for row in rows:
            if row["mode"] == mode and row["copies"] == 1 and row["status"] == "ok":
                return row
    return None


def add_slowdowns(rows: list[dict[str, Any]]) -> None:
    """Each copy's step time over the baseline copy's, and each group's gain over the baseline: both
    from measure_copies's one measure, so that at one batch size the gain is the sum of 1/slowdown."""
    base = baseline(rows)
    if base is None:
        return
    base_step = base["copy_results"][0]["step_ms"]
    base_rate = base["aggregate_samples_per_s"]
    for row in rows:
        if row["status"] != "ok":
            continue
        for detail in row["copy_results"]:
            step = detail["step_ms"]
            detail["slowdown"] = round(step / base_step, 3) if step and base_step else None
        rate = row["aggregate_samples_per_s"]
        row["gain_over_one"] = round(rate / base_rate, 3) if rate and base_rate else None


def verdict(rows: list[dict[str, Any]], gpu: Gpu) -> dict[str, Any]:
    """The K and mode with the most samples per GPU-hour and per joule, and where each mode stops
    paying: the first K that runs out of memory, or gains under PAYS_MIN_GAIN over the K before."""
    ok = [r for r in rows if r["status"] == "ok" and r["aggregate_samples_per_s"]]
    best_hour = max(ok, key=lambda r: r["aggregate_samples_per_s"], default=None)
    energetic = [r for r in ok if r.get("samples_per_joule")]
    best_joule = max(energetic, key=lambda r: r["samples_per_joule"], default=None)
    stops: dict[str, str] = {}
    for mode in dict.fromkeys(r["mode"] for r in rows):
        previous = None
        for row in sorted((r for r in rows if r["mode"] == mode), key=lambda r: r["copies"]):
            if row["status"] == "out_of_memory":
                stops[mode] = f"K={row['copies']}: {row['reason']} (memory)"
                break
            if row["status"] != "ok":
                stops[mode] = f"K={row['copies']}: {row['status']} (its row says why)"
                break
            rate = row["aggregate_samples_per_s"]
            if previous is not None and rate and previous["aggregate_samples_per_s"]:
                gain = rate / previous["aggregate_samples_per_s"]
                if gain < PAYS_MIN_GAIN:
                    stops[mode] = (
                        f"K={row['copies']}: {gain:.2f}x the aggregate samples/s of K={previous['copies']} "
                        f"(under {PAYS_MIN_GAIN:.2f}x: {'compute' if gpu.index is not None else 'CPU'} "
                        "saturated)"
                    )
                    break
            previous = row
    energy_reason = None
    if best_joule is None:
        energy_reason = (
            f"no energy figure: no NVIDIA GPU here ({gpu.reason})"
            if gpu.index is None
            else "no energy figure: too few GPU samples in the windows"
        )
    return {
        "best_per_gpu_hour": _pick(best_hour),
        "best_per_joule": _pick(best_joule),
        "best_per_joule_reason": energy_reason,
        "stops_paying": stops,
    }


def _pick(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    keys = ("mode", "copies", "aggregate_samples_per_s", "samples_per_gpu_hour", "samples_per_joule")
    return {k: row.get(k) for k in keys}


def packing_rows(rows: list[dict[str, Any]], gpu: Gpu, model: str, out: Path) -> list[dict[str, Any]]:
    """The rows the local store keeps: every measured K and mode with its factor over one copy alone."""
    base = baseline(rows)
    if gpu.index is None or base is None or not base["aggregate_samples_per_s"]:
        return []
    single = base["aggregate_samples_per_s"]
    return [
        {
            "gpu_name": gpu.name,
            "model": model,
            "mode": r["mode"],
            "copies": r["copies"],
            "factor": r["aggregate_samples_per_s"] / single,
            "aggregate_samples_per_s": r["aggregate_samples_per_s"],
            "single_samples_per_s": single,
            "batch_per_gpu": r["copy_results"][0].get("batch"),
            "joules_per_sample": r.get("joules_per_sample"),
            "peak_memory_mib": r.get("memory_peak_mib"),
            "share_dir": str(out.resolve()),
            "ddlprof_version": ddlprof.__version__,
        }
        for r in rows
        if r["status"] == "ok" and r["aggregate_samples_per_s"]
    ]


def _store(rows: list[dict[str, Any]], gpu: Gpu, model: str, out: Path, store: bool) -> dict[str, Any]:
    from ddlprof.runs import packing
    from ddlprof.runs import store as local_store

    if gpu.index is None:
        return {"stored": False, "reason": "no NVIDIA GPU: a CPU is not a GPU type advise prices"}
    if not store or local_store.disabled():
        return {"stored": False, "reason": f"--no-store or {local_store.NO_STORE_ENV}"}
    kept = packing_rows(rows, gpu, model, out)
    if not kept:
        return {"stored": False, "reason": "no copy ran alone on the whole GPU (K=1, timeslice or mps)"}
    problem = packing.record_packing(kept)
    if problem:
        return {"stored": False, "reason": problem}
    return {"stored": True, "model": model, "gpu_name": gpu.name, "rows": len(kept)}


@contextlib.contextmanager
def _terminations_raise() -> Iterator[None]:
    """SIGTERM and SIGHUP end ``ddlprof share`` through its cleanup (copies stopped, MPS daemon quit),
    as Ctrl-C does."""

    def leave(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, leave) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_share(
    job: list[str],
    counts: list[int],
    modes: list[str],
    steps: int,
    warmup: int,
    out: Path,
    timeout_s: float,
    model: str | None = None,
    store: bool = True,
    gpu: Gpu | None = None,
) -> dict[str, Any]:
    """Every K of every mode that can run here, in order; returns (and writes) ``OUT/share.json``."""
    from rich.console import Console
    from rich.progress import Progress

    if not job:
        raise DdlprofError("no command given; e.g. ddlprof share -n 1,2,4 -- python train.py")
    gpu = gpu or find_gpu()
    skipped = {m: why for m in modes if (why := unavailable(m, gpu))}
    runnable = [m for m in modes if m not in skipped]
    if not runnable:
        raise DdlprofError("; ".join(skipped.values()))
    make_out_folder(out)
    rows: list[dict[str, Any]] = []
    plan = [(m, k) for m in runnable for k in sorted(set(counts))]
    with _terminations_raise(), Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("ddlprof share", total=len(plan))
        for mode in runnable:
            ks = [k for m, k in plan if m == mode]
            with contextlib.ExitStack() as stack:
                env = stack.enter_context(mps_daemon(out / "mps")) if mode == "mps" else {}
                for k in ks:
                    progress.update(task, description=f"{mode}: {k} cop{'y' if k == 1 else 'ies'}")
                    if mode == "mig" and k > len(gpu.mig_uuids):
                        reason = f"{len(gpu.mig_uuids)} MIG device(s) on this GPU, one copy per device"
                        rows.append({"mode": mode, "copies": k, "status": "skipped", "reason": reason})
                    else:
                        rows.append(run_group(job, mode, k, out, gpu, env, steps, warmup, timeout_s))
                    progress.advance(task)
    add_slowdowns(rows)
    name = model or script_name(job)
    result = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "command": job,
        "out": str(out),
        "gpu": {"index": gpu.index, "name": gpu.name, "memory_mib": gpu.memory_mib, "reason": gpu.reason},
        "steps": steps,
        "warmup": warmup,
        "modes_skipped": skipped,
        "groups": rows,
        "verdict": verdict(rows, gpu),
    }
    result["store"] = _store(rows, gpu, name, out, store)
    write_atomic(out / "share.json", json_text(result))
    return result
