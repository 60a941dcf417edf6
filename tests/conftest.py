"""Helpers to run real ``ddlprof`` commands and real gloo DDP jobs in subprocesses."""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import subprocess
import sys
import tarfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ddlprof.profiler.differential import free_port  # noqa: F401  (re-exported for the tests)
from ddlprof.profiler.wrap import wrap_command as ddlprof_wrap_command

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "ddp_train.py"
BIN = Path(sys.executable).parent
RUNS = REPO / "benchmarks" / "results" / "gpu-2xh200" / "runs.tgz"  # real 2 x H200 runs, with traces
_spec = importlib.util.spec_from_file_location("replicate_trace", REPO / "benchmarks" / "replicate_trace.py")
replicate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(replicate)


def env() -> dict[str, str]:
    out = dict(os.environ)
    out["PATH"] = f"{BIN}{os.pathsep}{out.get('PATH', '')}"
    out["OMP_NUM_THREADS"] = "1"
    # a rank that aborts (CI once saw torch 2.13 + gloo abort at exit) prints every thread's stack
    out["PYTHONFAULTHANDLER"] = "1"
    out.pop("DDLPROF_RUN_DIR", None)
    return out


def ddlprof(*args: str, timeout: float = 240, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ddlprof", *args],
        capture_output=True,
        text=True,
        env=kwargs.pop("env", env()),
        timeout=timeout,
        **kwargs,
    )


_DAC_CAPABILITIES = (1, 2)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH: what lets root ignore a file's mode
_PR_CAPBSET_DROP = 24
_CAPABILITY_VERSION_3 = 0x20080522


def drop_root_overrides() -> None:
    """Make this process obey file modes, as any user does, though it runs as root (as CI does): drop
    the two capabilities through which root reads and writes whatever a mode says, from this process
    and from what it executes. Its uid stays 0, so it can still run a Python that only root may read."""
    if os.geteuid() != 0:
        return
    drop_capabilities(*_DAC_CAPABILITIES)


def drop_capabilities(*capabilities: int) -> None:
    """Drop the capabilities (numbers below 32) from this process and from what it executes."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    header = (ctypes.c_uint32 * 2)(_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # two {effective, permitted, inheritable} words
    for cap in capabilities:
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")
    if libc.capget(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    mask = ~sum(1 << cap for cap in capabilities) & 0xFFFFFFFF
    data[0] &= mask  # effective
    data[1] &= mask  # permitted
    if libc.capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def unprivileged() -> dict[str, Any]:
    """subprocess arguments that make a command obey file modes even when the tests run as root."""
    return {"preexec_fn": drop_root_overrides} if os.geteuid() == 0 else {}


def as_unprivileged(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a forked child that obeys file modes (see ``drop_root_overrides``); its result,
    or the test fails with the child's traceback."""
    if os.geteuid() != 0:
        return fn(*args)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read)
            drop_root_overrides()
            outcome = ("ok", fn(*args))
        except BaseException as exc:
            outcome = ("error", "".join(traceback.format_exception(exc)))
        with os.fdopen(write, "wb") as pipe:
            pickle.dump(outcome, pipe)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    kind, value = pickle.loads(data)
    if kind == "error":
        pytest.fail(f"with root's overrides dropped:\n{value}")
    return value


def wrap_command(
    out: Path | str, *job: str, trace_steps: str = "0", options: tuple[str, ...] = ()
) -> list[str]:
    """``python -m ddlprof wrap`` of ``job`` into ``out``, as a Popen argument list."""
    return ddlprof_wrap_command(out, list(job), "--trace-steps", trace_steps, *options)


def torchrun(nproc: int = 2, *extra: str) -> list[str]:
    return ["torchrun", f"--nproc_per_node={nproc}", "--standalone", *extra]


def summary(run: Path, *args: str) -> dict:
    done = ddlprof("report", "--json", *args, str(run))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def fitted():
    """The shipped stall models (``load_models``), once a module."""
    from ddlprof.models.registry import load_models

    return load_models()


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh DDLPROF_HOME for this process and for the ``ddlprof`` commands it runs, with the local
    dataset on (tests that read what a report stored)."""
    from ddlprof.runs import store

    path = tmp_path / "home"
    monkeypatch.setenv(store.HOME_ENV, str(path))
    monkeypatch.delenv(store.NO_STORE_ENV, raising=False)
    return path


@pytest.fixture(autouse=True)
def _ddlprof_home(tmp_path_factory, monkeypatch):
    """Every test's ddlprof commands keep their local dataset (DDLPROF_HOME) in a temporary folder,
    never in the home directory of whoever runs the tests."""
    monkeypatch.setenv("DDLPROF_HOME", str(tmp_path_factory.mktemp("ddlprof-home")))


@pytest.fixture
def wrapped(tmp_path):
    """Run the example under ``ddlprof wrap torchrun`` and return (completed process, run dir)."""

    def run(*example_args: str, nproc: int = 2, trace_steps: str = "0", name: str = "run"):
        out = tmp_path / name
        done = ddlprof(
            "wrap",
            "--out",
            str(out),
            "--trace-steps",
            trace_steps,
            "--",
            *torchrun(nproc),
            str(EXAMPLE),
            *example_args,
        )
        return done, out

    return run


@pytest.fixture(scope="session")
def marked(tmp_path_factory):
    """Each rank's real trace as a dict, with ProfilerStep#1-3 marked at its DataLoader next() calls."""
    out = tmp_path_factory.mktemp("runs")
    with tarfile.open(RUNS) as archive:
        members = [m for m in archive.getmembers() if m.name.startswith("runs/resnet50-nvlink/traces/")]
        archive.extractall(out, members=members, filter="data")
    traces = {}
    for rank in (0, 1):
        trace = replicate.load(next(out.rglob(f"vm_{rank}.*.pt.trace.json.gz")))
        replicate.mark_steps(trace, "enumerate(DataLoader)", "Optimizer.step")
        traces[rank] = trace
    return traces
