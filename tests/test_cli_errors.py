"""Every command's error lines name the whole command as typed, sub-command included: argparse's usage
errors and the one line a ``DdlprofError`` becomes carry the same prefix ("ddlprof model predict:
error: ..."), so a user can tell which command of a script failed."""

from __future__ import annotations

import argparse

import pytest
from conftest import ddlprof

from ddlprof import cli
from ddlprof.errors import DdlprofError


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command words, parser) of every command that runs: those without sub-commands of their own."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from _leaves(sub, (*path, name))


LEAVES = list(_leaves(cli.build_parser()))
PREDICT = ["model", "predict", "--model", "resnet50", "--batch-per-gpu", "32", "--gpus-per-node", "2"]


def _value(action: argparse.Action) -> str:
    if action.choices:
        return str(next(iter(action.choices)))
    bounds = getattr(action.type, "bounds", None)
    return str(max(bounds[1], 1)) if bounds else "x"


def _valid_argv(path: tuple[str, ...], parser: argparse.ArgumentParser) -> list[str]:
    """The command with a value for each of its required arguments."""
    argv = [*path]
    for action in parser._actions:
        if action.option_strings and action.required:
            argv += [action.option_strings[0], _value(action)]
        elif not action.option_strings and action.nargs not in ("?", "*", argparse.REMAINDER):
            argv.append(_value(action))
    return argv


def test_every_command_is_covered():
    words = {" ".join(path) for path, _ in LEAVES}
    assert {"model predict", "model features", "catalog show", "catalog refresh", "advise", "trace"} <= words


@pytest.mark.parametrize(("path", "parser"), LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_usage_errors_and_ddlprof_errors_share_the_whole_commands_prefix(path, parser, monkeypatch, capsys):
    prefix = f"ddlprof {' '.join(path)}: error: "
    with pytest.raises(SystemExit) as exit_:
        cli.main([*path, "--no-such-option"])
    usage = capsys.readouterr().err
    assert exit_.value.code == 2 and usage.startswith(prefix), usage

    def fail(args: argparse.Namespace) -> int:
        raise DdlprofError("it went wrong")

    for name, (add, _) in list(cli.COMMANDS.items()):
        monkeypatch.setitem(cli.COMMANDS, name, (add, fail))
    assert cli.main(_valid_argv(path, parser)) == 2
    assert capsys.readouterr().err == f"{prefix}it went wrong\n"


@pytest.mark.parametrize(
    ("argv", "prefix"),
    [
        (
            [*PREDICT, "--gpu", "Z9000"],
            "ddlprof model predict: error: unknown GPU type 'Z9000'",
        ),
        (["catalog", "show", "p4d.24xlage"], "ddlprof catalog show: error: unknown instance type"),
        (["catalog", "list", "--cloud", "azure"], "ddlprof catalog list: error: unknown cloud"),
        (["catalog", "show"], "ddlprof catalog show: error: the following arguments are required"),
        (["report", "/nonexistent/run"], "ddlprof report: error: /nonexistent/run: no such directory"),
    ],
)
def test_real_errors_name_the_whole_command(argv, prefix):
    done = ddlprof(*argv)
    assert done.returncode == 2 and done.stderr.startswith(prefix), done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
