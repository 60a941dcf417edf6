"""Output into a pipe or a file is as wide as the tables need, unless COLUMNS says otherwise."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ddlprof.console import PIPE_WIDTH


@pytest.mark.parametrize("columns, width", [(None, PIPE_WIDTH), ("100", 100), ("", PIPE_WIDTH)])
def test_a_pipe_gets_a_wide_console_unless_columns_is_set(columns, width):
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns is not None:
        env["COLUMNS"] = columns
    code = "from ddlprof.console import stdout_console; print(stdout_console().width)"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert int(done.stdout) == width


def test_piped_tables_of_every_command_keep_their_numbers(tmp_path):
    """The catalog's and the advisor's tables, piped: no cell is cut to an ellipsis."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | {"DDLPROF_HOME": str(tmp_path)}
    for args in (["catalog", "list"], ["advise", "--model", "resnet50", "--budget", "100"]):
        done = subprocess.run(
            [sys.executable, "-m", "ddlprof", *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert "…" not in done.stdout, args
