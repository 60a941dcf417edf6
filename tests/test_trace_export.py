"""The trace file a window leaves: Kineto's events, less the GPU-side step markers TensorBoard miscounts."""

from __future__ import annotations

import gzip
import json
import os

import torch
from torch.profiler import ProfilerActivity

from ddlprof.collectors.traces import TEARDOWN_CUPTI, activities, write_without_gpu_step_marks


def test_gpu_copies_of_step_markers_are_left_out(tmp_path):
    gpu = "gpu_user_annotation"
    events = [
        {"ph": "X", "cat": "user_annotation", "name": "ProfilerStep#6", "ts": 10.5, "dur": 100.25, "tid": 1},
        {"ph": "X", "cat": gpu, "name": "ProfilerStep#6", "ts": 12.0, "dur": 98.0, "tid": 7},
        {"ph": "X", "cat": gpu, "name": "DistributedDataParallel.forward", "ts": 13, "dur": 5},
        {"ph": "X", "cat": "kernel", "name": "ncclDevKernel_AllReduce_Sum_f32_RING_LL", "ts": 20, "dur": 3},
    ]
    raw = tmp_path / "raw.json"
    raw.write_text(json.dumps({"schemaVersion": 1, "traceEvents": events, "deviceProperties": [{"id": 0}]}))
    out = tmp_path / "host_0.6.pt.trace.json.gz"
    write_without_gpu_step_marks(str(raw), str(out))
    trace = json.loads(gzip.decompress(out.read_bytes()))
    assert trace["traceEvents"] == [events[0], events[2], events[3]]
    assert trace["deviceProperties"] == [{"id": 0}] and trace["schemaVersion"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["host_0.6.pt.trace.json.gz", "raw.json"]


def _gpu_job(monkeypatch, cuda: str = "13.0") -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.version, "cuda", cuda)


def test_a_gpu_window_asks_kineto_to_release_cupti(monkeypatch):
    """Kineto keeps CUPTI attached after a window unless TEARDOWN_CUPTI=1, which slowed every later
    step by ~20% on 1 x H100 (issue 12); a CPU-only window leaves the variable alone."""
    monkeypatch.delenv(TEARDOWN_CUPTI, raising=False)
    assert activities() == [ProfilerActivity.CPU]
    assert TEARDOWN_CUPTI not in os.environ
    _gpu_job(monkeypatch)
    assert activities() == [ProfilerActivity.CPU, ProfilerActivity.CUDA]
    assert os.environ[TEARDOWN_CUPTI] == "1"


def test_the_jobs_own_cupti_setting_wins(monkeypatch):
    monkeypatch.setenv(TEARDOWN_CUPTI, "0")  # as torch sets it where CUDA graphs need CUPTI kept
    _gpu_job(monkeypatch)
    activities()
    assert os.environ[TEARDOWN_CUPTI] == "0"


def test_cuda_before_12_6_keeps_kinetos_default(monkeypatch):
    """CUPTI torn down and set up again could crash CUDA-graph jobs before CUDA 12.6."""
    monkeypatch.delenv(TEARDOWN_CUPTI, raising=False)
    _gpu_job(monkeypatch, cuda="12.4")
    assert activities() == [ProfilerActivity.CPU, ProfilerActivity.CUDA]
    assert TEARDOWN_CUPTI not in os.environ
