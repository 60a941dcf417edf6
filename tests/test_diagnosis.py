"""The diagnosis rules over hand-made summaries: each fires on its evidence, and only on it."""

from __future__ import annotations

import json

import jsonschema
import pytest
from conftest import REPO

from ddlprof.runs import diagnosis
from ddlprof.runs.diagnosis import diagnose

SCHEMA = json.loads((REPO / "ddlprof" / "runs" / "summary.schema.json").read_text())
DIAGNOSIS_SCHEMA = {**SCHEMA["properties"]["diagnosis"], "$defs": SCHEMA["$defs"]}


def _rank(rank: int, compute: float, data: float = 0.5, comm: float = 1.0, other: float = 0.5) -> dict:
    return {
        "rank": rank,
        "step_ms": compute + data + comm + other,
        "compute_ms": compute,
        "data_stall_ms": data,
        "interconnect_stall_ms": comm,
        "network_stall_ms": 0.0,
        "other_ms": other,
    }


def _summary(*ranks: dict, stragglers: list | None = None, **extra) -> dict:
    keys = ("step_ms", "compute_ms", "data_stall_ms", "interconnect_stall_ms", "network_stall_ms", "other_ms")
    job = {k: sum(r[k] for r in ranks) / len(ranks) for k in keys}
    return {
        "runs": ["/runs/x"],
        "nodes": 1,
        "world_size": len(ranks),
        "job": job,
        "ranks": list(ranks),
        "stragglers": stragglers or [],
        "workload": {"grad_bytes": 154_280, "bucket_sizes": [154_280], "parameter_dtype": "float"},
        **extra,
    }


def _check(result: dict) -> dict:
    jsonschema.validate(result, DIAGNOSIS_SCHEMA)
    return result


def test_healthy_run_is_compute_bound_with_nothing_to_change():
    result = _check(diagnose(_summary(_rank(0, 30.0), _rank(1, 30.5))))
    assert result["verdict"] == "compute-bound"
    assert result["sentence"].startswith("compute-bound: compute 30.")
    assert result["recommendations"] == []


def test_input_bound_predicts_the_step_without_the_shared_data_stall():
    result = _check(diagnose(_summary(_rank(0, 10.0, data=20.0), _rank(1, 10.0, data=22.0))))
    assert result["verdict"] == "input-bound"
    assert (
        result["sentence"] == "input-bound: data stall 20.0 ms = 62% of the step"
    )  # the least rank's, of 32.5
    (top,) = result["recommendations"]
    assert top["rule"] == "input_bound"
    assert top["saving_ms"] == 20.0 and top["predicted_step_ms"] == pytest.approx(32.5 - 20.0)
    # loading 20 ms a batch under 12.5 ms of the rest of the step needs 2 workers, plus one for jitter
    assert "at least 3" in top["action"]


def _loader(workers: int, cpu: float, blocked: float, cpus: int, ranks: int = 1) -> dict:
    return {
        "workers": workers,
        "batch_ms": cpu + blocked,
        "batch_cpu_ms": cpu,
        "batch_cpu_wait_ms": 0.0,
        "batches_per_step": 1,
        "cpus": cpus,
        "ranks_on_host": ranks,
    }


def test_input_bound_with_batch_costs_names_the_workers_that_hide_the_loading():
    # a batch takes 30 ms to make, mostly blocked on storage; the rest of the step is 10.5 ms: 3 workers
    # make a batch per 10 ms, plus one for jitter; 8 cores leave room for them
    rank = {**_rank(0, 9.0, data=20.0), "loader": _loader(2, cpu=5.0, blocked=25.0, cpus=8)}
    (top,) = _check(diagnose(_summary(rank)))["recommendations"]
    assert top["change"] == {"num_workers": 4}
    assert top["action"].startswith("fetch-bound: raise num_workers from 2 to 4")
    assert top["predicted_step_ms"] == pytest.approx(10.5)


def test_input_bound_step_after_the_change_is_at_least_the_gpus_busy_time():
    # the host sees 10.5 ms outside the data wait, but the GPU is busy 50% of the 30.5 ms step (15.25
    # ms): part of its work ran while the host already waited for the next batch. The step cannot
    # fall below that, and the workers have those 15.25 ms to make a batch: 30 / 15.25 -> 2, plus one.
    rank = {**_rank(0, 9.0, data=20.0), "loader": _loader(2, cpu=5.0, blocked=25.0, cpus=8)}
    gpus = [{"host": "a", "gpu": 0, "samples": 9, "util_pct": {"median": 50.0, "max": 90.0}}]
    (top, *_) = _check(diagnose(_summary(rank, gpus=gpus)))["recommendations"]
    assert top["predicted_step_ms"] == pytest.approx(0.5 * 30.5)
    assert top["change"] == {"num_workers": 3}
    assert "the GPU's busy time 15.2 ms" in top["evidence"]
    # a GPU busier than the host's view is the only case that moves the prediction
    idle = [{**gpus[0], "util_pct": {"median": 20.0, "max": 40.0}}]
    (top, *_) = _check(diagnose(_summary(rank, gpus=idle)))["recommendations"]
    assert top["predicted_step_ms"] == pytest.approx(10.5) and top["change"] == {"num_workers": 4}


def test_input_bound_on_busy_cores_says_the_preparation_must_get_cheaper_not_more_workers():
    # 30 CPU-ms per batch, 10.5 ms of the rest of the step, 2 ranks on 4 cores: one free core per rank,
    # so the step cannot fall below 30 ms whatever the workers
    rank = {**_rank(0, 9.0, data=25.0), "loader": _loader(1, cpu=30.0, blocked=1.0, cpus=4, ranks=2)}
    (top,) = _check(diagnose(_summary(rank)))["recommendations"]
    assert top["action"].startswith("prep-bound with every core busy")
    assert "GPU" in top["action"] and top["change"] == {}
    assert top["predicted_step_ms"] == pytest.approx(30.0)


def test_data_stall_on_one_rank_is_a_straggler_not_input_bound():
    slow = _rank(1, 10.0, data=30.0, comm=1.0)
    fast = _rank(0, 10.0, data=0.5, comm=30.5)  # waits for rank 1 in the all-reduce
    straggling = [
        {"rank": 1, "busy_ms": 40.5, "median_busy_ms": 25.75, "excess_pct": 57.3, "cause": "data_stall_ms"}
    ]
    result = _check(diagnose(_summary(fast, slow, stragglers=straggling)))
    assert result["verdict"] == "straggler"
    top = result["recommendations"][0]
    assert top["rule"] == "straggler" and "rank 1's input pipeline" in top["action"]
    # rank 1 busy 41.5 - 1 = 40.5 ms vs rank 0's 11 ms: the job's 41.5 ms step would drop by 29.5 ms
    assert top["saving_ms"] == pytest.approx(29.5)
    assert top["predicted_step_ms"] == pytest.approx(41.5 - 29.5)
    assert all(r["rule"] != "input_bound" for r in result["recommendations"])


def test_ranks_whose_loaders_all_need_the_step_are_input_bound_not_a_straggler():
    # 2 ranks, 1 worker each, a batch 37.6 ms to make, step 38.7 ms (CI's 2 cores): rank 0 waits for
    # data 23.6 ms, rank 1 only 12.2 ms plus 13.2 ms for rank 0. Rank 1's loader could not feed it any
    # faster, so making rank 0 faster saves nothing: the job is input-bound, not held back by rank 0.
    loader = _loader(1, cpu=2.5, blocked=35.1, cpus=2, ranks=2)
    late = {**_rank(0, 13.4, data=23.6, comm=0.9, other=0.7), "loader": loader}
    early = {**_rank(1, 11.8, data=12.2, comm=14.1, other=0.6), "loader": loader}
    straggling = [
        {"rank": 0, "busy_ms": 37.7, "median_busy_ms": 31.2, "excess_pct": 21.0, "cause": "data_stall_ms"}
    ]
    result = _check(diagnose(_summary(late, early, stragglers=straggling)))
    assert result["verdict"] == "input-bound"
    assert [r["rule"] for r in result["recommendations"]] == ["input_bound"]
    assert result["recommendations"][0]["change"] == {"num_workers": 3}
    # the same job where rank 1's loader is fast (4 workers): rank 0 is the straggler again
    quick = {**early, "loader": _loader(4, cpu=2.5, blocked=35.1, cpus=8)}
    result = _check(diagnose(_summary(late, quick, stragglers=straggling)))
    assert result["verdict"] == "straggler" and result["recommendations"][0]["rule"] == "straggler"


def test_small_buckets_predict_fewer_calls():
    summary = _summary(_rank(0, 10.0, comm=30.0), _rank(1, 10.0, comm=31.0))
    summary["workload"] = {"grad_bytes": 150_000, "bucket_sizes": [30_000] * 5, "parameter_dtype": "float"}
    result = _check(diagnose(summary))
    assert result["verdict"] == "communication-bound"
    (top,) = result["recommendations"]
    assert top["rule"] == "bucket_size" and "5 buckets become 1" in top["action"]
    assert top["saving_ms"] == pytest.approx(30.0 * 4 / 5)


def test_large_fp32_buckets_suggest_compression_and_a_hook_already_there_does_not():
    summary = _summary(_rank(0, 10.0, comm=30.0), _rank(1, 10.0, comm=30.0))
    summary["workload"] = {
        "grad_bytes": 100 << 20,
        "bucket_sizes": [25 << 20] * 4,
        "parameter_dtype": "float",
    }
    (top,) = _check(diagnose(summary))["recommendations"]
    assert top["rule"] == "compression" and top["saving_ms"] == pytest.approx(15.0)
    summary["workload"]["comm_hook"] = "bf16_compress_hook"
    assert diagnose(summary)["recommendations"] == []
    summary["workload"] = {**summary["workload"], "comm_hook": None, "parameter_dtype": ["c10::BFloat16"]}
    assert diagnosis.compression(summary) is None


def test_network_launch_and_utilisation_rules_carry_evidence_but_no_invented_prediction():
    summary = _summary(_rank(0, 10.0, comm=0.0), _rank(1, 10.0, comm=0.0), gpu_lag_ms=2.5)
    summary["nodes"] = 2
    for row in [*summary["ranks"], summary["job"]]:
        row["network_stall_ms"] = 8.0
        row["step_ms"] += 8.0
    summary["gpus"] = [{"host": "a", "gpu": 0, "samples": 9, "util_pct": {"median": 31.0, "max": 60.0}}]
    found = {r["rule"]: r for r in _check(diagnose(summary))["recommendations"]}
    assert set(found) == {"network", "launch_bound", "low_gpu_util"}
    assert "ddlprof advise --run /runs/x" in found["network"]["action"]
    assert "2.5 ms" in found["launch_bound"]["evidence"] and "31%" in found["low_gpu_util"]["evidence"]
    assert all(r["predicted_step_ms"] is None and r["basis"] for r in found.values())
    assert diagnose(summary)["verdict"] == "communication-bound"  # 8 of 19 ms: the verdict names it


def test_unmeasured_categories_fire_no_rule():
    """A summary whose data and communication could not be measured gives no recommendation for them."""
    summary = _summary(_rank(0, 10.0, data=20.0), _rank(1, 10.0, data=20.0))
    for row in summary["ranks"]:
        row["data_stall_ms"] = row["interconnect_stall_ms"] = row["network_stall_ms"] = None
    result = _check(diagnose(summary))
    assert result["recommendations"] == [] and result["verdict"] == "compute-bound"


def test_small_stalls_are_not_recommended():
    # 2 ms of 40 (5%): below the recommendation threshold
    assert diagnose(_summary(_rank(0, 36.0, data=2.0), _rank(1, 36.0, data=2.0)))["recommendations"] == []


def test_a_one_gpu_job_with_an_idle_gpu_is_told_to_measure_sharing_it():
    summary = _summary(_rank(0, 10.0, comm=0.0))
    summary["gpus"] = [{"host": "a", "gpu": 0, "samples": 40, "util_pct": {"median": 35.0, "max": 70.0}}]
    found = {r["rule"]: r for r in _check(diagnose(summary))["recommendations"]}
    assert set(found) == {"share_gpu"}  # not low_gpu_util as well: one recommendation for one finding
    assert "ddlprof share -n 1,2,4" in found["share_gpu"]["action"]
    assert "busy only 35%" in found["share_gpu"]["action"] and "35%" in found["share_gpu"]["evidence"]
    assert found["share_gpu"]["saving_ms"] is None and found["share_gpu"]["predicted_step_ms"] is None


@pytest.mark.parametrize(("world_size", "median"), [(1, 80.0), (2, 35.0)], ids=["busy GPU", "two ranks"])
def test_share_is_not_suggested_for_a_busy_gpu_or_a_multi_gpu_job(world_size, median):
    ranks = [_rank(r, 10.0, comm=0.0) for r in range(world_size)]
    summary = _summary(*ranks)
    summary["gpus"] = [{"host": "a", "gpu": 0, "samples": 40, "util_pct": {"median": median, "max": 90.0}}]
    rules = {r["rule"] for r in diagnose(summary)["recommendations"]}
    assert "share_gpu" not in rules


def test_input_bound_prediction_on_a_real_gpu_run_matches_the_run_that_acted_on_it():
    """1 x H100, resnet50 fed by a JPEG pipeline (benchmarks/gpu_jpeg_advice.sh): the summary with 2
    workers, and the same job re-run with 8 (more than advised) once the stall was gone. The predicted
    step must be within 10% of that measured step (the GPU's own work, not the host's, sets it)."""
    runs = REPO / "benchmarks" / "results" / "gpu-1xh100" / "jpeg"
    before = json.loads((runs / "jpeg_w2.json").read_text())
    after = json.loads((runs / "jpeg_advised.json").read_text())
    top = diagnose(before)["recommendations"][0]
    assert top["rule"] == "input_bound"
    assert after["ranks"][0]["loader"]["workers"] >= top["change"]["num_workers"]
    assert after["job"]["data_stall_ms"] < 0.15 * before["job"]["data_stall_ms"]  # the stall went
    assert top["predicted_step_ms"] == pytest.approx(after["job"]["step_ms"], rel=0.10)
    assert "behind the host at the end of backward" in top["evidence"]


def test_layout_prediction_on_a_real_gpu_run_matches_the_run_that_acted_on_it():
    """1 x H100, torchvision resnet50 at batch 128 under bf16 autocast, GPU-resident batches
    (benchmarks/gpu_layout_advice.sh): the run as a plain script leaves it (NCHW, no autotuner), and
    the same job with the two lines tensor_layout asks for. The predicted step must be within 10% of
    the step the tuned run measured, and the tuned run must not be told the same again."""
    runs = REPO / "benchmarks" / "results" / "gpu-1xh100" / "layout_2026-12-07"
    plain = json.loads((runs / "layout_plain.json").read_text())
    tuned = json.loads((runs / "layout_tuned.json").read_text())
    rule = _layout_rule(plain)
    assert rule is not None and rule["change"] == {"channels_last": True, "cudnn_benchmark": True}
    assert tuned["workload"]["layout"] == "channels_last" and tuned["workload"]["cudnn_benchmark"]
    assert rule["predicted_step_ms"] == pytest.approx(tuned["job"]["step_ms"], rel=0.10)
    assert _layout_rule(tuned) is None


def test_a_workload_record_with_an_integer_no_float_holds_is_ignored_not_a_crash():
    """Found by the fuzz suite in a fresh-clone CI run: bucket sizes of 10**400 stopped the diagnosis
    with an OverflowError."""
    summary = _summary(_rank(0, 10.0, comm=30.0), _rank(1, 10.0, comm=31.0))
    summary["workload"] = {
        "grad_bytes": 10**400,
        "bucket_sizes": [10**400, 154_280],
        "parameter_dtype": "float",
    }
    result = _check(diagnose(summary))
    assert result["verdict"] == "communication-bound"


def _cnn(device: str, batch: float, precision: str = "amp-bf16", layout: str = "nchw", tuner: bool = False):
    """A one-rank conv net run on ``device`` at ``batch`` samples per step, compute 80 of 100 ms."""
    rank = {**_rank(0, 80.0, data=10.0, comm=5.0, other=5.0), "device": device}
    rank["throughput_samples_per_s"] = batch / rank["step_ms"] * 1e3
    summary = _summary(rank)
    summary["workload"] = {
        "precision": precision,
        "conv2d_layers": 53,
        "num_layers": 107,  # torchvision's resnet50
        "layout": layout,
        "cudnn_benchmark": tuner,
    }
    return summary


def _layout_rule(summary: dict) -> dict | None:
    return next(
        (r for r in _check(diagnose(summary))["recommendations"] if r["rule"] == "tensor_layout"), None
    )


def test_tensor_layout_predicts_the_measured_speed_up_where_it_was_measured():
    found = _layout_rule(_cnn("NVIDIA H100 80GB HBM3", 256))
    assert found["change"] == {"channels_last": True, "cudnn_benchmark": True}
    assert "channels_last" in found["action"] and "cudnn.benchmark = True" in found["action"]
    # compute 80 ms at the least measured speed-up (1.70x) is 47.1 ms: 32.9 ms saved
    assert found["saving_ms"] == pytest.approx(80 * (1 - 1 / 1.70), abs=0.01)
    assert found["predicted_step_ms"] == pytest.approx(100 - 80 * (1 - 1 / 1.70), abs=0.01)
    assert "53 Conv2d layers at amp-bf16, batch 256 per GPU" in found["evidence"]
    assert "NCHW layout and cudnn.benchmark off" in found["evidence"]


@pytest.mark.parametrize(
    "summary, unmeasured",
    [
        (_cnn("NVIDIA A100-SXM4-80GB", 256), "none measured for NVIDIA A100-SXM4-80GB"),
        (_cnn("NVIDIA H100 80GB HBM3", 32), "none measured for batch 32 per GPU"),
        (_cnn("NVIDIA H100 80GB HBM3", 256, tuner=True), "none measured for one of the two lines alone"),
    ],
)
def test_tensor_layout_recommends_without_a_prediction_where_nothing_was_measured(summary, unmeasured):
    found = _layout_rule(summary)
    assert found["saving_ms"] is None and found["predicted_step_ms"] is None
    assert found["basis"].startswith(unmeasured)


@pytest.mark.parametrize(
    "summary",
    [
        _cnn("cpu", 256),  # the CPU: no cuDNN, no tensor cores
        _cnn("NVIDIA H100 80GB HBM3", 256, precision="tf32"),  # measured under bf16 only
        _cnn("NVIDIA H100 80GB HBM3", 256, layout="channels_last", tuner=True),  # nothing left to change
    ],
)
def test_tensor_layout_stays_silent_without_its_evidence(summary):
    assert _layout_rule(summary) is None


def test_tensor_layout_needs_convolutions():
    summary = _cnn("NVIDIA H100 80GB HBM3", 256)
    summary["workload"].update(conv2d_layers=1, num_layers=77)  # vit_b_16: a convolution for a stem
    assert _layout_rule(summary) is None
    summary["workload"].update(conv2d_layers=0)
    assert _layout_rule(summary) is None
    del summary["workload"]["conv2d_layers"]  # a run recorded before ddlprof read the layout
    assert _layout_rule(summary) is None


@pytest.mark.parametrize(
    "facts, fires",
    [
        ({"find_unused_parameters": True, "unused_parameter_bytes": 0}, True),
        ({"find_unused_parameters": True, "unused_parameter_bytes": 40}, False),  # the search finds some
        ({"find_unused_parameters": False, "unused_parameter_bytes": 0}, False),  # no search
        ({"find_unused_parameters": True}, False),  # recorded before ddlprof read what DDP found
    ],
)
def test_unused_search_fires_only_when_ddp_searched_and_found_nothing(facts, fires):
    summary = _summary(_rank(0, 30.0), _rank(1, 30.5))
    summary["workload"] = {**summary["workload"], "after_step": 3, **facts}
    found = [r for r in _check(diagnose(summary))["recommendations"] if r["rule"] == "unused_search"]
    assert bool(found) == fires
    if fires:
        assert found[0]["change"] == {"find_unused_parameters": False} and found[0]["saving_ms"] is None
        assert "after step 3, had found 0 bytes" in found[0]["evidence"]


ODD = [None, "x", [1], {"a": 1}, float("nan"), float("inf"), -5, 10**400, True]


@pytest.mark.parametrize("value", ODD, ids=repr)
@pytest.mark.parametrize(
    "where",
    [
        "conv2d_layers",
        "num_layers",
        "layout",
        "cudnn_benchmark",
        "precision",
        "unused_parameter_bytes",
        "find_unused_parameters",
        "after_step",
        "device",
        "throughput_samples_per_s",
    ],
)
def test_the_layout_and_unused_rules_take_any_recorded_value_without_a_crash(where, value):
    """A rank file may hold anything (found while writing these rules: a string or an integer of 400
    digits as the Conv2d count, a list as the device name, stopped the report with a TypeError)."""
    summary = _cnn("NVIDIA H100 80GB HBM3", 256)
    summary["workload"].update(find_unused_parameters=True, unused_parameter_bytes=0)
    if where in ("device", "throughput_samples_per_s"):
        summary["ranks"][0][where] = value
    else:
        summary["workload"][where] = value
    _check(diagnose(summary))


def test_the_framework_spellings_in_the_advice_exist_in_those_frameworks():
    """The compression and unused_search advice name Lightning's, accelerate's and the Trainer's own
    arguments: each must be one the installed framework takes (the test extra installs them)."""
    import inspect

    from ddlprof.models.zoo import import_torchvision

    import_torchvision()  # they import torchvision, whose PyPI wheel needs this beside a CPU torch
    for framework in ("lightning", "accelerate", "transformers"):
        pytest.importorskip(framework)
    from accelerate.utils import DDPCommunicationHookType, DistributedDataParallelKwargs
    from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry
    from transformers import TrainingArguments

    summary = _summary(_rank(0, 10.0, comm=30.0), _rank(1, 10.0, comm=30.0))
    summary["workload"] = {
        "grad_bytes": 100 << 20,
        "bucket_sizes": [25 << 20] * 4,
        "parameter_dtype": "float",
    }
    compression = diagnosis.compression(summary)["action"]
    assert (
        "DDPStrategy(ddp_comm_hook=" in compression
        and "ddp_comm_hook" in inspect.signature(DDPStrategy).parameters
    )
    assert "DistributedDataParallelKwargs(comm_hook=DDPCommunicationHookType.BF16)" in compression
    assert "comm_hook" in DistributedDataParallelKwargs.__dataclass_fields__ and DDPCommunicationHookType.BF16
    summary["workload"].update(find_unused_parameters=True, unused_parameter_bytes=0)
    unused = diagnosis.unused_search(summary)["action"]
    assert "TrainingArguments(ddp_find_unused_parameters=False)" in unused
    assert "ddp_find_unused_parameters" in TrainingArguments.__dataclass_fields__
    assert (
        "'ddp_find_unused_parameters_true'" in unused
        and "ddp_find_unused_parameters_true" in StrategyRegistry
    )
