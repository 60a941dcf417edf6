"""The batch per GPU that fits a GPU's memory: a power of two, and the next one would not fit."""

from __future__ import annotations

import pytest

from ddlprof.models.batchfit import MAX_BATCH, largest_fitting_batch
from ddlprof.models.gpus import get_gpu
from ddlprof.models.memory import (
    MEMORY_FRAGMENTATION,
    memory_required_gb,
    shipped_memory_estimate,
    sixteen_bit_activation_share,
)


@pytest.mark.parametrize("model", ["resnet50", "bert-base", "vgg16", "gpt2"])
@pytest.mark.parametrize("gpu", ["T4", "L4", "A100-40GB", "H100"])
def test_the_largest_power_of_two_that_fits(model, gpu):
    memory = get_gpu(gpu).memory_gb
    batch, needed = largest_fitting_batch(model, memory, memory_required_gb)
    assert batch & (batch - 1) == 0 and 1 <= batch <= MAX_BATCH
    assert needed == pytest.approx(memory_required_gb(shipped_memory_estimate(model, batch)[0]))
    assert needed <= memory
    if batch < MAX_BATCH:
        assert memory_required_gb(shipped_memory_estimate(model, 2 * batch)[0]) > memory


def test_more_memory_never_gives_a_smaller_batch_and_bert_base_on_a_t4():
    batches = [largest_fitting_batch("bert-base", gb, memory_required_gb)[0] for gb in (16, 24, 40, 80)]
    assert batches == sorted(batches) and batches[0] < batches[-1]
    # by hand: bert-base at batch 128 needs about 19 GB with the allowance (tests/test_advise.py), 64 less
    assert largest_fitting_batch("bert-base", 16, memory_required_gb)[0] == 64


def test_no_estimate_or_nothing_fits():
    assert largest_fitting_batch("not-a-model", 80, memory_required_gb) is None
    assert largest_fitting_batch("resnet50", 1.0, memory_required_gb) is None  # the 1 GB context alone


def _h100_peaks() -> list[tuple[str, str, int, int]]:
    """(model, precision, batch, peak bytes) of every row of the H100 zoo sweep that fits in the table."""
    import json

    from conftest import REPO

    rows = json.loads((REPO / "benchmarks/results/gpu-1xh100/zoo_sweep_h100.json").read_text())["rows"]
    return [
        (r["model"], r["precision"], r["batch_per_gpu"], r["peak_memory_bytes"])
        for r in rows
        if r.get("peak_memory_bytes") and shipped_memory_estimate(r["model"], r["batch_per_gpu"])
    ]


def test_a_16_bit_estimate_covers_every_peak_measured_at_bf16_and_is_not_far_above():
    """The activations' share at 16-bit was read off the same sweep: the estimate must stay at or above
    each measured bf16 peak (a batch advise picks must fit), and below twice it with the fragmentation
    allowance (else advise would pick a power of two less than fits)."""
    ratios = []
    for model, precision, batch, peak in _h100_peaks():
        if precision != "bf16":
            continue
        estimate, how = shipped_memory_estimate(model, batch, precision="amp-bf16")
        assert estimate >= peak, (model, batch, estimate, peak)
        assert f"activations x {sixteen_bit_activation_share(model):g} at amp-bf16" in how
        ratios.append(estimate / peak)
    assert len(ratios) >= 35 and max(ratios) * (1 + MEMORY_FRAGMENTATION) < 2  # 1.17 at most (2026-12-07)


def test_amp_fills_a_t4_with_twice_the_resnet50_batch_of_tf32():
    """16 GB: batch 128 at TF32 (the fp32 activations of 256 need about 25 GB), 256 at AMP (the H100
    measured resnet50's bf16 peak at batch 128 at 6.1 GB against 11.4 at TF32)."""
    t4 = get_gpu("T4").memory_gb
    assert largest_fitting_batch("resnet50", t4, memory_required_gb)[0] == 128
    assert largest_fitting_batch("resnet50", t4, memory_required_gb, precision="amp")[0] == 256


def test_a_model_not_measured_at_16_bit_is_given_the_highest_measured_share():
    """Unmeasured, a model's 16-bit estimate must err on the side of fitting: no measured model held
    more of its activations than it is assumed to."""
    measured = {model for model, precision, _, _ in _h100_peaks() if precision == "bf16"}
    assert "alexnet" not in measured and len(measured) >= 10
    assumed = sixteen_bit_activation_share("alexnet")
    assert all(sixteen_bit_activation_share(model) <= assumed for model in measured)
    assert sixteen_bit_activation_share("resnet50") < assumed
