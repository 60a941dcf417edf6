"""The error an option's scaled step quotes (``ddlprof.models.step_error``): the larger of
its GPU type's and its precision's leave-one-GPU-out error, since a GPU type's rows may all be of
another precision and a precision's of another GPU (our H100 AMP steps were 40% off where the published
A100 rows, all AMP fp16 or TF32, were 16%)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from ddlprof.advisor.throughput import StepEstimate
from ddlprof.models.step_error import step_error

SCALING = {
    "median_abs_error_pct": 18.0,
    "worst_off_by_factor": 2.7,
    "by_gpu": {"A100-80GB": 16.3, "H100": 27.3},
    "by_precision": {"amp-bf16": 40.5, "tf32": 12.4},
}


def _scaled(precision: str) -> StepEstimate:
    basis = "scaled from H200 tf32"
    return StepEstimate(100.0, 100.0, 0.0, 0.0, "predicted", precision=precision, basis=basis, scaled=True)


@pytest.mark.parametrize(
    ("gpu", "precision", "expected"),
    [
        ("A100-80GB", "amp-bf16", 40.5),  # the precision's error is the larger
        ("A100-80GB", "tf32", 16.3),  # the GPU's
        ("H100", "tf32", 27.3),
        ("V100-16GB", "amp-fp16", 18.0),  # neither has rows: the overall median
    ],
)
def test_the_larger_of_the_gpus_and_the_precisions_error(gpu, precision, expected):
    found = step_error(_scaled(precision), gpu, 7.2, ["H200"], SCALING)
    assert found.pct == pytest.approx(math.hypot(expected, 7.2))
    assert f"{expected:g}%" in found.basis
    assert found.referenced


def test_a_gpu_with_no_reference_is_flagged_so_even_beyond_the_measured_batches():
    found = step_error(_scaled("amp-fp16"), "T4", 7.2, ["H200"], SCALING)
    assert not found.referenced and found.pct == pytest.approx(math.hypot(170, 7.2))
    step = dataclasses.replace(_scaled("amp-fp16"), batch_outside=(128, 32, 64))
    extrapolated = {**SCALING, "batch_extrapolation": {"per_doubling_pct": 9.55}}
    wider = step_error(step, "T4", 7.2, ["H200"], extrapolated)
    assert not wider.referenced and wider.pct > found.pct


def test_model_predict_quotes_the_error_advise_quotes_for_the_same_step():
    """One rule for both commands: a one-GPU T4 (no reference: the worst case) and H100 (ddlprof's own
    measurement: the machine spread) at batch 128, amp."""
    import json

    from advise_catalog import run_advise

    from ddlprof.models.predict import predict

    code, out, err = run_advise(
        "--model", "resnet50", "--instances", "g4dn.xlarge,p5.4xlarge", "--batch-per-gpu", "128", "--json",
        "--top", "0",
    )  # fmt: skip
    assert code == 0, err
    quoted = {o["gpu"]: o for o in json.loads(out)["options"] if o["count"] == 1}
    for gpu in ("T4", "H100"):
        predicted = predict("resnet50", 128, 1, 1, gpu=gpu, precision="amp")
        assert predicted["error"]["pct"] == pytest.approx(quoted[gpu]["error_pct"], abs=0.1), gpu
    assert "no published or measured reference for GPU T4" in quoted["T4"]["error_basis"]
    assert "spread between two H100 machines" in predict("resnet50", 128, 1, 1, gpu="H100")["error"]["basis"]


def test_model_predict_warns_of_a_batch_advise_excludes_for_memory():
    import json

    from advise_catalog import run_advise

    from ddlprof.models.predict import predict

    # at 16-bit the activations take less (models/memory.py): 256 fits a T4 at AMP, not at TF32
    for precision, batch, fits in (("tf32", "64", True), ("tf32", "256", False), ("amp", "256", True),
                                   ("amp", "512", False)):  # fmt: skip
        code, out, err = run_advise(
            "--model", "resnet50", "--instances", "g4dn.xlarge", "--batch-per-gpu", batch, "--json",
            "--precision", precision,
        )  # fmt: skip
        assert code == 0, err
        excluded = {e["kind"] for e in json.loads(out)["excluded"] if e["instance_type"] == "g4dn.xlarge"}
        warnings = predict("resnet50", int(batch), 1, 1, gpu="T4", precision=precision)["warnings"]
        warned = any("does not fit a T4" in w for w in warnings)
        assert ("memory" in excluded) == warned == (not fits), (precision, batch)
