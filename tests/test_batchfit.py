"""The batch per GPU that fits a GPU's memory: a power of two, and the next one would not fit."""

from __future__ import annotations

import pytest

from ddlprof.models.batchfit import MAX_BATCH, largest_fitting_batch
from ddlprof.models.gpus import get_gpu
from ddlprof.models.memory import memory_required_gb, shipped_memory_estimate


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
