"""What ``ddlprof report`` tells a new user about runs that are not whole or not runs at all, and how
its table and HTML page show what it measured: a rank's records lost, a truncated run, the local
dataset's line, the table's width in a pipe and at 80 columns, the trace line of a CPU run, the outputs
of ``ddlprof stalls`` and ``ddlprof share``, and the lines the HTML page shares with the text."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest
from conftest import ddlprof, env

from ddlprof.runs import breakdown, store

CATEGORIES = ("step_ms", *breakdown.CATEGORIES)


def _header(rank: int, world: int = 2, host: str = "h", device: str = "cpu") -> dict:
    return {
        "type": "rank",
        "rank": rank,
        "world_size": world,
        "local_world_size": world,
        "host": host,
        "device": device,
        "backend": "gloo",
        "cpus": 2,
    }


def _step(n: int, rank: int, scale: float = 1.0) -> dict:
    """A step as a CPU rank of ``ddlprof wrap`` records it: host-clock arrivals at the all-reduce
    (rank 1 a little later than rank 0), DataLoader costs, ddlprof's own time."""
    step_ms = 14.77 * scale + 0.01 * n
    backward_end = 12.0 * scale + 0.4 * rank
    return {
        "type": "step",
        "step": n,
        "start": 1000.0 + n * step_ms / 1e3,
        "end": 1000.0 + (n + 1) * step_ms / 1e3,
        "step_ms": step_ms,
        "data_wait_ms": 0.74 * scale,
        "loop_ms": 0.16 * scale,
        "samples": 32,
        "traced": False,
        "comm": {
            "buckets": 1,
            "bytes": 154280,
            "exposed_ms": 2.9 * scale - 0.4 * rank,
            "clock": "cpu",
            "backward_end_ms": backward_end,
            "per_bucket": [[0, 154280, None, None]],
        },
        "own_ms": 0.117,
        "own_ms_by": {"data": 0.025, "comm_forward": 0.039, "comm_backward": 0.034, "steps": 0.019},
        "loader": {"batches": 1.0, "workers": 0.0, "wall_ms": 0.8, "cpu_ms": 0.6, "cpu_wait_ms": 0.0},
    }


PROBE = {  # single-node jobs record one too (nodes 1)
    "type": "probe",
    "nodes": 1,
    "world_size": 2,
    "local_size": 2,
    "intra": {"busbw_gbps": 0.951, "latency_us": 642.4, "ranks": 2},
    "full": {"busbw_gbps": 0.951, "latency_us": 642.4, "ranks": 2},
    "seconds": 0.215,
}


def _run(tmp_path, steps: int = 30, name: str = "run", scale: float = 1.0, hosts=("h", "h"), trace=False):
    """A two-rank CPU run directory in the format ``ddlprof wrap`` writes."""
    run = tmp_path / name
    (run / "ranks").mkdir(parents=True)
    (run / "nodes").mkdir()
    manifest = {
        "schema": "ddlprof.run",
        "schema_version": 1,
        "run_id": name,
        "created_unix": 1.7e9,
        "command": ["torchrun", "--standalone", "--nproc_per_node=2", "train.py"],
        "nnodes": len(set(hosts)),
    }
    (run / "manifest.json").write_text(json.dumps(manifest))
    for rank, host in enumerate(hosts):
        records = [_header(rank, len(hosts), host), PROBE]
        records += [_step(n, rank, scale) for n in range(1, steps + 1)]
        if trace:
            file = f"traces/{name}/h_{rank}.pt.trace.json.gz"
            records.append({"type": "trace", "steps": [6, 8], "file": file})
        records.append({"type": "end"})
        (run / "ranks" / f"rank-{rank}.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return run


def _report(run, *args: str, environ: dict | None = None):
    done = ddlprof("report", *args, str(run), env=environ or env())
    assert done.returncode == 0, done.stderr
    return done


def _truncate(run, rank: int, last_step: int) -> None:
    """Cut ``rank``'s file after ``last_step``, as when it is killed: no end record."""
    path = run / "ranks" / f"rank-{rank}.jsonl"
    kept = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record["type"] == "end" or (record["type"] == "step" and record["step"] > last_step):
            continue
        kept.append(line)
    path.write_text("\n".join(kept) + "\n")


# 1. the reasons of a run with a rank's records lost


@pytest.mark.parametrize("lose", ["empty", "delete"])
def test_a_lost_rank_file_gets_reasons_that_name_it_and_single_node_wording(tmp_path, lose):
    run = _run(tmp_path)
    path = run / "ranks" / "rank-1.jsonl"
    path.write_text("") if lose == "empty" else path.unlink()
    summary = json.loads(_report(run, "--json", "--no-store").stdout)
    reasons = summary["reasons"]
    assert summary["nodes"] == 1 and summary["world_size"] == 2
    assert not any("multi-node" in reason for reason in reasons.values()), reasons
    assert reasons["network_stall_ms"].startswith("single node")
    # one node: all exposed communication (waiting included, not split) is the interconnect's
    job = summary["job"]
    assert job["network_stall_ms"] == 0.0 and job["interconnect_stall_ms"] == pytest.approx(2.9)
    wait = reasons["wait_for_peers_ms"]
    assert "rank 1" in wait and "of 2" in wait, wait
    assert "GPU run" not in wait and "older ddlprof" not in wait
    text = _report(run, "--no-store").stdout
    assert "multi-node" not in text and "rank 1 of 2" in text


def test_a_whole_single_node_cpu_run_still_splits_the_wait(tmp_path):
    summary = json.loads(_report(_run(tmp_path), "--json", "--no-store").stdout)
    assert summary["job"]["wait_for_peers_ms"] == pytest.approx(0.2)
    assert "wait_for_peers_ms" not in summary["reasons"]


# 2. what goes into the local dataset, and the line that says so


def _rows(home) -> int:
    path = home / store.DATABASE
    if not path.exists():
        return 0
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]


def _dataset_line(text: str) -> str:
    (line,) = [line for line in text.splitlines() if "local dataset" in line]
    return line


def test_a_run_with_a_rank_missing_is_not_added_and_the_line_says_why(tmp_path, home):
    run = _run(tmp_path)
    (run / "ranks" / "rank-1.jsonl").write_text("")
    line = _dataset_line(_report(run).stdout)
    assert line.startswith("not added to the local dataset") and "rank 1" in line, line
    assert _rows(home) == 0


def test_a_truncated_run_is_added_with_a_caveat(tmp_path, home):
    run = _run(tmp_path, trace=False)
    _truncate(run, 0, 13)  # warm-up 2 (a fifth of 13): 11 steady steps on rank 0
    summary = json.loads(_report(run, "--json", "--no-store").stdout)
    steady = summary["steps"]["steady_per_rank"]
    assert store.MIN_STEADY_STEPS <= steady < store.FEW_STEADY_STEPS
    line = _dataset_line(_report(run).stdout)
    assert line.startswith(f"added to the local dataset {home / store.DATABASE}"), line
    assert f"{steady} steady steps" in line and "rank 0 stopped after step 13" in line, line
    assert _rows(home) == 1


def test_a_run_below_the_minimum_of_steady_steps_is_not_added(tmp_path, home):
    run = _run(tmp_path, steps=5)  # warm-up 1: 4 steady steps
    line = _dataset_line(_report(run).stdout)
    assert line.startswith("not added to the local dataset") and "4 steady step" in line, line
    assert _rows(home) == 0


def test_a_whole_run_is_added_without_a_caveat(tmp_path, home):
    line = _dataset_line(_report(_run(tmp_path)).stdout)
    assert line == f"added to the local dataset {home / store.DATABASE}"
    assert _rows(home) == 1


# 3. the table's numbers are never cut, in a pipe or at 80 columns


def _numbers(row: dict) -> list[str]:
    """What the table shows of one row of ``report --json``: each category in ms and as a share of
    the step, and the throughput."""
    shown = []
    for key in CATEGORIES:
        if row[key] is None:
            continue
        shown.append(f"{row[key]:.2f}")
        if key != "step_ms":
            shown.append(f"{100 * row[key] / row['step_ms']:.0f}%")
    if row["throughput_samples_per_s"] is not None:
        shown.append(f"{row['throughput_samples_per_s']:,.1f}")
    return shown


@pytest.mark.parametrize("columns", [None, "80"])
@pytest.mark.parametrize("hosts", [("h", "h"), ("host-a.example.org", "host-b.example.org")])
def test_every_number_of_the_table_is_intact(tmp_path, columns, hosts):
    run = _run(tmp_path, scale=10.0, hosts=hosts)  # ten times the steps: wider numbers
    environ = {k: v for k, v in env().items() if k != "COLUMNS"}
    if columns:
        environ["COLUMNS"] = columns
    summary = json.loads(_report(run, "--json", "--no-store").stdout)
    text = _report(run, "--no-store", environ=environ).stdout  # stdout is a pipe here
    table = text[: text.index("measured:")]
    tokens = re.findall(r"[\d,]*\d\.\d+|\d+%", table)
    for row in [*summary["ranks"], summary["job"]]:
        for number in _numbers(row):
            assert number in tokens, (number, table)
    assert "…" not in table
    if columns and hosts[0] == hosts[1]:  # one node: the table fits 80 columns, headers wrapped
        assert max(len(line) for line in table.splitlines()) <= 80, table


def test_the_column_widths_fit_and_keep_numbers(tmp_path):
    from ddlprof.profiler.render import _column_widths

    headers = ["rank", "step", "compute", "intercon.", "samples/s"]
    rows = [["0", "123.45", "100.00\n81%", "2.92\n2%", "2,166.1"]]
    wide = _column_widths(headers, rows, None, wrap=False)
    assert wide == (headers, [4, 6, 7, 9, 9])
    _, widths = _column_widths(headers, rows, 40, wrap=False)
    assert sum(widths) + 3 * len(widths) + 1 <= 40
    assert all(width >= need for width, need in zip(widths, [1, 6, 6, 4, 7], strict=True))


# 4. the trace line names the device the traces are of


def test_a_cpu_runs_trace_line_does_not_say_gpu(tmp_path):
    text = _report(_run(tmp_path, trace=True), "--no-store").stdout
    assert "trace file(s)" in text and "GPU timeline" not in text
    assert "CPU timeline" in text


# 5. the outputs of ddlprof stalls and ddlprof share are named as such


def _manifest(folder) -> None:
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"schema": "ddlprof.run", "schema_version": 1}))


def test_a_stalls_output_is_named_with_a_run_to_report_and_its_result(tmp_path):
    out = tmp_path / "st1"
    for variant in ("one_gpu", "one_node", "full"):
        _manifest(out / variant / "r0")
    (out / "stalls.json").write_text("{}")
    done = ddlprof("report", str(out))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "ddlprof stalls" in done.stderr
    assert str(out / "full" / "r0") in done.stderr and str(out / "stalls.json") in done.stderr


def test_a_share_output_is_named_with_a_run_to_report_and_its_result(tmp_path):
    out = tmp_path / "sh1"
    for k in (1, 2):
        for i in range(k):
            _manifest(out / "timeslice" / f"k{k}" / f"copy{i}")
    (out / "share.json").write_text("{}")
    done = ddlprof("report", str(out))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "ddlprof share" in done.stderr and str(out / "share.json") in done.stderr
    assert str(out / "timeslice" / "k1" / "copy0") in done.stderr


def test_a_folder_of_runs_names_them(tmp_path):
    _manifest(tmp_path / "runs" / "a")
    done = ddlprof("report", str(tmp_path / "runs"))
    assert done.returncode == 2 and str(tmp_path / "runs" / "a") in done.stderr, done.stderr


# 6. the HTML page has the data stall's split, ddlprof's own cost and the energy


def test_the_html_page_has_the_data_split_own_cost_and_energy(tmp_path):
    run = _run(tmp_path)
    html = tmp_path / "new.html"
    summary = json.loads(_report(run, "--json", "--no-store").stdout)
    _report(run, "--no-store", "--html", str(html))
    page = html.read_text()
    body = page[: page.index("<h2>summary.json</h2>")]  # not the JSON dump at the end
    job = summary["job"]
    for part in ("fetch", "prep", "other"):
        assert f"{part} {job[f'data_{part}_ms']:.1f}" in body, part
    own_us = 1e3 * summary["ddlprof_overhead"]["own_ms_per_step"]
    assert "ddlprof itself" in body and f"{own_us:.0f} us" in body
    assert "energy: n/a" in body and "NVML" in body  # a CPU run: what NVML cannot measure
