"""How long the dashboard's Runs page takes to render with 100 runs (issue 6: under 3 s).

One real run directory (a 2-rank gloo job of ``examples/ddp_train.py`` under ``ddlprof wrap``, made
here unless ``--source`` gives one) is copied ``--runs`` times with distinct run ids, and the Runs
page is rendered with Streamlit's AppTest (the page's script runs in this process, as it does in
the server for each browser session):

- cold: the first render in a fresh process: Streamlit, pandas and plotly imported by the page, and
  every run loaded and summarised (``summarize``, as ``ddlprof report`` does);
- cold_cache: a new session after ``st.cache_data.clear()``: every run summarised again, imports warm;
- warm: a new session (a browser reload, another user) with the summaries cached: median of
  ``--repeats``; the runs directory is still listed and every run's files stat'ed, so a changed run
  is summarised again.

With ``--summaries-on-disk`` every copy first gets the ``summary.json`` that ``ddlprof wrap`` leaves
in a run it made (not timed), so ``cold`` is a dashboard start on runs that were summarised
before; without it no copy has one and the first render summarises (and leaves) them all.

Each render must list every run with no error. Prints JSON (and writes it with ``--out``).

    python benchmarks/dashboard_runs_page.py --runs 100 --out benchmarks/results/cpu/dashboard_runs_page.json
    python benchmarks/dashboard_runs_page.py --runs 100 --steps 2000     # longer runs
    python benchmarks/dashboard_runs_page.py --runs 100 --steps 2000 --summaries-on-disk
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
APP = REPO / "ddlprof" / "dashboard" / "app.py"
TARGET_S = 3.0


def make_source(workdir: Path, steps: int) -> Path:
    out = workdir / "source"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    job = [
        "torchrun",
        "--standalone",
        "--nproc_per_node=2",
        str(REPO / "examples" / "ddp_train.py"),
        "--steps",
        str(steps),
    ]
    done = subprocess.run(
        [sys.executable, "-m", "ddlprof", "wrap", "--out", str(out), "--trace-steps", "0", "--", *job],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if done.returncode != 0:
        sys.exit(f"the source run failed: {done.stderr}")
    return out


def make_runs(source: Path, root: Path, count: int) -> None:
    manifest = json.loads((source / "manifest.json").read_text())
    for i in range(count):
        run = root / f"run-{i:03d}"
        shutil.copytree(source, run, ignore=shutil.ignore_patterns("summary.json"))
        (run / "manifest.json").write_text(json.dumps({**manifest, "run_id": run.name}, indent=2))


def write_summaries(root: Path) -> None:
    """What ``ddlprof wrap`` leaves in each run it made: its summary.json (in another process, so
    that the timed first render imports everything itself)."""
    code = (
        "import sys; from pathlib import Path\n"
        "from ddlprof.runs.rundir import load_run\n"
        "from ddlprof.runs.summary import summarize, write_summary_if_absent\n"
        "for run in sorted(Path(sys.argv[1]).iterdir()):\n"
        "    assert write_summary_if_absent(run, summarize([load_run(run)]))\n"
    )
    subprocess.run([sys.executable, "-c", code, str(root)], check=True)


def render(at_factory, expected: int) -> float:
    start = time.perf_counter()
    at = at_factory().run()
    elapsed = time.perf_counter() - start
    assert not at.exception, [e.value for e in at.exception]
    table = at.get_by_key("runs_table").dataframe[0].value
    assert len(table) == expected, f"{len(table)} runs listed, {expected} expected"
    assert not any(s.value.endswith("could not be read") for s in at.subheader), "a run failed to load"
    return elapsed


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The runs both dashboard benchmarks open: how many, and the run they are copies of."""
    parser.add_argument("--runs", type=int, default=100, help="run directories (default: 100)")
    parser.add_argument("--source", type=Path, help="a run directory to copy (default: make one)")
    parser.add_argument(
        "--steps", type=int, default=30, help="steps of the source run made here (default: 30)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_run_arguments(parser)
    parser.add_argument("--repeats", type=int, default=5, help="warm renders (default: 5)")
    parser.add_argument(
        "--summaries-on-disk", action="store_true", help="give every run its summary.json first (untimed)"
    )
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ddlprof-dashboard-bench-") as tmp:
        workdir = Path(tmp)
        source = args.source or make_source(workdir, args.steps)
        root = workdir / "runs"
        make_runs(source, root, args.runs)
        if args.summaries_on_disk:
            write_summaries(root)
        os.environ["DDLPROF_DASHBOARD_RUNS"] = str(root)
        os.environ["DDLPROF_HOME"] = str(workdir / "home")  # an empty local dataset

        import streamlit as st
        from streamlit.testing.v1 import AppTest

        def factory():
            return AppTest.from_file(str(APP), default_timeout=600)

        cold = render(factory, args.runs)
        st.cache_data.clear()
        cold_cache = render(factory, args.runs)
        warm = [render(factory, args.runs) for _ in range(args.repeats)]

    result = {
        "benchmark": "dashboard Runs page render (Streamlit AppTest)",
        "runs": args.runs,
        "source": str(args.source)
        if args.source
        else f"a 2-rank gloo run of examples/ddp_train.py ({args.steps} steps)",
        "summaries_on_disk": args.summaries_on_disk,
        "cold_s": round(cold, 3),
        "cold_cache_s": round(cold_cache, 3),
        "warm_median_s": round(statistics.median(warm), 3),
        "warm_s": [round(w, 3) for w in warm],
        "target_s": TARGET_S,
        "meets_target": max(cold, cold_cache, *warm) < TARGET_S,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "versions": _versions(),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("streamlit", "plotly", "pandas")}


if __name__ == "__main__":
    main()
