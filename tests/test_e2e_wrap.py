"""End-to-end: real 2-process gloo DDP jobs under ``ddlprof wrap torchrun``, checked through the report."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import time

import pytest
from conftest import EXAMPLE, ddlprof, env, free_port, summary, torchrun, wrap_command

pytestmark = pytest.mark.e2e
CATEGORIES = ("compute_ms", "data_stall_ms", "interconnect_stall_ms", "network_stall_ms", "other_ms")


def _adds_up(row: dict) -> bool:
    total = sum(row[k] or 0.0 for k in CATEGORIES)
    return abs(total - row["step_ms"]) <= 0.05 * row["step_ms"]


def test_every_rank_records_steps_and_categories_add_up(wrapped):
    done, run = wrapped("--steps", "30", trace_steps="6-8")
    assert done.returncode == 0, done.stderr
    assert "trained small_cnn for 30 steps" in done.stdout  # the job's output passes through
    for rank in (0, 1):
        lines = [json.loads(x) for x in (run / "ranks" / f"rank-{rank}.jsonl").read_text().splitlines()]
        steps = [x for x in lines if x["type"] == "step"]
        assert [s["step"] for s in steps] == list(range(1, 31))
        assert lines[0]["type"] == "rank" and lines[0]["rank"] == rank and lines[0]["world_size"] == 2
        assert lines[-1]["type"] == "end"
        assert all(s["samples"] == 32 for s in steps)
    result = summary(run, "--warmup", "2")
    assert [r["rank"] for r in result["ranks"]] == [0, 1]
    for row in [*result["ranks"], result["job"]]:
        assert _adds_up(row), row
    assert result["steps"]["traced_excluded"] == [6, 7, 8, 9]
    assert result["reasons"]["network_stall_ms"].startswith("single node")
    assert result["job"]["network_stall_ms"] == 0.0
    assert result["missing_ranks"] == [] and result["stragglers"] == []
    assert result["workload"]["num_params"] == 38570 and result["workload"]["num_buckets"] == 1
    # one trace per rank, Kineto JSON with ddlprof's step numbers
    traces = sorted((run / "traces" / run.name).glob("*.pt.trace.json.gz"))
    assert len(traces) == 2
    trace = json.loads(gzip.decompress(traces[0].read_bytes()))
    names = {e.get("name") for e in trace["traceEvents"]}
    assert {"ProfilerStep#6", "ProfilerStep#7", "ProfilerStep#8"} <= names
    assert (run / "summary.json").exists()
    assert "ddlprof: run directory" in done.stderr
    _tensorboard_plugin_reads(traces[0])
    analysis = json.loads(ddlprof("analyze", "--json", str(run)).stdout)  # the run directory itself
    assert analysis["steps"] == [6, 7, 8] and [r["rank"] for r in analysis["ranks"]] == [0, 1]


def _tensorboard_plugin_reads(trace) -> None:
    """torch-tb-profiler, the TensorBoard plugin itself, parses the trace and finds ddlprof's steps."""
    from torch_tb_profiler.profiler.data import RunProfileData
    from torch_tb_profiler.profiler.run_generator import RunGenerator

    worker = trace.name.split(".")[0]
    data = RunProfileData.parse(worker, 1, str(trace), str(trace.parent / "cache"))
    data.process()
    assert data.steps_names == ["6", "7", "8"]
    profile = RunGenerator(worker, 1, data).generate_run_profile()
    assert [row[0] for row in profile.overview["steps"]["rows"]] == ["6", "7", "8"]


def test_injected_data_delay_shows_as_data_stall(wrapped):
    done, run = wrapped("--steps", "14", "--batch-size", "8", "--data-delay-ms", "5")
    assert done.returncode == 0, done.stderr
    job = summary(run)["job"]
    injected = 8 * 5.0
    assert abs(job["data_stall_ms"] - injected) <= 0.2 * injected, job
    assert _adds_up(job)


def test_injected_comm_delay_shows_as_communication_not_compute(wrapped):
    base_done, base = wrapped("--steps", "14", name="base")
    slow_done, slow = wrapped("--steps", "14", "--comm-delay-ms", "40", name="slow")
    assert base_done.returncode == 0 and slow_done.returncode == 0, slow_done.stderr
    base_job, slow_job = summary(base)["job"], summary(slow)["job"]
    added_comm = slow_job["interconnect_stall_ms"] - base_job["interconnect_stall_ms"]
    assert added_comm >= 0.8 * 40, (base_job, slow_job)
    assert slow_job["compute_ms"] - base_job["compute_ms"] < 0.2 * 40, (base_job, slow_job)


def test_failing_job_exit_code_passes_through(tmp_path):
    plain = ddlprof(
        "wrap", "--out", str(tmp_path / "plain"), "python", str(EXAMPLE), "--steps", "3", "--exit-code", "3"
    )
    assert plain.returncode == 3, plain.stderr
    bare = subprocess.run(
        [*torchrun(2), str(EXAMPLE), "--steps", "2", "--exit-code", "5"],
        capture_output=True,
        env=env(),
        timeout=120,
    )
    wrapped = ddlprof(
        "wrap",
        "--out",
        str(tmp_path / "dist"),
        *torchrun(2),
        str(EXAMPLE),
        "--steps",
        "2",
        "--exit-code",
        "5",
    )
    assert bare.returncode != 0 and wrapped.returncode == bare.returncode


def test_killed_rank_is_named_and_others_still_reported(tmp_path):
    run = tmp_path / "killed"
    job = subprocess.Popen(
        wrap_command(
            run, *torchrun(2), str(EXAMPLE), "--steps", "400", "--batch-size", "4", "--data-delay-ms", "5"
        ),
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    rank1 = run / "ranks" / "rank-1.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not rank1.exists() or rank1.read_text().count('"type":"step"') < 6):
        time.sleep(0.2)
    pid = json.loads(rank1.read_text().splitlines()[0])["pid"]
    os.kill(pid, signal.SIGKILL)
    assert job.wait(timeout=120) != 0
    report = ddlprof("report", "--json", str(run))
    assert report.returncode == 0, report.stderr
    result = json.loads(report.stdout)
    missing = {m["rank"]: m for m in result["missing_ranks"]}
    assert 1 in missing and "no end record" in missing[1]["problem"]
    assert {r["rank"] for r in result["ranks"]} == {0, 1}  # what rank 1 measured before dying is kept
    assert missing[1]["last_step"] >= 6


def test_two_nodes_share_one_run_directory_and_merge_from_two(tmp_path):
    """2 nodes x 1 process on loopback, each node with its own host id, as TESTBED.md emulates."""

    def launch(node: int, out: str, port: int) -> subprocess.Popen:
        node_env = {**env(), "NCCL_HOSTID": f"host{'AB'[node]}"}
        cmd = wrap_command(
            out, "torchrun", "--nnodes=2", f"--node_rank={node}", "--nproc_per_node=1",
            "--master_addr=127.0.0.1", f"--master_port={port}", str(EXAMPLE), "--steps", "12",
        )  # fmt: skip
        return subprocess.Popen(cmd, env=node_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    shared = str(tmp_path / "shared")
    port = free_port()
    jobs = [launch(0, shared, port), launch(1, shared, port)]
    assert [j.wait(timeout=180) for j in jobs] == [0, 0], [j.stderr.read() for j in jobs]
    result = summary(tmp_path / "shared")
    assert result["nodes"] == 2 and result["hosts"] == ["hostA", "hostB"]
    assert result["job"]["interconnect_stall_ms"] is None
    assert "not measured yet" in result["reasons"]["interconnect_stall_ms"]
    assert result["job"]["network_stall_ms"] > 0
    assert len(list((tmp_path / "shared" / "nodes").glob("*.json"))) == 2

    port = free_port()
    jobs = [launch(0, str(tmp_path / "n0"), port), launch(1, str(tmp_path / "n1"), port)]
    assert [j.wait(timeout=180) for j in jobs] == [0, 0], [j.stderr.read() for j in jobs]
    merged = summary(tmp_path / "n0", str(tmp_path / "n1"))
    assert merged["world_size"] == 2 and {r["rank"] for r in merged["ranks"]} == {0, 1}
