"""``ddlprof report`` on bad input: one clear line, a non-zero exit, no traceback, nothing lost."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from conftest import REPO, ddlprof

SCHEMA = json.loads((REPO / "ddlprof" / "runs" / "summary.schema.json").read_text())


def _one_line_error(done, *words: str) -> None:
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    for word in words:
        assert word in done.stderr


def _run_dir(tmp_path, ranks: dict[int, list[dict]], manifest: dict | None = None):
    run = tmp_path / "run"
    (run / "ranks").mkdir(parents=True)
    (run / "nodes").mkdir()
    (run / "manifest.json").write_text(
        json.dumps(manifest or {"schema": "ddlprof.run", "schema_version": 1, "run_id": "run", "nnodes": 1})
    )
    for rank, records in ranks.items():
        lines = [json.dumps(r) for r in records]
        (run / "ranks" / f"rank-{rank}.jsonl").write_text("\n".join(lines) + "\n")
    return run


def _rank(rank: int, world: int = 2, host: str = "h") -> dict:
    return {"type": "rank", "rank": rank, "world_size": world, "host": host}


def _step(n: int, step_ms: float = 10.0, data: float = 1.0, exposed: float = 2.0, loop: float = 0.5) -> dict:
    return {
        "type": "step",
        "step": n,
        "step_ms": step_ms,
        "data_wait_ms": data,
        "loop_ms": loop,
        "samples": 8,
        "traced": False,
        "comm": {"buckets": 1, "exposed_ms": exposed},
    }


@pytest.mark.parametrize(
    "setup, words",
    [
        (lambda p: p / "nope", ["no such directory"]),
        (lambda p: (p / "empty").mkdir() or p / "empty", ["not a ddlprof run directory"]),
        (lambda p: (p / "f").write_text("x") and p / "f", ["not a directory"]),
    ],
)
def test_missing_empty_and_foreign_paths(tmp_path, setup, words):
    _one_line_error(ddlprof("report", str(setup(tmp_path))), *words)


def test_truncated_manifest(tmp_path):
    run = _run_dir(tmp_path, {})
    (run / "manifest.json").write_text('{"schema": "ddlprof.r')
    _one_line_error(ddlprof("report", str(run)), "manifest.json", "unreadable manifest")


def test_foreign_json_manifest(tmp_path):
    run = _run_dir(tmp_path, {}, manifest={"hello": "world"})
    _one_line_error(ddlprof("report", str(run)), "not a ddlprof manifest")


def test_run_without_steps(tmp_path):
    run = _run_dir(tmp_path, {0: [_rank(0)]})
    _one_line_error(ddlprof("report", str(run)), "no rank recorded a step")


def test_rank_file_without_header(tmp_path):
    run = _run_dir(tmp_path, {0: [_step(1)]})
    _one_line_error(ddlprof("report", str(run)), "rank-0.jsonl", "no rank header")


def test_torn_last_line_and_missing_rank_still_report(tmp_path):
    run = _run_dir(
        tmp_path,
        {
            0: [_rank(0, world=3), *[_step(n) for n in range(1, 11)], {"type": "end"}],
            1: [_rank(1, world=3), *[_step(n) for n in range(1, 6)]],
        },
    )
    with (run / "ranks" / "rank-1.jsonl").open("a") as f:
        f.write('{"type":"step","step":6,"step_')
    done = ddlprof("report", "--json", str(run))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    jsonschema.validate(result, SCHEMA)
    missing = {m["rank"]: m["problem"] for m in result["missing_ranks"]}
    assert missing[1].startswith("stopped after step 5") and missing[2].startswith("no records")
    assert {"rank": 1, "collector": "records"}.items() <= result["warnings"][0].items()
    assert 0 not in missing
    table = ddlprof("report", str(run))
    assert "rank 2: no records" in table.stdout and "rank 1: stopped after step 5" in table.stdout


def test_ranks_of_two_runs_that_collide(tmp_path):
    a = _run_dir(tmp_path / "a", {0: [_rank(0), _step(1)]})
    b = _run_dir(tmp_path / "b", {0: [_rank(0), _step(1)]})
    _one_line_error(ddlprof("report", str(a), str(b)), "rank 0 appears twice")


def test_straggler_is_named_only_when_it_is_one(tmp_path):
    # rank 1 computes 30 ms longer; rank 0 waits for it in the all-reduce.
    slow = [_rank(1), *[_step(n, step_ms=50, exposed=1.0, data=1.0, loop=0.5) for n in range(1, 11)]]
    fast = [_rank(0), *[_step(n, step_ms=50, exposed=31.0, data=1.0, loop=0.5) for n in range(1, 11)]]
    result = json.loads(ddlprof("report", "--json", str(_run_dir(tmp_path, {0: fast, 1: slow}))).stdout)
    assert [s["rank"] for s in result["stragglers"]] == [1]
    assert result["stragglers"][0]["cause"] == "compute_ms"
    even = [_rank(1), *[_step(n, step_ms=50, exposed=2.5) for n in range(1, 11)]]
    fast2 = [_rank(0), *[_step(n, step_ms=50, exposed=2.0) for n in range(1, 11)]]
    result = json.loads(
        ddlprof("report", "--json", str(_run_dir(tmp_path / "e", {0: fast2, 1: even}))).stdout
    )
    assert result["stragglers"] == []


def test_html_report_and_summary_schema(tmp_path):
    run = _run_dir(
        tmp_path, {r: [_rank(r), *[_step(n) for n in range(1, 11)], {"type": "end"}] for r in (0, 1)}
    )
    html = tmp_path / "report.html"
    done = ddlprof("report", "--html", str(html), str(run))
    assert done.returncode == 0, done.stderr
    text = html.read_text()
    assert "Plotly.newPlot" in text and "Where the step time goes" in text and "rank 1" in text
    written = json.loads((run / "summary.json").read_text())
    jsonschema.validate(written, SCHEMA)
    assert written["job"]["step_ms"] == 10.0
    assert written["job"]["compute_ms"] == pytest.approx(6.5)
    assert written["job"]["throughput_samples_per_s"] == pytest.approx(2 * 8 / 0.010)
    assert written["steps"]["warmup_dropped"] == 2 and written["steps"]["steady_per_rank"] == 8


def test_html_into_a_missing_folder_is_one_line_before_any_work(tmp_path):
    run = _run_dir(tmp_path, {0: [_rank(0, 1), *[_step(n) for n in range(1, 6)], {"type": "end"}]})
    done = ddlprof("report", "--no-store", "--html", str(tmp_path / "missing" / "r.html"), str(run))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "r.html" in done.stderr and "no such directory" in done.stderr
    assert done.stdout == "" and not (run / "summary.json").exists()


def test_html_never_overwrites_a_file(tmp_path):
    """``--html`` naming the run's own rank log (or any file) is refused before any work: the log is
    the run's raw data."""
    run = _run_dir(tmp_path, {0: [_rank(0, 1), *[_step(n) for n in range(1, 6)], {"type": "end"}]})
    log = run / "ranks" / "rank-0.jsonl"
    before = log.read_bytes()
    for target in (log, tmp_path / "earlier.html"):
        if not target.exists():
            target.write_text("<html>an earlier report</html>")
        kept = target.read_bytes()
        done = ddlprof("report", "--no-store", "--html", str(target), str(run))
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert "exists; not overwritten" in done.stderr and done.stdout == ""
        assert target.read_bytes() == kept
    assert log.read_bytes() == before


def test_json_is_printed_before_an_html_file_that_cannot_be_written(tmp_path, monkeypatch, capsys):
    from ddlprof.cli import main
    from ddlprof.errors import DdlprofError
    from ddlprof.profiler import report as report_module

    run = _run_dir(tmp_path, {0: [_rank(0, 1), *[_step(n) for n in range(1, 6)], {"type": "end"}]})
    html = tmp_path / "r.html"
    real = report_module.write_atomic

    def full_disk(path, text, **kwargs):
        if path == html:
            raise DdlprofError(f"{path}: cannot write (No space left on device)")
        return real(path, text, **kwargs)

    monkeypatch.setattr(report_module, "write_atomic", full_disk)
    assert main(["report", "--no-store", "--json", "--html", str(html), str(run)]) == 2
    out = capsys.readouterr()
    assert json.loads(out.out)["job"]["step_ms"] == 10.0 and "No space left" in out.err
    assert not html.exists()


def test_report_does_not_import_torch(tmp_path):
    run = _run_dir(tmp_path, {0: [_rank(0, world=1), *[_step(n) for n in range(1, 5)]]})
    code = (
        "import sys; from ddlprof.cli import main; rc = main(['report', '--json', sys.argv[1]]); "
        "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)"
    )
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_gpu_counters_over_the_steady_window(tmp_path):
    steps = [{**_step(n), "start": 100.0 + n, "end": 101.0 + n} for n in range(1, 11)]
    run = _run_dir(tmp_path, {0: [_rank(0, world=1), *steps, {"type": "end"}]})
    (run / "gpu").mkdir()
    header = "unix,gpu,util_pct,mem_util_pct,mem_used_mib,power_w,sm_clock_mhz,pcie_tx_mb_per_s,"
    header += "pcie_rx_mb_per_s,nvlink_tx_mb_per_s,nvlink_rx_mb_per_s\n"
    rows = [
        f"{t},0,{u},1,500,300,1980,1,2,,\n" for t, u in [(99.0, 5), (104.0, 90), (106.0, 94), (108.0, 98)]
    ]
    (run / "gpu" / "h.csv").write_text(header + "".join(rows))
    result = json.loads(ddlprof("report", "--json", str(run)).stdout)
    jsonschema.validate(result, SCHEMA)
    (gpu,) = result["gpus"]
    assert gpu["samples"] == 3  # the sample at 99.0 s is before the steady steps (warm-up 2: from 103 s)
    assert gpu["util_pct"] == {"median": 94.0, "max": 98.0}
    assert gpu["nvlink_tx_mb_per_s"] is None
    assert "util 94%" in ddlprof("report", str(run)).stdout
    ddlprof("report", "--html", str(tmp_path / "r.html"), str(run))
    assert "GPU counters (NVML)" in (tmp_path / "r.html").read_text()


def _join_after(barrier, out: str, results) -> None:
    from ddlprof.runs.rundir import MANIFEST_SCHEMA, create_or_join

    manifest = {"schema": MANIFEST_SCHEMA, "schema_version": 1, "run_id": "r", "job_key": ["t.py"]}
    barrier.wait()
    try:
        results.put(create_or_join(Path(out), manifest, multi_node=True))
    except Exception as exc:  # reported to the test
        results.put(str(exc))


def test_nodes_starting_together_all_create_or_join_one_run_directory(tmp_path):
    """The nodes of one job (emulated nodes on one machine, or a shared file system) make the run
    directory at the same moment: one creates it, every other joins, none calls it foreign."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    for attempt in range(60):
        out = tmp_path / f"run{attempt}"
        barrier, results = context.Barrier(4), context.Queue()
        nodes = [context.Process(target=_join_after, args=(barrier, str(out), results)) for _ in range(4)]
        for node in nodes:
            node.start()
        outcomes = [results.get(timeout=30) for _ in nodes]
        for node in nodes:
            node.join()
        assert sorted(outcomes, key=str) == [False, True, True, True], outcomes


def _ended(rank: int, world: int = 2, steps: int = 5) -> list[dict]:
    return [_rank(rank, world), *[_step(n) for n in range(1, steps + 1)], {"type": "end"}]


def test_an_absurd_world_size_is_one_line_naming_file_and_field(tmp_path):
    run = _run_dir(tmp_path, {0: _ended(0, world=100_000_000)})
    _one_line_error(ddlprof("report", "--no-store", str(run)), "rank-0.jsonl", "world_size", "1,048,576")


def test_missing_ranks_of_a_large_job_come_as_ranges(tmp_path):
    run = _run_dir(tmp_path, {0: _ended(0, world=1_000_000), 5: _ended(5, world=1_000_000)})
    done = ddlprof("report", "--no-store", "--json", str(run))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    jsonschema.validate(result, SCHEMA)
    spans = [(m["ranks"], m["count"]) for m in result["missing_ranks"]]
    assert spans == [("1-4", 4), ("6-999999", 999_994)]
    assert "ranks 6-999999: no records" in ddlprof("report", "--no-store", str(run)).stdout


@pytest.mark.parametrize(
    "field, value, words",
    [("world_size", "two", ["rank-0.jsonl", "world_size", '"two"']), ("rank", -1, ["rank-0.jsonl", "rank"])],
)
def test_a_rank_header_of_the_wrong_type_is_one_line(tmp_path, field, value, words):
    run = _run_dir(tmp_path, {0: [{**_rank(0, 1), field: value}, _step(1), _step(2)]})
    _one_line_error(ddlprof("report", "--no-store", str(run)), *words)


@pytest.mark.parametrize("field, value", [("schema_version", "1"), ("nnodes", "two")])
def test_a_manifest_field_of_the_wrong_type_is_one_line(tmp_path, field, value):
    manifest = {"schema": "ddlprof.run", "schema_version": 1, "run_id": "run", "nnodes": 1, field: value}
    run = _run_dir(tmp_path, {0: _ended(0, 1)}, manifest=manifest)
    _one_line_error(ddlprof("report", "--no-store", str(run)), "manifest.json", field)


def test_a_node_file_that_is_not_an_object_is_one_line(tmp_path):
    run = _run_dir(tmp_path, {0: _ended(0, 1)})
    (run / "nodes" / "n0.json").write_text("[]")
    _one_line_error(ddlprof("report", "--no-store", str(run)), "n0.json", "not a node record")


@pytest.mark.parametrize(
    "bad",
    [
        {"step_ms": None},
        {"step_ms": "ten"},
        {"step": "6"},
        {"samples": 1e300},
        {"comm": {"exposed_ms": [1]}},
        {"comm": {"exposed_ms": 1.0, "per_bucket": [["x"]]}},
        {"data_wait_ms": -1.0},
    ],
)
def test_a_step_record_with_a_bad_field_is_skipped_with_a_warning(tmp_path, bad):
    steps = [_step(n) for n in range(1, 11)]
    steps[5] = {**steps[5], **bad}
    run = _run_dir(tmp_path, {0: [_rank(0, 1), *steps, {"type": "end"}]})
    done = ddlprof("report", "--no-store", "--json", str(run))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout, parse_constant=lambda c: pytest.fail(f"{c} in summary.json"))
    assert result["steps"]["recorded"] == 9 and result["job"]["step_ms"] == 10.0
    assert "1 record(s) with a bad field skipped" in done.stderr


def test_a_warmup_that_leaves_no_steady_step_is_one_line(tmp_path):
    run = _run_dir(tmp_path, {0: _ended(0, 1, steps=10)})
    _one_line_error(
        ddlprof("report", "--no-store", "--warmup", "1000000", str(run)), "no steady step", "rank 0"
    )
    # all the steps after the warm-up traced: none is steady either
    steps = [{**_step(n), "traced": n > 3} for n in range(1, 11)]
    run = _run_dir(tmp_path / "traced", {0: [_rank(0, 1), *steps]})
    _one_line_error(ddlprof("report", "--no-store", "--warmup", "3", str(run)), "no steady step")


@pytest.mark.parametrize(
    "spoil",
    [
        lambda text: b"",
        lambda text: text.encode()[:50],
        lambda text: bytes(range(256)) * 4,
    ],
    ids=["empty", "cut-to-50-bytes", "random-bytes"],
)
def test_a_broken_rank_file_is_named_and_the_others_still_report(tmp_path, spoil):
    run = _run_dir(tmp_path, {0: _ended(0, 2), 1: _ended(1, 2)})
    rank1 = run / "ranks" / "rank-1.jsonl"
    rank1.write_bytes(spoil(rank1.read_text()))
    done = ddlprof("report", "--no-store", "--json", str(run))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    jsonschema.validate(result, SCHEMA)
    assert [r["rank"] for r in result["ranks"]] == [0] and result["job"]["step_ms"] == 10.0
    assert "warning: rank 1:" in done.stderr and "rank-1.jsonl" in done.stderr
    assert {"rank": 1, "problem": "unreadable rank file (no rank header)"} in result["missing_ranks"]


def test_verdict_and_recommendations_in_text_json_and_html(tmp_path):
    """Every rank waits 6 of 10 ms for data: the three outputs give the verdict and the workers."""
    ranks = {
        r: [_rank(r), *[_step(n, data=6.0, exposed=0.5) for n in range(1, 11)], {"type": "end"}]
        for r in (0, 1)
    }
    run = _run_dir(tmp_path, ranks)
    html = tmp_path / "report.html"
    table = ddlprof("report", "--no-store", "--html", str(html), str(run))
    assert table.returncode == 0, table.stderr
    after_table = table.stdout.split("└", 1)[1]
    assert "verdict: input-bound: data stall 6.0 ms = 60% of the step" in after_table
    assert "predicted step: 4.0 ms" in after_table
    result = json.loads(ddlprof("report", "--no-store", "--json", str(run)).stdout)
    (top,) = result["diagnosis"]["recommendations"]
    assert top["rule"] == "input_bound" and top["predicted_step_ms"] == 4.0
    assert "input-bound: data stall 6.0 ms = 60% of the step" in html.read_text()
