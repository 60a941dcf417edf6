"""``benchmarks/zoo_sweep.py``, the GPU sweep of the zoo, run here on the CPU with a tiny model: what it
measures per model, and that a call cut short by its budget (or killed) is continued by ``--resume``
without measuring again what the file holds, and only on the same GPU model and settings."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
from conftest import REPO, env

SCRIPT = REPO / "benchmarks" / "zoo_sweep.py"
_spec = importlib.util.spec_from_file_location("zoo_sweep", SCRIPT)
zoo_sweep = importlib.util.module_from_spec(_spec)
sys.modules["zoo_sweep"] = zoo_sweep  # its dataclass looks its module up there
_spec.loader.exec_module(zoo_sweep)

TINY = """\
from torch import nn


def build():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
"""
# small batch 2, cap 8: small 2, middle 4, largest 8 (the CPU never runs out of memory)
SETTINGS = ["--precisions", "fp32", "--small-batch", "2", "--max-batch", "8", "--steps", "1", "--warmup", "0"]


@pytest.fixture
def models(tmp_path):
    path = tmp_path / "tiny.py"
    path.write_text(TINY, encoding="utf-8")
    return [f"{path}:build", f"{tmp_path / 'missing.py'}:build"]


def sweep(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env(), timeout=300
    )


def test_each_model_gets_a_small_a_middle_and_the_largest_batch():
    assert zoo_sweep.plan(32, 1024) == [("small", 32, False), ("middle", 128, True), ("largest", 1024, True)]
    assert zoo_sweep.plan(32, 256) == [("small", 32, False), ("middle", 64, True), ("largest", 256, True)]
    # the small batch does not fit: half the largest, and no batch lies between them
    assert zoo_sweep.plan(32, 16) == [("small", 8, False), ("largest", 16, True)]
    assert zoo_sweep.plan(32, 1) == [("largest", 1, True)]


def test_a_call_cut_short_is_resumed_without_measuring_again(models, tmp_path):
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    names = ",".join(models)
    done = sweep("--models", names, *SETTINGS, "--out", str(first))
    assert done.returncode == 0, done.stderr
    report = json.loads(first.read_text())
    tiny = [row for row in report["rows"] if row["model"] == models[0]]
    assert [(row["batch_role"], row["batch_per_gpu"]) for row in tiny] == [
        ("small", 2),
        ("middle", 4),
        ("largest", 8),
    ]
    assert next(row for row in report["rows"] if row["model"] == models[1])["error"]  # the sweep went on
    assert report["skipped"] == []

    # as if the call had been killed during the largest batch: the file lacks that row
    report["rows"] = [row for row in report["rows"] if row.get("batch_role") != "largest"]
    first.write_text(json.dumps(report))
    resumed = sweep("--models", names, *SETTINGS, "--resume", str(first), "--out", str(second))
    assert resumed.returncode == 0, resumed.stderr
    again = json.loads(second.read_text())
    assert again["rows"][: len(report["rows"])] == report["rows"]  # kept as they were, not re-measured
    assert [(row["model"], row.get("batch_role")) for row in again["rows"][len(report["rows"]) :]] == [
        (models[0], "largest")
    ]
    assert again["searches"] == report["searches"] and len(again["calls"]) == 2


def test_a_spent_budget_lists_the_models_left_and_resume_finishes_them(models, tmp_path):
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    cut = sweep("--models", models[0], *SETTINGS, "--budget-s", "0", "--out", str(first))
    assert cut.returncode == 0, cut.stderr
    assert json.loads(first.read_text())["skipped"] == [models[0]]
    assert json.loads(first.read_text())["rows"] == []
    finished = sweep("--models", models[0], *SETTINGS, "--resume", str(first), "--out", str(second))
    report = json.loads(second.read_text())
    assert report["skipped"] == [] and len(report["rows"]) == 3, finished.stdout


def test_resume_refuses_another_gpu_or_other_settings(models, tmp_path):
    first = tmp_path / "first.json"
    cut = sweep("--models", models[0], *SETTINGS, "--budget-s", "0", "--out", str(first))
    assert cut.returncode == 0, cut.stderr
    other_steps = [*SETTINGS[:-3], "2", *SETTINGS[-2:]]  # --steps 2
    refused = sweep(
        "--models", models[0], *other_steps, "--resume", str(first), "--out", str(tmp_path / "x.json")
    )
    assert refused.returncode == 2 and "other steps" in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1

    report = json.loads(first.read_text())
    first.write_text(json.dumps({**report, "gpu": "NVIDIA H200"}))
    refused = sweep(
        "--models", models[0], *SETTINGS, "--resume", str(first), "--out", str(tmp_path / "x.json")
    )
    assert refused.returncode == 2 and "NVIDIA H200" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "x.json").exists()


def test_tuned_code_is_a_setting_of_its_own_file(models, tmp_path):
    """NHWC with the cuDNN autotuner is recorded in the file and on every row; a plain file is not
    continued tuned; a file from before the setting existed was plain and resumes as such."""
    tuned = tmp_path / "tuned.json"
    done = sweep(
        "--models", models[0], *SETTINGS, "--channels-last", "--cudnn-benchmark", "--out", str(tuned)
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(tuned.read_text())
    assert report["settings"]["channels_last"] is report["settings"]["cudnn_benchmark"] is True
    rows = [r for r in report["rows"] if "error" not in r]
    assert rows and all(r["memory_format"] == "channels_last" and r["cudnn_benchmark"] for r in rows)

    plain = tmp_path / "plain.json"
    cut = sweep("--models", models[0], *SETTINGS, "--budget-s", "0", "--out", str(plain))
    assert cut.returncode == 0, cut.stderr
    refused = sweep(
        "--models",
        models[0],
        *SETTINGS,
        "--channels-last",
        "--resume",
        str(plain),
        "--out",
        str(tmp_path / "x.json"),
    )
    assert refused.returncode == 2 and "other channels_last" in refused.stderr

    older = json.loads(plain.read_text())
    for key in ("channels_last", "cudnn_benchmark"):
        del older["settings"][key]
    plain.write_text(json.dumps(older))
    resumed = sweep(
        "--models", models[0], *SETTINGS, "--resume", str(plain), "--out", str(tmp_path / "y.json")
    )
    assert resumed.returncode == 0, resumed.stderr


def test_a_largest_batch_halved_onto_the_middle_one_is_not_measured_twice(models, tmp_path, monkeypatch):
    """Under a second precision whose largest batch halves down to the middle batch (tf32 keeps
    activations in fp32), the middle row stands for it: a row that says so, not a second timing."""
    monkeypatch.setattr(
        sys, "argv", ["zoo_sweep.py", "--models", models[0], "--precisions", "bf16,fp32", "--small-batch",
                      "2", "--max-batch", "16", "--out", str(tmp_path / "z.json")],
    )  # fmt: skip
    args = zoo_sweep.parse()
    where = zoo_sweep.torch.device("cpu")
    sweep = zoo_sweep.Sweep(args, zoo_sweep.new_report(args, "cpu", where), 0.0, where)
    sweep.started = zoo_sweep.time.perf_counter()
    timed: list[tuple[str, int]] = []

    def fit_failure(resolved, batch, precision, *rest):  # fp32 fits up to batch 4, bf16 up to 16
        return "out of memory" if batch > (16 if precision == "bf16" else 4) else None

    def calibrate(name, batch, precision, **kwargs):
        timed.append((precision, batch))
        return {"model": name, "device_name": "cpu", "batch_per_gpu": batch, "step_ms": 1.0,
                "samples_per_s": batch * 1e3, "steps_ms": [1.0]}  # fmt: skip

    monkeypatch.setattr(zoo_sweep.benchmark, "fit_failure", fit_failure)
    monkeypatch.setattr(zoo_sweep.benchmark, "calibrate", calibrate)
    zoo_sweep.sweep_model(sweep, models[0])
    # bf16: small 2, middle 4, largest 16; fp32: small 2, middle 4, and its largest halves 16 -> 8 -> 4
    assert timed == [("bf16", 2), ("bf16", 4), ("bf16", 16), ("fp32", 2), ("fp32", 4)]
    last = sweep.report["rows"][-1]
    assert (last["precision"], last["batch_role"], last["batch_per_gpu"]) == ("fp32", "largest", 4)
    assert last["measured_already"] and last["halved_from"] == 16 and "step_ms" not in last
