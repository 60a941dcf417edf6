"""Every numeric option of report, advise and model refuses what it cannot mean (negative, zero where
a count, NaN, infinities, absurd sizes) with one usage line naming the allowed range."""

from __future__ import annotations

import time

import pytest

from ddlprof.cli import main

PREDICT = ["model", "predict", "--model", "resnet50", "--batch-per-gpu", "32", "--gpus-per-node", "2"]
ADVISE = ["advise", "--model", "resnet50"]


@pytest.mark.parametrize(
    "argv",
    [
        ["report", "--warmup", "-1", "RUN"],
        [*ADVISE, "--max-nodes", "100000"],
        [*ADVISE, "--max-nodes", "0"],
        [*ADVISE, "--budget", "-1"],
        [*ADVISE, "--budget", "nan"],
        [*ADVISE, "--deadline", "0"],
        [*ADVISE, "--epochs", "inf"],
        [*ADVISE, "--batch-per-gpu", "0"],
        [*ADVISE, "--single-gpu-step-ms=-Infinity"],
        [*ADVISE, "--checkpoint-interval", "-5"],
        [*ADVISE, "--restart-time", "NaN"],
        [*ADVISE, "--interruptions-per-day", "-0.5"],
        [*ADVISE, "--data-region", "us-east-1", "--dataset-gb", "inf"],
        [*ADVISE, "--top", "-1"],
        ["model", "features", "resnet50", "--batch-per-gpu", "-3"],
        ["model", "features", "resnet50", "--bucket-cap-mb", "0"],
        ["model", "features", "resnet50", "--seq-len", "0"],
        [*PREDICT, "--nodes", "0"],
        [*PREDICT[:-1], "100000000"],
        [*PREDICT, "--single-gpu-step-ms", "nan"],
        [*PREDICT, "--intra-busbw-gbps", "-1"],
        [*PREDICT, "--inter-busbw-gbps", "inf"],
    ],
)
def test_numeric_options_out_of_range_are_one_line_naming_the_range(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1, err
    assert "outside the allowed range" in err


def test_the_cli_and_the_advisor_allow_the_same_nodes():
    from ddlprof.advisor.filters import MAX_NODES
    from ddlprof.cli import MAX_ADVISE_NODES

    assert MAX_ADVISE_NODES == MAX_NODES


def test_advise_at_the_most_nodes_allowed_stays_fast(capsys):
    started = time.perf_counter()
    assert main([*ADVISE, "--max-nodes", "256", "--json"]) == 0
    assert time.perf_counter() - started < 10  # about 1.3 s on 2 idle cores; 100000 nodes ran for minutes
