"""Every numeric option of every command refuses what it cannot mean (negative, zero where a count,
NaN, infinities, absurd sizes) with one usage line naming the allowed range."""

from __future__ import annotations

import argparse
import time

import pytest

from ddlprof.cli import COMMANDS, build_parser, main

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
        ["trace", "RUN", "--merge", "m.json", "--window", "-1"],
        ["calibrate", "--batch-per-gpu", "0"],
        ["calibrate", "--steps", "1000000"],
        ["calibrate", "--warmup", "-1"],
        ["dashboard", "--port", "70000"],
        ["dashboard", "--port", "0"],
        ["wrap", "--gpu-sample-interval", "nan", "true"],
        ["stalls", "--steps", "0", "true"],
    ],
)
def test_numeric_options_out_of_range_are_one_line_naming_the_range(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1, err
    assert "outside the allowed range" in err


def _options(parser: argparse.ArgumentParser, prog: str = "ddlprof"):
    """(command, option, type) of every option of every command and sub-command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, f"{prog} {name}")
        elif action.option_strings or action.type is not None:
            yield prog, "/".join(action.option_strings) or action.dest, action.type


def test_every_numeric_option_of_every_command_has_bounds():
    """A bare int or float type accepts -1, 10**30 (and float NaN): every number goes through
    cli.bounded, whose usage line names the range."""
    found = list(_options(build_parser()))
    assert {p for p, _, _ in found} >= {f"ddlprof {c}" for c in COMMANDS}  # the walk saw every command
    bare = [(prog, option) for prog, option, kind in found if kind in (int, float)]
    assert bare == []
    assert any(getattr(kind, "__qualname__", "").startswith("bounded.") for _, _, kind in found)


def test_the_cli_and_the_advisor_allow_the_same_nodes():
    from ddlprof.advisor.filters import MAX_NODES
    from ddlprof.cli import MAX_ADVISE_NODES

    assert MAX_ADVISE_NODES == MAX_NODES


def test_advise_at_the_most_nodes_allowed_stays_fast(capsys):
    started = time.perf_counter()
    assert main([*ADVISE, "--max-nodes", "256", "--json"]) == 0
    assert time.perf_counter() - started < 10  # about 1.3 s on 2 idle cores; 100000 nodes ran for minutes
