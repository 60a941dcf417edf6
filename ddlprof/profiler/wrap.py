"""``ddlprof wrap``: profile an unmodified job by putting the collectors' bootstrap on PYTHONPATH.

Works for ``torchrun ...``, ``python -m torch.distributed.run ...``, ``python train.py`` and any
command that eventually starts Python processes that import torch.
"""

from __future__ import annotations

import os
import platform
import re
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ddlprof
from ddlprof.collectors import config
from ddlprof.errors import DdlprofError
from ddlprof.profiler.launch import CommandNotFound, check_command, exit_like, run_command, signals_held
from ddlprof.runs import rundir

INJECT_DIR = str(Path(__file__).resolve().parent.parent / "collectors" / "inject")
_RECORDED_ENV = re.compile(r"^(NCCL_|CUDA_VISIBLE_DEVICES$|OMP_NUM_THREADS$|TORCH_|GLOO_|MASTER_|NVIDIA_)")


def launcher_of(command: list[str]) -> str:
    names = [os.path.basename(arg) for arg in command[:3]]
    if "torchrun" in names[:1]:
        return "torchrun"
    if "-m" in command[:3]:
        module = command[command.index("-m") + 1] if command.index("-m") + 1 < len(command) else ""
        if module in ("torch.distributed.run", "torch.distributed.launch"):
            return module
    return "direct"


def _option(command: list[str], *names: str) -> str | None:
    for i, arg in enumerate(command):
        for name in names:
            if arg == name and i + 1 < len(command):
                return command[i + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def max_nodes(command: list[str]) -> int:
    """torchrun's --nnodes (N or MIN:MAX); 1 for anything else."""
    value = _option(command, "--nnodes")
    try:
        return int(value.split(":")[-1]) if value else 1
    except ValueError:
        return 1


def script_name(command: list[str]) -> str:
    for arg in command[1:]:
        if arg.endswith(".py"):
            return Path(arg).stem
    if "-m" in command:
        i = command.index("-m")
        if launcher_of(command) == "direct" and i + 1 < len(command):
            return command[i + 1].rsplit(".", 1)[-1]
    return Path(command[0]).name


def default_out(command: list[str]) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path("ddlprof-runs") / f"{stamp}-{script_name(command)}"


def wrap_command(out: Path | str, job: list[str], *options: str) -> list[str]:
    """The ``ddlprof wrap`` command line that profiles ``job`` into ``out`` (for tools that launch
    wrapped runs themselves, such as ``ddlprof stalls``)."""
    return [sys.executable, "-m", "ddlprof", "wrap", *options, "--out", str(out), "--", *job]


def job_environment(run_dir: Path, trace_steps: str, disabled: list[str]) -> dict[str, str]:
    env = dict(os.environ)
    paths = [INJECT_DIR] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env[config.RUN_DIR] = str(run_dir.resolve())
    env[config.TRACE_STEPS] = trace_steps
    env[config.DISABLED] = ",".join(disabled)
    return env


def node_record(command: list[str], node_rank: int) -> dict[str, Any]:
    host = config.host_id()
    return {
        "node_id": f"node{node_rank}-{host}",
        "node_rank": node_rank,
        "host": host,
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "command": command,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "env": {k: v for k, v in sorted(os.environ.items()) if _RECORDED_ENV.match(k)},
        "start_unix": time.time(),
        "end_unix": None,
        "exit_code": None,
    }


def wrap(
    command: list[str],
    out: Path | None,
    trace_steps: str,
    gpu_sampling: bool,
    sample_interval_s: float,
    disabled: list[str] | None = None,
) -> int:
    if not command:
        raise DdlprofError("wrap: no command given; e.g. ddlprof wrap torchrun --nproc_per_node=2 train.py")
    try:
        config.parse_trace_steps(trace_steps)
    except config.TraceStepsError as exc:
        raise DdlprofError(str(exc)) from None
    try:
        executable = check_command(command)
    except CommandNotFound as exc:
        print(f"ddlprof: {exc}", file=sys.stderr)
        return exc.exit_code

    nnodes = max_nodes(command)
    node_rank = int(_option(command, "--node_rank", "--node-rank") or os.environ.get("NODE_RANK", 0) or 0)
    run_dir = out if out is not None else default_out(command)
    manifest = {
        "schema": rundir.MANIFEST_SCHEMA,
        "schema_version": rundir.SCHEMA_VERSION,
        "run_id": run_dir.resolve().name,
        "created_unix": time.time(),
        "command": command,
        "job_key": rundir.job_key(command),
        "launcher": launcher_of(command),
        "nnodes": nnodes,
        "trace_steps": trace_steps,
        "disabled": disabled or [],
        "ddlprof_version": ddlprof.__version__,
    }
    rundir.create_or_join(run_dir, manifest, multi_node=nnodes > 1)
    node = node_record(command, node_rank)
    rundir.claim_node(run_dir, node)

    with signals_held() as child_mask:
        sampler = _start_sampler(run_dir, node, gpu_sampling, sample_interval_s)
        rundir.write_node(run_dir, node)
        print(f"ddlprof: profiling into {run_dir}", file=sys.stderr, flush=True)
        exit_code = run_command(
            executable, command, job_environment(run_dir, trace_steps, disabled or []), child_mask
        )
        if sampler is not None:
            sampler.stop()
            if sampler.error:
                node["gpu_sampling"] = {"enabled": False, "reason": f"sampler stopped: {sampler.error}"}
    node["end_unix"] = time.time()
    node["exit_code"] = exit_code
    try:
        rundir.write_node(run_dir, node)
    except DdlprofError as exc:  # the job has run: its exit code still passes through
        print(f"ddlprof: warning: {exc}; the node's end is not recorded", file=sys.stderr)
    _print_summary(run_dir)
    return exit_like(exit_code)


def _start_sampler(run_dir: Path, node: dict[str, Any], enabled: bool, interval_s: float) -> Any:
    from ddlprof.profiler.gpu_sampler import GpuSampler, gpu_inventory

    gpus, reason = gpu_inventory()
    node["gpus"] = gpus
    if not enabled:
        node["gpu_sampling"] = {"enabled": False, "reason": "--no-gpu-sampling"}
        return None
    if not gpus:
        node["gpu_sampling"] = {"enabled": False, "reason": reason}
        return None
    # One file per host; a second wrap on the host (emulated nodes) samples into its node's own file.
    folder = run_dir / "gpu"
    path = _claim(folder / f"{node['host']}.csv") or _claim(folder / f"{node['node_id']}.csv")
    if path is None:
        node["gpu_sampling"] = {"enabled": False, "reason": f"{folder}: no free file for this node"}
        return None
    node["gpu_sampling"] = {"enabled": True, "file": str(path.relative_to(run_dir)), "interval_s": interval_s}
    sampler = GpuSampler(path, [g["index"] for g in gpus], interval_s)
    sampler.start()
    return sampler


def _claim(path: Path) -> Path | None:
    """Create ``path`` empty unless it exists (atomically: two wraps starting together never share it)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except OSError:
        return None
    return path


def _print_summary(run_dir: Path) -> None:
    """One line at the end of the job; a run that cannot be summarised still names its directory."""
    from ddlprof.runs.summary import one_line, summarize, write_summary_if_absent

    try:
        summary = summarize([rundir.load_run(run_dir)])
        line = one_line(summary)
        write_summary_if_absent(run_dir, summary)  # so the dashboard need not read the ranks again
    except DdlprofError as exc:
        line = str(exc)
    except Exception as exc:  # the job has finished; never turn its exit status into a traceback
        line = f"could not summarise ({type(exc).__name__}: {exc})"
    print(
        f"ddlprof: run directory {run_dir}\nddlprof: {line}\nddlprof: details: ddlprof report {run_dir}",
        file=sys.stderr,
        flush=True,
    )
