"""``ddlprof trace RUN --merge``: one Chrome trace of a window, every rank its own processes on one clock.

Real traces only: a 2-rank gloo run made here under ``ddlprof wrap`` (torch's Kineto on CPU), and the
2-rank NCCL run on 2 x H200 (torch 2.11) kept in benchmarks/results/gpu-2xh200/runs.tgz, which has
GPU kernels (and, from before ddlprof placed its step markers, no ``ProfilerStep#N``).
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
import sys
import tarfile
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from conftest import REPO, ddlprof

from ddlprof.profiler.trace_merge import COUNTER
from ddlprof.runs.breakdown import CATEGORIES
from ddlprof.runs.rundir import load_run
from ddlprof.runs.summary import step_rows

GPU_RUNS = REPO / "benchmarks" / "results" / "gpu-2xh200" / "runs.tgz"
GPU_RUN = "runs/resnet50-nvlink"
# Kineto's ProfilerStep#7 of one rank against the record's step 7 start: 0.4 ms observed (1.1 to 1.5 ms
# for the window's first step, where the profiler starts); ranks' ProfilerStep#7 3 to 13 ms apart
# (gloo on 2 shared cores). A clock that is wrong is off by seconds or hours.
RECORD_TOLERANCE_US = 50_000
RANKS_TOLERANCE_US = 100_000


def _load(path: Path) -> dict:
    with gzip.open(path, "rt") if path.name.endswith(".gz") else path.open() as f:
        return json.load(f)


def _valid_chrome_trace(trace: dict) -> dict[int, str]:
    """Check the Chrome trace format; return the process names by pid."""
    events = trace["traceEvents"]
    assert isinstance(events, list) and events
    for event in events:
        assert "ph" in event, event
        if event["ph"] == "X":
            assert all(key in event for key in ("ts", "dur", "pid", "tid")), event
            assert isinstance(event["pid"], int)
    names = {e["pid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    assert len(set(names.values())) == len(names)
    assert {e["pid"] for e in events} <= set(names), "a process without a name"
    sort = {e["pid"] for e in events if e["ph"] == "M" and e["name"] == "process_sort_index"}
    assert sort == set(names)
    return names


def _pid(names: dict[int, str], name: str) -> int:
    (pid,) = [p for p, n in names.items() if n == name]
    return pid


def _one_line_error(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ddlprof trace: error: "), done.stderr
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in lines[0], lines[0]


def _records(run: Path) -> dict[int, dict[int, dict]]:
    return {log.rank: {s["step"]: s for s in log.steps} for log in load_run(run).ranks}


def _counters_match_the_categories(trace: dict, names: dict[int, str], run: Path, steps: range) -> None:
    """Each rank's counter at a step's start holds the categories the report gives for that step."""
    events = trace["traceEvents"]
    for log in load_run(run).ranks:
        pid = _pid(names, f"rank {log.rank} ddlprof")
        markers = {e["name"]: e for e in events if e["pid"] == pid and e["ph"] == "X"}
        counters = {e["ts"]: e["args"] for e in events if e["pid"] == pid and e["ph"] == "C"}
        assert {e["name"] for e in events if e["pid"] == pid and e["ph"] == "C"} == {COUNTER}
        by_step = {s["step"]: s for s in log.steps}
        reported = {r["step"]: r for r in step_rows([load_run(run)]) if r["rank"] == log.rank}
        for n in steps:
            marker = markers[f"ddlprof step {n}"]
            expected = reported[n]
            assert counters[marker["ts"]] == {
                k: expected[k]
                for k in CATEGORIES
                if expected[k] is not None  # the stacked track's categories
            }
            assert marker["dur"] == pytest.approx(by_step[n]["step_ms"] * 1e3, abs=1.0)
        assert len(counters) == len(steps) + 1  # and back to 0 after the last step
        assert set(counters[max(counters)].values()) == {0}


@pytest.mark.e2e
def test_a_cpu_window_of_two_ranks_is_one_trace_on_one_clock(wrapped, tmp_path):
    done, run = wrapped("--steps", "20", trace_steps="6-8,14-15")
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "merged.json.gz"
    merged = ddlprof("trace", str(run), "--merge", str(out))
    assert merged.returncode == 0, merged.stderr
    line = merged.stdout.strip()
    assert "\n" not in line and "steps 6-8" in line and "ranks 0-1" in line, line
    assert "--window 14" in line and "ui.perfetto.dev" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged.json.gz", "run"]  # no .part left

    trace = _load(out)
    names = _valid_chrome_trace(trace)
    records = _records(run)
    host = load_run(run).ranks[0].meta["host"]
    cpu = {rank: _pid(names, f"rank {rank} CPU ({host})") for rank in (0, 1)}
    assert len(set(cpu.values())) == 2
    events = trace["traceEvents"]
    marks = {
        (e["pid"], e["name"]): e
        for e in events
        if e["ph"] == "X" and e.get("cat") == "user_annotation" and e["name"].startswith("ProfilerStep#")
    }
    base_us = trace["baseTimeNanoseconds"] / 1e3
    for rank, pid in cpu.items():
        assert {n for p, n in marks if p == pid} == {f"ProfilerStep#{n}" for n in (6, 7, 8)}
        assert sum(1 for e in events if e["pid"] == pid and e.get("cat") == "cpu_op") > 100
        for n in (6, 7, 8):  # Kineto's markers on Unix time, where ddlprof's records put the steps
            unix_us = base_us + marks[(pid, f"ProfilerStep#{n}")]["ts"]
            assert abs(unix_us - records[rank][n]["start"] * 1e6) < RECORD_TOLERANCE_US
    step7 = [marks[(cpu[rank], "ProfilerStep#7")]["ts"] for rank in (0, 1)]
    assert abs(step7[0] - step7[1]) < RANKS_TOLERANCE_US  # the ranks meet in an all-reduce every step
    _counters_match_the_categories(trace, names, run, range(5, 10))

    # the second window, by its first step, as plain JSON with the result as one JSON line
    second = tmp_path / "second.json"
    done = ddlprof("trace", str(run), "--merge", str(second), "--window", "14", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["window"] == [14, 15] and result["windows"] == [[6, 8], [14, 15]]
    assert result["ranks"] == [0, 1] and result["missing_ranks"] == []
    assert all(abs(v) < RECORD_TOLERANCE_US / 1e3 for v in result["marker_offset_ms"].values())
    trace = _load(second)
    names = _valid_chrome_trace(trace)
    assert len(trace["traceEvents"]) == result["events"] and second.stat().st_size == result["bytes"]
    steps = {(names[e["pid"]], e["name"]) for e in trace["traceEvents"] if e.get("cat") == "user_annotation"}
    for rank in (0, 1):
        assert {(f"rank {rank} CPU ({host})", f"ProfilerStep#{n}") for n in (14, 15)} <= steps
    _counters_match_the_categories(trace, names, run, range(13, 17))


@pytest.fixture(scope="module")
def gpu_run(tmp_path_factory) -> Path:
    """The 2 x H200 resnet50 run (NVLink) out of the benchmark archive."""
    folder = tmp_path_factory.mktemp("gpu")
    with tarfile.open(GPU_RUNS) as archive:
        members = [m for m in archive.getmembers() if m.name.startswith(f"{GPU_RUN}/")]
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        archive.extractall(folder, members=members, **safe)
    return folder / GPU_RUN


@pytest.fixture
def gpu_copy(gpu_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(gpu_run, copy)
    return copy


def _source_events(run: Path, rank: int) -> list[dict]:
    (file,) = (run / "traces").glob(f"*/*_{rank}.6.pt.trace.json.gz")
    return _load(file)["traceEvents"]


def test_each_ranks_gpu_kernels_land_under_its_own_gpu(gpu_run, tmp_path):
    out = tmp_path / "gpu.json"
    done = ddlprof("trace", str(gpu_run), "--merge", str(out), "--json")
    assert done.returncode == 0, done.stderr
    trace = json.loads(out.read_text())
    names = _valid_chrome_trace(trace)
    events = trace["traceEvents"]
    rank_of = {pid: int(name.split()[1]) for pid, name in names.items()}
    for rank in (0, 1):
        gpu = _pid(names, f"rank {rank} GPU {rank}")  # each rank drives its own device
        kernels = [e for e in events if e.get("cat") == "kernel" and e["pid"] == gpu]
        source = [e for e in _source_events(gpu_run, rank) if e.get("cat") == "kernel"]
        assert len(kernels) == len(source) > 1000
        assert {e["args"]["device"] for e in kernels} == {rank}
        assert Counter(e["name"] for e in kernels) == Counter(e["name"] for e in source)
        assert sorted(e["ts"] for e in kernels) == sorted(e["ts"] for e in source)  # one base: unmoved
    assert {names[e["pid"]] for e in events if e.get("cat") == "kernel"} == {"rank 0 GPU 0", "rank 1 GPU 1"}
    # pids that only had metadata (the 14 devices neither rank used) are gone
    assert not any("GPU" in name for name in names.values() if name not in ("rank 0 GPU 0", "rank 1 GPU 1"))

    # flows: every id stays within one rank, and each rank's flows keep their shape
    ranks_of_id = defaultdict(set)
    for e in events:
        if e["ph"] in ("s", "f"):
            ranks_of_id[e["id"]].add(rank_of[e["pid"]])
    assert ranks_of_id and all(len(r) == 1 for r in ranks_of_id.values())
    for rank in (0, 1):
        merged = Counter(e["ph"] for e in events if e["ph"] in ("s", "f") and rank_of[e["pid"]] == rank)
        source = Counter(e["ph"] for e in _source_events(gpu_run, rank) if e["ph"] in ("s", "f"))
        assert merged == source

    # no ProfilerStep#N in these files: ddlprof's markers show the steps, on the same clock as Kineto's
    # events (each step's DDP forward starts inside ddlprof's step of that rank)
    for rank in (0, 1):
        pid = _pid(names, f"rank {rank} CPU (vm)")
        forwards = sorted(
            e["ts"]
            for e in events
            if e["pid"] == pid
            and e.get("cat") == "user_annotation"
            and e["name"] == "DistributedDataParallel.forward"
        )
        mine = {e["name"]: e for e in events if names[e["pid"]] == f"rank {rank} ddlprof" and e["ph"] == "X"}
        assert sorted(mine) == [f"ddlprof step {n}" for n in range(5, 10)]
        for n in (7, 8):
            step = mine[f"ddlprof step {n}"]
            assert any(step["ts"] <= ts <= step["ts"] + 2_000 for ts in forwards), (rank, n)
    _counters_match_the_categories(trace, names, gpu_run, range(5, 10))


def test_ranks_with_different_bases_are_put_on_one_clock(gpu_run, gpu_copy, tmp_path):
    """Rank 1's file rewritten with an earlier base (its ts later by as much) and the base after the
    events: every event and step marker lands at the same Unix time as from the files as written."""
    (file,) = (gpu_copy / "traces").glob("*/*_1.6.pt.trace.json.gz")
    original = _load(file)
    moved_ns = 7_000_123_456
    events = original.pop("traceEvents")
    for event in events:
        if "ts" in event:
            event["ts"] = event["ts"] + moved_ns / 1e3
    rewritten = {**original, "traceEvents": events}
    rewritten["baseTimeNanoseconds"] = rewritten.pop("baseTimeNanoseconds") - moved_ns  # now after the events
    assert list(rewritten)[-1] == "baseTimeNanoseconds"
    with gzip.open(file, "wt") as f:
        json.dump(rewritten, f)

    assert ddlprof("trace", str(gpu_run), "--merge", str(tmp_path / "a.json.gz")).returncode == 0
    done = ddlprof("trace", str(gpu_copy), "--merge", str(tmp_path / "b.json.gz"))
    assert done.returncode == 0, done.stderr
    a, b = _load(tmp_path / "a.json.gz"), _load(tmp_path / "b.json.gz")
    assert b["baseTimeNanoseconds"] == a["baseTimeNanoseconds"] - moved_ns
    a_events, b_events = a["traceEvents"], b["traceEvents"]
    assert len(a_events) == len(b_events)
    for x, y in zip(a_events, b_events, strict=True):
        assert {**x, "ts": 0} == {**y, "ts": 0}
        if "ts" in x:  # the same Unix time: base / 1000 + ts
            assert y["ts"] - moved_ns / 1e3 == pytest.approx(x["ts"], abs=0.01)


def _drop_trace_records(run: Path) -> None:
    for file in (run / "ranks").glob("rank-*.jsonl"):
        lines = [
            line for line in file.read_text().splitlines() if '"type":"trace"' not in line.replace(" ", "")
        ]
        file.write_text("\n".join(lines) + "\n")


def _truncate(run: Path) -> None:
    (file,) = (run / "traces").glob("*/*_1.6.pt.trace.json.gz")
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])


def _not_gzip(run: Path) -> None:
    (file,) = (run / "traces").glob("*/*_1.6.pt.trace.json.gz")
    file.write_bytes(b"this is not a trace\n" * 100)


def _bad_json(run: Path) -> None:
    (file,) = (run / "traces").glob("*/*_1.6.pt.trace.json.gz")
    file.write_bytes(
        gzip.compress(b'{"baseTimeNanoseconds": 5, "traceEvents": [{"ph": "X", "ts": 1}, {"ph": ')
    )


def _remove(run: Path) -> None:
    (file,) = (run / "traces").glob("*/*_1.6.pt.trace.json.gz")
    file.unlink()


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (_remove, ("vm_1.6.pt.trace.json.gz", "missing", "rank 1")),
        (_truncate, ("vm_1.6.pt.trace.json.gz", "not a readable Kineto trace", "EOFError")),
        (_not_gzip, ("vm_1.6.pt.trace.json.gz", "not a readable Kineto trace")),
        (_bad_json, ("vm_1.6.pt.trace.json.gz", "not a readable Kineto trace")),
        (_drop_trace_records, ("no trace window recorded",)),
    ],
    ids=["missing-file", "truncated-gzip", "not-gzip", "truncated-json", "no-trace-records"],
)
def test_bad_input_is_one_line_and_leaves_nothing(gpu_copy, tmp_path, damage, words):
    damage(gpu_copy)
    out = tmp_path / "out" / "merged.json.gz"
    out.parent.mkdir()
    done = ddlprof("trace", str(gpu_copy), "--merge", str(out))
    _one_line_error(done, *words)
    assert list(out.parent.iterdir()) == []  # neither OUT nor OUT.part


def test_an_existing_out_is_never_replaced(gpu_run, tmp_path):
    out = tmp_path / "merged.json.gz"
    out.write_text("mine")
    _one_line_error(ddlprof("trace", str(gpu_run), "--merge", str(out)), str(out), "exists")
    assert out.read_text() == "mine" and sorted(tmp_path.iterdir()) == [out]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--window", "9"], ("--window 9", "windows start at step 6")),
        (["--merge", "merged.txt"], (".json.gz", ".json")),
        (["--merge", "missing/merged.json"], ("cannot write",)),
    ],
    ids=["no-such-window", "bad-suffix", "missing-folder"],
)
def test_bad_options_are_one_line(gpu_run, tmp_path, args, words):
    argv = ["trace", str(gpu_run), "--merge", "merged.json.gz", *args]
    _one_line_error(ddlprof(*argv, cwd=tmp_path), *words)
    assert list(tmp_path.iterdir()) == []


def test_trace_does_not_import_torch(gpu_run, tmp_path):
    code = (
        "import sys; from ddlprof.cli import main; rc = main(['trace', sys.argv[1], '--merge', "
        "sys.argv[2]]); assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(gpu_run), str(tmp_path / "m.json.gz")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    timed = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ddlprof", "trace", "--help"],
        capture_output=True,
        text=True,
    )
    assert timed.returncode == 0 and "torch" not in timed.stderr


# -- ddlprof trace RUN (no --merge): the run's windows ----------------------------------------------


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


def _trace_files(run: Path) -> dict[int, Path]:
    """Each rank's Kineto file of the window at step 6, found on disk (not from the records)."""
    return {rank: next((run / "traces").glob(f"*/*_{rank}.6.pt.trace.json.gz")) for rank in (0, 1)}


def test_without_merge_it_lists_the_windows_and_says_how_to_merge(gpu_run, tmp_path):
    before = _files(gpu_run)
    done = ddlprof("trace", str(gpu_run), cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    lines = done.stdout.splitlines()
    for rank, path in _trace_files(gpu_run).items():
        (row,) = [line for line in lines if str(path.relative_to(gpu_run)) in line]
        assert f"rank {rank}" in row and "6-8" in row
        assert re.search(r"\d+(\.\d)? kB", row), row  # ~590 kB each
    assert f"ddlprof trace --merge window.json.gz {gpu_run}" in done.stdout
    assert _files(gpu_run) == before and list(tmp_path.iterdir()) == []  # lists, writes nothing

    listed = json.loads(ddlprof("trace", str(gpu_run), "--json", cwd=tmp_path).stdout)
    (window,) = listed["windows"]
    assert window["steps"] == [6, 8] and window["missing_ranks"] == []
    for rank, path in _trace_files(gpu_run).items():
        (entry,) = [r for r in window["ranks"] if r["rank"] == rank]
        assert entry["steps"] == [6, 8]
        assert gpu_run / entry["file"] == path and entry["bytes"] == path.stat().st_size


def test_the_listing_shows_every_window_a_missing_file_and_a_run_without_windows(gpu_copy, tmp_path):
    """A second window (steps 200-202, rank 1's file gone): both listed, --window picks one, the missing
    file says so; a run with no trace records says that it has none, and is no error."""
    for rank, path in _trace_files(gpu_copy).items():
        late = path.with_name(path.name.replace(".6.", ".200."))
        shutil.copyfile(path, late)
        record = {"type": "trace", "steps": [200, 202], "file": str(late.relative_to(gpu_copy))}
        with (gpu_copy / "ranks" / f"rank-{rank}.jsonl").open("a") as handle:
            handle.write(json.dumps(record) + "\n")
    next((gpu_copy / "traces").glob("*/*_1.200.pt.trace.json.gz")).unlink()

    listed = json.loads(ddlprof("trace", str(gpu_copy), "--json").stdout)
    assert [w["steps"] for w in listed["windows"]] == [[6, 8], [200, 202]]
    late = {r["rank"]: r for r in listed["windows"][1]["ranks"]}
    assert late[0]["bytes"] > 0 and late[1]["bytes"] is None
    text = ddlprof("trace", str(gpu_copy))
    assert text.returncode == 0 and "--window 200" in text.stdout
    (missing,) = [line for line in text.stdout.splitlines() if "_1.200.pt.trace" in line]
    assert "missing" in missing
    one = json.loads(ddlprof("trace", str(gpu_copy), "--window", "200", "--json").stdout)
    assert [w["steps"] for w in one["windows"]] == [[200, 202]]
    _one_line_error(ddlprof("trace", str(gpu_copy), "--window", "9"), "--window 9", "6, 200")

    _drop_trace_records(gpu_copy)
    none = ddlprof("trace", str(gpu_copy))
    assert none.returncode == 0 and "no trace window recorded" in none.stdout, none.stderr
    assert json.loads(ddlprof("trace", str(gpu_copy), "--json").stdout)["windows"] == []
