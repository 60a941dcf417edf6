"""Energy per step and per sample from the NVML samples a run's sampler writes, with a fake NVML."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import pynvml
import pytest

from ddlprof.profiler import gpu_sampler
from ddlprof.runs.energy import COUNTER, INTEGRATED, energy_line
from ddlprof.runs.rundir import load_run
from ddlprof.runs.summary import summarize

STEP_S, BATCH, STEPS, T0 = 0.5, 32, 20, 1000.0


class FakeNvml:
    """A GPU drawing ``counter_w`` by its energy counter, while its power samples read ``sampled_w``
    (they differ, so a test sees which one a figure came from)."""

    def __init__(self, counter_w: float | None, sampled_w: float) -> None:
        self.counter_w, self.sampled_w, self.now = counter_w, sampled_w, 0.0

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def energy(handle):
            if self.counter_w is None:
                raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
            return int(5e9 + self.counter_w * 1e3 * self.now)  # mJ since the driver loaded

        fakes = {
            "nvmlDeviceGetTotalEnergyConsumption": energy,
            "nvmlDeviceGetPowerUsage": lambda handle: int(self.sampled_w * 1e3),  # mW
            "nvmlDeviceGetUtilizationRates": lambda handle: SimpleNamespace(gpu=40, memory=10),
            "nvmlDeviceGetMemoryInfo": lambda handle: SimpleNamespace(used=2**30, total=80 * 2**30),
            "nvmlDeviceGetClockInfo": lambda handle, clock: 1980,
            "nvmlDeviceGetPcieThroughput": lambda handle, counter: 1000,
        }
        for name, fake in fakes.items():
            monkeypatch.setattr(pynvml, name, fake)


def _gpu_run(tmp_path, nvml: FakeNvml, device: str = "cuda:0", visible: str | None = None):
    """A one-rank run of STEPS steps of STEP_S seconds from T0, sampled every 0.25 s by the sampler's
    own row function over a fake NVML, from 1 s before the first step to 1 s after the last."""
    run = tmp_path / "run"
    for part in ("ranks", "nodes", "gpu"):
        (run / part).mkdir(parents=True)
    manifest = {"schema": "ddlprof.run", "schema_version": 1, "run_id": "r", "created_unix": T0}
    (run / "manifest.json").write_text(json.dumps({**manifest, "command": ["python", "t.py"]}))
    env = {"CUDA_VISIBLE_DEVICES": visible} if visible is not None else {}
    node = {"node_id": "node0-h", "host": "h", "env": env, "gpu_sampling": {"enabled": True}}
    (run / "nodes" / "node0-h.json").write_text(json.dumps(node))
    header = {"type": "rank", "rank": 0, "world_size": 1, "host": "h", "device": device}
    steps = [
        {
            "type": "step",
            "step": n,
            "start": T0 + (n - 1) * STEP_S,
            "end": T0 + n * STEP_S,
            "step_ms": STEP_S * 1e3,
            "data_wait_ms": 0.0,
            "samples": BATCH,
        }
        for n in range(1, STEPS + 1)
    ]
    lines = [header, *steps, {"type": "end"}]
    (run / "ranks" / "rank-0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    with open(run / "gpu" / "h.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(gpu_sampler.COLUMNS)
        for i in range(int((STEPS * STEP_S + 2) / 0.25) + 1):
            nvml.now = T0 - 1 + 0.25 * i
            writer.writerow(gpu_sampler._sample(pynvml, 0, object(), [], nvml.now, {}))
    return run


def test_joules_per_step_and_sample_come_from_the_energy_counter(tmp_path, monkeypatch):
    nvml = FakeNvml(counter_w=200.0, sampled_w=150.0)
    nvml.install(monkeypatch)
    result = summarize([load_run(_gpu_run(tmp_path, nvml))])["energy"]
    assert result["method"] == COUNTER and result["reason"] is None
    assert result["mean_power_w"] == pytest.approx(200.0, rel=1e-6)
    assert result["joules_per_step"] == pytest.approx(200.0 * STEP_S)  # 100 J per 0.5 s step
    assert result["joules_per_sample"] == pytest.approx(200.0 / (BATCH / STEP_S))  # 3.125 J
    seconds = STEPS * STEP_S + 2  # every sample of the run, not only the steady window
    assert result["run_kwh"] == pytest.approx(200.0 * seconds / 3.6e6, rel=1e-6)
    line = energy_line(result)
    assert "100.00 J per step" in line and "3.1250 J per sample" in line and "energy counter" in line


def test_without_a_counter_power_samples_are_integrated_and_said_so(tmp_path, monkeypatch):
    nvml = FakeNvml(counter_w=None, sampled_w=150.0)
    nvml.install(monkeypatch)
    result = summarize([load_run(_gpu_run(tmp_path, nvml))])["energy"]
    assert result["method"] == INTEGRATED
    assert "integrated" in result["reason"]
    assert result["joules_per_step"] == pytest.approx(150.0 * STEP_S)
    assert result["joules_per_sample"] == pytest.approx(150.0 / (BATCH / STEP_S))
    assert result["run_kwh"] == pytest.approx(150.0 * (STEPS * STEP_S + 2) / 3.6e6, rel=1e-6)


def test_only_the_gpu_the_rank_ran_on_counts(tmp_path, monkeypatch):
    """CUDA_VISIBLE_DEVICES=3 makes the rank's cuda:0 NVML's GPU 3; samples of GPU 0 are not its."""
    nvml = FakeNvml(counter_w=200.0, sampled_w=150.0)
    nvml.install(monkeypatch)
    result = summarize([load_run(_gpu_run(tmp_path, nvml, visible="3"))])["energy"]
    assert result["joules_per_step"] is None and result["gpus"] == 0
    assert "ranks ran on" in result["reason"]


def test_a_cpu_run_has_no_energy_and_says_why(tmp_path, monkeypatch):
    nvml = FakeNvml(counter_w=200.0, sampled_w=150.0)
    nvml.install(monkeypatch)  # a host with a GPU, but the job ran on the CPU: its energy is not the job's
    result = summarize([load_run(_gpu_run(tmp_path, nvml, device="cpu"))])["energy"]
    assert result["joules_per_step"] is None and result["joules_per_sample"] is None
    assert result["run_kwh"] is None and result["method"] is None
    assert "CPU" in result["reason"]
    assert energy_line(result).startswith("energy: n/a (the job ran on the CPU")
