"""A trace recorded on an AMD MI250 (ROCm 6.2; see tests/data/rocm/README.md): HIP launches, Tensile GEMM
kernels and no rank information. The expected figures are summed here from the file's own events."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from ddlprof.profiler.trace_analysis import analyze

TRACE = Path(__file__).parent / "data" / "rocm" / "mi250_minitoy_train_ROCm6_2_kineto.json.gz"


def _events() -> list[dict]:
    with gzip.open(TRACE, "rt") as handle:
        return json.load(handle)["traceEvents"]


def test_a_rocm_trace_books_its_kernels_and_copies_into_the_step_that_launched_them():
    events = _events()
    step = next(e for e in events if e.get("name") == "ProfilerStep#1" and e.get("cat") == "user_annotation")
    kernels = [e for e in events if e.get("cat") == "kernel"]
    copies = [e for e in events if e.get("cat") == "gpu_memcpy"]
    assert len(kernels) == 14 and any(k["name"].startswith("Cijk_") for k in kernels)

    result = analyze([TRACE], jobs=1)

    assert result["steps"] == [1]  # ProfilerStep#2 launches nothing
    (rank,) = result["ranks"]
    assert rank["rank"] == -1 and rank["device"] == "gpu"
    assert any("no rank in the trace" in w for w in result["warnings"])
    assert rank["step_ms"] == pytest.approx(step["dur"] / 1e3)
    # the kernels and copies do not overlap here, so their busy time is the sum of their durations
    # (to 10 ns: the analysis keeps times to about a nanosecond)
    assert rank["compute_ms"] == pytest.approx(sum(k["dur"] for k in kernels) / 1e3, abs=1e-5)
    assert rank["memory_ms"] == pytest.approx(sum(c["dur"] for c in copies) / 1e3, abs=1e-5)
    assert rank["comm_ms"] == 0.0  # a Tensile GEMM is not a collective
    busy = rank["compute_ms"] + rank["memory_ms"]
    assert rank["idle_ms"] == pytest.approx(rank["step_ms"] - busy, abs=1e-5)
