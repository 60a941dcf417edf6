"""GPU specs table and cross-GPU compute scaling (ddlprof.models.gpus).

No cross-GPU ground truth exists in this repo (every GPU benchmark ran on H200s), so these tests check
the table's integrity and the scaling's invariants, not its accuracy.
"""

import csv
import itertools
import math
import subprocess
import sys
from importlib import resources

import pytest

from ddlprof.errors import DdlprofError
from ddlprof.models import gpus

REQUIRED = [
    "K80",
    "T4",
    "V100-16GB",
    "V100-32GB",
    "A10G",
    "L4",
    "L40S",
    "A100-40GB",
    "A100-80GB",
    "H100",
    "H200",
]


def _rows() -> list[dict[str, str]]:
    text = resources.files("ddlprof.models").joinpath("data/gpu_specs.csv").read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


def test_every_required_gpu_is_in_the_table():
    assert set(REQUIRED) <= set(gpus.list_gpus())


def test_every_row_cites_a_source_and_has_the_core_numbers():
    rows = _rows()
    assert [r["gpu"] for r in rows] == gpus.list_gpus()
    for row in rows:
        assert row["source"].startswith("https://"), row["gpu"]
        assert row["source_date"], row["gpu"]
        for column in ("memory_gb", "memory_bandwidth_gbps", "fp32_tflops", "pcie_gen"):
            assert float(row[column]) > 0, (row["gpu"], column)


def test_known_numbers_match_their_datasheets():
    # These guard against a corrupted table, not against NVIDIA: each number is the one the cited
    # datasheet or whitepaper prints (tensor figures as the dense half of the sparsity figure).
    expected = {
        ("H100", "memory_bandwidth_gbps"): 3350,
        ("H200", "memory_bandwidth_gbps"): 4800,
        ("H200", "memory_gb"): 141,
        ("A100-40GB", "memory_bandwidth_gbps"): 1555,
        ("A100-80GB", "memory_bandwidth_gbps"): 2039,
        ("V100-16GB", "memory_bandwidth_gbps"): 900,
        ("V100-32GB", "memory_bandwidth_gbps"): 900,
        ("A100-40GB", "tf32_tflops"): 156,
        ("A100-40GB", "bf16_tflops"): 312,
        ("H100", "bf16_tflops"): 989.5,
        ("H100", "fp32_tflops"): 67,
        ("V100-16GB", "fp16_tflops"): 125,
        ("T4", "fp16_tflops"): 65,
        ("L4", "bf16_tflops"): 121,
        ("L40S", "memory_bandwidth_gbps"): 864,
        ("A100-40GB", "sm_count"): 108,
        ("H100", "sm_count"): 132,
        ("H200", "sm_count"): 132,
        ("K80", "memory_gb"): 12,
        ("K80", "memory_bandwidth_gbps"): 240,
    }
    for (name, column), value in expected.items():
        assert getattr(gpus.get_gpu(name), column) == pytest.approx(value), (name, column)


def test_tensor_precisions_exist_only_where_the_hardware_has_them():
    assert gpus.get_gpu("V100-16GB").tf32_tflops is None
    assert gpus.get_gpu("V100-16GB").bf16_tflops is None
    assert gpus.get_gpu("T4").bf16_tflops is None
    assert gpus.get_gpu("K80").fp16_tflops is None
    for name in ("A10G", "L4", "L40S", "A100-40GB", "H100", "H200"):
        spec = gpus.get_gpu(name)
        # Dense tensor peaks sit above the CUDA-core fp32 peak and in the usual 1:2 TF32:FP16 ratio.
        assert spec.tf32_tflops > spec.fp32_tflops or name == "A10G"
        assert spec.fp16_tflops == pytest.approx(2 * spec.tf32_tflops, rel=0.02), name


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("NVIDIA H200", "H200"),
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("Tesla V100-SXM2-16GB", "V100-16GB"),
        ("Tesla V100-SXM2-32GB", "V100-32GB"),
        ("NVIDIA A100-SXM4-40GB", "A100-40GB"),
        ("A100-SXM4-40GB", "A100-40GB"),
        ("NVIDIA A100-SXM4-80GB", "A100-80GB"),
        ("NVIDIA A100 80GB PCIe", "A100-80GB-PCIe"),
        ("NVIDIA A10G", "A10G"),
        ("Tesla T4", "T4"),
        ("Tesla K80", "K80"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA L40S", "L40S"),
        ("nvidia-tesla-v100", "V100-16GB"),
        ("nvidia-tesla-a100", "A100-40GB"),
        ("nvidia-h200-141gb", "H200"),
        ("h200", "H200"),
        ("t4", "T4"),
        ("  nvidia h100 pcie ", "H100-PCIe"),
        ("v100 32gb", "V100-32GB"),
    ],
)
def test_lookup_by_nvml_cloud_and_loose_names(name, canonical):
    assert gpus.get_gpu(name).gpu == canonical


def test_vague_name_is_refused_unless_memory_settles_it():
    with pytest.raises(DdlprofError, match=r"ambiguous GPU type 'A100'.*A100-40GB.*A100-80GB"):
        gpus.get_gpu("A100")
    assert gpus.get_gpu("A100", memory_gb=40).gpu == "A100-40GB"
    assert gpus.get_gpu("V100", memory_gb=32).gpu == "V100-32GB"
    with pytest.raises(DdlprofError, match="ambiguous"):
        gpus.get_gpu("A100", memory_gb=80)  # SXM and PCIe both have 80 GB
    with pytest.raises(DdlprofError, match="unknown"):
        gpus.get_gpu("L40", memory_gb=48)  # an L40 is not an L40S, whatever its memory


@pytest.mark.parametrize(("name", "suggested"), [("H300", "H200"), ("NVIDIA L40", "L40S"), ("A10H", "A10G")])
def test_unknown_name_suggests_close_ones_in_one_line(name, suggested):
    with pytest.raises(DdlprofError) as info:
        gpus.get_gpu(name)
    message = str(info.value)
    assert "\n" not in message
    assert f"unknown GPU type '{name}'" in message
    assert suggested in message.split("closest known:")[1]


PLAIN = (1.0, 1.0)  # the plain roofline ratios, no fitted exponents


def test_same_gpu_predicts_the_same_time():
    for name, precision in itertools.product(gpus.list_gpus(), gpus.PRECISION_COLUMNS):
        result = gpus.scale_compute_ms(123.4, name, name, precision)
        assert result["predicted_ms"] == pytest.approx(123.4)


def test_a_gpu_better_in_both_never_predicts_slower():
    specs = [gpus.get_gpu(n) for n in gpus.list_gpus()]
    for a, b in itertools.permutations(specs, 2):
        for precision in gpus.PRECISION_COLUMNS:
            faster = b.peak_tflops(precision)[0] >= a.peak_tflops(precision)[0]
            if not (faster and b.memory_bandwidth_gbps >= a.memory_bandwidth_gbps):
                continue
            for fraction in (0.0, 0.3, 1.0, None):
                result = gpus.scale_compute_ms(50.0, a.gpu, b.gpu, precision, fraction)
                assert result["predicted_ms"] <= 50.0 + 1e-9, (a.gpu, b.gpu, precision, fraction)


def test_prediction_is_monotonic_in_the_target_peak_and_bandwidth():
    # H100 and H200 have the same peaks and H200 more bandwidth: never slower, and strictly faster
    # as soon as any of the step is memory-bound.
    assert gpus.scale_compute_ms(10, "H100", "H200", "bf16", 1.0)["predicted_ms"] == pytest.approx(10)
    assert gpus.scale_compute_ms(10, "H100", "H200", "bf16", 0.7)["predicted_ms"] < 10
    # A100-40GB and -80GB differ only in bandwidth.
    slow, fast = (
        gpus.scale_compute_ms(10, "T4", g, "fp16", 0.5)["predicted_ms"] for g in ("A100-40GB", "A100-80GB")
    )
    assert fast < slow


def test_scaling_arithmetic_and_provenance():
    result = gpus.scale_compute_ms(100.0, "A100-40GB", "H100", "bf16", compute_fraction=0.6, exponents=PLAIN)
    compute = 60.0 * 312 / 989.5
    memory = 40.0 * 1555 / 3350
    assert result["predicted_ms"] == pytest.approx(compute + memory)
    assert result["compute_ms_to"] == pytest.approx(compute)
    assert result["memory_ms_to"] == pytest.approx(memory)
    assert result["compute_fraction_source"] == "given"
    assert result["from_peak_column"] == result["to_peak_column"] == "bf16_tflops"
    assert result["from_source"].startswith("https://") and result["to_source"].startswith("https://")
    assert result["speedup"] == pytest.approx(100.0 / result["predicted_ms"])


def test_default_split_is_flagged():
    result = gpus.scale_compute_ms(100.0, "H200", "T4")
    assert result["compute_fraction"] == gpus.DEFAULT_COMPUTE_FRACTION
    assert result["compute_fraction_source"] == "default"
    assert any("assumed" in note for note in result["notes"])


def test_fallback_precisions_are_noted():
    result = gpus.scale_compute_ms(10.0, "V100-16GB", "A100-40GB", "tf32", 1.0, exponents=PLAIN)
    # Same fp32 code: CUDA cores on the V100, TF32 tensor cores on the A100 (cuDNN's default for convs).
    assert result["from_peak_column"] == "fp32_tflops"
    assert result["to_peak_column"] == "tf32_tflops"
    assert result["predicted_ms"] == pytest.approx(10.0 * 15.7 / 156)
    assert any("V100-16GB has no tf32_tflops" in note for note in result["notes"])
    assert gpus.scale_compute_ms(10.0, "T4", "T4", "bf16")["from_peak_column"] == "fp32_tflops"


def test_roofline_split_from_flops_and_bytes():
    spec = gpus.get_gpu("A100-80GB")
    ridge = 312e12 / 2039e9  # FLOP/byte
    flops_per_sample, batch = 1e9, 64
    # Bytes (counted at fp32; bf16 activations are half of them) chosen so the workload sits exactly
    # on the ridge: half compute-bound.
    bytes_per_step = flops_per_sample * batch / ridge / gpus.HALF_BYTES
    result = gpus.scale_compute_ms(
        20.0,
        spec.gpu,
        "H100",
        "bf16",
        flops_per_sample=flops_per_sample,
        batch=batch,
        bytes_per_step=bytes_per_step,
    )
    assert result["compute_fraction_source"] == "roofline"
    assert result["compute_fraction"] == pytest.approx(0.5)
    assert result["arithmetic_intensity"] == pytest.approx(ridge)
    assert result["from_ridge_point"] == pytest.approx(ridge)
    far_above = gpus.roofline_compute_fraction("A100-80GB", "bf16", 1e15, 1e9)["compute_fraction"]
    far_below = gpus.roofline_compute_fraction("A100-80GB", "bf16", 1e9, 1e12)["compute_fraction"]
    assert far_above > 0.99 and far_below < 0.01


def test_fixed_time_is_carried_over_unscaled():
    result = gpus.scale_compute_ms(
        10.0, "T4", "H100", "fp16", compute_fraction=1.0, fixed_ms=4.0, exponents=PLAIN
    )
    assert result["predicted_ms"] == pytest.approx(4.0 + 6.0 * 65 / 989.5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"step_ms": 0.0},
        {"step_ms": math.nan},
        {"step_ms": "fast"},
        {"precision": "fp8"},
        {"compute_fraction": 1.5},
        {"fixed_ms": 200.0},
        {"flops_per_sample": 1e9},
        {"flops_per_sample": 1e9, "batch": 0, "bytes_per_step": 1e9},
        {"to_gpu": "B300"},
    ],
)
def test_bad_input_is_one_clear_error(kwargs):
    args = {"step_ms": 100.0, "from_gpu": "H200", "to_gpu": "A100-80GB", **kwargs}
    with pytest.raises(DdlprofError):
        gpus.scale_compute_ms(**args)


def test_module_does_not_import_torch():
    code = "import ddlprof.models.gpus as g, sys; g.list_gpus(); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_measured_model_is_split_by_its_own_roofline(monkeypatch):
    """H200 -> H100 (same peak FLOP/s, 30% less bandwidth): bert-base's matmuls are compute-bound and
    stay near the H200 time; mobilenet_v3_large's small kernels move many bytes per FLOP, so the part
    of its step that grows with the batch is scaled almost by the bandwidth ratio, while its
    batch-independent (launch-bound) part is kept (benchmarks/cross_gpu_check.py measures both on an
    H100: 1.05x the H200 step at batch 64). The scaling itself: the H100 steps ddlprof measured, which
    a prediction uses before scaling, are set aside."""
    from ddlprof.models import calibration
    from ddlprof.models.memory import bytes_moved_per_step
    from ddlprof.models.predict import fixed_step_ms, predict

    monkeypatch.setattr(calibration, "shipped_table", lambda: {"rows": [], "machine_spread_pct": 0.0})

    ratio = 4800 / 3350
    for model, low, high in (("bert-base", 1.0, 1.1), ("mobilenet_v3_large", 1.3, ratio)):
        got = predict(model, 64, 1, 1, gpu="H100")
        h200 = predict(model, 64, 1, 1, gpu="H200")["single_gpu_step_ms"]
        fixed = fixed_step_ms(model)
        assert 0 < fixed < h200
        assert low <= (got["single_gpu_step_ms"] - fixed) / (h200 - fixed) <= high + 1e-9, model
        assert "roofline" in got["inputs"]["sources"]["single_gpu_step_ms"], got["inputs"]["sources"]
    assert bytes_moved_per_step("bert-base", 64) > bytes_moved_per_step("bert-base", 32) > 0
    assert bytes_moved_per_step("not-a-model", 64) is None


def test_scaling_credits_the_measured_precision():
    """A TF32 step predicted at AMP on the same GPU gets the 16-bit peak and half the activation bytes;
    the peak ratio is peak(from GPU, from precision) / peak(to GPU, precision)."""
    same = gpus.scale_compute_ms(10.0, "H200", "H200", "amp", 0.5, from_precision="tf32", exponents=PLAIN)
    assert same["precision"] == "amp-bf16" and same["from_precision"] == "tf32"
    assert same["compute_ratio"] == pytest.approx(494.5 / 989.5)
    assert same["bytes_ratio"] == pytest.approx(gpus.HALF_BYTES)
    assert same["predicted_ms"] == pytest.approx(5 * 494.5 / 989.5 + 5 * gpus.HALF_BYTES)
    assert any("measured at tf32, predicted at amp-bf16" in n for n in same["notes"])
    # only the activations' share of the memory-bound bytes halves
    part = gpus.scale_compute_ms(
        10.0, "H200", "H200", "bf16", 0.0, from_precision="tf32", activation_share=0.6, exponents=PLAIN
    )
    assert part["predicted_ms"] == pytest.approx(10 * (1 - 0.6 * 0.5))
    # AMP is bf16 where the GPU has it, else fp16; back from AMP to fp32 loses the tensor cores
    v100 = gpus.scale_compute_ms(10.0, "H200", "V100-16GB", "amp", 1.0, from_precision="tf32")
    assert v100["precision"] == "amp-fp16" and v100["to_peak_column"] == "fp16_tflops"
    assert v100["compute_ratio"] == pytest.approx(494.5 / 125)
    back = gpus.scale_compute_ms(
        10.0, "A100-80GB", "A100-80GB", "fp32", 1.0, from_precision="amp-bf16", exponents=PLAIN
    )
    assert back["predicted_ms"] == pytest.approx(10 * 312 / 19.5)
    # unchanged precision: as before (the from precision defaults to the precision)
    assert gpus.scale_compute_ms(10.0, "H100", "H200", "amp", 0.5)["bytes_ratio"] == 1.0


def test_the_fitted_exponents_shrink_the_ratios_and_beat_plain_ratios_on_the_published_rows():
    """The shipped fit (benchmarks/fit_cross_gpu.py) raises each ratio to an exponent in (0, 1]: a
    prediction lies between the measured time and the plain-ratio one, and over the published 1-GPU
    rows it is closer to them than the plain ratios are."""
    import statistics

    from ddlprof.models.predict import predict
    from ddlprof.models.published import load_published

    fit = gpus.cross_gpu_fit()
    assert 0 < fit["compute_exponent"] <= 1 and 0 < fit["memory_exponent"] <= 1
    plain = gpus.scale_compute_ms(10.0, "H200", "V100-16GB", "fp32", 0.5, exponents=PLAIN)["predicted_ms"]
    fitted = gpus.scale_compute_ms(10.0, "H200", "V100-16GB", "fp32", 0.5)
    assert 10.0 < fitted["predicted_ms"] < plain
    assert fitted["compute_exponent"] == fit["compute_exponent"]

    rows = [r for r in load_published() if r.gpus == 1 and r.model in ("resnet50", "efficientnet_b0")]
    rows = [r for r in rows if r.input == "224x224"]
    assert len(rows) >= 20

    def error(row, exponents):
        from unittest import mock

        real = gpus.scale_compute_ms
        with mock.patch(
            "ddlprof.models.predict.scale_compute_ms", lambda *a, **k: real(*a, **k, exponents=exponents)
        ):
            got = predict(row.model, row.batch_per_gpu, 1, 1, gpu=row.gpu, precision=row.predictor_precision)
        return abs(got["throughput_samples_per_s"] / row.samples_per_s - 1)

    shipped = (fit["compute_exponent"], fit["memory_exponent"])
    assert statistics.median(error(r, shipped) for r in rows) < statistics.median(
        error(r, PLAIN) for r in rows
    )


def test_resolve_precision():
    assert gpus.resolve_precision("amp", gpus.get_gpu("A100-80GB")) == "amp-bf16"
    assert gpus.resolve_precision("AMP", gpus.get_gpu("T4")) == "amp-fp16"
    assert gpus.resolve_precision("tf32", gpus.get_gpu("T4")) == "tf32"
    assert gpus.get_gpu("V100-16GB").peak_tflops("amp") == (125, "fp16_tflops")
    with pytest.raises(DdlprofError, match="unknown precision 'int8'"):
        gpus.resolve_precision("int8", gpus.get_gpu("T4"))
