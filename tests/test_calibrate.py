"""``ddlprof calibrate``: real training steps timed on this machine's device, the calibrations table
of the local store, and their use as the single-GPU basis of ``advise`` and ``model predict``.

The machine running the tests has no GPU: the steps run on the CPU, and the rows the predictions
use are stored for a GPU type directly through ``store_calibration`` (which a CPU measurement can
never reach through the command)."""

from __future__ import annotations

import json
import re
import sqlite3
import statistics

import pytest
from conftest import ddlprof

from ddlprof.errors import DdlprofError
from ddlprof.models import benchmark
from ddlprof.models.calibration import calibrated_step, default_precision, store_calibration
from ddlprof.runs.calibrations import load_calibrations
from ddlprof.runs.store import database_path

TINY = """\
from torch import nn


def build():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)
    )
"""


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.py"
    path.write_text(TINY, encoding="utf-8")
    return f"{path}:build"


def _row(step_ms: float, batch: int = 32, model: str = "resnet50", date: str = "2026-12-01", **extra):
    return {
        "model": model,
        "precision": default_precision(model),
        "batch_per_gpu": batch,
        "step_ms": step_ms,
        "steps_ms": [step_ms] * 3,
        "device_name": "NVIDIA L4",
        "torch": "2.13.0",
        "cuda": "13.0",
        "date": date,
        "calibrated_unix": 1.0,
        **extra,
    }


# -- the benchmark: real steps --------------------------------------------------------------------


def test_calibrate_times_real_training_steps_on_the_cpu(tiny):
    result = benchmark.calibrate(tiny, batch=4, steps=3, warmup=1)
    assert result["device"] == "cpu" and result["device_name"] == "cpu"
    assert len(result["steps_ms"]) == 3 and all(t > 0 for t in result["steps_ms"])
    assert result["step_ms"] == statistics.median(result["steps_ms"])
    assert result["samples_per_s"] == pytest.approx(4e3 / result["step_ms"])
    assert result["precision"] == "fp32" and result["batch_per_gpu"] == 4 and result["cuda"] is None
    # what one sample was, so a figure is compared only with others of the same input size
    assert result["input"]["kind"] == "image" and len(result["input"]["shape"]) == 3


def test_a_batch_that_runs_out_of_memory_names_the_largest_that_fit(tiny, monkeypatch):
    """An out-of-memory step (as CUDA raises it) above batch 8: one line naming 8."""
    real = benchmark._steps

    def steps(resolved, batch, *args, **kwargs):
        if batch > 8:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(resolved, batch, *args, **kwargs)

    monkeypatch.setattr(benchmark, "_steps", steps)
    with pytest.raises(DdlprofError, match=r"batch 100 does not fit .* the largest power of two that fit: 8"):
        benchmark.calibrate(tiny, batch=100, steps=1, warmup=0)


def test_a_precision_leaves_the_global_tf32_switches_as_they_were(tiny):
    """PyTorch's TF32 switches are process-wide: a tf32 run must not turn a later default run into TF32."""
    import torch

    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    for precision in ("tf32", "fp32", "bf16"):
        benchmark.calibrate(tiny, batch=2, steps=1, warmup=0, precision=precision)
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


# -- the store --------------------------------------------------------------------------------------


def test_a_cpu_is_never_stored_as_a_gpu_and_a_newer_row_replaces_the_older():
    with pytest.raises(DdlprofError, match="CPU is not a GPU type"):
        store_calibration(_row(10.0, device_name="cpu"))
    assert load_calibrations() == []
    stored = store_calibration(_row(50.0))
    assert stored["gpu"] == "L4"  # "NVIDIA L4", torch's name, as the specs table names it
    store_calibration(_row(40.0, date="2026-12-02"))
    store_calibration(_row(70.0, batch=64))
    rows = load_calibrations("L4", "resnet50")
    assert sorted((r["batch_per_gpu"], r["step_ms"], r["date"]) for r in rows) == [
        (32, 40.0, "2026-12-02"),
        (64, 70.0, "2026-12-01"),
    ]


def test_the_table_is_added_to_an_older_store_in_place():
    """A store with the runs table only, and one whose calibrations table lacks a later column."""
    path = database_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE calibrations (gpu TEXT NOT NULL, model TEXT NOT NULL, precision TEXT NOT NULL, "
            "batch_per_gpu INTEGER NOT NULL, step_ms REAL NOT NULL, "
            "PRIMARY KEY (gpu, model, precision, batch_per_gpu))"
        )
    assert load_calibrations() == []
    store_calibration(_row(33.0))
    (row,) = load_calibrations("L4")
    assert row["date"] == "2026-12-01" and row["torch"] == "2.13.0" and row["step_ms"] == 33.0
    with sqlite3.connect(path) as conn:  # the runs table of ddlprof.runs.store is there too
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"runs", "calibrations", "schema_version"} <= tables


def test_batches_other_than_the_calibrated_ones():
    store_calibration(_row(50.0, batch=32))
    assert calibrated_step("resnet50", "L4", 32).step_ms == 50.0
    assert calibrated_step("resnet50", "L4", 64) is None  # one batch: not scaled
    assert calibrated_step("resnet50", "L4", 32, precision="bf16") is None  # another precision
    assert calibrated_step("resnet50", "T4", 32) is None  # another GPU type
    store_calibration(_row(90.0, batch=64))
    between = calibrated_step("resnet50", "L4", 48)
    assert between.step_ms == pytest.approx(70.0) and "linear between" in between.how
    assert calibrated_step("resnet50", "L4", 128).step_ms == pytest.approx(170.0)
    assert calibrated_step("resnet50", "nvidia-l4", 64).description.startswith(
        "calibrated on this GPU type (L4) on 2026-12-01"
    )


# -- use in advise and model predict ------------------------------------------------------------------


def _advise_l4(precision: str = "tf32") -> dict:
    """advise at the precision the calibrations below are stored at (resnet50's default, tf32)."""
    instances = ("--instances", "g6.xlarge,g5.xlarge", "--batch-per-gpu", "32")  # the calibrated batch
    done = ddlprof("advise", "--model", "resnet50", *instances, "--precision", precision, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _single(result: dict, gpu: str) -> dict:
    return next(o for o in result["options"] if o["gpu"] == gpu and o["count"] == 1)


def test_advise_and_model_predict_use_a_calibration_of_the_gpu_type():
    before = _advise_l4()
    scaled = _single(before, "L4")
    assert not scaled["step_basis"].startswith("calibrated")
    assert "single_gpu_step_ms" not in scaled["provenance"]
    calibrated_ms = round(scaled["single_gpu_step_ms"] * 1.7, 3)  # unlike the roofline scaling
    store_calibration(_row(calibrated_ms, date="2026-12-03"))

    after = _advise_l4()
    l4, a10g = _single(after, "L4"), _single(after, "A10G")
    assert l4["single_gpu_step_ms"] == pytest.approx(calibrated_ms, abs=1e-3)
    assert l4["step_ms"] == pytest.approx(calibrated_ms, abs=1e-3)  # one GPU: no stall
    assert l4["step_basis"].startswith("calibrated on this GPU type (L4) on 2026-12-03")
    assert "calibrated on this GPU type (L4) on 2026-12-03" in l4["provenance"]["single_gpu_step_ms"]
    assert l4["throughput_samples_per_s"] == pytest.approx(32e3 / calibrated_ms, rel=1e-3)
    assert not a10g["step_basis"].startswith("calibrated")  # no calibration of the A10G: scaled as before
    assert a10g["single_gpu_step_ms"] == _single(before, "A10G")["single_gpu_step_ms"]
    # a calibration is a basis at its own precision only: under amp (bf16 on an L4) it is not used
    assert not _single(_advise_l4("amp"), "L4")["step_basis"].startswith("calibrated")

    l4 = ("--instances", "g6.xlarge", "--precision", "tf32", "--batch-per-gpu", "32")
    text = ddlprof("advise", "--model", "resnet50", *l4)
    flat = re.sub(r"[\s│]+", " ", text.stdout)  # a cell wrapped over two table lines read as one
    assert text.returncode == 0 and "calibrated on this GPU type (L4) on 2026-12-03" in flat

    done = ddlprof(
        "model", "predict", "--model", "resnet50", "--batch-per-gpu", "32", "--gpus-per-node", "1",
        "--gpu", "L4", "--precision", "tf32", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    predicted = json.loads(done.stdout)
    assert predicted["single_gpu_step_ms"] == pytest.approx(calibrated_ms)
    assert "calibrated on this GPU type (L4)" in predicted["inputs"]["sources"]["single_gpu_step_ms"]


def test_a_batch_beyond_the_calibrated_ones_widens_the_range():
    """Calibrated at 32 and 64 on the L4: advise at 128 (the L4's 24 GB hold no more) extrapolates them
    one doubling, and its error says so and is wider than at 64, a calibrated batch."""
    store_calibration(_row(50.0, batch=32))
    store_calibration(_row(90.0, batch=64))

    def l4(batch: str) -> dict:
        l4 = ("--instances", "g6.xlarge", "--precision", "tf32", "--batch-per-gpu", batch, "--json")
        done = ddlprof("advise", "--model", "resnet50", *l4)
        assert done.returncode == 0, done.stderr
        return _single(json.loads(done.stdout), "L4")

    inside, beyond = l4("64"), l4("128")
    assert inside["step_basis"].startswith("calibrated") and beyond["step_basis"].startswith("calibrated")
    assert beyond["single_gpu_step_ms"] == pytest.approx(170.0)
    assert "doubling" not in inside["error_basis"]
    assert "batch 128 lies 1.0 doubling(s) outside the measured 32-64" in beyond["error_basis"]
    assert beyond["error_pct"] > inside["error_pct"]


# -- the command ------------------------------------------------------------------------------------


def test_calibrate_command_on_the_cpu_prints_what_it_measured_and_stores_nothing(tiny):
    done = ddlprof("calibrate", "--model", tiny, "--steps", "2", "--warmup", "1", "--batch-per-gpu", "4")
    assert done.returncode == 0, done.stderr
    assert "no CUDA GPU here" in done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith(f"{tiny} on cpu: ") and "ms per step (median of 2" in first and "batch 4" in first
    assert "not stored" in done.stdout
    assert load_calibrations() == []

    done = ddlprof("calibrate", "--model", tiny, "--steps", "2", "--warmup", "0", "--json")
    assert done.returncode == 0, done.stderr
    (result,) = json.loads(done.stdout)["calibrations"]
    assert len(result["steps_ms"]) == 2 and result["stored"] is None and result["batch_per_gpu"] == 32


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "resnet5"], "unknown model 'resnet5'; did you mean resnet50"),
        (["--steps", "0"], "--steps: 0 is outside the allowed range: from 1 to 100,000"),
        (["--gpu", "L4"], "no CUDA GPU here; a CPU step is never stored as a GPU"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, tiny):
    done = ddlprof("calibrate", *args)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if "no CUDA GPU here: the steps run" not in line]
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("ddlprof calibrate: error:")
    if "--model" in args:  # an unknown model is refused before the CPU note, alone
        assert len(done.stderr.splitlines()) == 1


#: A CNN that fails a step unless its input is NHWC, and notes the cuDNN autotuner's switch it ran with.
NHWC_ONLY = """\
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.head = nn.Conv2d(3, 8, 3, padding=1), nn.Linear(8, 10)

    def forward(self, x):
        if not x.is_contiguous(memory_format=torch.channels_last):
            raise RuntimeError("input not channels_last")
        with open(__file__ + ".seen", "a") as seen:
            seen.write(f"{torch.backends.cudnn.benchmark}\\n")
        return self.head(self.conv(x).mean((2, 3)))


def build():
    return Net()
"""


def test_tuning_runs_nhwc_with_the_autotuner_and_puts_the_switch_back(tmp_path):
    """Tuned code (channels_last, cudnn.benchmark) is a setting of the measurement, recorded with it;
    the process-wide cuDNN switch is as it was afterwards."""
    import torch

    path = tmp_path / "nhwc_only.py"
    path.write_text(NHWC_ONLY, encoding="utf-8")
    name = f"{path}:build"
    with pytest.raises(DdlprofError, match="input not channels_last"):
        benchmark.calibrate(name, batch=2, steps=1, warmup=0)
    before = torch.backends.cudnn.benchmark
    tuned = benchmark.Tuning(channels_last=True, cudnn_benchmark=True)
    result = benchmark.calibrate(name, batch=2, steps=2, warmup=1, tuning=tuned)
    assert result["memory_format"] == "channels_last" and result["cudnn_benchmark"] is True
    seen = path.with_suffix(".py.seen").read_text().split()
    assert seen and set(seen) == {"True"}
    assert torch.backends.cudnn.benchmark == before
    plain = benchmark.calibrate(name, batch=2, steps=1, warmup=0, tuning=benchmark.Tuning(channels_last=True))
    assert plain["cudnn_benchmark"] is False
    assert path.with_suffix(".py.seen").read_text().split()[-1] == "False"


# -- steps ddlprof measured itself on a GPU type ------------------------------------------------------


def _shipped(model: str, gpu: str, precision: str) -> dict[int, float]:
    from ddlprof.models.calibration import shipped_table

    rows = shipped_table()["rows"]
    return {
        r["batch_per_gpu"]: r["step_ms"]
        for r in rows
        if (r["model"], r["gpu"], r["precision"]) == (model, gpu, precision)
    }


def test_a_step_ddlprof_measured_on_the_gpu_type_is_the_basis_with_the_machine_spread():
    """resnet50 under AMP on an H100 is read from the H100 zoo sweep (between its measured batches),
    not scaled from the H200; it quotes the measured spread between two H100 machines."""
    from ddlprof.models.calibration import shipped_table

    measured = _shipped("resnet50", "H100", "bf16")
    assert len(measured) >= 2
    (b0, t0), (b1, t1) = sorted(measured.items())[:2]
    batch = (b0 + b1) // 2
    found = calibrated_step("resnet50", "H100", batch, precision="amp")
    assert found.shipped and found.precision == "bf16"
    assert found.step_ms == pytest.approx(t0 + (t1 - t0) * (batch - b0) / (b1 - b0))
    spread = shipped_table()["machine_spread_pct"]
    assert found.spread_pct == spread > 0
    assert found.description.startswith("measured by ddlprof on H100")

    done = ddlprof(
        "advise", "--model", "resnet50", "--instances", "p5.48xlarge,p4d.24xlarge", "--batch-per-gpu",
        str(batch), "--precision", "amp", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    options = json.loads(done.stdout)["options"]
    h100, a100 = _single_gpu_of(options, "H100"), _single_gpu_of(options, "A100")
    assert h100["step_basis"].startswith("measured by ddlprof on H100")
    assert f"spread between two H100 machines, {spread:g}%" in h100["error_basis"]
    assert h100["error_pct"] >= spread
    assert a100["step_basis"].startswith("scaled from H200")  # no measurement of the A100: scaled


def _single_gpu_of(options: list[dict], family: str) -> dict:
    return next(o for o in options if o["gpu"].startswith(family) and o["count"] == 1)


def test_the_users_own_calibration_wins_over_ddlprofs_measurement():
    measured = _shipped("resnet50", "H100", "bf16")
    batch = min(measured)
    store_calibration(
        _row(measured[batch] * 2, batch=batch, precision="bf16", device_name="NVIDIA H100 80GB HBM3")
    )
    found = calibrated_step("resnet50", "H100", batch, precision="bf16")
    assert found.step_ms == pytest.approx(measured[batch] * 2)
    assert not found.shipped and found.spread_pct == 0.0


def test_a_default_calibration_is_the_step_a_default_advise_uses():
    """calibrate and advise both default to amp: on an L4 (BF16 tensor cores) that is bf16, stored as
    bf16, and looked up as bf16 by advise's amp; a V100 or T4 autocasts to fp16."""
    from ddlprof.models.calibration import amp_precision

    assert amp_precision("NVIDIA L4") == "bf16" and amp_precision("Tesla T4") == "fp16"
    assert amp_precision("Tesla V100-SXM2-16GB") == "fp16" and amp_precision(None) == "bf16"
    assert amp_precision("Some Future GPU", bf16_supported=False) == "fp16"
    for batch, ms in ((32, 40.0), (64, 70.0)):
        store_calibration(_row(ms, batch=batch, precision=amp_precision("NVIDIA L4")))
    done = ddlprof(
        "advise", "--model", "resnet50", "--instances", "g6.xlarge", "--batch-per-gpu", "48", "--json"
    )
    assert done.returncode == 0, done.stderr
    option = _single(json.loads(done.stdout), "L4")
    assert option["precision"] == "amp-bf16" and option["step_basis"].startswith(
        "calibrated on this GPU type (L4)"
    )
    assert option["single_gpu_step_ms"] == pytest.approx(55.0)


def test_calibrate_defaults_to_amp(tiny):
    done = ddlprof(
        "calibrate", "--model", tiny, "--steps", "1", "--warmup", "0", "--batch-per-gpu", "2", "--json"
    )
    assert done.returncode == 0, done.stderr
    (result,) = json.loads(done.stdout)["calibrations"]
    assert (
        result["precision"] == "bf16" and result["precision_settings"] == "bf16"
    )  # on the CPU: bf16 autocast


def test_a_gpu_type_without_a_step_of_its_own_is_scaled_from_the_same_chips():
    """The H200 is the H100's chip with faster memory: resnet50 under AMP on an H200 comes from the H100
    step ddlprof measured, its memory-bound part scaled, so it lies between that step and the step
    divided by the bandwidth ratio (where scaling the H200's TF32 step had put it 1.65x faster at batch
    1024, beyond what memory alone can give). Its error keeps the spread between machines."""
    from ddlprof.models.gpus import get_gpu, same_chip
    from ddlprof.models.predict import predict

    assert same_chip("H200") == ["H100"] and "A100-80GB-PCIe" not in same_chip("A100-80GB")
    assert same_chip("T4") == []
    bandwidth = get_gpu("H200").memory_bandwidth_gbps / get_gpu("H100").memory_bandwidth_gbps
    for batch in (128, 1024):
        h100 = predict("resnet50", batch, 1, 1, gpu="H100", precision="amp")["single_gpu_step_ms"]
        h200 = predict("resnet50", batch, 1, 1, gpu="H200", precision="amp")
        assert h100 / bandwidth <= h200["single_gpu_step_ms"] < h100
        assert "the measured spread between two machines" in h200["error"]["basis"]


def test_a_calibration_of_one_memory_size_is_the_basis_of_the_other():
    """A user who calibrated an A100-80GB gets the A100-40GB's step from it (the same chip), no longer
    from the H200 dataset's step at another precision."""
    store_calibration(_row(200.0, batch=32, device_name="NVIDIA A100-SXM4-80GB"))
    store_calibration(_row(380.0, batch=64, device_name="NVIDIA A100-SXM4-80GB"))
    done = ddlprof(
        "advise", "--model", "resnet50", "--instances", "p4d.24xlarge,p4de.24xlarge", "--batch-per-gpu",
        "64", "--precision", "tf32", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    options = json.loads(done.stdout)["options"]
    a80, a40 = _single_gpu_of(options, "A100-80GB"), _single_gpu_of(options, "A100-40GB")
    assert a80["single_gpu_step_ms"] == pytest.approx(380.0)
    assert a40["step_basis"].startswith("scaled from A100-80GB tf32 calibrated (same chip)")
    assert 380.0 < a40["single_gpu_step_ms"] <= 380.0 * 2039 / 1555  # slower memory, the same SMs
