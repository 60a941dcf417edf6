"""Every numeric option of every command refuses what it cannot mean (negative, zero where a count,
NaN, infinities, absurd sizes) with one usage line naming the allowed range."""

from __future__ import annotations

import argparse
import re
import time

import pytest

from ddlprof.cli import COMMANDS, TINY, build_parser, main

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


def _options(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command words, option, action) of every option of every command and sub-command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, (*path, name))
        elif action.option_strings or action.type is not None:
            yield path, action.option_strings[-1] if action.option_strings else action.dest, action


OPTIONS = list(_options(build_parser()))
BOUNDED = [(path, option, a.type.bounds) for path, option, a in OPTIONS if hasattr(a.type, "bounds")]


def _outside(kind: type, low: float, high: float) -> list[str]:
    """Values just outside [low, high], NaN, the infinities and a word."""
    below = 0 if low == TINY else low - 1 if kind is int else low - max(abs(low), 1) * 1e-3
    above = high + 1 if kind is int else high * 1.001
    return [str(below), str(above), "nan", "inf", "-inf", "ten"]


@pytest.mark.parametrize(
    "path, option, value",
    [(path, option, value) for path, option, bounds in BOUNDED for value in _outside(*bounds)],
    ids=lambda x: " ".join(x) if isinstance(x, tuple) else str(x),
)
def test_every_numeric_option_refuses_values_outside_its_range_in_one_line(path, option, value, capsys):
    """The walk of every command's parser, each bounded option tried just below and above its range,
    with NaN, the infinities and a word: argparse's one usage line names the option and the range."""
    with pytest.raises(SystemExit) as exit_:
        main([*path, f"{option}={value}"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1, err
    assert option in err and "the allowed range: " in err, err


#: options whose text holds numbers and that their command parses itself (a list, units, a window)
NUMERIC_TEXT = {("wrap", "--trace-steps"), ("stalls", "--emulate-link"), ("share", "-n"),
                ("advise", "--samples"), ("advise", "--dataset")}  # fmt: skip
_NUMERIC_METAVARS = {"N", "K", "B", "G", "P", "E", "MS", "MB", "GB", "MIN", "SECONDS", "STEPS", "RATE"}


def test_every_numeric_option_of_every_command_has_bounds():
    """A bare int or float type accepts -1, 10**30 (and float NaN): every number goes through
    cli.bounded, whose usage line names the range, or is text its command checks (NUMERIC_TEXT, tried
    below); an untyped option with a number's metavar or default is neither."""
    assert {p[0] for p, _, _ in OPTIONS if p} >= set(COMMANDS)  # the walk saw every command
    assert [(p, o) for p, o, a in OPTIONS if a.type in (int, float)] == []
    untyped = {
        (" ".join(p), o)
        for p, o, a in OPTIONS
        if not hasattr(a.type, "bounds")
        and (
            (isinstance(a.default, int | float) and not isinstance(a.default, bool))
            or set(re.split(r"[^A-Z]+", str(a.metavar or ""))) & _NUMERIC_METAVARS
        )
    }
    assert untyped <= NUMERIC_TEXT, untyped - NUMERIC_TEXT
    assert len(BOUNDED) > 30


@pytest.mark.parametrize(
    "argv",
    [
        ["wrap", "--trace-steps", "0-3", "true"],
        ["wrap", "--trace-steps", "5-5000", "true"],  # a window of 4,996 steps: the job's memory
        ["wrap", "--trace-steps", "2000000000", "true"],
        ["wrap", "--trace-steps", "nan", "true"],
        ["stalls", "--emulate-nodes", "2", "--emulate-link", "0gbit", "true"],
        ["stalls", "--emulate-nodes", "2", "--emulate-link", "2gbit,11s", "true"],
        ["stalls", "--emulate-nodes", "2", "--emulate-link", "1e30gbit", "true"],
        ["share", "-n", "0,2", "true"],
        ["share", "-n", "65", "true"],
        ["share", "-n", "nan", "true"],
        [*ADVISE, "--samples", "0"],
        [*ADVISE, "--samples", "9" * 400],  # an OverflowError once
        [*ADVISE, "--samples", "-5"],
        [*ADVISE, "--dataset", "2000000000000000"],
        [*ADVISE, "--dataset", "9" * 400],  # an OverflowError once
    ],
    ids=lambda argv: " ".join(a[:20] for a in argv),
)
def test_numeric_text_out_of_range_is_one_line_naming_the_range(argv, capsys):
    assert any((argv[0], word) in NUMERIC_TEXT for word in argv)  # the list tried is the list kept
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "allowed range: " in err, err


def test_the_cli_and_the_advisor_allow_the_same_nodes():
    from ddlprof.advisor.filters import MAX_NODES
    from ddlprof.cli import MAX_ADVISE_NODES

    assert MAX_ADVISE_NODES == MAX_NODES


def test_advise_at_the_most_nodes_allowed_stays_fast(capsys):
    started = time.perf_counter()
    assert main([*ADVISE, "--max-nodes", "256", "--json"]) == 0
    assert time.perf_counter() - started < 10  # about 1.3 s on 2 idle cores; 100000 nodes ran for minutes
