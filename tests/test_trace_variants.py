"""Traces as other setups write them, from the real 2 x H200 resnet50 traces (``runs.tgz``; no GPU here
to record new ones), each changed the one way that setup differs: no ``distributedInfo`` (older
torch, a hand-made export), NCCL's kernel names from before NCCL 2.19, kernels launched by a CUDA
graph replay."""

from __future__ import annotations

import copy
import re

import pytest
from conftest import replicate
from test_trace_windows import KEYS, _rows, _write

from ddlprof.profiler.trace_analysis import analyze


def _analyse(folder, traces: dict[int, dict], names: dict[int, str] | None = None) -> dict:
    for rank, trace in traces.items():
        name = (names or {}).get(rank, f"vm_{rank}.1.pt.trace.json")
        _write(folder, name, trace, [replicate.shifted(trace["traceEvents"], 0, 0, 0)])
    return analyze([folder], jobs=1)


def _same_numbers(a: dict, b: dict) -> None:
    rows_a, rows_b = _rows(a), _rows(b)
    assert rows_a.keys() == rows_b.keys()
    for key, row in rows_a.items():
        for name in KEYS:
            assert row[name] == pytest.approx(rows_b[key][name], rel=1e-9, abs=1e-12), (key, name)


def test_rank_from_the_process_group_or_the_file_name_when_distributedInfo_has_none(marked, tmp_path):
    reference = _analyse(tmp_path / "reference", marked)
    bare = {rank: {k: v for k, v in t.items() if k != "distributedInfo"} for rank, t in marked.items()}
    # the default tensorboard_trace_handler names files <host>_<pid>: a pid must not become the rank
    from_group = _analyse(
        tmp_path / "group", bare, {0: "node_4242.1.pt.trace.json", 1: "node_4243.1.pt.trace.json"}
    )
    assert [r["rank"] for r in from_group["ranks"]] == [0, 1]
    _same_numbers(from_group, reference)
    assert any("rank 1 taken from its process group" in w for w in from_group["warnings"])
    no_comms = {
        rank: t | {"traceEvents": [e for e in t["traceEvents"] if e.get("name") != "record_param_comms"]}
        for rank, t in bare.items()
    }
    from_name = _analyse(tmp_path / "name", no_comms, {0: "w_0.pt.trace.json", 1: "w_1.pt.trace.json"})
    assert [r["rank"] for r in from_name["ranks"]] == [0, 1]
    assert any("w_1.pt.trace.json: no distributedInfo.rank; rank 1 taken from its file name" in w
               for w in from_name["warnings"])  # fmt: skip
    nothing = _analyse(tmp_path / "none", {0: no_comms[0]}, {0: "trace.json"})
    assert nothing["ranks"][0]["rank"] == -1 and "no rank in the trace" in " ".join(nothing["warnings"])


def test_nccl_kernels_under_their_old_names_are_communication(marked, tmp_path):
    """ncclKernel_* (NCCL before 2.19, and RCCL) and ncclDevKernel_* (NCCL 2.19 on) alike."""
    reference = _analyse(tmp_path / "new", marked)
    renamed = copy.deepcopy(marked)
    count = 0
    for trace in renamed.values():
        for event in trace["traceEvents"]:
            if event.get("cat") == "kernel" and event["name"].startswith("ncclDevKernel_"):
                event["name"] = re.sub(r"^ncclDevKernel_", "ncclKernel_", event["name"])
                count += 1
    assert count > 20  # every all-reduce and broadcast of both ranks
    old = _analyse(tmp_path / "old", renamed)
    _same_numbers(old, reference)
    assert all(r["comm_ms"] > 0 for r in old["ranks"])


def test_kernels_of_a_cuda_graph_replay_belong_to_the_step_that_launched_the_graph(marked, tmp_path):
    """A graph replay is one cudaGraphLaunch; CUPTI gives each kernel it runs that call's correlation
    id. Here step 2's launches become one graph launch at the time of its first launch."""
    reference = _analyse(tmp_path / "launches", marked)
    graphed = copy.deepcopy(marked)
    for trace in graphed.values():
        events = trace["traceEvents"]
        step = next(e for e in events if e.get("name") == "ProfilerStep#2")
        lo, hi = step["ts"], step["ts"] + step["dur"]
        launches = sorted(
            (e for e in events if e.get("cat") == "cuda_runtime" and e["name"] == "cudaLaunchKernel"
             and lo <= e["ts"] <= hi),
            key=lambda e: e["ts"],
        )  # fmt: skip
        graph = launches[0]
        graph["name"] = "cudaGraphLaunch"
        replayed = {e["args"]["correlation"] for e in launches}
        for event in events:
            if event.get("cat") == "kernel" and event["args"].get("correlation") in replayed:
                event["args"]["correlation"] = graph["args"]["correlation"]
        gone = {id(e) for e in launches[1:]}
        trace["traceEvents"] = [e for e in events if id(e) not in gone]
    result = _analyse(tmp_path / "graph", graphed)
    _same_numbers(result, reference)
