"""The local dataset: ``ddlprof report`` adds one row per run, and a broken store never fails a report."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest
from conftest import REPO, ddlprof, env, unprivileged

from ddlprof.runs import store

WORKLOAD = {
    "type": "workload",
    "module": "ResNet",
    "num_layers": 62,
    "num_grad_tensors": 161,
    "num_params": 25557032,
    "grad_bytes": 102228128,
    "bucket_cap_bytes": 26214400,
    "bucket_sizes": [1000000, 26000000, 26000000, 26000000, 23228128],
    "num_buckets": 5,
    "backend": "nccl",
    "parameter_dtype": "float",
    "find_unused_parameters": False,
    "gradient_as_bucket_view": False,
    "static_graph": False,
    "comm_hook": None,
}
PROBE = {
    "type": "probe",
    "nodes": 2,
    "world_size": 4,
    "local_size": 2,
    "intra": {"busbw_gbps": 250.5, "latency_us": 20.0, "ranks": 2},
    "full": {"busbw_gbps": 3.3, "latency_us": 80.0, "ranks": 4},
    "seconds": 0.5,
}


def _step(n: int, step_ms: float = 40.0, samples: int = 32) -> dict:
    per_bucket = [[i, b, 1.0, None] for i, b in enumerate(WORKLOAD["bucket_sizes"])]
    return {
        "type": "step",
        "step": n,
        "start": 1000.0 + n * 0.04,
        "end": 1000.04 + n * 0.04,
        "step_ms": step_ms,
        "data_wait_ms": 1.0,
        "loop_ms": 0.5,
        "samples": samples,
        "traced": False,
        "comm": {"buckets": 5, "bytes": WORKLOAD["grad_bytes"], "exposed_ms": 8.0, "per_bucket": per_bucket},
    }


def _run_dir(parent, name: str = "run", run_id: str = "20261123T101500Z-train", created: float = 1.7e9):
    """A two-node, four-GPU run directory in the format ``ddlprof wrap`` writes."""
    run = parent / name
    (run / "ranks").mkdir(parents=True)
    (run / "nodes").mkdir()
    command = ["torchrun", "--nnodes=2", "--nproc_per_node=2", "train.py"]
    manifest = {
        "schema": "ddlprof.run",
        "schema_version": 1,
        "run_id": run_id,
        "created_unix": created,
        "command": command,
        "job_key": command,
        "launcher": "torchrun",
        "nnodes": 2,
        "trace_steps": "0",
        "disabled": [],
        "ddlprof_version": "0.1.0",
    }
    (run / "manifest.json").write_text(json.dumps(manifest))
    for node, host in enumerate(("hostA", "hostB")):
        gpus = [{"index": i, "name": "NVIDIA H200", "driver": "580.159.04"} for i in range(2)]
        record = {"node_id": f"node{node}-{host}", "host": host, "start_unix": created + 1, "gpus": gpus}
        (run / "nodes" / f"node{node}-{host}.json").write_text(json.dumps(record))
    for rank in range(4):
        header = {
            "type": "rank",
            "rank": rank,
            "world_size": 4,
            "local_rank": rank % 2,
            "local_world_size": 2,
            "host": ("hostA", "hostB")[rank // 2],
            "torch": "2.11.0+cu130",
            "backend": "nccl",
            "device": f"cuda:{rank % 2}",
            "device_name": "NVIDIA H200",
            "cuda": "13.0",
            "nccl": "2.28.9",
        }
        records = [header, PROBE, *[_step(n) for n in range(1, 11)], WORKLOAD, {"type": "end"}]
        (run / "ranks" / f"rank-{rank}.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return run


def _report(run, *args: str, extra_env: dict | None = None, **kwargs):
    done = ddlprof("report", "--json", *args, str(run), env={**env(), **(extra_env or {})}, **kwargs)
    assert done.returncode == 0, done.stderr
    return done, json.loads(done.stdout)


def _rows(path) -> list[tuple]:
    with sqlite3.connect(path / store.DATABASE) as conn:
        return conn.execute("SELECT run_key FROM runs").fetchall()


def test_reporting_twice_keeps_one_row_equal_to_the_summary(tmp_path, home):
    run = _run_dir(tmp_path)
    first, _ = _report(run)
    assert first.stderr == ""
    _, summary = _report(run)
    assert summary == json.loads((run / "summary.json").read_text())
    shutil.copytree(run, tmp_path / "copy")  # the same run, moved: still the same row
    table = ddlprof("report", str(tmp_path / "copy"), env=env())
    assert f"added to the local dataset {home / store.DATABASE}" in table.stdout
    assert len(_rows(home)) == 1

    frame = store.load_rows()
    assert list(frame.columns[: len(store.DATASET_COLUMNS)]) == list(store.DATASET_COLUMNS)
    assert len(frame) == 1
    row = frame.iloc[0]
    job = summary["job"]
    assert row["step_ms"] == job["step_ms"] == 40.0
    assert row["step_ms_ranks"] == "40.000;40.000;40.000;40.000"
    for key in ("compute_ms", "data_stall_ms", "interconnect_stall_ms", "network_stall_ms", "other_ms"):
        assert row[key] == pytest.approx(job[key]), key
    assert row["throughput_samples_per_s"] == pytest.approx(job["throughput_samples_per_s"])
    assert json.loads(row["job_json"]) == job
    assert row["interconnect_stall_ms"] > 0 and row["network_stall_ms"] > 0  # split by the probe
    assert (row["world_size"], row["nodes"], row["gpus_per_node"]) == (4, 2, 2)
    assert row["batch_per_gpu"] == 32
    assert row["model"] == "ResNet" and row["transport"] == ""
    for key in (*store.UNKNOWN_TO_A_RUN, *store.MEASURED_BESIDE):  # what a single run cannot know
        assert row[key] is None, key
    assert (row["intra_busbw_gbps"], row["inter_busbw_gbps"], row["latency_us"]) == (250.5, 3.3, 20.0)
    for key in ("num_layers", "num_grad_tensors", "num_params", "grad_bytes", "num_buckets"):
        assert row[key] == WORKLOAD[key], key
    assert row["last_bucket_bytes"] == WORKLOAD["bucket_sizes"][-1]
    assert (row["gpu"], row["driver"], row["torch"], row["nccl"]) == (
        "NVIDIA H200",
        "580.159.04",
        "2.11.0+cu130",
        "2.28.9",
    )
    assert row["run_id"] == "20261123T101500Z-train" and row["steady_steps"] == 8
    assert row["ddlprof_version"] == summary["ddlprof_version"] and row["source"] == "reported"
    assert json.loads(row["hosts"]) == ["hostA", "hostB"]
    assert json.loads(row["run_dirs"]) == [str((tmp_path / "copy").resolve())]  # the latest report

    other = _run_dir(tmp_path, name="other", run_id="20261124T090000Z-train", created=1.8e9)
    _report(other)
    assert len(_rows(home)) == 2


def _cut_short(run, rank: int = 0, steps: int = 6) -> None:
    """Rank ``rank``'s file ends after its step ``steps``, with no end record (a damaged copy)."""
    path = run / "ranks" / f"rank-{rank}.jsonl"
    lines = path.read_text().splitlines()
    keep = [line for line in lines if json.loads(line).get("type") != "end"]
    keep = [line for line in keep if json.loads(line).get("step", 0) <= steps]
    path.write_text("\n".join(keep) + "\n")


def _stored_steady_steps(home) -> list[int]:
    with sqlite3.connect(home / store.DATABASE) as conn:
        return [row[0] for row in conn.execute("SELECT steady_steps FROM runs")]


def test_a_damaged_copy_of_a_run_never_replaces_its_row(tmp_path, home):
    """Found by a review as a new user: a copy of a run directory with a rank file cut in half has
    the run's identity, and its report replaced the intact run's row with figures from fewer steps."""
    run = _run_dir(tmp_path)
    _report(run)
    damaged = tmp_path / "damaged"
    shutil.copytree(run, damaged)
    for rank in range(4):
        _cut_short(damaged, rank, steps=6 + rank)  # rank 0 keeps 6 steps, rank 3 keeps 9
    table = ddlprof("report", str(damaged), env=env())
    assert table.returncode == 0, table.stderr
    assert "keeps its row of this run: a report whose ranks stopped early (rank 0 after step 6," in " ".join(
        table.stdout.split()
    )
    assert _stored_steady_steps(home) == [8]  # the intact run's, not the copy's 5
    # the other way round: the damaged copy first, then the intact run, which replaces it
    (home / store.DATABASE).unlink()
    _report(damaged)
    _report(run)
    assert _stored_steady_steps(home) == [8]


def test_no_store_flag_and_environment(tmp_path, home):
    run = _run_dir(tmp_path)
    _report(run, "--no-store")
    _report(run, extra_env={store.NO_STORE_ENV: "1"})
    assert not home.exists()


def _unwritable_home(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    return blocker / "home"  # fails for root too


def _read_only_home(tmp_path):
    path = tmp_path / "ro"
    path.mkdir(mode=0o500)
    return path / "home"


def _corrupt_home(tmp_path):
    path = tmp_path / "corrupt"
    path.mkdir()
    (path / store.DATABASE).write_bytes(b"this is not an SQLite database" * 100)
    return path


@pytest.mark.parametrize("make_home", [_unwritable_home, _read_only_home, _corrupt_home])
def test_a_broken_store_never_fails_the_report(tmp_path, monkeypatch, make_home):
    path = make_home(tmp_path)
    monkeypatch.setenv(store.HOME_ENV, str(path))
    run = _run_dir(tmp_path)
    done, summary = _report(run, **unprivileged())  # as root too, the read-only home is read-only
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("ddlprof report: warning: run not added to the local dataset")
    assert summary["job"]["step_ms"] == 40.0 and (run / "summary.json").exists()
    table = ddlprof("report", str(run), env=env(), **unprivileged())
    assert table.returncode == 0 and "added to the local dataset" not in table.stdout


def test_newer_schema_and_corrupt_database_in_process(tmp_path, home):
    run = _run_dir(tmp_path)
    _, summary = _report(run, "--no-store")
    assert store.load_rows().empty
    assert store.record_run(summary, [run])
    with sqlite3.connect(home / store.DATABASE) as conn:
        conn.execute("UPDATE schema_version SET version = ?", (store.SCHEMA_VERSION + 1,))
    reasons: list[str] = []
    assert not store.record_run(summary, [run], on_error=reasons.append)
    assert "newer ddlprof" in reasons[0]
    (home / store.DATABASE).write_bytes(b"garbage" * 1000)
    assert not store.record_run(summary, [run], on_error=reasons.append)
    with pytest.raises(store.StoreError, match="unreadable dataset"):
        store.load_rows()


def test_a_database_of_the_first_schema_gets_the_new_column(tmp_path, home):
    run = _run_dir(tmp_path)
    _, summary = _report(run, "--no-store")
    first = [(name, kind) for name, kind in store._COLUMNS if name != "single_gpu_step_ms"]
    home.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(home / store.DATABASE) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version (version) VALUES (1)")
        conn.execute(f"CREATE TABLE runs ({', '.join(f'{n} {k}' for n, k in first)})")
    assert store.load_rows()["single_gpu_step_ms"].isna().all()  # read before any write: no error
    assert store.record_run(summary, [run], measured={"single_gpu_step_ms": 30.5})
    assert store.load_rows().iloc[0]["single_gpu_step_ms"] == 30.5
    with sqlite3.connect(home / store.DATABASE) as conn:
        assert conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == store.SCHEMA_VERSION
    assert store.record_run(summary, [run])  # reported again: the measured step stays
    assert store.load_rows().iloc[0]["single_gpu_step_ms"] == 30.5


def test_single_node_cpu_run_row(tmp_path):
    from ddlprof.runs.rundir import load_run
    from ddlprof.runs.summary import summarize

    run = tmp_path / "cpu"
    (run / "ranks").mkdir(parents=True)
    (run / "manifest.json").write_text(
        json.dumps({"schema": "ddlprof.run", "schema_version": 1, "run_id": "r"})
    )
    for rank in (0, 1, 2):
        header = {
            "type": "rank",
            "rank": rank,
            "world_size": 3,
            "host": "h",
            "device": "cpu",
            "backend": "gloo",
        }
        steps = [{**_step(n, step_ms=20.0, samples=6), "comm": {"exposed_ms": 2.0}} for n in range(1, 11)]
        (run / "ranks" / f"rank-{rank}.jsonl").write_text("\n".join(json.dumps(r) for r in [header, *steps]))
    (run / "nodes").mkdir()  # a host with a GPU that the job did not use
    (run / "nodes" / "node0-h.json").write_text(json.dumps({"host": "h", "gpus": [{"name": "NVIDIA H200"}]}))
    row = store.run_row(summarize([load_run(run)]), [run])
    assert (row["world_size"], row["nodes"], row["gpus_per_node"], row["batch_per_gpu"]) == (3, 1, 3, 6)
    assert row["gpu"] is None and row["model"] is None and row["backend"] == "gloo"
    assert row["interconnect_stall_ms"] == 2.0 and row["network_stall_ms"] == 0.0
    assert row["intra_busbw_gbps"] is None and row["inter_busbw_gbps"] is None  # no probe on one node
    other = tmp_path / "other"
    shutil.copytree(run, other)  # no creation time in the manifest: the path keeps the two apart
    assert store.run_row(summarize([load_run(other)]), [other])["run_key"] != row["run_key"]


def test_columns_follow_the_shipped_stall_dataset():
    shipped = REPO / "ddlprof" / "models" / "data" / "stall_dataset.csv"
    header = shipped.read_text().splitlines()[0].split(",")
    assert list(store.DATASET_COLUMNS) == header
