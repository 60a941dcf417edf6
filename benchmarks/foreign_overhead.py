"""What ``ddlprof wrap`` costs jobs written outside this project, each timed by its own clock.

Launches the foreign jobs in ``benchmarks/foreign/`` (a plain torchvision DDP loop with a DataLoader,
a Hugging Face ``Trainer`` job, a PyTorch Lightning job) unwrapped and under ``ddlprof wrap``, in
rounds: every round runs each variant of a job once, in a shuffled order, so that drift of the
machine hits every variant alike. Each job writes its own steady-state ms per step (from step 20 to
the end, both after ``torch.cuda.synchronize()``) and the time before that (where a trace window's
one-off cost lands). The ratio of a round is wrapped / unwrapped of the same round; the figure is the
median over the rounds. What ddlprof says it cost itself (the ``own_ms`` of its step records, the
trace window's cost) is read from each wrapped run directory beside it.

While each launch runs, NVML is read twice a second from this process (not the job's): the SM clock,
power, temperature and why the clocks were held down (power cap, thermal, ...), summarised over the
samples where the GPU was busy. Launch-to-launch spread of a GPU-bound job that follows the SM clock
is the GPU's power management, not ddlprof.

    python benchmarks/foreign_overhead.py --jobs plain,hf,lightning --rounds 5 --out results.json
    python benchmarks/foreign_overhead.py --jobs plain --variants unwrapped,bootstrap,steps,default
    python benchmarks/foreign_overhead.py --combine a.json b.json    # rounds of several calls together
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
FOREIGN = REPO / "benchmarks" / "foreign"
JOBS = {
    "plain": ["plain_loop.py"],
    "plain_gpu_resident": ["plain_loop.py", "--gpu-resident"],
    "plain_no_cudnn_benchmark": ["plain_loop.py", "--no-cudnn-benchmark"],
    "hf": ["hf_trainer.py"],
    "lightning": ["lightning_job.py"],
}
_ALL_OFF = ["--disable", "data", "--disable", "comm", "--disable", "traces", "--disable", "workload"]
VARIANTS: dict[str, list[str] | None] = {
    "unwrapped": None,
    "default": [],
    "no_sampling": ["--no-gpu-sampling"],
    "trace0": ["--trace-steps", "0"],
    # bisection: each adds one piece to the one before
    "bootstrap": ["--no-gpu-sampling", "--trace-steps", "0", "--no-probe", "--disable", "steps", *_ALL_OFF],
    "steps": ["--no-gpu-sampling", "--trace-steps", "0", "--no-probe", *_ALL_OFF],
    "steps_comm": [
        "--no-gpu-sampling",
        "--trace-steps",
        "0",
        "--no-probe",
        "--disable",
        "data",
        "--disable",
        "traces",
    ],
    "collectors": ["--no-gpu-sampling", "--trace-steps", "0"],
    # the cause found (issue 12): Kineto left CUPTI attached after the window; 0 keeps it so again
    "cupti_kept": [],
}
VARIANT_ENV = {"cupti_kept": {"TEARDOWN_CUPTI": "0"}}


def launch(job: str, variant: str, args: argparse.Namespace, work: Path, tag: str) -> dict:
    figures = work / f"{tag}.json"
    script, *extra = JOBS[job]
    extra += ["--steps", str(args.steps), *args.job_args.split()]
    command = ["torchrun", "--standalone", f"--nproc_per_node={args.nproc}", str(FOREIGN / script), *extra]
    if args.cpus:  # the job (torchrun and all it starts) on these cores, whether wrapped or not
        command = [*on_cpus(args.cpus), *command]
    options = VARIANTS[variant]
    run_dir = work / f"{tag}-run"
    if options is not None:
        command = [sys.executable, "-m", "ddlprof", "wrap", *options, "--out", str(run_dir), "--", *command]
        if args.cpus:  # wrap's own process (its GPU sampler) on the other cores, off the job's
            others = set(range(os.cpu_count() or 1)) - args.cpus
            command = [*on_cpus(others or args.cpus), *command]
    env = {**os.environ, "STEPTIMER_OUT": str(figures), **VARIANT_ENV.get(variant, {})}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    started = time.perf_counter()
    watch = GpuWatch(args.gpu_index)
    # A session of its own, so that a launch past its time is ended with every process it started.
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=args.launch_timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"variant": variant, "error": f"no end after {args.launch_timeout} s"}
    finally:
        samples = watch.stop()
    wall = time.perf_counter() - started
    if proc.returncode != 0 or not figures.exists():
        return {"variant": variant, "error": f"exit {proc.returncode}: {(stderr or stdout)[-2000:]}"}
    result = json.loads(figures.read_text())
    if not args.keep_step_ms:
        result.pop("step_ms", None)
    result.update({"variant": variant, "launch_wall_s": round(wall, 2)})
    if samples:
        result["gpu"] = gpu_state(samples)
    if options is not None:
        result["ddlprof"] = own_figures(run_dir)
    return result


class GpuWatch:
    """NVML read twice a second on a thread of this process while a launch runs; nothing where NVML
    or the GPU is missing."""

    def __init__(self, index: int, period_s: float = 0.5) -> None:
        self.samples: list[dict] = []
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        except Exception:  # no NVML, no GPU: launches carry no GPU state
            return
        self.nvml: Any = pynvml
        self.reasons = {
            getattr(pynvml, name): name.removeprefix("nvmlClocksEventReason")
            for name in dir(pynvml)
            if name.startswith("nvmlClocksEventReason") and not name.endswith(("All", "None"))
        }
        self.thread = threading.Thread(target=self._run, args=(period_s,), daemon=True)
        self.thread.start()

    def _run(self, period_s: float) -> None:
        nvml, handle = self.nvml, self.handle
        while not self.stopped.wait(period_s):
            try:
                mask = nvml.nvmlDeviceGetCurrentClocksEventReasons(handle)
                sample = {
                    "sm_mhz": nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM),
                    "util_pct": nvml.nvmlDeviceGetUtilizationRates(handle).gpu,
                    "power_w": nvml.nvmlDeviceGetPowerUsage(handle) / 1000,
                    "temp_c": nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU),
                    "reasons": sorted(name for bit, name in self.reasons.items() if mask & bit),
                }
            except Exception:  # an NVML that cannot answer: keep what was read
                return
            self.samples.append(sample)

    def stop(self) -> list[dict]:
        self.stopped.set()
        if self.thread is not None:
            self.thread.join()
            self.nvml.nvmlShutdown()  # nvmlInit counts its callers: one shutdown for each
        return self.samples


def gpu_state(samples: list[dict], busy_pct: int = 50) -> dict:
    """A launch's GPU clocks, power and temperature over the samples where the GPU was busy, and the
    share of those samples in which each clock-limiting reason was active."""
    busy = [s for s in samples if s["util_pct"] >= busy_pct]
    if not busy:
        return {"busy_samples": 0, "samples": len(samples)}
    reasons = sorted({name for s in busy for name in s["reasons"]})
    return {
        "busy_samples": len(busy),
        "samples": len(samples),
        "sm_mhz_median": statistics.median(s["sm_mhz"] for s in busy),
        "sm_mhz_min": min(s["sm_mhz"] for s in busy),
        "power_w_median": round(statistics.median(s["power_w"] for s in busy), 1),
        "temp_c_max": max(s["temp_c"] for s in busy),
        "reason_share": {n: round(sum(n in s["reasons"] for s in busy) / len(busy), 3) for n in reasons},
    }


def own_figures(run_dir: Path) -> dict:
    """What the run directory says ddlprof cost (empty when the build records none)."""
    try:
        from ddlprof.runs.rundir import load_run
        from ddlprof.runs.summary import summarize

        summary = summarize([load_run(run_dir)])
    except Exception as exc:  # a benchmark of an older build must still finish
        return {"error": f"{type(exc).__name__}: {exc}"}
    return summary.get("ddlprof_overhead") or {}


def summarise(launches: list[dict]) -> dict:
    out: dict = {}
    for job in sorted({r["job_key"] for r in launches}):
        rows = [r for r in launches if r["job_key"] == job and "error" not in r]
        base = {r["round"]: r["ms_per_step"] for r in rows if r["variant"] == "unwrapped"}
        per: dict = {}
        for variant in dict.fromkeys(r["variant"] for r in rows):
            mine = [r for r in rows if r["variant"] == variant]
            ratios = [r["ms_per_step"] / base[r["round"]] for r in mine if r["round"] in base]
            per[variant] = {
                "ms_per_step": [round(r["ms_per_step"], 3) for r in mine],
                "median_ms_per_step": round(statistics.median(r["ms_per_step"] for r in mine), 3),
                "ratios": [round(x, 4) for x in ratios],
                "median_ratio": round(statistics.median(ratios), 4) if ratios else None,
                "before_steady_s": [round(r["first_step_to_warmup_s"], 3) for r in mine],
            }
            if any("sm_mhz_median" in (r.get("gpu") or {}) for r in mine):
                per[variant]["sm_mhz_median"] = [(r.get("gpu") or {}).get("sm_mhz_median") for r in mine]
            own = [r.get("ddlprof") or {} for r in mine]
            for key in ("own_ms_per_step", "own_pct_of_step", "trace_window_s"):
                if any(o.get(key) is not None for o in own):  # what each wrapped run says it cost
                    per[variant][key] = [o.get(key) for o in own]
        out[job] = per
    return out


def on_cpus(cpus: set[int]) -> list[str]:
    """A prefix that runs a command (and what it starts) on ``cpus`` only."""
    pin = "import os, sys; os.sched_setaffinity(0, {cpus}); os.execvp(sys.argv[1], sys.argv[1:])"
    return [sys.executable, "-c", pin.format(cpus=sorted(cpus))]


def cpu_list(text: str) -> set[int]:
    """``0-7,12`` as a set of CPU numbers."""
    cpus: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", default="plain,hf,lightning", help=f"comma list of {', '.join(JOBS)}")
    parser.add_argument(
        "--variants", default="unwrapped,default", help=f"comma list of {', '.join(VARIANTS)}"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--nproc", type=int, default=1)
    parser.add_argument("--job-args", default="", help="more arguments for every job (e.g. '--tiny')")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gpu-index", type=int, default=0, help="the NVML index of the GPU to watch")
    parser.add_argument("--first-round", type=int, default=0, help="number of the first round (to go on)")
    parser.add_argument("--launch-timeout", type=float, default=300)
    parser.add_argument(
        "--cpus",
        type=cpu_list,
        help="run every job (torchrun and all it starts) on these CPUs, e.g. 0-7, wrapped or not, and "
        "ddlprof wrap's own process on the others: the job's cores are the same in every variant",
    )
    parser.add_argument(
        "--keep-step-ms", action="store_true", help="keep every step's host time in the output"
    )
    parser.add_argument("--out", type=Path, help="the JSON written after every launch")
    parser.add_argument(
        "--combine",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="summarise earlier outputs together (a launch of a job, round and variant in a later file "
        "replaces the same one of an earlier file) and print that; nothing is launched",
    )
    args = parser.parse_args()
    if args.combine:
        kept: dict[tuple, dict] = {}
        for path in args.combine:
            for row in json.loads(path.read_text())["launches"]:
                kept[(row["job_key"], row["round"], row["variant"])] = row
        print(json.dumps(summarise(list(kept.values())), indent=1))
        return 0
    if args.out is None:
        parser.error("--out is required (unless --combine)")
    jobs, variants = args.jobs.split(","), args.variants.split(",")
    for name, known in ((jobs, JOBS), (variants, VARIANTS)):
        if unknown := [n for n in name if n not in known]:
            parser.error(f"unknown: {', '.join(unknown)}")
    order = random.Random(args.seed)
    launches: list[dict] = []
    failed: set[str] = set()  # a job that failed once is not launched again; the others go on
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for round_ in range(args.first_round, args.first_round + args.rounds):
            for job in jobs:
                for variant in order.sample(variants, len(variants)):
                    if job in failed:
                        continue
                    tag = f"{job}-{variant}-{round_}"
                    result = launch(job, variant, args, work, tag)
                    result.update({"job_key": job, "round": round_})
                    launches.append(result)
                    if "error" in result:
                        failed.add(job)
                        print(f"{tag}: FAILED {result['error']}", flush=True)
                    else:
                        ms, wall = result["ms_per_step"], result["launch_wall_s"]
                        clock = (result.get("gpu") or {}).get("sm_mhz_median")
                        at = f", SM {clock} MHz" if clock else ""
                        print(f"{tag}: {ms:.3f} ms/step{at}, {wall} s launch", flush=True)
                    args.out.write_text(json.dumps({"launches": launches}, indent=1))
    report = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "nproc": args.nproc,
        "steps": args.steps,
        "summary": summarise(launches),
        "launches": launches,
    }
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report["summary"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
