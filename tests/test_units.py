"""Small pure functions: trace-step parsing, job keys, batch sizes, the per-step breakdown."""

from __future__ import annotations

import pytest
import torch

from ddlprof.collectors.batches import batch_size
from ddlprof.collectors.config import TraceStepsError, parse_trace_steps
from ddlprof.profiler.wrap import launcher_of, max_nodes, script_name
from ddlprof.runs.breakdown import CATEGORIES, step_categories
from ddlprof.runs.rundir import job_key


def test_trace_steps():
    assert parse_trace_steps("0") == ()
    assert parse_trace_steps("6-8") == ((6, 8),)
    assert parse_trace_steps("100-102, 10") == ((10, 10), (100, 102))
    for bad in ("x", "8-6", "0-3", "5-7,6-9", "5-7,8"):
        with pytest.raises(TraceStepsError):
            parse_trace_steps(bad)


def test_job_key_ignores_only_the_node_rank():
    a = ["torchrun", "--nnodes=2", "--node_rank=0", "t.py"]
    b = ["torchrun", "--nnodes=2", "--node-rank", "1", "t.py"]
    assert job_key(a) == job_key(b) == ["torchrun", "--nnodes=2", "t.py"]
    assert job_key(a) != job_key(["torchrun", "--nnodes=2", "--node_rank=1", "u.py"])


def test_command_classification():
    assert launcher_of(["torchrun", "x.py"]) == "torchrun"
    assert launcher_of(["python", "-m", "torch.distributed.run", "x.py"]) == "torch.distributed.run"
    assert launcher_of(["python", "x.py"]) == "direct"
    assert max_nodes(["torchrun", "--nnodes", "1:4", "x.py"]) == 4 and max_nodes(["python", "x.py"]) == 1
    assert script_name(["torchrun", "--nproc_per_node=2", "train/main.py"]) == "main"


def test_batch_size_of_common_batch_shapes():
    x = torch.zeros(8, 3)
    assert batch_size(x) == 8
    assert batch_size((x, torch.zeros(8))) == 8
    assert batch_size({"input_ids": torch.zeros(4, 128), "label": 1}) == 4
    assert batch_size([["text"], x]) == 8
    assert batch_size("text") is None and batch_size(torch.tensor(3.0)) is None


def test_step_breakdown_single_and_multi_node():
    step = {"step_ms": 100.0, "data_wait_ms": 10.0, "loop_ms": 5.0, "comm": {"exposed_ms": 20.0}}
    single = step_categories(step, multi_node=False)
    assert single == {
        "step_ms": 100.0,
        "compute_ms": 65.0,
        "data_stall_ms": 10.0,
        "interconnect_stall_ms": 20.0,
        "network_stall_ms": 0.0,
        "wait_for_peers_ms": None,  # no arrivals compared
        "other_ms": 5.0,
        "data_fetch_ms": None,  # no batch costs in this step record
        "data_prep_ms": None,
        "data_other_ms": None,
    }
    multi = step_categories(step, multi_node=True)
    assert multi["interconnect_stall_ms"] is None and multi["network_stall_ms"] == 20.0
    # 12 of the 20 ms waiting for the last rank: the stalls hold the 8 on the wire, and still add up
    waited = step_categories(step, multi_node=False, wait_ms=12.0)
    assert waited["interconnect_stall_ms"] == 8.0 and waited["wait_for_peers_ms"] == 12.0
    assert sum(waited[k] for k in CATEGORIES) == 100.0
    assert step_categories(step, multi_node=True, wait_ms=12.0)["network_stall_ms"] == 8.0
    assert step_categories(step, multi_node=False, wait_ms=30.0)["wait_for_peers_ms"] == 20.0  # at most all
    bare = step_categories({"step_ms": 50.0, "data_wait_ms": None, "loop_ms": None, "comm": None}, False)
    assert bare["compute_ms"] == 50.0 and bare["interconnect_stall_ms"] is None


def test_probe_split_follows_the_ring_model():
    from ddlprof.runs.breakdown import interconnect_share

    probe = {
        "intra": {"busbw_gbps": 100.0, "latency_us": 0.0, "ranks": 2},
        "full": {"busbw_gbps": 10.0, "latency_us": 0.0, "ranks": 4},
    }
    # one 100 MB bucket: intra 1.0 * 1e8 / 100e9 = 1 ms; full 1.5 * 1e8 / 10e9 = 15 ms
    assert interconnect_share(probe, [100_000_000]) == pytest.approx(1 / 15)
    step = {
        "step_ms": 100.0,
        "data_wait_ms": 0.0,
        "loop_ms": 0.0,
        "comm": {"exposed_ms": 30.0, "per_bucket": [[0, 100_000_000, 1.0, None]]},
    }
    split = step_categories(step, multi_node=True, probe=probe)
    assert split["interconnect_stall_ms"] == pytest.approx(2.0) and split[
        "network_stall_ms"
    ] == pytest.approx(28.0)
    one_gpu_per_node = {**probe, "intra": None}
    assert interconnect_share(one_gpu_per_node, [100_000_000]) == 0.0
    assert interconnect_share(None, [1]) is None and interconnect_share(probe, []) is None
    slower_network = {**probe, "full": {"busbw_gbps": 1.0, "latency_us": 0.0, "ranks": 4}}
    assert interconnect_share(slower_network, [100_000_000]) < interconnect_share(probe, [100_000_000])


def test_host_clock_communication_is_each_backward_wait_plus_the_hooks():
    from ddlprof.collectors.comm import BackwardWait, BucketTiming, resolve_buckets

    waits = [BackwardWait(1.000, synced=1.004), BackwardWait(2.000, synced=2.001)]
    # DDP's own all-reduce (no hook timed): its bucket sizes, once per backward
    comm = resolve_buckets([], waits, step_start=0.5, final=False, bucket_sizes=[100, 50])
    assert comm["exposed_ms"] == pytest.approx(5.0) and comm["clock"] == "cpu"
    assert comm["buckets"] == 4 and comm["bytes"] == 300
    assert comm["per_bucket"][:2] == [[0, 100, None, None], [1, 50, None, None]]
    # a timed hook that held backward up for 40 ms adds to the wait
    hook = BucketTiming(index=0, nbytes=64, ready=0.9, hook_s=0.040)
    comm = resolve_buckets([hook], waits[:1], step_start=0.5, final=False, bucket_sizes=[100])
    assert comm["exposed_ms"] == pytest.approx(44.0) and comm["per_bucket"] == [[0, 64, 400.0, None]]
    # a finalize that never ran (or a hook without any backward wait) leaves the step unresolved
    assert resolve_buckets([], [BackwardWait(1.0)], 0.5, final=False)["unresolved"]
    assert resolve_buckets([hook], [], 0.5, final=False)["unresolved"]
    # no backward in the step: nothing to wait for
    assert resolve_buckets([], [], 0.5, final=False)["exposed_ms"] == 0.0


def test_the_tensor_backward_reaches_first_in_a_forward_output():
    from ddlprof.collectors.comm import _first_grad_tensor

    frozen, live = torch.zeros(2), torch.zeros(2, requires_grad=True)
    assert _first_grad_tensor(live) is live and _first_grad_tensor(frozen) is None
    assert _first_grad_tensor((frozen, {"aux": 3, "logits": [live]})) is live
    assert _first_grad_tensor("text") is None and _first_grad_tensor({"n": 1}) is None
