"""``ddlprof wrap`` leaves the job alone: output, exit codes and signals pass through; bad commands
fail like the shell; a run directory is never overwritten; a failing collector never breaks the job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ddlprof, env, unprivileged

PY = sys.executable


def test_stdout_is_untouched_and_our_lines_go_to_stderr(tmp_path):
    done = ddlprof("wrap", "--out", str(tmp_path / "r"), PY, "-c", "print('hello'); import sys; sys.exit(7)")
    assert done.stdout == "hello\n"
    assert done.returncode == 7
    assert "ddlprof: run directory" in done.stderr


def test_missing_command_fails_like_the_shell(tmp_path):
    done = ddlprof("wrap", "--out", str(tmp_path / "r"), "no-such-command-xyz", "--flag")
    assert done.returncode == 127
    assert done.stderr.strip() == "ddlprof: no-such-command-xyz: command not found"
    assert not (tmp_path / "r").exists()


def test_existing_run_directory_is_never_overwritten(tmp_path):
    out = tmp_path / "r"
    first = ddlprof("wrap", "--out", str(out), PY, "-c", "pass")
    assert first.returncode == 0
    manifest = (out / "manifest.json").read_text()
    second = ddlprof("wrap", "--out", str(out), PY, "-c", "print('must not run')")
    assert second.returncode == 2
    assert "must not run" not in second.stdout
    assert second.stderr.count("\n") == 1 and "already holds a run" in second.stderr
    assert "Traceback" not in second.stderr
    assert (out / "manifest.json").read_text() == manifest


def _start(tmp_path, code: str) -> subprocess.Popen:
    ready = tmp_path / "ready"
    script = (
        f"import pathlib, signal, sys, time\n{code}\npathlib.Path({str(ready)!r}).touch()\ntime.sleep(60)\n"
    )
    job = subprocess.Popen(
        [PY, "-m", "ddlprof", "wrap", "--out", str(tmp_path / "r"), PY, "-c", script],
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 30
    while not ready.exists() and time.time() < deadline:
        time.sleep(0.05)
    return job


def test_sigterm_reaches_the_job_and_its_death_is_passed_on(tmp_path):
    job = _start(tmp_path, "")
    job.send_signal(signal.SIGTERM)
    assert job.wait(timeout=30) == -signal.SIGTERM  # the wrapper dies of the same signal as the job
    node = json.loads(next((tmp_path / "r" / "nodes").glob("*.json")).read_text())
    assert node["exit_code"] == -signal.SIGTERM


def test_sigint_reaches_the_job_once_and_its_handler_decides(tmp_path):
    job = _start(
        tmp_path, "signal.signal(signal.SIGINT, lambda *a: (print('got SIGINT', flush=True), sys.exit(42)))"
    )
    job.send_signal(signal.SIGINT)
    out, _ = job.communicate(timeout=30)
    assert job.returncode == 42
    assert out.count("got SIGINT") == 1


def test_a_failing_collector_warns_once_and_the_job_goes_on(tmp_path):
    """A batch whose shape cannot be read breaks the data collector, never the training loop."""
    script = """
import torch
from torch.utils.data import DataLoader

class Odd:
    @property
    def shape(self):
        raise RuntimeError("no shape for you")

class Data(torch.utils.data.Dataset):
    def __len__(self): return 8
    def __getitem__(self, i): return torch.ones(2)

model = torch.nn.Linear(2, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for x in DataLoader(Data(), batch_size=2, collate_fn=lambda b: Odd()):
    model(torch.ones(2, 2)).sum().backward()
    opt.step()
print("finished")
"""
    done = ddlprof("wrap", "--out", str(tmp_path / "r"), PY, "-c", script)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "finished\n"
    assert done.stderr.count("the data collector stopped") == 1
    result = json.loads(ddlprof("report", "--json", str(tmp_path / "r")).stdout)
    assert result["job"]["data_stall_ms"] is None
    assert "no shape for you" in result["reasons"]["data_stall_ms"]
    assert result["steps"]["recorded"] == 4  # steps still counted from the optimizer


def test_mark_step_counts_steps_without_an_optimizer(tmp_path):
    script = "import torch, ddlprof, time\nfor _ in range(6):\n    time.sleep(0.01)\n"
    script += "    ddlprof.mark_step(samples=16)\n"
    done = ddlprof("wrap", "--out", str(tmp_path / "r"), PY, "-c", script)
    assert done.returncode == 0, done.stderr
    result = json.loads(ddlprof("report", "--json", str(tmp_path / "r")).stdout)
    assert result["steps"]["recorded"] == 6
    assert 16 / 0.02 < result["job"]["throughput_samples_per_s"] < 16 / 0.01


def test_gradient_accumulation_is_one_step(tmp_path):
    script = """
import torch
model = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for step in range(5):
    for micro in range(3):
        model(torch.ones(8, 4)).sum().backward()
    opt.step()
"""
    done = ddlprof("wrap", "--out", str(tmp_path / "r"), PY, "-c", script)
    assert done.returncode == 0, done.stderr
    steps = [json.loads(x) for x in next((tmp_path / "r" / "ranks").glob("*.jsonl")).read_text().splitlines()]
    assert [s["step"] for s in steps if s["type"] == "step"] == [1, 2, 3, 4, 5]


def test_disabled_comm_collector_leaves_ddp_alone_and_says_why(tmp_path):
    from conftest import EXAMPLE

    out = tmp_path / "r"
    done = ddlprof("wrap", "--disable", "comm", "--out", str(out), PY, str(EXAMPLE), "--steps", "8")
    assert done.returncode == 0, done.stderr
    result = json.loads(ddlprof("report", "--json", str(out)).stdout)
    assert result["job"]["interconnect_stall_ms"] is None
    assert "switched off with --disable" in result["reasons"]["interconnect_stall_ms"]
    assert result["job"]["other_ms"] is not None  # DDP forwards are still seen
    assert result["workload"]["comm_hook"] is None  # no hook was registered on the user's DDP


def test_a_directory_with_other_files_is_not_used(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    done = ddlprof("wrap", "--out", str(tmp_path), PY, "-c", "print('must not run')")
    assert done.returncode == 2 and "not empty and not a ddlprof run" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_ctrl_c_in_a_terminal_reaches_the_job_once(tmp_path):
    """In a terminal the job's process group becomes the foreground group: Ctrl-C goes straight to it."""
    import os
    import pty

    ready = tmp_path / "ready"
    script = (
        "import pathlib, signal, sys, time\n"
        "signal.signal(signal.SIGINT, lambda *a: (print('got SIGINT', flush=True), sys.exit(42)))\n"
        f"pathlib.Path({str(ready)!r}).touch()\ntime.sleep(60)\n"
    )
    pid, master = pty.fork()
    if pid == 0:  # child: a session leader whose controlling terminal is the pty
        os.execve(PY, [PY, "-m", "ddlprof", "wrap", "--out", str(tmp_path / "r"), PY, "-c", script], env())
    deadline = time.time() + 30
    while not ready.exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    os.write(master, b"\x03")
    output = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 42, output
    assert output.count(b"got SIGINT") == 1, output


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_a_job_killed_by_a_signal_kills_the_wrapper_the_same_way(tmp_path, sig):
    code = f"import os, signal; signal.signal({int(sig)}, signal.SIG_DFL); os.kill(os.getpid(), {int(sig)})"
    if sig == signal.SIGKILL:
        code = "import os; os.kill(os.getpid(), 9)"  # SIGKILL's handler cannot be set
    done = ddlprof("wrap", "--out", str(tmp_path / "r"), PY, "-c", code)
    assert done.returncode == -sig  # the shell shows 128 + n, as for the job run alone
    assert "Traceback" not in done.stderr


def test_a_signal_that_cannot_be_re_raised_exits_128_plus_n(monkeypatch):
    from ddlprof.profiler import launch

    def refuse(sig, handler):
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(launch.signal, "signal", refuse)
    assert launch.exit_like(-signal.SIGSTOP) == 128 + signal.SIGSTOP
    assert launch.exit_like(3) == 3


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-1", "1e9", "fast"])
def test_a_sample_interval_out_of_range_is_one_line_and_the_job_never_starts(tmp_path, value):
    out = tmp_path / "r"
    done = ddlprof("wrap", f"--gpu-sample-interval={value}", "--out", str(out), PY, "-c", "print('ran')")
    assert done.returncode == 2 and "ran" not in done.stdout
    assert (
        done.stderr.count("\n") == 1
        and "--gpu-sample-interval: " in done.stderr
        and "the allowed range: from 0.01 to 3,600" in done.stderr
    )
    assert not out.exists()


def _under_a_file(tmp: Path) -> Path:
    (tmp / "a-file").write_text("")
    return tmp / "a-file" / "run"


def _in_a_read_only_directory(tmp: Path) -> Path:
    (tmp / "ro").mkdir(mode=0o555)
    return tmp / "ro" / "run"


def _a_read_only_directory(tmp: Path) -> Path:
    (tmp / "ro").mkdir(mode=0o555)
    return tmp / "ro"


def _under_proc(tmp: Path) -> Path:
    return Path("/proc/ddlprof-no-such-dir/run")


@pytest.mark.parametrize(
    "make_out", [_under_a_file, _in_a_read_only_directory, _a_read_only_directory, _under_proc]
)
def test_a_run_directory_that_cannot_be_made_is_one_line_and_the_job_never_starts(tmp_path, make_out):
    out = make_out(tmp_path)
    done = ddlprof("wrap", "--out", str(out), PY, "-c", "print('ran')", **unprivileged())
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("ddlprof wrap: error: ")
    assert str(out) in done.stderr and "Traceback" not in done.stderr


def test_a_writable_run_directory_in_a_read_only_parent_is_used(tmp_path):
    parent = tmp_path / "ro"
    (parent / "run").mkdir(parents=True)
    parent.chmod(0o555)
    done = ddlprof("wrap", "--out", str(parent / "run"), PY, "-c", "print('ran')", **unprivileged())
    assert done.returncode == 0 and done.stdout == "ran\n", done.stderr
    assert (parent / "run" / "manifest.json").exists()
    assert not [p for p in parent.rglob("*.tmp")]


def test_wraps_of_one_node_started_together_never_share_the_run_directory(tmp_path):
    """Two wraps that would be the same node (same host, same node rank) of a multi-node job: one runs,
    the other is refused before its job starts, whatever the timing."""
    for attempt in range(3):
        out = tmp_path / f"r{attempt}"
        job = [PY, "-c", "import sys; print('ran')", "--nnodes=2"]
        wraps = [
            subprocess.Popen(
                [PY, "-m", "ddlprof", "wrap", "--no-gpu-sampling", "--out", str(out), *job],
                env=env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        outcomes = [(w.wait(timeout=60), *w.communicate()) for w in wraps]
        assert sorted(code for code, _, _ in outcomes) == [0, 2, 2, 2], outcomes
        assert sum(out == "ran\n" for _, out, _ in outcomes) == 1
        refused = [err for code, _, err in outcomes if code == 2]
        assert all(e.count("\n") == 1 and "already ran or runs" in e for e in refused), refused
        assert len(list((out / "nodes").glob("*.json"))) == 1


@pytest.mark.parametrize(
    "launcher", [[], ["torchrun", "--nproc_per_node=2", "--standalone"]], ids=["python", "torchrun"]
)
def test_a_job_dies_with_a_wrapper_killed_by_sigkill(tmp_path, launcher):
    """The job (or torchrun, which then stops its workers: so the job is told with SIGTERM, not
    SIGKILL) does not outlive a wrapper that SIGKILL ended."""
    workers = 2 if launcher else 1
    script = tmp_path / "job.py"
    script.write_text(
        f"import os, time\nopen(os.path.join({str(tmp_path)!r}, 'pid-' + os.environ.get('RANK', '0')), 'w')"
        ".write(str(os.getpid()))\ntime.sleep(60)\n"
    )
    job = [*launcher, str(script)] if launcher else [PY, str(script)]
    wrapper = subprocess.Popen(
        [PY, "-m", "ddlprof", "wrap", "--no-gpu-sampling", "--out", str(tmp_path / "r"), *job],
        env=env(),
        stderr=subprocess.DEVNULL,
    )
    pid_files = [tmp_path / f"pid-{rank}" for rank in range(workers)]
    deadline = time.time() + 60
    while not all(f.exists() and f.read_text() for f in pid_files) and time.time() < deadline:
        time.sleep(0.05)
    pids = [int(f.read_text()) for f in pid_files]
    wrapper.kill()
    wrapper.wait(timeout=10)
    deadline = time.time() + 15
    while time.time() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.05)
    alive = [pid for pid in pids if _alive(pid)]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, "the job outlived its wrapper"


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan is reaped by init, or by its subreaper)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_jobs_builtin_cpp_comm_hook_is_left_alone_and_its_wait_still_timed(tmp_path):
    script = f"""
import torch, torch.distributed as dist
dist.init_process_group("gloo", init_method="file://{tmp_path / "store"}", rank=0, world_size=1)
model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 1))
model._register_builtin_comm_hook(dist.BuiltinCommHookType.ALLREDUCE)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for step in range(6):
    model(torch.ones(8, 4)).sum().backward()
    opt.step()
    opt.zero_grad()
dist.destroy_process_group()
"""
    done = ddlprof("wrap", "--out", str(tmp_path / "r"), PY, "-c", script)
    assert done.returncode == 0, done.stderr
    records = [json.loads(x) for x in (tmp_path / "r" / "ranks" / "rank-0.jsonl").read_text().splitlines()]
    assert not [r for r in records if r["type"] == "warning"]
    comms = [r["comm"] for r in records if r["type"] == "step"]
    assert len(comms) == 6 and all(c["clock"] == "cpu" and c["exposed_ms"] >= 0 for c in comms)
    assert "ALLREDUCE" in str(next(r for r in records if r["type"] == "workload")["comm_hook"])
