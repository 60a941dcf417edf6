"""The console that ddlprof's tables and lines print to on standard output.

On a terminal, or where ``COLUMNS`` says how wide to be, rich's own width. Into a pipe or a file
without ``COLUMNS`` rich would assume 80 columns and cut or squeeze the tables' numbers (a CI log, a
``| less``): there the console is :data:`PIPE_WIDTH` wide and each table takes the width it needs.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

#: Width in a pipe or a file with no ``COLUMNS``: wider than any table of ddlprof's.
PIPE_WIDTH = 240


def stdout_console() -> Console:
    from rich.console import Console

    console = Console()
    if console.is_terminal or os.environ.get("COLUMNS", "").strip().isdigit():
        return console
    return Console(width=PIPE_WIDTH)
