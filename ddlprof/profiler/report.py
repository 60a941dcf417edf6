"""``ddlprof report``: load run directories, summarise, and show or write the result."""

from __future__ import annotations

import sys
from pathlib import Path

from ddlprof.errors import DdlprofError, require
from ddlprof.runs.rundir import json_text, load_run, write_atomic
from ddlprof.runs.summary import summarize, summary_path


def _record(summary: dict, paths: list[Path]) -> str | None:
    """Add the run to the local dataset (``ddlprof/runs/store.py``), unless it is one the dataset
    refuses; never fails the report. The line that says what became of it, or None where the store is
    off or could not be written (a warning says why)."""
    from ddlprof.runs import store

    if store.disabled():
        return None
    refusal, caveat = store.admission(summary)
    if refusal:
        return f"not added to the local dataset: {refusal}"

    def warn(reason: str) -> None:
        print(
            f"ddlprof report: warning: run not added to the local dataset ({reason}); "
            f"--no-store or {store.NO_STORE_ENV}=1 skips it",
            file=sys.stderr,
        )

    outcome = store.record_run(summary, paths, on_error=warn)
    if outcome is None:
        return None
    if outcome == "kept":
        early = ", ".join(
            f"rank {m['rank']} after step {m['last_step']}" for m in store.stopped_ranks(summary)
        )
        return (
            f"the local dataset {store.database_path()} keeps its row of this run: a report whose ranks "
            f"stopped early ({early}, no end record) never replaces one"
        )
    return f"added to the local dataset {store.database_path()}" + (
        f", with a caveat: {caveat}" if caveat else ""
    )


def _check_html_out(html: Path) -> None:
    """Refuse an ``--html`` file that exists (it may be a rank log or anything else the user keeps) or
    whose directory is missing, before the report does any work or adds the run to the dataset."""
    if html.exists() or html.is_symlink():
        raise DdlprofError(f"--html {html}: exists; not overwritten (choose another name)")
    if not html.parent.is_dir():
        raise DdlprofError(f"--html {html}: no such directory {html.parent}")


def report(
    paths: list[Path], as_json: bool, html: Path | None, warmup: int | None, store: bool = True
) -> int:
    if html is not None:  # before any work: plotly draws the figures of the HTML report
        require("plotly", "html", "ddlprof report --html")
        _check_html_out(html)
    runs = [load_run(path) for path in paths]
    summary = summarize(runs, warmup=warmup)
    text = json_text(summary)
    written = [summary_path(runs[0].path)]
    try:
        write_atomic(written[0], text)
    except DdlprofError as exc:  # a read-only run directory still gets its report
        print(f"ddlprof report: warning: {exc}; summary.json not written", file=sys.stderr)
        written = []
    stored = _record(summary, [run.path for run in runs]) if store else None
    if as_json:  # first: an HTML file that cannot be written never costs the summary
        sys.stdout.write(text)
        sys.stdout.flush()
        for warning in summary["warnings"]:
            if warning["collector"] == "records":  # the table shows them; JSON readers see them here
                print(
                    f"ddlprof report: warning: rank {warning['rank']}: {warning['reason']}", file=sys.stderr
                )
    else:
        from ddlprof.profiler.render import print_summary

        print_summary(summary)
    if html is not None:
        from ddlprof.profiler.html import html_report

        if not write_atomic(html, html_report(summary, runs), exclusive=True):
            raise DdlprofError(f"--html {html}: exists; not overwritten (choose another name)")
        written.append(html)
    if not as_json:
        if written:
            print("wrote " + ", ".join(str(p) for p in written))
        if stored is not None:
            print(stored)
    return 0
