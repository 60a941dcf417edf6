"""``ddlprof stalls`` on CPU (gloo): the variants run, stop after the asked steps, and the arithmetic."""

from __future__ import annotations

import json
import time

import pytest
from conftest import EXAMPLE, ddlprof, summary

pytestmark = pytest.mark.e2e


def _stalls(tmp_path, *args: str, script: list[str] | None = None):
    out = tmp_path / "stalls"
    job = ["torchrun", "--nproc_per_node=2", *(script or [str(EXAMPLE)])]
    options = ["--steps", "4", "--warmup", "2", "--timeout", "150", "--json", "--out", str(out)]
    done = ddlprof("stalls", *options, *args, "--", *job)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert json.loads((out / "stalls.json").read_text()) == result
    return result, out


def _steps(run) -> list[int]:
    records = [
        json.loads(x) for f in sorted((run / "ranks").glob("*.jsonl")) for x in f.read_text().splitlines()
    ]
    return sorted({r["step"] for r in records if r["type"] == "step"})


def test_single_node_variants_and_arithmetic(tmp_path):
    result, out = _stalls(tmp_path, "--repeats", "2")
    one_gpu, one_node = result["variants"]["one_gpu"], result["variants"]["one_node"]
    assert len(one_gpu["repeats_ms"]) == len(one_node["repeats_ms"]) == 2
    for name, variant in result["variants"].items():
        for repeat, ms in enumerate(variant["repeats_ms"]):
            run = out / name / f"r{repeat}"
            assert _steps(run) == [1, 2, 3, 4, 5, 6]  # warm-up 2 + 4 steps, then the ranks stop
            assert summary(run, "--warmup", "2")["job"]["step_ms"] == pytest.approx(ms)
    assert summary(out / "one_gpu" / "r0")["world_size"] == 1
    assert summary(out / "one_node" / "r0")["world_size"] == 2
    stall = result["interconnect_stall"]
    assert stall["ms"] == pytest.approx(one_node["step_ms"] - one_gpu["step_ms"])
    pairs = [a - b for a, b in zip(one_node["repeats_ms"], one_gpu["repeats_ms"], strict=True)]
    assert stall["spread_ms"] == pytest.approx([min(pairs), max(pairs)])
    assert stall["pct_of_step"] == pytest.approx(100 * stall["ms"] / one_node["step_ms"])
    assert result["network_stall"] is None and result["reasons"]["network"].startswith("single node")
    # the one_node runs read back by ddlprof report: single node, so all exposed comm is interconnect
    single = result["single_run"]
    reports = [summary(out / "one_node" / f"r{k}", "--warmup", "2")["job"] for k in range(2)]
    medians = sorted(100 * j["interconnect_stall_ms"] / j["step_ms"] for j in reports)
    assert single["interconnect_stall_pct"] == pytest.approx(sum(medians) / 2)
    assert single["network_stall_pct"] == 0.0
    _assert_training_row(result, out / "one_node" / "r1", one_gpu["step_ms"])


def _assert_training_row(result: dict, full_run, single_gpu_step_ms: float) -> None:
    """The full job's last run is in the local dataset with the one-GPU step, usable for training,
    and a later plain ``ddlprof report`` of the same run keeps that step (the reports above did)."""
    from ddlprof.models.dataset import training_rows
    from ddlprof.runs import store

    assert result["dataset"]["stored"] is True and result["dataset"]["run"] == str(full_run)
    rows = store.load_rows()
    row = rows[rows["run_dir"] == str(full_run.resolve())].iloc[0]
    assert row["single_gpu_step_ms"] == pytest.approx(single_gpu_step_ms)
    assert row["inter_busbw_gbps"] > 0  # the probe ran on this multi-GPU job
    # a CPU run (gloo, as here) is kept, but the stall models, of GPU jobs, do not learn from it
    assert result["dataset"]["learned"] is False
    _, info = training_rows()
    assert info["store_rows_dropped"]["a CPU run (no GPU)"] >= 1


def test_emulated_nodes_give_a_network_stall(tmp_path):
    result, out = _stalls(tmp_path, "--emulate-nodes", "2", "--repeats", "1")
    full = summary(out / "full" / "r0", "--warmup", "2")
    _assert_training_row(result, out / "full" / "r0", result["variants"]["one_gpu"]["step_ms"])
    assert full["nodes"] == 2 and full["hosts"] == ["emulated-node0", "emulated-node1"]
    assert (
        result["variants"]["one_node"]["repeats_ms"] and summary(out / "one_node" / "r0")["world_size"] == 1
    )
    network = result["network_stall"]
    assert network["ms"] == pytest.approx(
        result["variants"]["full"]["step_ms"] - result["variants"]["one_node"]["step_ms"]
    )
    assert network["pct_of_step"] == pytest.approx(
        100 * network["ms"] / result["variants"]["full"]["step_ms"]
    )


def test_a_failing_variant_is_reported_and_the_others_still_run(tmp_path):
    script = tmp_path / "needs_two.py"
    script.write_text(
        "import os, runpy, sys\n"
        "if os.environ['WORLD_SIZE'] == '1':\n    sys.exit('this job cannot run on one GPU')\n"
        f"sys.argv = [{str(EXAMPLE)!r}]\nrunpy.run_path({str(EXAMPLE)!r}, run_name='__main__')\n"
    )
    result, _ = _stalls(tmp_path, "--repeats", "1", script=[str(script)])
    assert result["variants"]["one_gpu"]["step_ms"] is None
    assert "exit codes" in result["variants"]["one_gpu"]["error"]
    assert result["variants"]["one_node"]["step_ms"] > 0
    assert result["interconnect_stall"] is None and "failed" in result["reasons"]["interconnect"]


def test_an_emulated_node_that_dies_does_not_leave_its_peer_waiting(tmp_path):
    script = tmp_path / "node_one_dies.py"
    script.write_text(
        "import os, runpy, sys\n"
        "if os.environ.get('GROUP_RANK') == '1' and os.environ.get('NCCL_HOSTID'):\n"
        "    sys.exit('node 1 is gone')\n"
        f"sys.argv = [{str(EXAMPLE)!r}]\nrunpy.run_path({str(EXAMPLE)!r}, run_name='__main__')\n"
    )
    started = time.monotonic()
    result, _ = _stalls(tmp_path, "--emulate-nodes", "2", "--repeats", "1", script=[str(script)])
    assert time.monotonic() - started < 100  # the full variant's surviving node is stopped, not waited for
    assert (
        result["variants"]["full"]["step_ms"] is None and "exit codes" in result["variants"]["full"]["error"]
    )
    assert result["network_stall"] is None and result["interconnect_stall"] is not None


def test_data_replay_takes_the_stall_away_and_the_input_cost_is_the_injected_sleep(tmp_path):
    """With no workers the loop makes each batch itself, so what the input pipeline costs a step is the
    batch's injected sleep, 4 samples x 10 ms = 40 ms, plus tens of us of sample making and collation.
    Tolerance -5 / +12 ms, from what moves the difference of the two variants' medians (of 3 runs) on
    this shared 2-core machine, where other work keeps the load average at 4 to 7:
      above 40 ms: each of the 4 sleeps a step wakes late (0.5 to 2 ms under that load), and the
        all-reduce waits each step for the later of the two ranks, so the job pays the larger overshoot;
        three runs of this test's command gave 41.8, 42.9 and 45.9 ms;
      below it only by noise: the replayed runs' steps (4 to 10 ms) move with the load from run to run.
    A small model keeps the replayed step, and so its noise, small."""
    job = [str(EXAMPLE), "--model", "mlp_w16", "--batch-size", "4", "--data-delay-ms", "10"]
    result, out = _stalls(tmp_path, "--data", "--repeats", "3", "--steps", "6", script=job)
    assert result["mode"] == "data" and set(result["variants"]) == {"launched", "replayed"}
    for repeat in range(3):
        assert _steps(out / "launched" / f"r{repeat}") == list(range(1, 9))  # warm-up 2 + 6 steps
        assert _steps(out / "replayed" / f"r{repeat}") == list(range(1, 17))  # and the 8 batches kept
    assert result["replay"]["replayed_share"] == 1.0  # every measured step's batch came from memory
    launched = result["single_run"]
    assert result["replayed_data_stall_ms"] < min(0.5, 0.02 * launched["data_stall_ms"]), result
    cost = result["input_pipeline"]
    assert 40.0 - 5.0 <= cost["ms"] <= 40.0 + 12.0, result
    times = result["variants"]
    assert cost["ms"] == pytest.approx(times["launched"]["step_ms"] - times["replayed"]["step_ms"])
    assert cost["pct_of_step"] == pytest.approx(100 * cost["ms"] / times["launched"]["step_ms"])
    # the single run agrees: the pipeline's time is all the loop's wait, and the sleep is fetch
    assert abs(launched["data_stall_ms"] - cost["ms"]) <= 10.0, result
    assert 40.0 - 5.0 <= launched["data_fetch_ms"] <= 40.0 + 12.0, result
    assert sum(launched[k] for k in ("data_fetch_ms", "data_prep_ms", "data_other_ms")) == pytest.approx(
        launched["data_stall_ms"]
    )


def test_data_replay_of_a_job_with_no_dataloader_gives_no_figure_but_the_reason(tmp_path):
    result, _ = _stalls(tmp_path, "--data", "--repeats", "1", script=[str(EXAMPLE), "--synthetic"])
    assert result["input_pipeline"] is None and result["replay"]["replayed_share"] is None
    assert "does not come through a torch DataLoader" in result["reasons"]["input_pipeline"]
    assert result["variants"]["replayed"]["step_ms"] > 0


def test_data_replay_of_a_job_too_short_for_its_kept_batches_says_how_many_steps_it_needs(tmp_path):
    job = [str(EXAMPLE), "--model", "mlp_w16", "--steps", "8"]  # replayed: 2 + 8 kept + 4 steps
    result, _ = _stalls(tmp_path, "--data", "--repeats", "1", script=job)
    assert result["variants"]["launched"]["step_ms"] > 0 and result["variants"]["replayed"]["step_ms"] is None
    assert "the job needs 14 steps" in result["variants"]["replayed"]["error"]
    assert result["input_pipeline"] is None and "failed" in result["reasons"]["input_pipeline"]


def _variant_runs(steps_ms: list[float], replayed_per_step: list[int]) -> list:
    """Runs of one variant in the runner's shape: each with 4 steps after a warm-up of 10, one batch a
    step, and ``replayed`` of those batches from memory."""
    from pathlib import Path

    from ddlprof.runs.rundir import RankLog, Run

    runs = []
    for step_ms, replayed in zip(steps_ms, replayed_per_step, strict=True):
        steps = [
            {"step": n, "loader": {"batches": 1, "replayed": int(n > 14 - replayed)}} for n in range(1, 15)
        ]
        run = Run(Path("r"), {}, [], [RankLog(rank=0, path=Path("r"), steps=steps)])
        job = {"step_ms": step_ms, "data_stall_ms": 2.0, "data_fetch_ms": 1.0, "data_prep_ms": 1.0}
        runs.append((run, {"job": {**job, "data_other_ms": 0.0}}))
    return runs


def test_data_result_says_when_the_cost_is_within_the_noise_or_only_partly_replayed():
    from ddlprof.profiler.data_ceiling import data_result
    from ddlprof.profiler.differential import Measured

    clear = Measured(
        runs={
            "launched": _variant_runs([30.0, 31.0], [0, 0]),
            "replayed": _variant_runs([10.0, 12.0], [4, 4]),
        }
    )
    result = data_result(clear, warmup=2)  # the replayed runs measure steps 11-14
    assert result["input_pipeline"]["ms"] == pytest.approx(19.5) and result["reasons"] == {}
    assert result["replay"]["replayed_share"] == 1.0
    noisy = Measured(
        runs={
            "launched": _variant_runs([30.0, 31.0], [0, 0]),
            "replayed": _variant_runs([31.0, 29.0], [4, 4]),
        }
    )
    result = data_result(noisy, warmup=2)
    assert "within the run-to-run noise" in result["reasons"]["input_pipeline"]
    part = Measured(runs={"launched": _variant_runs([30.0], [0]), "replayed": _variant_runs([10.0], [2])})
    result = data_result(part, warmup=2)
    assert result["replay"]["replayed_share"] == 0.5 and result["input_pipeline"]["ms"] == 20.0
    assert result["reasons"]["input_pipeline"].startswith("only 50% of the replayed runs' measured batches")


@pytest.mark.parametrize(
    "args, words",
    [
        (["--data", "--emulate-nodes", "2", "--", "torchrun", "t.py"], "--data runs the job as launched"),
        (["--", "python", "train.py"], "must be a torchrun"),
        (["--emulate-nodes", "3", "--", "torchrun", "--nproc_per_node=2", "t.py"], "must divide"),
        (["--steps", "0", "--", "torchrun", "t.py"], "--steps: 0 is outside the allowed range"),
        (["--warmup", "-1", "--", "torchrun", "t.py"], "--warmup: -1 is outside the allowed"),
        (["--repeats", "1e9", "--", "torchrun", "t.py"], "'1e9' is not an integer; the allowed"),
        (["--timeout", "nan", "--", "torchrun", "t.py"], "--timeout: nan is outside the allowed"),
        (["--emulate-nodes", "0", "--", "torchrun", "t.py"], "--emulate-nodes: 0 is outside"),
    ],
)
def test_bad_stalls_input_is_one_line(tmp_path, args, words):
    done = ddlprof("stalls", "--out", str(tmp_path / "o"), *args)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and words in done.stderr, done.stderr


@pytest.mark.parametrize("where", ["a_file", "a_file/below"])
def test_an_out_that_cannot_be_a_directory_is_one_line_and_makes_nothing(tmp_path, where):
    (tmp_path / "a_file").write_text("kept")
    done = ddlprof("stalls", "--out", str(tmp_path / where), "--", "torchrun", "--nproc_per_node=2", "t.py")
    assert (
        done.returncode == 2 and done.stderr.count("\n") == 1 and f"--out {tmp_path / where}" in done.stderr
    )
    assert (tmp_path / "a_file").read_text() == "kept" and sorted(p.name for p in tmp_path.iterdir()) == [
        "a_file"
    ]


def test_the_dataset_line_says_whether_the_models_learn_from_the_run():
    """A CPU run is stored but not learned from; a GPU run's line names the extra (which rich once
    swallowed as markup: "(ddlprof)")."""
    import io

    from rich.console import Console

    from ddlprof.profiler.render import print_stalls

    def line(learned: bool) -> str:
        out = io.StringIO()
        dataset = {"stored": True, "database": "d.sqlite", "run": "r", "learned": learned}
        result = {"out": "o", "repeats": 1, "variants": {}, "dataset": dataset}
        result |= {
            "interconnect_stall": None,
            "network_stall": None,
            "reasons": {"interconnect": "-", "network": "-"},
        }
        print_stalls(result, Console(file=out, width=400))
        return next(t for t in out.getvalue().splitlines() if t.startswith("added"))

    assert "ddlprof[models]" in line(True) and "learns from it" in line(True)
    assert "do not learn from" in line(False)


def test_a_job_that_ends_before_the_asked_steps_is_said_so(tmp_path):
    """The job's own --steps 5 ends it before stalls' 2 warm-up + 4 steps: each variant is measured
    over the 3 steps it had, and the result and stderr say so."""
    out = tmp_path / "stalls"
    job = ["torchrun", "--nproc_per_node=2", str(EXAMPLE), "--model", "mlp_w16", "--steps", "5"]
    options = ["--steps", "4", "--warmup", "2", "--timeout", "150", "--json", "--out", str(out)]
    done = ddlprof("stalls", *options, "--", *job)
    assert done.returncode == 0, done.stderr
    warnings = json.loads(done.stdout)["warnings"]
    assert len(warnings) == 2 and all("3 steady step(s) measured, not the 4 asked" in w for w in warnings)
    assert "warning: one_gpu: 3 steady step(s) measured" in done.stderr
