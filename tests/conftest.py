"""Helpers to run real ``ddlprof`` commands and real gloo DDP jobs in subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ddlprof.profiler.differential import free_port  # noqa: F401  (re-exported for the tests)
from ddlprof.profiler.wrap import wrap_command as ddlprof_wrap_command

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "ddp_train.py"
BIN = Path(sys.executable).parent


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
