"""``ddlprof analyze`` on traces of a real gloo DDP run under plain torch.profiler (no ddlprof wrap): a
schedule with ``repeat=2`` writes two windows per rank, a file each."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess

import pytest
from conftest import ddlprof, env, torchrun

from ddlprof.runs import intervals

PROFILED = """
import os, time, torch, torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.profiler import profile, schedule, tensorboard_trace_handler

class Slow(torch.utils.data.Dataset):
    def __len__(self): return 64
    def __getitem__(self, i):
        time.sleep(0.002)
        return torch.randn(16), torch.randn(1)

dist.init_process_group("gloo")
model = DDP(torch.nn.Sequential(torch.nn.Linear(16, 256), torch.nn.ReLU(), torch.nn.Linear(256, 1)))
opt = torch.optim.SGD(model.parameters(), lr=0.01)
loader = torch.utils.data.DataLoader(Slow(), batch_size=4)
handler = tensorboard_trace_handler(os.environ["TRACES"], worker_name=f"w_{dist.get_rank()}")
with profile(schedule=schedule(wait=1, warmup=1, active=3, repeat=2), on_trace_ready=handler) as p:
    for x, y in loader:
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        opt.zero_grad()
        p.step()
sync = dist.all_reduce(torch.zeros(1), async_op=True)  # not a barrier: see examples/ddp_train.py
sync.wait()
dist.destroy_process_group()
"""


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    folder = tmp_path_factory.mktemp("traces")
    script = folder.parent / "profiled.py"
    script.write_text(PROFILED)
    job_env = {**env(), "TRACES": str(folder)}
    done = subprocess.run(
        [*torchrun(2), str(script)], env=job_env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    return folder


def test_breakdown_of_a_real_gloo_run(traces):
    done = ddlprof("analyze", "--json", str(traces))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert [r["rank"] for r in result["ranks"]] == [0, 1]
    assert result["steps"] == [2, 3, 4, 7, 8, 9]  # schedule: wait 1, warm-up 1, then 3 recorded steps, twice
    assert [w["steps"] for w in result["windows"]] == [[2, 4], [7, 9]]
    assert all(len(r["files"]) == 2 for r in result["ranks"])
    for row in result["per_step"]:
        parts = row["compute_ms"] + row["exposed_comm_ms"] + row["memory_ms"] + row["idle_ms"]
        assert parts == pytest.approx(row["step_ms"], rel=0.01)
        assert 0 <= row["overlap_pct"] <= 100
        assert row["exposed_comm_ms"] >= 0
        assert row["data_loader_ms"] >= 4 * 2.0 * 0.9  # 4 samples x 2 ms in __getitem__, more when busy
        assert 0 < row["ddp_cpu_ms"] < row["step_ms"]  # DDP's reducer copies and gloo launches
    loader = sorted(r["data_loader_ms"] for r in result["per_step"])
    assert loader[len(loader) // 2] == pytest.approx(4 * 2.0, rel=0.5)
    assert all(r["device"] == "cpu" for r in result["ranks"])
    for rank in result["ranks"]:  # HTA's definition: overlapped share of all the communication time
        steps = [r for r in result["per_step"] if r["rank"] == rank["rank"]]
        comm = sum(r["comm_ms"] for r in steps)
        overlapped = sum(r["comm_ms"] * r["overlap_pct"] / 100 for r in steps)
        assert rank["overlap_pct"] == pytest.approx(100 * overlapped / comm, rel=1e-6)
    assert result["job"]["exposed_comm_ms"] > 0  # the gloo all-reduce runs on threads of its own
    for rank in result["ranks"]:  # steps 5 and 6 (wait, warm-up: 8 ms of loading each) ran between the
        assert rank["outside_steps_ms"] > 2 * 4 * 2.0  # windows, in no step
    table = ddlprof("analyze", str(traces))
    assert table.returncode == 0 and "exposed" in table.stdout and "job" in table.stdout


def test_gzip_and_plain_files_agree(traces, tmp_path):
    plain = sorted(traces.glob("*.json"))
    for file in plain:
        (tmp_path / (file.name + ".gz")).write_bytes(gzip.compress(file.read_bytes()))
    a = json.loads(ddlprof("analyze", "--json", *map(str, plain)).stdout)["job"]
    b = json.loads(ddlprof("analyze", "--json", str(tmp_path)).stdout)["job"]
    assert a == b


def test_bad_traces_get_one_line(traces, tmp_path):
    first = sorted(traces.glob("*.json"))[0]
    (tmp_path / "cut.json").write_bytes(first.read_bytes()[:5000])
    (tmp_path / "other.json").write_text('{"hello": [1, 2]}')

    def one_line(done, words):
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, (
            done.stderr
        )
        assert words in done.stderr

    one_line(ddlprof("analyze", str(tmp_path / "cut.json")), "cut.json: not a readable Kineto trace")
    one_line(ddlprof("analyze", str(tmp_path / "other.json")), "other.json: no traceEvents")
    shutil.copy(first, tmp_path / "again.json")
    one_line(ddlprof("analyze", str(first), str(tmp_path / "again.json")), "mixed runs")


def test_ranks_with_different_steps_are_cut_to_the_common_ones(traces, tmp_path):
    rank0, rank1 = (sorted(traces.glob(f"w_{rank}.*.json"))[0] for rank in (0, 1))  # first windows
    trace = json.loads(rank1.read_text())
    trace["traceEvents"] = [e for e in trace["traceEvents"] if e.get("name") != "ProfilerStep#4"]
    (tmp_path / rank1.name).write_text(json.dumps(trace))
    result = json.loads(ddlprof("analyze", "--json", str(rank0), str(tmp_path / rank1.name)).stdout)
    assert result["steps"] == [2, 3]
    assert "not in every rank's trace" in result["warnings"][0] and rank0.name in result["warnings"][0]


def test_interval_arithmetic():
    merged = intervals.merge([(5, 7), (0, 2), (1, 3), (6, 9), (4, 4), (9, 10)])
    assert merged.tolist() == [[0, 3], [5, 10]]  # touching intervals join, empty ones go
    assert intervals.length(merged) == 8
    inside = intervals.covered(merged, [1, 2.5, 3, -5, 9.5, 20], [6, 5.5, 5, 0, 30, 30])
    assert inside.tolist() == [3, 1, 0, 0, 0.5, 0]
    assert intervals.covered(intervals.merge([]), [0], [5]).tolist() == [0]
    assert intervals.runs([2, 3, 4, 7, 9, 10]) == [(2, 4), (7, 7), (9, 10)]


@pytest.mark.parametrize(
    "events",
    [
        '"a string"',
        "[[1, 2], 3]",
        '[{"ph": "X", "ts": null, "dur": 1}]',
        '[{"ph": "X", "ts": 1, "dur": 1, "cat": "kernel", "args": [1]}]',
        '[{"ph": "X", "ts": 1, "dur": 1, "cat": "kernel", "args": {"correlation": "x"}}]',
        # a NaN duration (a "NaN" string) once came out as NaN in --json
        '[{"ph": "X", "ts": 0, "dur": 5, "cat": "cpu_op", "name": "a"}, '
        '{"ph": "X", "ts": 1, "dur": "NaN", "cat": "cpu_op", "name": "b"}]',
        # a GPU trace whose one kernel was launched outside its one step: no step row (a TypeError once)
        '[{"ph": "X", "cat": "user_annotation", "name": "ProfilerStep#1", "ts": 0, "dur": 10}, '
        '{"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "ts": 20, "dur": 1, '
        '"args": {"correlation": 7}}, '
        '{"ph": "X", "cat": "kernel", "name": "k", "ts": 50, "dur": 5, "args": {"correlation": 7}}]',
    ],
)
def test_trace_events_of_the_wrong_type_are_one_line(tmp_path, events):
    trace = tmp_path / "w_0.pt.trace.json"
    trace.write_text(f'{{"traceEvents": {events}}}')
    done = ddlprof("analyze", "--json", str(trace))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "w_0.pt.trace.json" in done.stderr and "Traceback" not in done.stderr


def test_workers_fit_the_available_memory(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import psutil

    from ddlprof.profiler import trace_analysis

    files = []
    for rank in range(4):
        files.append(tmp_path / f"w_{rank}.pt.trace.json")
        with files[-1].open("wb") as file:
            file.truncate(10**9)  # 1 GB, sparse: a worker needs 64 MiB + 0.15 GB, 207 MiB
    monkeypatch.setattr(trace_analysis.os, "cpu_count", lambda: 64)
    for available, workers in ((10 << 30, 4), (500 << 20, 2), (200 << 20, 1), (1, 1)):
        monkeypatch.setattr(psutil, "virtual_memory", lambda a=available: SimpleNamespace(available=a))
        assert trace_analysis.default_jobs(files) == workers
    monkeypatch.setattr(trace_analysis.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=10 << 30))
    assert trace_analysis.default_jobs(files) == 2
    done = ddlprof("analyze", "--jobs", "0", str(tmp_path))
    assert done.returncode == 2 and "--jobs" in done.stderr and "Traceback" not in done.stderr
