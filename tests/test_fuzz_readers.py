"""Fuzz every reader of a file ddlprof did not write itself, or that a crash may have cut.

Each test starts from a valid file, mutates it (a value's type swapped, a field removed, huge and
negative numbers, NaN and Infinity, the text cut at a line or anywhere, random bytes) and runs the
command that reads it in-process through ``ddlprof.cli.main``. The property: exit 0 (maybe with a
warning) or exit 2 with one line naming the file; never a traceback (an exception out of ``main``
fails the test), never unbounded memory (the address space is capped while the command runs), and
the summary that ``report`` prints and writes is strict JSON (no NaN, no Infinity).

Inputs tried per reader and run (``max_examples``, hypothesis' database aside):
    run directory (manifest, node, rank and GPU sampler files) via report,
        half of them with the local store                                 600
    the same files of a GPU run via advise --run                          200
    summary.json via the dashboard's cache reader                         300
    fresh summary.json with junk deeper down via the dashboard            300
    Kineto traces via analyze                                             600
    Kineto traces (.json, .json.gz) and trace records via trace           300
    catalog files (instances.csv, prices.csv, catalog.json) via catalog
        list/show and advise                                              150
    fitted stall models file via model predict                            120
    SQLite store (corrupt or foreign schema) via report                   100
    its calibrations table (values of any type) via advise, predict       100
    its packing table (values of any type) via advise --jobs              100
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import io
import json
import os
import resource
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ddlprof.cli import main
from tests.test_extras import PREDICT as EXTRAS_PREDICT

REPO = Path(__file__).resolve().parent.parent


def fuzz(examples: int) -> settings:
    """Bounded in time (the whole module well under 3 minutes on 2 cores), no example database."""
    return settings(
        max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )


HEADROOM = 3 << 30  # address space a command may add: far above any of these inputs' needs


def _reject(constant: str) -> None:
    raise AssertionError(f"{constant} in JSON ddlprof wrote")


def strict(text: str) -> Any:
    return json.loads(text, parse_constant=_reject)


@contextlib.contextmanager
def capped_memory():
    """Cap the address space at what the process uses now plus HEADROOM: a reader that grows
    without bound raises MemoryError (and fails the test) instead of taking the machine."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    status = Path("/proc/self/status").read_text().splitlines()
    used = int(next(line for line in status if line.startswith("VmSize")).split()[1]) << 10
    cap = used + HEADROOM if hard == resource.RLIM_INFINITY else min(hard, used + HEADROOM)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def cli(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``ddlprof ARGV`` in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    saved = {key: os.environ.get(key) for key in env or {}}
    os.environ.update(env or {})
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), capped_memory():
            try:
                code = main(list(argv))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 2
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return code, out.getvalue(), err.getvalue()


def check(code: int, err: str, *names: str) -> None:
    """Exit 0, or exit 2 with one error line naming one of ``names`` (the file read)."""
    assert "Traceback" not in err, err
    assert code in (0, 2), (code, err)
    if code == 2:
        errors = [line for line in err.splitlines() if "warning:" not in line]
        assert len(errors) == 1, err
        assert any(name in errors[0] for name in names), err


# -- mutations -------------------------------------------------------------------------------------

ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.sampled_from([0, -1, 2**63, 10**400, -(10**9)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.sampled_from([[], {}, [[1]], [None], {"a": 1}, "NaN"]),
)


ODD_CELLS = ["", "nan", "inf", "-1", "1e400", "abc", "true", '"', "0"]


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def odd_value(data: st.DataObject) -> Any:
    """A fresh copy: the sampled lists and dicts are shared, and a later mutation must not grow them."""
    return copy.deepcopy(data.draw(ODD_VALUES))


def mutate(data: st.DataObject, value: Any) -> Any:
    """``value`` (a parsed JSON document) with one to three fields replaced by odd values or removed."""
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _paths(value)
        if not paths:
            return odd_value(data)
        edit(data, value, data.draw(st.sampled_from(paths)))
    return value


def edit(data: st.DataObject, document: Any, path: tuple, may_delete: bool = True) -> None:
    """The value at ``path`` replaced by an odd one or, in an object, maybe removed; a path that an
    earlier edit cut off (its parent replaced) is left alone."""
    with contextlib.suppress(KeyError, IndexError, TypeError):
        parent = document
        for key in path[:-1]:
            parent = parent[key]
        if may_delete and isinstance(parent, dict) and data.draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = odd_value(data)


def spoil_text(data: st.DataObject, text: str) -> bytes:
    """The file's bytes: as they are, cut at a line or anywhere, or random bytes."""
    how = data.draw(st.sampled_from(["keep", "keep", "line", "anywhere", "random"]))
    raw = text.encode()
    if how == "line":
        lines = raw.splitlines(keepends=True)
        return b"".join(lines[: data.draw(st.integers(0, len(lines)))])
    if how == "anywhere":
        return raw[: data.draw(st.integers(0, len(raw)))]
    if how == "random":
        return data.draw(st.binary(max_size=300))
    return raw


def json_text(value: Any) -> str:
    return json.dumps(value, allow_nan=True)  # NaN and Infinity as Python writes them


# -- run directories -------------------------------------------------------------------------------


def _step(n: int) -> dict:
    return {
        "type": "step",
        "step": n,
        "start": 1.7e9 + n,
        "end": 1.7e9 + n + 0.01,
        "step_ms": 10.0 + n,
        "data_wait_ms": 1.0,
        "loop_ms": 0.5,
        "forwards": 1,
        "samples": 8,
        "traced": n == 4,
        "own_ms": 0.1,
        "comm": {
            "buckets": 2,
            "bytes": 300,
            "exposed_ms": 2.0,
            "gpu_lag_ms": 3.0,
            "per_bucket": [[0, 100], [1, 200]],
        },
    }


def _rank_records(rank: int) -> list[dict]:
    link = {"ranks": 2, "latency_us": 20.0, "busbw_gbps": 50.0}
    return [
        {
            "type": "rank",
            "schema_version": 1,
            "rank": rank,
            "world_size": 3,
            "host": f"h{rank}",
            "device": "cpu",
        },
        {
            "type": "probe",
            "nodes": 2,
            "world_size": 3,
            "local_size": 1,
            "intra": None,
            "full": link,
            "seconds": 0.5,
        },
        *[_step(n) for n in range(1, 9)],
        {"type": "workload", "after_step": 3, "module": "Net", "bucket_sizes": [100, 200], "num_params": 75},
        {"type": "trace", "steps": [4, 4], "file": "traces/run/x.json"},
        {"type": "warning", "collector": "data", "reason": "odd", "step": 5},
        {"type": "end", "steps": 8},
    ]


def _write_run(run: Path, files: dict[str, Any]) -> None:
    for name, content in files.items():
        path = run / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())


def _valid_run() -> dict[str, Any]:
    return {
        "manifest.json": {
            "schema": "ddlprof.run",
            "schema_version": 1,
            "run_id": "r",
            "nnodes": 2,
            "command": ["x"],
        },
        "nodes/n0.json": {"node_id": "n0", "exit_code": 0, "start_unix": 1.7e9, "gpus": [{"name": "T4"}]},
        "ranks/rank-0.jsonl": _rank_records(0),
        "ranks/rank-1.jsonl": _rank_records(1),
        "gpu/h0.csv": GPU_CSV,
    }


#: NVML samples as the sampler writes them, two GPUs over the steps' times
GPU_CSV = "unix,gpu,util_pct,mem_util_pct,mem_used_mib,power_w,sm_clock_mhz,pcie_tx_mb_per_s," + (
    "pcie_rx_mb_per_s,nvlink_tx_mb_per_s,nvlink_rx_mb_per_s\n"
    + "".join(f"{1.7e9 + t / 2},{g},{90 + g},5,{500 + t},300,1980,1,2,,\n" for t in range(20) for g in (0, 1))
)


def _texts(files: dict[str, Any]) -> dict[str, str]:
    """Each file's text: a .jsonl one JSON line per record, a .csv as it is, else one JSON document."""
    return {
        name: "\n".join(json.dumps(r) for r in v) + "\n"
        if name.endswith(".jsonl")
        else v
        if name.endswith(".csv")
        else json.dumps(v)
        for name, v in files.items()
    }


def mutate_csv(data: st.DataObject, text: str) -> str:
    """``text`` (CSV) with one to four cells replaced by odd ones."""
    lines = text.splitlines()
    for _ in range(data.draw(st.integers(1, 4))):
        row = data.draw(st.integers(0, len(lines) - 1))
        cells = lines[row].split(",")
        cells[data.draw(st.integers(0, len(cells) - 1))] = data.draw(st.sampled_from(ODD_CELLS))
        lines[row] = ",".join(cells)
    return "\n".join(lines) + "\n"


def _spoiled_run(data: st.DataObject, files: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The run's files with one of them mutated (a record of a rank file, a field of a JSON file or
    cells of a CSV) and maybe cut or replaced by random bytes; and that file's name."""
    target = data.draw(st.sampled_from(sorted(files)))
    if target.endswith(".jsonl"):
        records = files[target]
        index = data.draw(st.integers(0, len(records) - 1))
        records[index] = mutate(data, records[index])
        text = "\n".join(json_text(r) for r in records) + "\n"
    elif target.endswith(".csv"):
        text = mutate_csv(data, files[target])
    else:
        text = json_text(mutate(data, files[target]))
    return {**_texts(files), target: spoil_text(data, text)}, target


@fuzz(600)
@given(data=st.data())
def test_report_reads_any_run_directory(data):
    texts, target = _spoiled_run(data, _valid_run())
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        _write_run(run, texts)
        warmup = data.draw(st.sampled_from([[], ["--warmup", "2"]]))
        store = data.draw(st.sampled_from([["--no-store"], []]))  # the local store reads the files too
        code, out, err = cli("report", "--json", *store, *warmup, str(run), env={"DDLPROF_HOME": tmp})
        check(code, err, target.split("/")[-1], str(run), "--warmup")
        if code == 0:
            assert strict(out)["job"]["step_ms"] is not None
            strict((run / "summary.json").read_text())


def _gpu_run() -> dict[str, Any]:
    files = _valid_run()
    for rank in (0, 1):
        files[f"ranks/rank-{rank}.jsonl"][0]["device"] = "NVIDIA T4"
    return files


@fuzz(200)
@given(data=st.data())
def test_advise_reads_any_measured_run(data):
    """advise --run: the run's files (manifest, nodes, ranks, GPU samples) read for its step, GPU and
    batch."""
    texts, target = _spoiled_run(data, _gpu_run())
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        _write_run(run, texts)
        argv = [
            "--model",
            "resnet50",
            "--samples",
            "1M",
            "--instances",
            "g4dn.xlarge,g4dn.12xlarge",
            "--json",
        ]
        code, out, err = cli("advise", "--run", str(run), *argv, env={"DDLPROF_HOME": tmp})
        check(code, err, target.split("/")[-1], str(run))
        if code == 0:
            strict(out)


# -- summary.json ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """A run directory and the summary.json its report wrote."""
    run = tmp_path_factory.mktemp("reported") / "run"
    _write_run(run, _texts(_valid_run()))
    code, out, err = cli("report", "--json", "--no-store", str(run))
    assert code == 0, err
    return run, strict(out)


@fuzz(300)
@given(data=st.data())
def test_the_dashboards_summary_cache_reads_any_summary_json(reported, data):
    from ddlprof.runs.summary import cached_summary

    run, summary = reported
    text = json_text(mutate(data, json.loads(json.dumps(summary))))
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "run"
        shutil.copytree(run, copy)
        (copy / "summary.json").write_bytes(spoil_text(data, text))
        with capped_memory():
            found = cached_summary(copy)
        assert found is None or isinstance(found, dict)


# -- Kineto traces ---------------------------------------------------------------------------------


def _kineto() -> dict:
    events: list[dict] = [{"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "x"}}]
    for step in range(3):
        t0 = 1000.0 * step
        events += [
            {
                "ph": "X",
                "cat": "user_annotation",
                "name": f"ProfilerStep#{step}",
                "ts": t0,
                "dur": 900,
                "tid": 1,
            },
            {"ph": "X", "cat": "cpu_op", "name": "enumerate(DataLoader)#x", "ts": t0, "dur": 50, "tid": 1},
            {"ph": "X", "cat": "cpu_op", "name": "aten::mm", "ts": t0 + 60, "dur": 100, "tid": 1},
            {
                "ph": "X",
                "cat": "cuda_runtime",
                "name": "cudaLaunchKernel",
                "ts": t0 + 70,
                "dur": 5,
                "args": {"correlation": 10 + step},
            },
            {
                "ph": "X",
                "cat": "kernel",
                "name": "gemm",
                "ts": t0 + 80,
                "dur": 300,
                "args": {"correlation": 10 + step},
            },
            {"ph": "X", "cat": "kernel", "name": "ncclAllReduce", "ts": t0 + 400, "dur": 200, "args": {}},
            {
                "ph": "X",
                "cat": "gpu_memcpy",
                "name": "Memcpy",
                "ts": t0 + 650,
                "dur": 20,
                "args": {"correlation": 1},
            },
        ]
    return {"distributedInfo": {"rank": 0, "world_size": 1}, "traceEvents": events, "baseTimeNanoseconds": 1}


@fuzz(600)
@given(data=st.data())
def test_analyze_reads_any_kineto_trace(data):
    text = json_text(mutate(data, _kineto()))
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "w_0.pt.trace.json"
        trace.write_bytes(spoil_text(data, text))
        code, out, err = cli("analyze", "--json", str(trace))
        check(code, err, trace.name)
        if code == 0:
            strict(out)


# -- catalog ---------------------------------------------------------------------------------------

CATALOG = REPO / "ddlprof" / "advisor" / "catalog" / "data"
CATALOG_READERS = [
    ["catalog", "list", "--json"],
    ["catalog", "show", "p4d.24xlarge"],
    ["advise", "--model", "resnet50", "--instances", "p4d.24xlarge,g4dn.xlarge,a2-highgpu-1g", "--json"],
]


@fuzz(150)
@given(data=st.data())
def test_catalog_commands_read_any_catalog_snapshot(data):
    name = data.draw(st.sampled_from(["instances.csv", "prices.csv", "catalog.json"]))
    text = (CATALOG / name).read_text()
    text = json_text(mutate(data, json.loads(text))) if name == "catalog.json" else mutate_csv(data, text)
    with tempfile.TemporaryDirectory() as tmp:
        for file in ("instances.csv", "prices.csv", "catalog.json"):
            shutil.copy(CATALOG / file, Path(tmp) / file)
        (Path(tmp) / name).write_bytes(spoil_text(data, text))
        command = data.draw(st.sampled_from(CATALOG_READERS))
        code, _, err = cli(*command, env={"DDLPROF_CATALOG_DIR": tmp})
        check(code, err, name, tmp)


# -- fitted stall models ---------------------------------------------------------------------------

FIT = REPO / "ddlprof" / "models" / "data" / "stall_models.json"
PREDICT = [*EXTRAS_PREDICT, "--json"]


@fuzz(120)
@given(data=st.data())
def test_model_predict_reads_any_fitted_models_file(data):
    record = json.loads(FIT.read_text())
    # keep the stamp most of the time: a stale file is refitted, and the mutation would go unread
    keep = {"format", "ddlprof", "training_sha256"}
    paths = [p for p in _paths(record) if p[0] not in keep]
    for _ in range(data.draw(st.integers(1, 3))):
        edit(data, record, data.draw(st.sampled_from(paths)), may_delete=False)
    with tempfile.TemporaryDirectory() as home:
        (Path(home) / "models").mkdir()
        fitted = Path(home) / "models" / "stall_models.json"
        fitted.write_bytes(spoil_text(data, json_text(record)))
        code, out, err = cli(*PREDICT, env={"DDLPROF_HOME": home})
        check(code, err, "stall_models.json")
        if code == 0:
            strict(out)


@pytest.mark.parametrize("selected", [None, "neither", 3])
def test_a_fitted_models_file_that_selects_no_model_is_not_used(selected):
    """Found by the fuzz test above in CI: a null ``selected`` passed the shape check (any field may be
    null) and stopped model predict with a KeyError."""
    record = json.loads(FIT.read_text())
    record["selected"] = selected
    with tempfile.TemporaryDirectory() as home:
        (Path(home) / "models").mkdir()
        (Path(home) / "models" / "stall_models.json").write_text(json_text(record))
        code, out, err = cli(*PREDICT, env={"DDLPROF_HOME": home})
        assert code == 0, err
        strict(out)


# -- the SQLite store ------------------------------------------------------------------------------


def _foreign_db(path: Path, data: st.DataObject) -> None:
    how = data.draw(st.sampled_from(["bytes", "foreign", "versions", "columns"]))
    if how == "bytes":
        path.write_bytes(b"SQLite format 3\x00" + data.draw(st.binary(max_size=400)))
        return
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        if how == "foreign":
            conn.execute("CREATE TABLE runs (x TEXT)")
        elif how == "versions":
            conn.execute("CREATE TABLE schema_version (version)")
            conn.execute("INSERT INTO schema_version VALUES (?)", (data.draw(ODD_VALUES.filter(_bindable)),))
        else:
            conn.execute("CREATE TABLE runs (run_key INTEGER, world_size BLOB)")
            conn.execute("INSERT INTO runs VALUES (1, x'00')")


def _bindable(value: Any) -> bool:
    return value is None or (
        isinstance(value, int | float | str)
        and abs(hash(value)) >= 0
        and (not isinstance(value, int) or -(2**63) <= value < 2**63)
    )


@fuzz(100)
@given(data=st.data())
def test_report_survives_any_local_dataset_file(reported, data):
    run, _ = reported
    with tempfile.TemporaryDirectory() as home:
        _foreign_db(Path(home) / "dataset.sqlite", data)
        code, out, err = cli("report", "--json", str(run), env={"DDLPROF_HOME": home})
        check(code, err, "dataset.sqlite")
        if code == 0:
            strict(out)


CALIBRATION = {
    "gpu": "L4", "model": "resnet50", "precision": "tf32", "batch_per_gpu": 32, "step_ms": 120.0,
    "steps_ms": [120.0, 121.0], "warmup_steps": 5, "device_name": "NVIDIA L4", "torch": "2.13.0",
    "cuda": "13.0", "ddlprof_version": "0", "calibrated_unix": 1.0, "date": "2026-12-01",
}  # fmt: skip
CALIBRATED_COLUMNS = ("gpu", "model", "precision", "batch_per_gpu", "step_ms", "steps_ms", "date")


@contextlib.contextmanager
def _home(home: str):
    """DDLPROF_HOME set to ``home`` while a store is written in-process."""
    saved = os.environ.get("DDLPROF_HOME")
    os.environ["DDLPROF_HOME"] = home
    try:
        yield
    finally:
        os.environ.pop("DDLPROF_HOME") if saved is None else os.environ.update(DDLPROF_HOME=saved)


def _spoil_table(data: st.DataObject, home: str, table: str, columns: tuple[str, ...]) -> None:
    """One to three of ``columns`` of every row of ``table`` set to a value of any type or range."""
    with contextlib.closing(sqlite3.connect(Path(home) / "dataset.sqlite")) as conn, conn:
        for _ in range(data.draw(st.integers(1, 3))):
            column = data.draw(st.sampled_from(columns))
            value = data.draw(ODD_VALUES.filter(_bindable) | st.binary(max_size=8))
            with contextlib.suppress(sqlite3.IntegrityError):  # NOT NULL columns refuse a null
                conn.execute(f"UPDATE {table} SET {column} = ?", (value,))


@fuzz(100)
@given(data=st.data())
def test_advise_survives_any_calibrations_table(data):
    """Rows of the calibrations table with values of the wrong type or range (another program's, or a
    damaged file's): advise and model predict read them and go on."""
    from ddlprof.runs.calibrations import record_calibration

    with tempfile.TemporaryDirectory() as home:
        with _home(home):
            record_calibration(dict(CALIBRATION))
        _spoil_table(data, home, "calibrations", CALIBRATED_COLUMNS)
        argv = ["--model", "resnet50", "--precision", "tf32", "--batch-per-gpu", "32", "--json"]
        code, out, err = cli("advise", "--instances", "g6.xlarge", *argv, env={"DDLPROF_HOME": home})
        check(code, err, "dataset.sqlite")
        if code == 0:
            strict(out)
        predict = ["model", "predict", "--gpus-per-node", "1", "--gpu", "L4", *argv]
        code, out, err = cli(*predict, env={"DDLPROF_HOME": home})
        check(code, err, "dataset.sqlite")


PACKING = {"gpu_name": "NVIDIA L4", "model": "resnet50", "mode": "mps", "batch_per_gpu": 32}


@fuzz(100)
@given(data=st.data())
def test_advise_jobs_survives_any_packing_table(data):
    """Rows of the packing table (ddlprof share's factors) with values of any type or range: advise
    --jobs reads them and goes on."""
    from ddlprof.runs.packing import COLUMNS, record_packing

    with tempfile.TemporaryDirectory() as home:
        with _home(home):
            rows = [{**PACKING, "copies": 2, "factor": 1.6, "joules_per_sample": 0.5, "peak_memory_mib": 9e3}]
            assert record_packing([*rows, {**rows[0], "copies": 4, "factor": 1.9}]) is None
        _spoil_table(data, home, "packing", COLUMNS)
        argv = ["--model", "resnet50", "--jobs", "8", "--instances", "g6.xlarge,g6.12xlarge", "--json"]
        code, out, err = cli("advise", *argv, env={"DDLPROF_HOME": home})
        check(code, err, "dataset.sqlite")
        if code == 0:
            strict(out)


# -- trace --merge ---------------------------------------------------------------------------------


def _merge_run(data: st.DataObject) -> tuple[dict[str, Any], str]:
    """A run of two ranks whose trace records name a Kineto file each (.json.gz or .json), one of
    them (or a trace record, or a rank's header) mutated; and the name of the mutated file."""
    files: dict[str, Any] = _valid_run()
    traces = {}
    for rank in (0, 1):
        suffix = data.draw(st.sampled_from([".json.gz", ".json"]))
        name = f"traces/run/h{rank}_{rank}.4.pt.trace{suffix}"
        records = files[f"ranks/rank-{rank}.jsonl"]
        next(r for r in records if r["type"] == "trace")["file"] = name
        kineto = _kineto()
        kineto["distributedInfo"]["rank"] = rank
        traces[name] = kineto
    target = data.draw(st.sampled_from([*traces, *traces, "ranks/rank-0.jsonl"]))
    texts = _texts(files)
    if target.endswith(".jsonl"):
        records = files[target]
        index = data.draw(st.sampled_from([0, len(records) - 3]))  # the header or the trace record
        records[index] = mutate(data, records[index])
        texts[target] = spoil_text(data, "\n".join(json_text(r) for r in records) + "\n")
    for name, kineto in traces.items():
        raw = (
            spoil_text(data, json_text(mutate(data, kineto)))
            if name == target
            else json.dumps(kineto).encode()
        )
        if name.endswith(".gz"):
            cut = name == target and data.draw(st.booleans())
            raw = gzip.compress(raw)
            raw = raw[: data.draw(st.integers(0, len(raw)))] if cut else raw
        texts[name] = raw
    return texts, target


@fuzz(300)
@given(data=st.data())
def test_trace_merge_reads_any_kineto_trace_and_trace_record(data):
    texts, target = _merge_run(data)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        _write_run(run, texts)
        out = Path(tmp) / data.draw(st.sampled_from(["merged.json.gz", "merged.json"]))
        code, printed, err = cli("trace", "--json", str(run), "--merge", str(out))
        check(code, err, target.split("/")[-1], str(run))
        assert not out.with_name(out.name + ".part").exists()
        if code == 0:
            strict(printed)
            opened = gzip.open if out.name.endswith(".gz") else open
            with opened(out, "rt") as merged:
                strict(merged.read())
        else:
            assert not out.exists()


# -- the dashboard's runs --------------------------------------------------------------------------

FRESHNESS = {"runs", "schema_version", "ddlprof_version"}  # what cached_summary checks first


@fuzz(300)
@given(data=st.data())
def test_the_dashboards_run_data_reads_any_fresh_summary_json(reported, data):
    """A summary.json that passes the cache's freshness check but holds junk deeper down: the run is
    summarised from its files instead, or listed with one line; the Runs and Compare pages' rows
    come out of what the dashboard loaded."""
    from ddlprof.dashboard import data as dashboard
    from ddlprof.runs.summary import cached_summary

    run, original = reported
    summary = json.loads(json.dumps(original))
    paths = [p for p in _paths(summary) if p[0] not in FRESHNESS and p[:2] != ("steps", "warmup_auto")]
    for _ in range(data.draw(st.integers(1, 3))):
        edit(data, summary, data.draw(st.sampled_from(paths)))
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "run"
        shutil.copytree(run, copy)
        summary["runs"] = [str(copy)]
        fresh = {**original, "runs": [str(copy)]}
        (copy / "summary.json").write_text(json.dumps(fresh))
        assert cached_summary(copy) == fresh  # the unmutated file passes the freshness check
        (copy / "summary.json").write_text(json_text(summary))  # so does this one, but for its junk
        with capped_memory():
            loaded = dashboard.load_summary(copy)
            if "error" in loaded:
                assert "\n" not in loaded["error"] and str(copy) in loaded["error"]
                return
            found = loaded["summary"]
            json.loads(json.dumps(found, allow_nan=False))  # finite numbers only
            dashboard.table_row("run", found, loaded["manifest"])
            dashboard.comparable("run", found)
            dashboard.run_context(found, loaded["manifest"], {})
            dashboard.settings(found, loaded["manifest"])
            dashboard.skew_sentence(dashboard.skew(found))
            dashboard.device(found)
            dashboard.model_name(found)
            for item in (*found["ranks"], found["job"]):
                assert isinstance(item["step_ms"], int | float)
            for warning in found["warnings"]:
                assert {"rank", "collector", "reason"} <= set(warning)
            for gpu in found["gpus"]:
                for value in gpu.values():
                    assert not isinstance(value, dict) or {"median", "max"} <= set(value)
