"""``ddlprof report``: load run directories, summarise, and show or write the result."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from ddlprof.profiler.errors import DdlprofError
from ddlprof.profiler.rundir import load_run
from ddlprof.profiler.summary import summarize, summary_path


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` in one step, so a failure never leaves half a file behind."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DdlprofError(f"{path}: cannot write ({exc.strerror})") from None


def report(paths: list[Path], as_json: bool, html: Path | None, warmup: int | None) -> int:
    runs = [load_run(path) for path in paths]
    summary = summarize(runs, warmup=warmup)
    text = json.dumps(summary, indent=2) + "\n"
    write_atomic(summary_path(runs[0].path), text)
    if html is not None:
        from ddlprof.profiler.html import html_report

        write_atomic(html, html_report(summary, runs))
    if as_json:
        sys.stdout.write(text)
    else:
        from ddlprof.profiler.render import print_summary

        print_summary(summary)
        _note_outputs(runs[0].path, html)
    return 0


def _note_outputs(run: Path, html: Path | None) -> None:
    written: list[Any] = [summary_path(run)]
    if html is not None:
        written.append(html)
    print("wrote " + ", ".join(str(p) for p in written))
