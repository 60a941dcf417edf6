"""The cross-GPU scaling against published 1-GPU training throughput, held out one GPU type at a time
(``benchmarks/fit_cross_gpu.py``, issue 14): the target the advisor's uncertainty rests on, and the
shipped fit and error being what that command computes from the code and data as they are."""

from __future__ import annotations

import importlib.util
import json
import shlex
import sys
from importlib import resources

import pytest
from conftest import REPO

from ddlprof.models import dataset, gpus
from ddlprof.models.predict import fixed_step_ms, predict

_spec = importlib.util.spec_from_file_location("fit_cross_gpu", REPO / "benchmarks" / "fit_cross_gpu.py")
fit_cross_gpu = importlib.util.module_from_spec(_spec)
sys.modules["fit_cross_gpu"] = fit_cross_gpu
_spec.loader.exec_module(fit_cross_gpu)


@pytest.fixture(scope="module")
def rows():
    return fit_cross_gpu.published_rows()


@pytest.fixture(scope="module")
def held_out(rows):
    return fit_cross_gpu.leave_one_gpu_out(rows)


def test_leave_one_gpu_out_meets_the_target(held_out):
    """Median error <= 15% and no published row off by more than 1.5x, each GPU type predicted by a fit
    that never saw it."""
    result = fit_cross_gpu.summary(held_out)
    assert result["rows"] >= 26
    assert result["median_abs_error_pct"] <= 15.0, result
    assert result["worst_off_by_factor"] <= 1.5, result


def test_the_shipped_fit_and_error_are_what_the_command_computes(rows):
    """ddlprof/models/data/{cross_gpu_fit,scaling_error}.json are stale when the scaling, the
    published table or a measured sweep it names changes: run the command the shipped fit names."""
    shipped = gpus.cross_gpu_fit()
    argv = shlex.split(shipped["command"])
    measured = [REPO / argv[i + 1] for i, word in enumerate(argv) if word == "--measured"]
    every = rows + [r for path in measured for r in fit_cross_gpu.measured_rows(path)[0]]
    exponents = fit_cross_gpu.fit(every)
    assert shipped["compute_exponent"] == pytest.approx(exponents[0], abs=2e-3)
    assert shipped["memory_exponent"] == pytest.approx(exponents[1], abs=2e-3)
    text = resources.files("ddlprof.models").joinpath("data/scaling_error.json").read_text(encoding="utf-8")
    error = json.loads(text)
    now = fit_cross_gpu.summary(fit_cross_gpu.leave_one_gpu_out(every))
    assert error["median_abs_error_pct"] == pytest.approx(now["median_abs_error_pct"], abs=0.2)
    assert error["worst_off_by_factor"] == pytest.approx(now["worst_off_by_factor"], abs=0.02)


def test_a_launch_bound_step_is_not_sped_up_or_slowed_down_by_the_gpu():
    """efficientnet_b0 at batch 32 on the H200 is mostly launch-bound: its step's batch-independent
    part (the line through the measured batches 32 and 64, at batch 0) is carried to every GPU and
    precision unchanged. So no GPU, however fast, predicts it below that part, and a slow GPU slows
    the launch-bound batch 32 down less than batch 512, where that part is a small share."""
    rows = dataset.model_rows("efficientnet_b0").groupby("batch_per_gpu")["single_gpu_step_ms"].first()
    fixed = fixed_step_ms("efficientnet_b0")
    assert fixed == pytest.approx(2 * rows[32] - rows[64])

    def step(gpu: str, batch: int) -> float:
        return predict("efficientnet_b0", batch, 1, 1, gpu=gpu, precision="amp")["single_gpu_step_ms"]

    assert all(step(gpu, 32) > fixed for gpu in ("H100", "H200", "A100-80GB"))
    for slow in ("V100-16GB", "T4"):
        assert step(slow, 32) / step("H200", 32) < 0.8 * step(slow, 512) / step("H200", 512), slow


def test_the_batch_extrapolation_error_is_per_doubling_against_a_measured_batch():
    """A larger batch's error over the same model, GPU and precision's error at a measured batch, per
    doubling beyond 64: a step twice as slow as predicted at 256 (two doublings), where batch 32 was
    predicted right, is 41% per doubling; rows with no measured batch to compare with are left out."""

    def row(model: str, batch: int, observed: float) -> dict:
        return {
            "model": model, "gpu": "H100", "row_precision": "bf16", "batch": batch, "observed_ms": observed,
            "fixed_ms": 0.0, "compute_ms": 10.0, "compute_ratio": 1.0, "memory_ms": 0.0, "memory_ratio": 1.0,
        }  # fmt: skip

    rows = [row("a", 32, 10.0), row("a", 256, 20.0), row("b", 512, 99.0)]
    found = fit_cross_gpu.batch_extrapolation(rows, (1.0, 1.0))
    assert found["pairs"] == 1 and found["measured_batches"] == [32, 64]
    assert found["per_doubling_pct"] == pytest.approx(41.4, abs=0.1)
    assert fit_cross_gpu.batch_extrapolation([row("b", 512, 99.0)], (1.0, 1.0)) == {"pairs": 0}
