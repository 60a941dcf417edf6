"""How long a person waits for the Runs page's verdict with 100 runs, in a real browser (issue 17: < 1 s).

``ddlprof dashboard`` serves a runs directory of ``--runs`` copies of one real run (a 2-rank gloo job of
``examples/ddp_train.py`` under ``ddlprof wrap``, made here unless ``--source`` gives one) on a loopback
port; headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) opens the Runs page and the
time is taken from the navigation's start to the verdict's text being visible (the newest run's
``diagnosis.sentence``, the page's first answer), and to the page's script having finished:

- cold: the first page view of a fresh dashboard process: Streamlit imports the page's modules and
  every run is read (its ``summary.json``, as ``ddlprof wrap`` leaves it; with ``--no-summaries`` the
  runs have none and are summarised);
- warm: ``--repeats`` reloads of the page in the same browser (a person coming back to the tab: the
  browser has Streamlit's scripts cached, and each reload is a new Streamlit session over the
  dashboard's caches); median and every value;
- new_browser: ``--repeats`` views each in a new browser context (another person, whose browser has
  nothing cached yet), for comparison.

Every view must list all the runs. Prints JSON (and writes it with ``--out``).

    python benchmarks/dashboard_runs_page_browser.py --runs 100 \\
        --out benchmarks/results/cpu/dashboard_runs_page_browser.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from dashboard_runs_page import add_run_arguments, make_runs, make_source, write_summaries

CHROMIUM = "/usr/bin/chromium"
TARGET_S = 1.0
TIMEOUT_MS = 120_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(root: Path, home: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "DDLPROF_HOME": str(home)}
    command = [sys.executable, "-m", "ddlprof", "dashboard", "--runs", str(root), "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"ddlprof dashboard exited: {process.stdout.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as answer:
                if answer.read().strip() == b"ok":
                    return process
        except OSError:
            time.sleep(0.2)
    sys.exit("the dashboard did not answer within 120 s")


def view(page, url: str, verdict: str, runs: int) -> dict[str, float]:
    """One page view: seconds from the navigation's start to the page's title (the app has started), to
    the verdict's text and to the script's end."""
    start = time.perf_counter()
    page.goto(url)
    page.get_by_role("heading", name="Runs", exact=True).wait_for(state="visible")
    title = time.perf_counter() - start
    page.get_by_text(verdict).first.wait_for(state="visible")
    shown = time.perf_counter() - start
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", state="attached")
    page.get_by_text(f"{runs} run(s) under").wait_for()
    settled = time.perf_counter() - start
    return {"title_s": round(title, 3), "verdict_s": round(shown, 3), "settled_s": round(settled, 3)}


def new_page(browser):
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    return page


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_run_arguments(parser)
    parser.add_argument("--repeats", type=int, default=7, help="warm views (default: 7)")
    parser.add_argument(
        "--no-summaries", action="store_true", help="copies without summary.json: the first view summarises"
    )
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    load_before = os.getloadavg()  # other work on the machine slows the browser: say how much there was

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="ddlprof-dashboard-browser-") as tmp:
        workdir = Path(tmp)
        source = args.source or make_source(workdir, args.steps)
        root = workdir / "runs"
        make_runs(source, root, args.runs)
        if not args.no_summaries:
            write_summaries(root)
        newest = sorted(root.iterdir())[-1]
        code = (
            "import json, sys; from pathlib import Path; from ddlprof.runs.rundir import load_run;"
            "from ddlprof.runs.summary import summarize;"
            "print(json.dumps(summarize([load_run(Path(sys.argv[1]))])['diagnosis']['sentence']))"
        )
        verdict = json.loads(subprocess.run([sys.executable, "-c", code, str(newest)], check=True,
                                            capture_output=True, text=True).stdout)  # fmt: skip
        port = free_port()
        process = serve(root, workdir / "home", port)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
                )
                url = f"http://127.0.0.1:{port}/"
                page = new_page(browser)
                cold = view(page, url, verdict, args.runs)
                warm = [view(page, url, verdict, args.runs) for _ in range(args.repeats)]
                fresh = []
                for _ in range(args.repeats):
                    other = new_page(browser)
                    fresh.append(view(other, url, verdict, args.runs))
                    other.context.close()
                chromium = browser.version
                browser.close()
        finally:
            process.send_signal(signal.SIGINT)
            process.communicate(timeout=60)

    verdicts = [w["verdict_s"] for w in warm]
    result = {
        "benchmark": "dashboard Runs page in Chromium: navigation to the verdict visible",
        "runs": args.runs,
        "source": str(args.source)
        if args.source
        else f"a 2-rank gloo run of examples/ddp_train.py ({args.steps} steps)",
        "summaries_on_disk": not args.no_summaries,
        "verdict": verdict,
        "cold": cold,
        "warm_verdict_median_s": round(statistics.median(verdicts), 3),
        "warm_settled_median_s": round(statistics.median(w["settled_s"] for w in warm), 3),
        "warm": warm,
        "new_browser_verdict_median_s": round(statistics.median(f["verdict_s"] for f in fresh), 3),
        "new_browser": fresh,
        "target_s": TARGET_S,
        "meets_target_warm": statistics.median(verdicts) < TARGET_S,
        "load_average_1_5_15": {
            "before": [round(x, 2) for x in load_before],
            "after": [round(x, 2) for x in os.getloadavg()],
        },
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "versions": {**_versions(), "chromium": chromium},
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("streamlit", "plotly", "pandas", "playwright")}


if __name__ == "__main__":
    main()
