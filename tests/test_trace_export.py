"""The trace file a window leaves: Kineto's events, less the GPU-side step markers TensorBoard miscounts."""

from __future__ import annotations

import gzip
import json

from ddlprof.collectors.traces import write_without_gpu_step_marks


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
