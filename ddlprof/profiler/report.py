"""``ddlprof report``: load run directories, summarise, and show or write the result."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

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
    written = [summary_path(runs[0].path)]
    try:
        write_atomic(written[0], text)
    except DdlprofError as exc:  # a read-only run directory still gets its report
        print(f"ddlprof report: warning: {exc}; summary.json not written", file=sys.stderr)
        written = []
    if html is not None:
        from ddlprof.profiler.html import html_report

        write_atomic(html, html_report(summary, runs))
    if as_json:
        sys.stdout.write(text)
    else:
        from ddlprof.profiler.render import print_summary

        print_summary(summary)
        if html is not None:
            written.append(html)
        if written:
            print("wrote " + ", ".join(str(p) for p in written))
    return 0
