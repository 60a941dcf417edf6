"""``ddlprof share``: K copies of a one-GPU job, orchestrated and measured (on the CPU here), the MPS
daemon's life, out-of-memory copies, and the arithmetic of the verdict."""

from __future__ import annotations

import json
import os
import signal
import statistics
import sys
import threading
from pathlib import Path

import pytest
from conftest import REPO, ddlprof, env

from ddlprof.profiler import share
from ddlprof.profiler.share import Gpu, measure_copies, run_share, verdict
from ddlprof.runs import packing
from ddlprof.runs.rundir import load_run

EXAMPLE = str(REPO / "examples" / "ddp_train.py")


def test_k_cpu_processes_time_slice_and_gpu_modes_say_why_not(tmp_path):
    out = tmp_path / "share"
    done = ddlprof(
        "share", "-n", "1,2", "--mode", "timeslice,mps,mig", "--steps", "6", "--warmup", "2",
        "--out", str(out), "--json", "--", sys.executable, EXAMPLE, "--steps", "100", "--batch-size", "8",
        timeout=400,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result == json.loads((out / "share.json").read_text())
    assert result["gpu"]["index"] is None
    # modes that need a GPU say so, one line each
    assert set(result["modes_skipped"]) == {"mps", "mig"}
    for mode, why in result["modes_skipped"].items():
        assert why.startswith(f"{mode}: needs an NVIDIA GPU") and "\n" not in why
    groups = {(g["mode"], g["copies"]): g for g in result["groups"]}
    assert set(groups) == {("timeslice", 1), ("timeslice", 2)}
    for (_, k), group in groups.items():
        assert group["status"] == "ok", group
        copies = group["copy_results"]
        assert len(copies) == k and all(c["status"] == "ok" and c["exit_code"] == 0 for c in copies)
        for c in copies:  # each copy is an ordinary wrapped run of its own
            assert (tmp_path / c["run_dir"]).joinpath("ranks", "rank-0.jsonl").exists()
            assert c["samples_per_s"] == pytest.approx(8 * 1e3 / c["step_ms"], rel=0.5)
        assert group["aggregate_samples_per_s"] == pytest.approx(
            sum(c["samples_per_s"] for c in copies), abs=1e-3
        )
        assert group["joules_per_sample"] is None and group["power_w"] is None
    one = groups[("timeslice", 1)]
    assert groups[("timeslice", 2)]["gain_over_one"] == pytest.approx(
        groups[("timeslice", 2)]["aggregate_samples_per_s"] / one["aggregate_samples_per_s"], rel=1e-2
    )
    assert result["verdict"]["best_per_joule"] is None
    assert "no NVIDIA GPU" in result["verdict"]["best_per_joule_reason"]
    assert result["store"]["stored"] is False and packing.load_packing() == []


def test_only_gpu_modes_is_one_line_and_exit_2(tmp_path):
    done = ddlprof("share", "--mode", "mps", "--out", str(tmp_path / "o"), "--", sys.executable, "-c", "0")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "mps: needs an NVIDIA GPU" in done.stderr
    assert not (tmp_path / "o").exists()


def test_a_copy_out_of_memory_is_reported_as_such(tmp_path):
    job = [
        sys.executable,
        "-c",
        "import sys; print('torch.OutOfMemoryError: CUDA out of memory.'); sys.exit(1)",
    ]
    result = run_share(job, [1, 2], ["timeslice"], 5, 1, tmp_path / "o", 120, gpu=Gpu(None, reason="test"))
    for group in result["groups"]:
        assert group["status"] == "out_of_memory"
        assert group["reason"] == f"{group['copies']} of {group['copies']} copies ran out of GPU memory"
        assert all(c["status"] == "out_of_memory" for c in group["copy_results"])
    assert result["verdict"]["stops_paying"]["timeslice"].startswith("K=1: 1 of 1 copies ran out")


@pytest.fixture
def fake_mps(tmp_path, monkeypatch):
    """An nvidia-cuda-mps-control on PATH that logs each call: its arguments, stdin and directories."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "mps-calls.jsonl"
    bin_dir.mkdir()
    script = bin_dir / share.MPS_CONTROL
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "stdin = '' if sys.argv[1:] == ['-d'] else sys.stdin.read()\n"
        f"with open({str(calls)!r}, 'a') as f:\n"
        "    f.write(json.dumps({'argv': sys.argv[1:], 'stdin': stdin,\n"
        "        'pipe': os.environ.get('CUDA_MPS_PIPE_DIRECTORY'),\n"
        "        'log': os.environ.get('CUDA_MPS_LOG_DIRECTORY')}) + '\\n')\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    def read() -> list[dict]:
        return [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []

    return read


def test_mps_daemon_is_ddlprofs_own_and_always_stopped(tmp_path, fake_mps):
    out = tmp_path / "o"
    job = [sys.executable, "-c", "raise SystemExit(3)"]  # every copy fails: the daemon still stops
    result = run_share(job, [1], ["mps"], 5, 1, out, 60, gpu=Gpu(0, "Fake GPU"), store=False)
    assert result["groups"][0]["status"] == "failed"
    calls = fake_mps()
    assert [c["argv"] for c in calls] == [["-d"], []] and calls[1]["stdin"] == "quit\n"
    for call in calls:
        assert call["pipe"] == str((out / "mps" / "pipe").resolve())
        assert call["log"] == str((out / "mps" / "log").resolve())


def test_mps_daemon_is_stopped_when_share_is_terminated(tmp_path, fake_mps):
    job = [sys.executable, "-c", "import time; time.sleep(120)"]
    timer = threading.Timer(4.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_share(job, [2], ["mps"], 5, 1, tmp_path / "o", 300, gpu=Gpu(0, "Fake GPU"), store=False)
    finally:
        timer.cancel()
    assert [c["argv"] for c in fake_mps()] == [["-d"], []]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is put back


def _steps(first_start: float, step_s: float, n: int, batch: int = 10) -> list[dict]:
    return [
        {"step": i, "start": first_start + i * step_s, "end": first_start + (i + 1) * step_s,
         "step_ms": step_s * 1e3, "samples": batch}
        for i in range(n)
    ]  # fmt: skip


def test_throughput_counts_only_the_steps_all_copies_ran_together():
    """Copy 1 starts 2 s late; copy 0's steps alone (faster, unshared) before then are left out."""
    alone = _steps(0.0, 0.1, 20)  # 0-2 s alone at 100 ms
    shared = _steps(2.0, 0.2, 20)  # 2-6 s at 200 ms
    late = _steps(2.0, 0.2, 15)  # 2-5 s
    rows, window = measure_copies([alone + shared, late])
    assert window["start_unix"] == 2.0 and window["end_unix"] == pytest.approx(5.0)
    assert window["all_copies_stepping"] is True
    assert [r["step_ms"] for r in rows] == [200.0, 200.0]
    assert [r["samples_per_s"] for r in rows] == [pytest.approx(50.0), pytest.approx(50.0)]


def _row(mode: str, k: int, rate: float | None, status: str = "ok", joule: float | None = None) -> dict:
    return {
        "mode": mode, "copies": k, "status": status, "reason": "2 of 4 copies ran out of GPU memory",
        "aggregate_samples_per_s": rate, "samples_per_gpu_hour": rate and rate * 3600,
        "samples_per_joule": joule,
    }  # fmt: skip


def test_verdict_names_the_best_and_where_it_stops_paying():
    rows = [
        _row("timeslice", 1, 100.0, joule=1.0),
        _row("timeslice", 2, 180.0, joule=1.5),
        _row("timeslice", 4, 184.0, joule=1.4),  # +2%: saturated
        _row("mps", 1, 100.0, joule=1.0),
        _row("mps", 2, 190.0, joule=1.6),
        _row("mps", 4, None, status="out_of_memory"),
    ]
    found = verdict(rows, Gpu(0, "H100"))
    assert (found["best_per_gpu_hour"]["mode"], found["best_per_gpu_hour"]["copies"]) == ("mps", 2)
    assert (found["best_per_joule"]["mode"], found["best_per_joule"]["copies"]) == ("mps", 2)
    assert found["stops_paying"]["timeslice"].startswith("K=4: 1.02x the aggregate samples/s of K=2")
    assert "compute saturated" in found["stops_paying"]["timeslice"]
    assert found["stops_paying"]["mps"] == "K=4: 2 of 4 copies ran out of GPU memory (memory)"


def test_packing_factors_are_stored_for_a_gpu_only_against_one_copy_alone(tmp_path):
    rows = [_row("timeslice", 1, 100.0), _row("timeslice", 2, 170.0), _row("mig", 2, 150.0)]
    for row in rows:
        row["copy_results"] = [{"batch": 32}]
    gpu = Gpu(0, "NVIDIA H100 80GB HBM3")
    assert share._store(rows, gpu, "resnet50", tmp_path, True)["stored"] is True
    stored = {(r["mode"], r["copies"]): r for r in packing.load_packing("resnet50")}
    assert stored[("timeslice", 2)]["factor"] == pytest.approx(1.7)
    assert stored[("mig", 2)]["factor"] == pytest.approx(1.5)
    assert stored[("timeslice", 2)]["gpu_name"] == "NVIDIA H100 80GB HBM3"
    assert share._store(rows, Gpu(None, reason="none"), "resnet50", tmp_path, True)["stored"] is False


#: One copy of a job on an emulated time-sliced device: the device is a file lock that a copy holds
#: for a quantum of 4 steps of 10 ms of work, as a GPU gives each context a time slice, so one copy
#: alone never waits and K copies take turns. With "exclusive", a copy that finds the device taken
#: fails at once instead (exit 1) and says why.
SLICED_JOB = """
import fcntl, sys, time
device = open(sys.argv[1], "a")
if sys.argv[2] == "exclusive":
    try:
        fcntl.flock(device, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        sys.exit("RuntimeError: the device is taken by another copy")
import torch
from torch.utils.data import DataLoader, TensorDataset
model = torch.nn.Linear(4, 2)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
data = DataLoader(TensorDataset(torch.randn(4096, 4), torch.randn(4096, 2)), batch_size=8)
for i, (x, y) in enumerate(data):
    if sys.argv[2] == "sliced" and i % 4 == 0:
        fcntl.flock(device, fcntl.LOCK_EX)
    time.sleep(0.01)
    opt.zero_grad()
    torch.nn.functional.mse_loss(model(x), y).backward()
    opt.step()
    if sys.argv[2] == "sliced" and i % 4 == 3:
        fcntl.flock(device, fcntl.LOCK_UN)
        time.sleep(0.002)  # a waiting copy takes its turn
"""


def _sliced(tmp_path, how: str) -> list[str]:
    script = tmp_path / "sliced_job.py"
    script.write_text(SLICED_JOB)
    return [sys.executable, str(script), str(tmp_path / "device.lock"), how]


def _wide() -> dict[str, str]:
    return {**env(), "COLUMNS": "1000"}  # a table line is never wrapped in the middle of a path


def test_gain_and_slowdown_are_one_measure_on_a_time_sliced_device(tmp_path):
    """Two copies taking turns on the device: each copy's step is about twice one copy's alone and
    together they do about what one did; the median step (the steps of a copy's own turn) would say
    there was no slowdown at all while the aggregate said there was no gain."""
    out = tmp_path / "share"
    done = ddlprof(
        "share", "-n", "1,2", "--steps", "100", "--warmup", "4", "--out", str(out), "--",
        *_sliced(tmp_path, "sliced"), env=_wide(), timeout=400,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    groups = {g["copies"]: g for g in json.loads((out / "share.json").read_text())["groups"]}
    one, two = groups[1], groups[2]
    assert one["status"] == two["status"] == "ok" and two["window"]["all_copies_stepping"]
    slowdowns = [c["slowdown"] for c in two["copy_results"]]
    gain = two["aggregate_samples_per_s"] / one["aggregate_samples_per_s"]
    assert two["gain_over_one"] == pytest.approx(gain, rel=1e-2)
    # one batch size: the gain is the sum of the copies' 1/slowdown, and K over their mean slowdown
    assert gain == pytest.approx(sum(1 / s for s in slowdowns), rel=0.02)
    assert gain == pytest.approx(2 / statistics.fmean(slowdowns), rel=0.25)
    # what the emulated device does: the copies take turns, so no gain, and they wait for it
    assert 0.6 < gain < 1.3 and max(slowdowns) > 1.5
    for c in two["copy_results"]:  # each copy's figures are those of the window: steps in its seconds
        assert c["step_ms"] == pytest.approx(1e3 * c["seconds"] / c["steps"], rel=1e-2)
        assert c["samples_per_s"] == pytest.approx(8 * 1e3 / c["step_ms"], rel=1e-2)
    assert "on the CPU" in done.stdout and "on the GPU" not in done.stdout


def test_every_copy_failing_names_its_cause_and_log_and_exits_non_zero(tmp_path):
    out = tmp_path / "share"
    job = [sys.executable, "-c", "import sys; sys.exit('ModuleNotFoundError: the cause of it')"]
    done = ddlprof("share", "-n", "1,2", "--out", str(out), "--", *job, env=_wide())
    assert done.returncode == 1, done.stdout
    result = json.loads((out / "share.json").read_text())  # written all the same
    for group in result["groups"]:
        assert group["status"] == "failed"
        for copy in group["copy_results"]:
            assert copy["exit_code"] == 1 and copy["error"] == "ModuleNotFoundError: the cause of it"
            assert "the cause of it" in Path(copy["log"]).read_text()
        log = group["copy_results"][0]["log"]
        row = next(line for line in done.stdout.splitlines() if log in line)
        assert "exit code 1" in row and "ModuleNotFoundError: the cause of it" in row
    assert "no K produced a result" in done.stderr
    assert "no rank recorded a step" not in done.stdout  # ddlprof wrap's own closing words are not the cause


def test_a_k_that_fails_is_named_and_the_ks_that_ran_are_kept(tmp_path):
    out = tmp_path / "share"
    done = ddlprof(
        "share", "-n", "1,2", "--steps", "6", "--warmup", "2", "--out", str(out), "--",
        *_sliced(tmp_path, "exclusive"), env=_wide(), timeout=400,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    groups = {g["copies"]: g for g in json.loads((out / "share.json").read_text())["groups"]}
    assert groups[1]["status"] == "ok" and groups[1]["aggregate_samples_per_s"] > 0
    assert groups[2]["status"] == "failed"
    failed = [c for c in groups[2]["copy_results"] if c["exit_code"] != 0]
    assert len(failed) == 1 and failed[0]["error"] == "RuntimeError: the device is taken by another copy"
    row = next(line for line in done.stdout.splitlines() if failed[0]["log"] in line)
    assert "exit code 1" in row and "the device is taken by another copy" in row


def test_a_copy_waiting_for_its_turn_has_its_mean_step_not_its_median():
    """Steps in bursts (3 of 10 ms in its turn, then one of 50 ms that waited for the other copy's): the
    copy did 4 steps per 80 ms, 20 ms a step, whatever its median step (10 ms) says."""
    bursts = []
    for i in range(40):
        start = bursts[-1]["end"] if bursts else 0.0
        length = 0.05 if i % 4 == 3 else 0.01
        bursts.append(
            {"step": i, "start": start, "end": start + length, "step_ms": length * 1e3, "samples": 10}
        )
    steady = _steps(0.0, 0.02, 40)
    rows, window = measure_copies([bursts, steady])
    assert window["all_copies_stepping"]
    assert rows[0]["step_ms"] == pytest.approx(20.0, rel=0.05)
    assert rows[0]["samples_per_s"] == pytest.approx(10 / 0.02, rel=0.05)
    assert rows[1]["step_ms"] == pytest.approx(20.0, rel=1e-3)


#: A copy that starts two seconds after the first (the first takes the lock and keeps it), as copies
#: slowed by one another's imports and CUDA start-up do; ``argv[2]`` batches of 10 ms of work.
STAGGERED_JOB = """
import fcntl, sys, time
first = open(sys.argv[1], "a")
try:
    fcntl.flock(first, fcntl.LOCK_EX | fcntl.LOCK_NB)
except OSError:
    time.sleep(2.0)
import torch
from torch.utils.data import DataLoader, TensorDataset
model = torch.nn.Linear(4, 2)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
n = 8 * int(sys.argv[2])
for x, y in DataLoader(TensorDataset(torch.randn(n, 4), torch.randn(n, 2)), batch_size=8):
    time.sleep(0.01)
    opt.zero_grad()
    torch.nn.functional.mse_loss(model(x), y).backward()
    opt.step()
"""


def _staggered(tmp_path, batches: int) -> list[str]:
    script = tmp_path / "staggered_job.py"
    script.write_text(STAGGERED_JOB)
    return [sys.executable, str(script), str(tmp_path / "first.lock"), str(batches)]


def test_a_copy_that_started_first_steps_on_until_the_last_has_done_its_steps(tmp_path):
    """12 steps of 10 ms take the first copy 0.1 s; the second begins 2 s later. Stopped at its own 12th
    step, the first would never share the device with the second (the H100 run of resnet50 at
    --steps 120 had four copies that never all stepped together, and their rates were summed)."""
    out = tmp_path / "share"
    done = ddlprof(
        "share", "-n", "2", "--steps", "10", "--warmup", "2", "--out", str(out), "--",
        *_staggered(tmp_path, 2000), env=_wide(), timeout=400,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    group = json.loads((out / "share.json").read_text())["groups"][0]
    assert group["status"] == "ok" and group["window"]["all_copies_stepping"], group
    assert all(c["steps"] >= 10 for c in group["copy_results"])  # the late copy's measured steps all in it
    ends, counts = [], []
    for c in group["copy_results"]:
        steps = load_run(Path(c["run_dir"])).ranks[0].steps
        counts.append(len(steps))
        ends.append(max(s["end"] for s in steps))
    assert max(counts) > 60 and min(counts) >= 12  # the first went on through the second's 2 s
    assert max(counts) < 1000  # and stopped with it, not at its job's end
    assert max(ends) - min(ends) < 1.0  # both stopped together


def test_copies_that_never_stepped_together_give_no_aggregate(tmp_path):
    """A job too short to wait for the late copy (14 steps in all) ends by itself: no throughput is
    summed from copies that did not share the device, and the row says why."""
    out = tmp_path / "share"
    done = ddlprof(
        "share", "-n", "2", "--steps", "10", "--warmup", "2", "--out", str(out), "--",
        *_staggered(tmp_path, 14), env=_wide(), timeout=400,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout
    group = json.loads((out / "share.json").read_text())["groups"][0]
    assert group["status"] == "not_together" and group.get("aggregate_samples_per_s") is None
    assert not group["window"]["all_copies_stepping"]
    assert "timeslice K=2 not_together" in done.stdout and "--warmup + --steps" in done.stdout
    assert "no K produced a result" in done.stderr


@pytest.mark.parametrize("where", ["a_file", "a_file/below"])
def test_an_out_that_cannot_be_a_directory_is_one_line(tmp_path, where):
    (tmp_path / "a_file").write_text("kept")
    done = ddlprof("share", "-n", "1", "--out", str(tmp_path / where), "--", sys.executable, "-c", "0")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert f"--out {tmp_path / where}" in done.stderr
    assert (tmp_path / "a_file").read_text() == "kept"


def test_a_job_that_ends_before_its_measured_steps_is_too_short(tmp_path):
    """Five steps of a job asked for 2 + 10: no figure from the three it has, and the row says why."""
    out = tmp_path / "share"
    done = ddlprof(
        "share", "-n", "1", "--steps", "10", "--warmup", "2", "--out", str(out), "--",
        *_staggered(tmp_path, 5), env=_wide(), timeout=400,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout
    group = json.loads((out / "share.json").read_text())["groups"][0]
    assert group["status"] == "too_short" and "after 3 of the 10 measured steps" in group["reason"]
    assert "--warmup + --steps = 12" in done.stdout


#: A launcher's failure as torchrun reports it: the child's traceback, then the launcher's own.
LAUNCHER_FAILURE = """
import sys
print("Traceback (most recent call last):", file=sys.stderr)
print("RuntimeError: operator torchvision::nms does not exist", file=sys.stderr)
print("torch.distributed.elastic.multiprocessing.errors.ChildFailedError:", file=sys.stderr)
print("=" * 60, file=sys.stderr)
sys.exit(1)
"""


def test_a_failed_copy_is_named_by_its_jobs_cause_not_its_launchers_banner(tmp_path):
    script = tmp_path / "launcher.py"
    script.write_text(LAUNCHER_FAILURE)
    done = ddlprof(
        "share", "-n", "1", "--out", str(tmp_path / "a"), "--", sys.executable, str(script), env=_wide()
    )
    assert done.returncode == 1
    assert "exit code 1: RuntimeError: operator torchvision::nms does not exist" in done.stdout
    missing = ddlprof(
        "share", "-n", "1", "--out", str(tmp_path / "b"), "--", "no-such-command-here", env=_wide()
    )
    assert missing.returncode == 1 and "no-such-command-here: command not found" in missing.stdout
