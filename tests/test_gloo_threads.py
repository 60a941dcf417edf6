"""ddlprof runs no Python on gloo's threads.

A thread of gloo's that waits for the GIL while the interpreter finalizes aborts the rank
("terminate called without an active exception"), as CI saw. Each rank runs under gdb, which
records every GIL acquisition on a thread other than the main one and what asked for it
(``benchmarks/gloo_thread_gil.py``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from conftest import REPO, env

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        shutil.which("gdb") is None,
        reason="no gdb: install Debian's gdb (apt-get install gdb, as .ci/run does)",
    ),
]
SCRIPT = REPO / "benchmarks" / "gloo_thread_gil.py"


def gil_kinds(tmp_path, *train_args: str, clean_exit: bool = True) -> tuple[dict, list]:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--wrap", "--keep", str(tmp_path), "--", *train_args],
        capture_output=True,
        text=True,
        env=env(),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    if clean_exit:
        assert result["exit_code"] == 0, result
    lines = (tmp_path / "run" / "ranks" / "rank-0.jsonl").read_text().splitlines()
    return result["gil_on_other_threads"], [json.loads(line) for line in lines]


def test_the_profiled_job_runs_no_python_on_gloo_threads(tmp_path):
    kinds, records = gil_kinds(tmp_path, "--steps", "8")
    # only what every gloo job of torch 2.13 does: a work's captured thread-local state (which holds a
    # Python object during backward) released by the gloo thread that ran it
    assert all(set(rank) <= {"work_thread_local_state_released"} for rank in kinds.values()), kinds
    steps = [r for r in records if r["type"] == "step"]
    assert len(steps) == 8 and all(s["comm"]["clock"] == "cpu" and s["comm"]["exposed_ms"] > 0 for s in steps)
    workload = next(r for r in records if r["type"] == "workload")
    assert workload["comm_hook"] is None  # DDP's own C++ all-reduce, as without ddlprof


def test_the_check_sees_python_callbacks_where_the_job_has_them(tmp_path):
    # The example's --python-comm-hook registers torch's allreduce_hook, whose `then` runs on gloo's
    # thread (or on the training thread, when the all-reduce is done before the `then` is attached).
    # Such a job can itself abort at exit, all the more under gdb, so only the count is checked here.
    kinds, _ = gil_kinds(tmp_path, "--steps", "8", "--python-comm-hook", clean_exit=False)
    assert sum(rank.get("python_then_callback_run", 0) for rank in kinds.values()) >= 1, kinds
