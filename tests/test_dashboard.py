"""The dashboard's pages under Streamlit's AppTest: no exception, the expected widgets, and the
numbers of the CLI (``ddlprof report --json``, ``ddlprof model evaluate --json``) for the same input."""

from __future__ import annotations

import base64
import json
import shlex
import socket
import tarfile
from datetime import UTC, datetime

import numpy as np
import pytest
from conftest import REPO, as_unprivileged, ddlprof, summary
from dashboard_runs import broken_runs, copy_run, real_run, skewed_run, straggler_run, waited_run
from streamlit.testing.v1 import AppTest

from ddlprof.dashboard import data, shared
from ddlprof.runs.energy import energy_line

APP = str(REPO / "ddlprof" / "dashboard" / "app.py")
GPU_RUNS = REPO / "benchmarks" / "results" / "gpu-2xh200" / "runs.tgz"


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    """A runs directory: a real wrapped job, a copy of it two levels down (as ``ddlprof stalls``
    places its variants), a hand-made straggler run with GPU counters, and two broken ones."""
    root = tmp_path_factory.mktemp("runs")
    real = real_run(root / "real")
    copy_run(real, root / "sweep" / "one_node" / "r0", "sweep-r0")
    straggler_run(root / "straggler")
    skewed_run(root / "skewed")
    broken = broken_runs(root)
    return root, broken


@pytest.fixture
def app(monkeypatch):
    def start(root, page: str | None = None) -> AppTest:
        monkeypatch.setenv(data.RUNS_ENV, str(root))
        at = AppTest.from_file(APP, default_timeout=120).run()
        if page:
            at.switch_page(f"views/{page}.py").run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return start


def _frame(at: AppTest, key: str):
    """The data of the table the page shows under ``key`` (``shared.table``)."""
    return at.get_by_key(key).dataframe[0].value


def _shown(at: AppTest, key: str):
    """The text the grid draws for the table under ``key``, where the page passes a Styler (its display
    values; the data, which a double-click on a cell shows, is ``_frame``)."""
    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

    proto = at.get_by_key(key).dataframe[0].proto
    assert proto.arrow_data.HasField("styler"), f"{key}: no display values"
    return convert_arrow_bytes_to_pandas_df(proto.arrow_data.styler.display_values)


def _config(at: AppTest, key: str) -> tuple[dict, str]:
    """The column configs (by column) and the missing-value text of the table under ``key``."""
    proto = at.get_by_key(key).dataframe[0].proto
    return json.loads(proto.columns), proto.placeholder


def _titles(at: AppTest) -> list[str]:
    return [t.value for t in at.title]


def test_runs_page_lists_every_run_with_the_reports_numbers(runs_root, app):
    root, broken = runs_root
    at = app(root)
    assert _titles(at) == ["Runs"]
    assert at.sidebar.text_input(key="runs_dir").value == str(root)
    table = _frame(at, "runs_table")
    assert list(table["run"]) == ["real", "skewed", "straggler", "sweep/one_node/r0"]
    for name in ("real", "straggler"):
        expected = summary(root / name, "--no-store")
        row = table[table["run"] == name].iloc[0]
        for key in ("step_ms", "compute_ms", "data_stall_ms", "interconnect_stall_ms", "other_ms"):
            assert row[key] == expected["job"][key], key  # the breakdown, not only the total
        assert row["throughput_samples_per_s"] == expected["job"]["throughput_samples_per_s"]
        assert row["verdict"] == expected["diagnosis"]["verdict"]
    real = table[table["run"] == "real"].iloc[0]
    manifest = json.loads((root / "real" / "manifest.json").read_text())
    assert real["model"] == "Sequential" and real["where"] == "2 x cpu, 1 node(s)"
    assert real["command"] == shlex.join(manifest["command"]) and "ddp_train.py" in real["command"]
    # the grid draws it from the script on, in the narrow column; the cell keeps it whole (double-click)
    shown = _shown(at, "runs_table").set_index("run")
    assert shown.loc["real", "command"] == "… ddp_train.py --steps 20"
    assert shown.loc["straggler", "command"] == shared.MISSING  # a hand-made run has no command
    assert "double-click" in _config(at, "runs_table")[0]["command"]["help"]
    when = datetime.fromtimestamp(manifest["created_unix"], UTC)
    assert real["date"] == when.strftime("%Y-%m-%d %H:%M")
    assert table[table["run"] == "straggler"].iloc[0]["verdict"] == "straggler"
    # the broken directories are listed with their errors; the good ones still show
    errors = _frame(at, "broken_table")
    assert sorted(errors["run"]) == sorted(broken)
    for name, word in broken.items():
        assert word in errors[errors["run"] == name].iloc[0]["error"]
    assert "2 run directories could not be read" in [s.value for s in at.subheader]


def test_runs_page_shows_one_run_in_detail(runs_root, app):
    root, _ = runs_root
    at = app(root)
    assert at.selectbox(key="run").options == ["real", "skewed", "straggler", "sweep/one_node/r0"]
    expected = summary(root / "real", "--no-store")
    at.selectbox(key="run").set_value("real").run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["step time"] == f"{expected['job']['step_ms']:.2f} ms"
    assert metrics["ranks"] == "2" and metrics["nodes"] == "1"
    breakdown = _frame(at, "breakdown_table")
    assert list(breakdown["rank"]) == ["0", "1", "job"]
    assert list(breakdown["step_ms"]) == [r["step_ms"] for r in expected["ranks"]] + [
        expected["job"]["step_ms"]
    ]
    for key in ("breakdown", "step_breakdown", "timeline"):
        assert at.get_by_key(key).type == "plotly_chart"
    assert any("No GPU counters" in c.value for c in at.caption)
    assert any(c.value.startswith("energy: n/a (the job ran on the CPU") for c in at.caption)
    # what the run was: its date, command, torch and backend, probe, workload and precision
    context = at.get_by_key("run_context").table[0].value["this run"]
    manifest = json.loads((root / "real" / "manifest.json").read_text())
    header = json.loads((root / "real" / "ranks" / "rank-0.jsonl").read_text().splitlines()[0])
    assert context["command"] == shlex.join(manifest["command"])
    assert context["torch"] == header["torch"] and context["backend"] == "gloo"
    probe = expected["probes"]["0"]["intra"]
    assert context["probe"].startswith(f"within a node {probe['busbw_gbps']:g} GB/s")
    assert context["workload"].startswith("Sequential, ") and context["precision"] == "fp32"
    # no trace (--trace-steps 0): it says so; summary.json and the report to download
    assert any("No trace in this run" in c.value for c in at.caption)
    download = at.get_by_key("download_summary")
    assert download.proto.label == "Download summary.json"
    assert at.get_by_key("download_html").proto.label == "Download the HTML report"

    # the verdict first, as the report words it
    assert at.info[0].value == f"**Verdict:** {expected['diagnosis']['sentence']}"
    # the data stall in its parts: fetch (blocked), prep (CPU) and other, in the report's words
    job = expected["job"]
    split = _frame(at, "data_split")
    assert list(split["rank"]) == ["0", "1", "job"]
    for key in ("data_stall_ms", "data_fetch_ms", "data_prep_ms", "data_other_ms"):
        assert list(split[key]) == [r[key] for r in expected["ranks"]] + [job[key]], key
    said = (
        f"Data stall {job['data_stall_ms']:.1f} ms = fetch {job['data_fetch_ms']:.1f} (blocked on storage) "
        f"+ prep {job['data_prep_ms']:.1f} (CPU) + other {job['data_other_ms']:.1f}; rank "
    )
    assert any(c.value.startswith(said) and "0 DataLoader worker(s)" in c.value for c in at.caption)

    at.selectbox(key="run").set_value("straggler").run()
    assert not at.exception
    assert not any(c.value.startswith("Data stall") for c in at.caption)  # no batch costs: no split
    expected = summary(root / "straggler", "--no-store")
    assert expected["diagnosis"]["verdict"] == "straggler"
    assert at.info[0].value == f"**Verdict:** {expected['diagnosis']['sentence']}"
    top = expected["diagnosis"]["recommendations"][0]
    assert any(f"**1. {top['limit']}**: {top['action']}" in m.value for m in at.markdown)
    assert [s["rank"] for s in expected["stragglers"]] == [1]
    stragglers = _frame(at, "stragglers")
    assert list(stragglers["rank"]) == [1] and list(stragglers["cause"]) == ["compute"]
    assert at.get_by_key("gpu_timeline").type == "plotly_chart"
    gpus = _frame(at, "gpu_table")
    assert list(gpus["gpu"]) == [0, 1]
    assert list(gpus["util_pct median"]) == [g["util_pct"]["median"] for g in expected["gpus"]]
    assert expected["energy"]["method"] == "nvml_energy_counter"  # both ranks ran on GPU 0: 250 W
    assert expected["energy"]["joules_per_step"] == pytest.approx(250.0 * expected["job"]["step_ms"] / 1e3)
    assert any(c.value == energy_line(expected["energy"]) for c in at.caption)


def test_runs_page_shows_skew_between_ranks_without_a_straggler(runs_root, app):
    """Rank 0 waits longer for data, so rank 1 waits longer in the all-reduce: no straggler, but the page
    says how the ranks differ (the issue's run that showed a plain green "No straggler")."""
    root, _ = runs_root
    expected = summary(root / "skewed", "--no-store")
    assert expected["stragglers"] == []
    at = app(root)
    at.selectbox(key="run").set_value("skewed").run()
    assert not at.exception
    warnings = [w.value for w in at.warning]
    assert any(
        "the ranks differ" in w
        and "rank 1 waits on the interconnect 16.0 ms a step against rank 0's 10.0" in w
        and "rank 0 waits for data 10.0 ms a step against rank 1's 1.0" in w
        for w in warnings
    ), warnings
    assert not at.success  # no green "No straggler" box
    skew = _frame(at, "skew_table")
    assert set(skew["category"]) == {"interconnect stall", "data stall"}


def test_runs_page_splits_the_wait_for_a_slow_rank_from_the_wire(tmp_path, app):
    """Rank 1's data makes rank 0 wait 30 ms of its 31 ms of exposed communication (``waited_run``): the
    page shows the wait as a column of its own, the stalls as the 1 ms on the wire, and the wait charged
    to rank 1 for its data; a run without arrival times (GPU-like records) says why it has no split."""
    waited_run(tmp_path / "waited")
    straggler_run(tmp_path / "gpu")
    at = app(tmp_path)
    at.selectbox(key="run").set_value("waited").run()
    assert not at.exception
    breakdown = _frame(at, "breakdown_table")
    assert list(breakdown["wait_for_peers_ms"]) == pytest.approx([30.0, 0.0, 15.0])
    assert list(breakdown["interconnect_stall_ms"]) == pytest.approx([1.0, 1.0, 1.0])
    said = at.get_by_key("wait_charged").markdown[0].value
    assert "rank 1 15.00 ms (straggler, data)" in said and "wait for peers 15.00 ms per step" in said
    stragglers = _frame(at, "stragglers")
    assert list(stragglers["rank"]) == [1] and list(stragglers["caused_wait_ms"]) == pytest.approx([30.0])

    at.selectbox(key="run").set_value("gpu").run()
    assert not at.exception
    with pytest.raises(KeyError):  # no charge to show
        at.get_by_key("wait_charged")
    assert any(c.value.startswith("**wait for peers**: no arrival times") for c in at.caption)


def test_runs_page_shows_the_local_dataset_of_the_runs_directory(runs_root, app, tmp_path):
    root, _ = runs_root
    done = ddlprof("report", str(root / "real"))  # adds the run to $DDLPROF_HOME/dataset.sqlite
    assert done.returncode == 0, done.stderr
    elsewhere = copy_run(root / "real", tmp_path / "elsewhere", "elsewhere")
    done = ddlprof("report", str(elsewhere))  # a run outside the runs directory
    assert done.returncode == 0, done.stderr
    at = app(root)
    rows = _frame(at, "store_table")
    assert list(rows["run_dir"]) == [str(root / "real")]  # only the runs under --runs
    reported = summary(root / "real", "--no-store")
    assert rows.iloc[0]["step_ms"] == reported["job"]["step_ms"]
    assert rows.iloc[0]["model"] == "Sequential" and rows.iloc[0]["world_size"] == 2
    # a CPU job has no GPU name: the grid shows MISSING (not a grey None), and the header's help says why
    assert rows.iloc[0]["gpu"] is None
    columns, placeholder = _config(at, "store_table")
    assert placeholder == shared.MISSING and "for a job on CPUs" in columns["gpu"]["help"]
    at.toggle(key="store_everywhere").set_value(True).run()  # unless asked
    assert not at.exception
    assert sorted(_frame(at, "store_table")["run_dir"]) == sorted([str(root / "real"), str(elsewhere)])


@pytest.mark.parametrize("kind", ["empty", "missing", "file"])
def test_runs_page_without_runs_says_how_to_make_one(tmp_path, app, kind):
    root = tmp_path / "runs"
    if kind == "empty":
        root.mkdir()
    elif kind == "file":
        root.write_text("not a directory")
    at = app(root)
    assert [c.value for c in at.code] == [data.EXAMPLE_COMMAND]
    assert at.info and "No runs" in at.info[0].value
    warnings = [w.value for w in at.warning]
    if kind == "missing":
        assert any("no such directory" in w for w in warnings)
    elif kind == "file":
        assert any("not a directory" in w for w in warnings)
    else:
        assert warnings == []
    assert "Local dataset" in [s.value for s in at.subheader]


def test_runs_page_on_an_unreadable_directory(tmp_path, app):
    root = tmp_path / "runs"
    root.mkdir()
    root.chmod(0)
    try:
        warnings = as_unprivileged(lambda: [w.value for w in app(root).warning])
    finally:
        root.chmod(0o755)
    assert any("unreadable" in w for w in warnings)


def test_the_example_command_is_the_readmes():
    assert data.EXAMPLE_COMMAND in (REPO / "README.md").read_text()


def test_compare_page_puts_runs_side_by_side(runs_root, app):
    root, _ = runs_root
    at = app(root, "compare")
    assert _titles(at) == ["Compare"]
    picker = at.multiselect(key="compare_runs")
    assert picker.options == ["real", "skewed", "straggler", "sweep/one_node/r0"]
    assert picker.value == ["straggler", "sweep/one_node/r0"]
    picker.set_value(["straggler", "real"]).run()  # clicked in this order: shown in the runs' order
    assert not at.exception
    assert at.multiselect(key="compare_runs").value == ["real", "straggler"]
    table = _frame(at, "compare_table")
    assert list(table["label"]) == ["real", "straggler"]
    jobs = {name: summary(root / name, "--no-store")["job"] for name in ("real", "straggler")}
    for name, job in jobs.items():
        row = table[table["label"] == name].iloc[0]
        for key in ("step_ms", "compute_ms", "interconnect_stall_ms", "throughput_samples_per_s"):
            assert row[key] == job[key], key
        assert row["source"] == f"measured: {root / name}"
    for key in ("compare_breakdown", "compare_throughput", "compare_ranks"):
        assert at.get_by_key(key).type == "plotly_chart"
    at.toggle(key="compare_share").set_value(True).run()
    assert not at.exception

    # the differences against the baseline: the first run picked, kept while it is compared; or chosen
    assert at.selectbox(key="compare_baseline").value == "straggler"
    assert _frame(at, "compare_differences").iloc[0]["item"] == "real"
    at.selectbox(key="compare_baseline").set_value("real").run()
    diff = _frame(at, "compare_differences").set_index("category")
    base, other = jobs["real"], jobs["straggler"]
    step = diff.loc["step"]
    assert step["item"] == "straggler" and step["baseline_ms"] == base["step_ms"]
    assert step["difference_ms"] == pytest.approx(other["step_ms"] - base["step_ms"])
    assert step["difference_pct"] == pytest.approx(
        100 * (other["step_ms"] - base["step_ms"]) / base["step_ms"]
    )
    assert step["speed_up"] == pytest.approx(base["step_ms"] / other["step_ms"])
    compute = diff.loc["compute"]
    assert compute["difference_ms"] == pytest.approx(other["compute_ms"] - base["compute_ms"])
    # no base for a % (one node: no network stall in either): MISSING, not a grey None, and the help says why
    network = diff.loc["network stall"]
    assert network["baseline_ms"] == 0 and np.isnan(network["difference_pct"])
    columns, placeholder = _config(at, "compare_differences")
    assert placeholder == shared.MISSING and "no base" in columns["difference_pct"]["help"]
    # a measured run has no price per hour
    assert table["usd_per_hour"].isna().all()
    columns, placeholder = _config(at, "compare_table")
    assert placeholder == shared.MISSING and "a run records no price" in columns["usd_per_hour"]["help"]
    ratio = other["throughput_samples_per_s"] / base["throughput_samples_per_s"]
    assert any(
        m.value.startswith(f"**straggler** against **real**: {ratio:.2f}x the throughput")
        for m in at.markdown
    )

    # the settings side by side, those that differ first
    settings = _frame(at, "compare_settings").set_index("setting")
    assert settings.loc["model", "real"] == "Sequential" and settings.loc["backend", "real"] == "gloo"
    assert list(settings["differs"]) == list(settings["real"] != settings["straggler"])
    assert settings.loc["command", "differs"]  # the hand-made run has no command line
    assert list(settings["differs"]) == sorted(settings["differs"], reverse=True)

    # the selection and the baseline survive a visit to another page
    at.switch_page("views/runs.py").run()
    at.switch_page("views/compare.py").run()
    assert not at.exception
    assert at.multiselect(key="compare_runs").value == ["real", "straggler"]
    assert at.selectbox(key="compare_baseline").value == "real"
    at.multiselect(key="compare_runs").set_value([]).run()
    assert not at.exception and "Pick runs above." in [c.value for c in at.caption]


def test_short_command_starts_at_the_script():
    assert data.short_command("torchrun --nproc_per_node=2 --standalone /src/a/train.py --steps 20") == (
        "… train.py --steps 20"
    )
    assert data.short_command("python -m torch.distributed.run --nproc_per_node 2 train.py") == "… train.py"
    assert data.short_command("python3 'my dir/t.py' --name 'a b'") == "… t.py --name 'a b'"
    assert data.short_command("train.py --steps 2") == "train.py --steps 2"  # already short
    assert data.short_command("torchrun -m pkg.train") == "torchrun -m pkg.train"  # no script
    assert data.short_command("torchrun 'open.py") == "torchrun 'open.py"  # a shell cannot split it
    assert data.short_command(None) is None


def test_command_diff_names_what_changed():
    assert data.command_diff("torchrun a.py --steps 30", "torchrun a.py --steps 40 --workers 2") == (
        "--steps 30 -> --steps 40 --workers 2"
    )
    assert data.command_diff("python a.py --amp", "python a.py") == "- --amp"
    assert data.command_diff("python a.py", "python a.py") == "the same command"


def test_compare_page_without_runs(tmp_path, app):
    at = app(tmp_path, "compare")
    assert "No readable run" in at.info[0].value


def test_models_page_has_the_errors_of_model_evaluate(tmp_path, app):
    done = ddlprof("model", "evaluate", "--json")
    assert done.returncode == 0, done.stderr
    expected = json.loads(done.stdout)
    at = app(tmp_path, "models")
    assert _titles(at) == ["Models"]
    table = at.table[0].value
    labels = {
        "step_ms": "step time",
        "interconnect_stall_ms": "interconnect stall",
        "network_stall_ms": "network stall",
    }
    assert list(table.index) == [labels[t] for t in expected["targets"]]  # words, not the JSON's keys
    for target, entry in expected["targets"].items():
        row = table.loc[labels[target]]
        assert row["rows"] == entry["rows"] and row["models"] == entry["models"]
        if not entry["evaluable"]:
            assert row["note"] == entry["reason"]
            continue
        for name in ("baseline", "learned"):
            assert row[f"{name} MAE ms"] == pytest.approx(entry[name]["mae_ms"], rel=1e-12)
            assert row[f"{name} max error ms"] == pytest.approx(entry[name]["max_abs_error_ms"], rel=1e-12)
            if entry[name]["mape_pct"] is not None:
                assert row[f"{name} MAPE %"] == pytest.approx(entry[name]["mape_pct"], rel=1e-12)
        assert bool(row["learned better"]) == entry["learned_beats_baseline"]
    step = expected["targets"]["step_ms"]
    assert any(f"learned **{step['learned']['mape_pct']:.1f}%**" in m.value for m in at.markdown)
    # the shipped rows are single-node: the step time's errors in ms are the interconnect stall's, and
    # the page says why
    interconnect = expected["targets"]["interconnect_stall_ms"]
    for name in ("baseline", "learned"):
        assert step[name]["mae_ms"] == pytest.approx(interconnect[name]["mae_ms"], rel=1e-9)
    assert any("Why the step time and interconnect stall rows agree" in i.value for i in at.info)
    assert any("None of your reported runs is in the chart" in c.value for c in at.caption)
    radio = at.radio(key="models_target")
    assert radio.options == ["step time", "interconnect stall"]  # the network stall is not evaluable
    assert at.get_by_key("models_scatter").type == "plotly_chart"
    radio.set_value("interconnect_stall_ms").run()
    assert not at.exception
    rows = _frame(at, "models_rows")
    assert len(rows) == expected["rows"]
    assert list(rows)[5:] == ["interconnect stall ms", "baseline: predicted interconnect stall ms",
                              "learned: predicted interconnect stall ms"]  # fmt: skip
    assert not [c for c in rows if "_" in c]  # no raw key as a header


def test_models_page_draws_the_users_own_runs(runs_root, app):
    """A reported run with what the models need (its single-GPU step, as ``ddlprof stalls`` records it)
    is drawn as a point of its own; the errors then no longer agree row for row, and the page says nothing
    of it."""
    from ddlprof.runs import store

    root, _ = runs_root
    reported = summary(root / "real", "--no-store")
    for rank in reported["ranks"]:  # as if on a GPU: a CPU run is not learned from (test_stall_models)
        rank["device"] = "NVIDIA H200"
    single = reported["job"]["step_ms"] - reported["job"]["interconnect_stall_ms"] - 1.0
    assert store.record_run(reported, [root / "real"], measured={"single_gpu_step_ms": single})
    at = app(root, "models")
    spec = json.loads(at.get_by_key("models_scatter").proto.spec)
    yours = [t for t in spec["data"] if t.get("name", "").startswith("your runs")]
    assert [t["name"] for t in yours] == ["your runs (baseline)", "your runs (learned)"]
    x = yours[0]["x"]  # plotly sends arrays as base64 of their bytes
    assert list(np.frombuffer(base64.b64decode(x["bdata"]), dtype=x["dtype"])) == [
        pytest.approx(reported["job"]["step_ms"])
    ]
    assert any("your 1 reported run(s)" in c.value for c in at.caption)
    assert not any("Why the step time" in i.value for i in at.info)
    at.radio(key="models_target").set_value("interconnect_stall_ms").run()
    rows = _frame(at, "models_rows")
    assert list(rows["source"]).count("your run") == 1


def test_dashboard_cli_refuses_a_port_in_use_in_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = ddlprof("dashboard", "--runs", str(tmp_path), "--port", str(port), timeout=60)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert f"port {port} on 127.0.0.1 is in use" in done.stderr


@pytest.mark.parametrize(
    "args, words",
    [
        (["--port", "70000"], "--port: 70000 is outside the allowed range: from 1 to 65,535"),
        (["--host", "192.0.2.1"], "cannot listen there"),
    ],
)
def test_dashboard_cli_bad_address_in_one_line(tmp_path, args, words):
    done = ddlprof("dashboard", "--runs", str(tmp_path), *args, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and words in done.stderr, done.stderr


def test_html_report_draws_the_same_gpu_counters(runs_root, tmp_path):
    """``ddlprof report --html`` and the Runs page share ``ddlprof/figures.py``."""
    root, _ = runs_root
    html = tmp_path / "report.html"
    done = ddlprof("report", "--no-store", "--html", str(html), str(root / "straggler"))
    assert done.returncode == 0, done.stderr
    text = html.read_text()
    for title in ("GPU counters (NVML)", "utilisation %", "memory used MiB", "power W", "traffic MB"):
        assert title in text, title


def _advise_cli(*args: str) -> dict:
    """``ddlprof advise --json`` with the same DDLPROF_HOME as the page (the autouse fixture's)."""
    done = ddlprof("advise", *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _advise_page(at: AppTest, budget: float | None = None, deadline: float | None = None) -> AppTest:
    if budget is not None:
        at.number_input(key="advisor_budget").set_value(budget)
    if deadline is not None:
        at.number_input(key="advisor_deadline").set_value(deadline)
    at.button(key="advisor_submit").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_advisor_page_has_the_advise_form(tmp_path, app):
    at = app(tmp_path, "advisor")
    assert _titles(at) == ["Advisor"]
    model = at.selectbox(key="advisor_model")
    assert model.value == "resnet50" and "bert-base" in model.options and "vit_b_16" in model.options
    assert at.number_input(key="advisor_batch").value is None  # the largest that fits each GPU
    precision = at.selectbox(key="advisor_precision")
    assert precision.value == "amp" and {"tf32", "fp32", "bf16", "fp16"} <= set(precision.options)
    assert at.number_input(key="advisor_max_nodes").value == 4
    assert at.number_input(key="advisor_budget").value is None
    assert at.number_input(key="advisor_deadline").value is None
    assert at.radio(key="advisor_spot").options == ["both", "spot only", "on-demand only"]
    assert at.multiselect(key="advisor_clouds").value == ["aws", "gcp"]
    regions = at.multiselect(key="advisor_regions")
    assert regions.value == [] and "us-east-1" in regions.options and "us-central1" in regions.options
    assert "Fill in the form" in at.info[0].value


def test_advisor_page_ranks_as_the_cli_does(tmp_path, app):
    expected = _advise_cli("--model", "resnet50", "--budget", "100")
    at = _advise_page(app(tmp_path, "advisor"), budget=100.0)
    table = _frame(at, "advisor_table")
    options = expected["options"]
    assert len(table) == len(options) > 3
    for (_, row), option in zip(table.iterrows(), options, strict=True):
        for key in ("rank", "instance_type", "region", "count", "spot", "pareto"):
            assert row[key] == option[key], key
        assert f"{row['total_cost_usd']:.2f}" == f"{option['total_cost_usd']:.2f}"
        assert row["usd_per_million_samples"] == option["usd_per_million_samples"]
    assert any(expected["top_choice"] in s.value for s in at.success)
    for key in ("advisor_scatter", "advisor_cost_bars"):
        assert at.get_by_key(key).type == "plotly_chart"
    assert len(_frame(at, "advisor_excluded")) == len(expected["excluded"])
    # the CLI's warnings (the catalog's age among them) as warnings, not small grey text
    warnings = [w.value for w in at.warning]
    assert expected["warnings"] and all(w in warnings for w in expected["warnings"]), warnings
    assert any("prices may have changed" in w for w in warnings)
    # every field of the options: the ranked table and the prices table (so that both fit the page)
    prices = _frame(at, "advisor_prices")
    assert list(prices["usd_per_instance_hour"]) == [o["usd_per_instance_hour"] for o in options]
    assert list(prices["price_date"]) == [o["price_date"] for o in options]
    assert "over_budget_usd" not in table  # no option is over the budget
    # the launch spec is --emit's for the same input, its long run: line wrapped, not cut
    spec = ddlprof("advise", "--model", "resnet50", "--budget", "100", "--emit", "skypilot")
    assert spec.returncode == 0, spec.stderr
    assert [c.value for c in at.code] == [spec.stdout.rstrip("\n")]
    assert at.code[0].proto.wrap_lines
    assert at.get_by_key("advisor_torchrun") is not None and at.get_by_key("advisor_skypilot") is not None


def test_advisor_page_advises_from_a_measured_run(tmp_path, app):
    """``ddlprof advise --run``: a run under the runs directory, picked in the form (the H200 run of the
    shipped dataset: CPU runs have no GPU step to scale)."""
    root = tmp_path / "runs"
    with tarfile.open(GPU_RUNS) as archive:
        members = [
            m
            for m in archive.getmembers()
            if m.name.startswith("runs/resnet50-nvlink/") and "/traces/" not in m.name
        ]
        archive.extractall(root, members=members, filter="data")
    run = root / "runs" / "resnet50-nvlink"
    skewed_run(root / "cpu")
    expected = _advise_cli("--run", str(run), "--model", "resnet50")
    at = app(root, "advisor")
    assert at.selectbox(key="advisor_run").options[1:] == ["cpu", "runs/resnet50-nvlink"]
    at.selectbox(key="advisor_run").set_value("runs/resnet50-nvlink")
    table = _frame(_advise_page(at), "advisor_table")
    assert list(table["instance_type"]) == [o["instance_type"] for o in expected["options"]]
    assert list(table["step_source"]) == [o["step_source"] for o in expected["options"]]
    assert list(table["step_ms"]) == pytest.approx([o["step_ms"] for o in expected["options"]], rel=1e-3)
    assert expected["assumptions"]["step_time"]["basis"] == "run"
    from_model = _advise_cli("--model", "resnet50")["options"]  # not what the page gives: the run counts
    assert [o["step_ms"] for o in from_model] != pytest.approx(list(table["step_ms"]), rel=1e-3)
    assert any(expected["top_choice"] in s.value for s in at.success)
    # a CPU run has no GPU step to scale: the page says so in one line, as the CLI does
    at.selectbox(key="advisor_run").set_value("cpu")
    at = _advise_page(at)
    assert [e.value for e in at.error] == [
        f"{root / 'cpu'}: the run has no steady step time on a GPU; advise needs a GPU run"
    ]
    with pytest.raises(KeyError):
        at.get_by_key("advisor_table")


def test_advisor_page_filters_as_the_cli_does(tmp_path, app):
    expected = _advise_cli(
        "--model", "bert-base", "--clouds", "aws", "--no-spot", "--max-nodes", "2", "--batch-per-gpu", "64",
        "--precision", "tf32",
    )  # fmt: skip
    at = app(tmp_path, "advisor")
    at.selectbox(key="advisor_model").set_value("bert-base")
    at.multiselect(key="advisor_clouds").set_value(["aws"])
    at.radio(key="advisor_spot").set_value("on-demand only")
    at.number_input(key="advisor_max_nodes").set_value(2)
    at.number_input(key="advisor_batch").set_value(64)
    at.selectbox(key="advisor_precision").set_value("tf32")
    table = _frame(_advise_page(at), "advisor_table")
    assert list(table["instance_type"]) == [o["instance_type"] for o in expected["options"]]
    assert set(table["precision"]) == {"tf32"} and set(table["batch_per_gpu"]) == {64}
    assert list(table["step_ms"]) == pytest.approx([o["step_ms"] for o in expected["options"]], rel=1e-3)
    assert list(table["count"]) == [o["count"] for o in expected["options"]]
    assert set(table["cloud"]) == {"aws"} and not table["spot"].any() and table["count"].max() <= 2


def test_advisor_page_over_budget(tmp_path, app):
    expected = _advise_cli("--model", "resnet50", "--budget", "1")
    assert not expected["met_constraints"]
    at = _advise_page(app(tmp_path, "advisor"), budget=1.0)
    warnings = [w.value for w in at.warning]
    assert any("No option meets the $1 budget" in w for w in warnings), warnings
    assert expected["top_choice"] in warnings
    table = _frame(at, "advisor_table")
    assert list(table["over_budget_usd"][:3]) == [o["over_budget_usd"] for o in expected["options"][:3]]
    with pytest.raises(KeyError):
        at.get_by_key("advisor_torchrun")  # nothing to launch
    assert not at.code


def test_compare_page_shows_the_advisors_options(runs_root, app):
    root, _ = runs_root
    at = _advise_page(app(root, "advisor"), budget=100.0)
    picked = at.multiselect(key="advisor_picked").value
    assert len(picked) == 3
    at.switch_page("views/compare.py").run()
    assert not at.exception, [e.value for e in at.exception]
    table = _frame(at, "compare_table")
    options = table[table["kind"] == "option"]
    assert list(options["label"]) == picked
    expected = _advise_cli("--model", "resnet50", "--budget", "100")["options"][0]
    top = options.iloc[0]
    assert top["throughput_samples_per_s"] == expected["throughput_samples_per_s"]
    assert top["step_ms"] == expected["step_ms"]
    assert top["usd_per_hour"] == pytest.approx(expected["usd_per_instance_hour"] * expected["count"])
    assert "stall model" in top["source"] and "catalog snapshot" in top["source"]
    assert len(table[table["kind"] == "run"]) == 2  # the runs picked by default
    # resnet50 on cloud GPUs is not the runs' model (Sequential on CPUs): drawn apart, with a warning
    assert any("predictions for resnet50" in w.value and "Sequential" in w.value for w in at.warning)
    for key in ("compare_options_scatter", "compare_options_cost_bars", "compare_options_breakdown"):
        assert at.get_by_key(key).type == "plotly_chart"
    assert set(at.selectbox(key="compare_baseline").options) == {"straggler", "sweep/one_node/r0"}
    with pytest.raises(KeyError):
        at.get_by_key("compare_scatter")  # no option beside the runs


def test_skew_ignores_figures_no_float_holds():
    """Found by the fuzz suite: a summary that passes its schema may hold an integer too large for a
    float, which stopped the Runs page."""
    from ddlprof.dashboard.data import skew

    summary = {"job": {"step_ms": 15.0}, "ranks": [{"rank": 0, "compute_ms": 10**400}, {"rank": 1}]}
    assert skew(summary) == []
