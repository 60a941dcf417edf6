"""``benchmarks/zoo_cross_check.py``: one GPU's zoo sweep predicted from another's."""

from __future__ import annotations

import importlib.util
import json

import pytest
from conftest import REPO

_spec = importlib.util.spec_from_file_location("zoo_cross_check", REPO / "benchmarks" / "zoo_cross_check.py")
check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check)


def sweep(path, gpu: str, steps: dict[int, float], channels_last: bool = False):
    rows = [
        {"model": "resnet50", "precision": "bf16", "batch_per_gpu": b, "step_ms": ms}
        for b, ms in steps.items()
    ]
    rows.append({"model": "resnet50", "precision": "tf32", "batch_per_gpu": 32, "error": "out of memory"})
    settings = {"channels_last": channels_last, "cudnn_benchmark": False, "steps": 15, "warmup": 5}
    path.write_text(json.dumps({"gpu": gpu, "settings": settings, "rows": rows}))
    return path


def test_the_launch_bound_part_is_the_line_through_the_two_smallest_batches():
    steps = {
        ("m", "bf16", 32): 10.0,
        ("m", "bf16", 64): 16.0,
        ("m", "bf16", 256): 60.0,
        ("m", "tf32", 32): 9.0,
    }
    assert check.fixed_ms(steps, "m", "bf16") == pytest.approx(4.0)
    assert check.fixed_ms(steps, "m", "tf32") == 0.0  # one batch: no line
    assert check.fixed_ms({("m", "bf16", 32): 10.0, ("m", "bf16", 64): 30.0}, "m", "bf16") == 0.0


def test_a_faster_gpu_is_predicted_faster_and_the_rows_measured_on_both_only(tmp_path):
    h100 = sweep(tmp_path / "a.json", "NVIDIA H100 80GB HBM3", {32: 30.0, 64: 50.0, 512: 350.0})
    h200 = sweep(tmp_path / "b.json", "NVIDIA H200", {32: 28.0, 64: 45.0})
    rows = check.predict_rows(h100, h200)
    assert [(r["batch"], r["to_gpu"]) for r in rows] == [(32, "H200"), (64, "H200")]
    assert all(r["predicted_ms"] < r["from_ms"] for r in rows)  # more bandwidth, same compute peak
    assert rows[0]["fixed_ms"] == pytest.approx(10.0)
    back = check.predict_rows(h200, h100)
    assert all(r["predicted_ms"] > r["from_ms"] for r in back)


def test_sweeps_of_other_settings_are_not_compared(tmp_path):
    plain = sweep(tmp_path / "a.json", "NVIDIA H100 80GB HBM3", {32: 30.0, 64: 50.0})
    tuned = sweep(tmp_path / "b.json", "NVIDIA H200", {32: 28.0, 64: 45.0}, channels_last=True)
    with pytest.raises(SystemExit, match="other settings"):
        check.predict_rows(plain, tuned)
