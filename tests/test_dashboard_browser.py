"""``ddlprof dashboard`` in a real browser: the command serves a real run on a loopback port, Debian's
chromium (driven by Playwright, headless) opens every page and checks its content, and screenshots
are saved (to a temporary folder, and to ``$DDLPROF_SCREENSHOTS`` when set). The browser may only
talk to the dashboard: any request off the loopback interface is blocked and fails the test.

CI installs chromium (``.ci/run``); without /usr/bin/chromium this test is skipped, saying so.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest
from conftest import ddlprof, env, free_port, summary
from dashboard_runs import broken_runs, copy_run, real_run

from ddlprof.dashboard.shared import NUMBER_COLUMNS

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
VIEWPORT = {"width": 1440, "height": 900}  # a laptop's screen
TIMEOUT_MS = 90_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="no /usr/bin/chromium: install Debian's chromium (apt-get install chromium, as .ci/run does)",
    ),
]


def _wait_healthy(url: str, process: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"ddlprof dashboard exited with {process.returncode}: {process.stdout.read()}"
            )
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"the dashboard at {url} did not answer within {timeout} s")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``ddlprof dashboard`` on a free loopback port over a real run, a broken one, and a local dataset
    with that run; yields (url, runs directory, the run's report)."""
    root = tmp_path_factory.mktemp("runs")
    home = tmp_path_factory.mktemp("home")
    run = real_run(root / "real")
    copy_run(run, root / "real-copy", "real-copy")  # a second run to compare
    broken_runs(root)
    environment = {**env(), "DDLPROF_HOME": str(home)}
    done = ddlprof("report", str(run), env=environment)  # also adds it to the local dataset
    assert done.returncode == 0, done.stderr
    report = summary(run, "--no-store")
    evaluation = ddlprof("model", "evaluate", "--json", env=environment)
    assert evaluation.returncode == 0, evaluation.stderr
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "ddlprof", "dashboard", "--runs", str(root), "--port", str(port)],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process)
        yield {
            "url": url,
            "root": root,
            "report": report,
            "evaluation": json.loads(evaluation.stdout),
            "env": environment,
        }
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )  # Playwright gives it a fresh --user-data-dir of its own
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, served, tmp_path):
    """A page that may reach the dashboard only; records anything else it tried."""
    context = browser.new_context(viewport=VIEWPORT, service_workers="block")
    off_loopback: list[str] = []

    def route(request_route):
        host = urlparse(request_route.request.url).hostname
        if request_route.request.url.startswith(("data:", "blob:")) or host in LOOPBACK:
            request_route.continue_()
        else:
            off_loopback.append(request_route.request.url)
            request_route.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    yield page
    context.close()
    assert off_loopback == [], f"the dashboard page tried to reach beyond loopback: {off_loopback}"


def _screenshot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / "screenshots" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    # Streamlit scrolls its main block, not the document: make the window as tall as the page
    height = page.evaluate("document.querySelector(\"[data-testid='stMain']\").scrollHeight")
    page.set_viewport_size({"width": VIEWPORT["width"], "height": min(max(height, 900), 8000)})
    page.wait_for_timeout(1000)  # plotly redraws at the new size
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("DDLPROF_SCREENSHOTS"):
        keep = Path(os.environ["DDLPROF_SCREENSHOTS"])
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, keep / path.name)
    return path


def _settled(page) -> None:
    """Wait until the app has finished its run (Streamlit shows a status widget while running)."""
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", state="attached")
    page.wait_for_timeout(500)


def _no_clipped_column(page) -> list[str]:
    """Every table the page shows (not those in a closed expander), scrolled into view: fails on one whose
    columns do not all fit (the grid scrolls sideways, or its right edge is past the 1440-px viewport).
    Returns the keys checked."""
    checked = []
    for grid in page.locator("[data-testid='stDataFrame']").all():
        if not grid.is_visible():
            continue
        grid.scroll_into_view_if_needed()
        grid.locator(".dvn-scroller").wait_for()
        box = grid.evaluate(
            """g => { const s = g.querySelector('.dvn-scroller'); const r = g.getBoundingClientRect();
            return {key: (g.closest('[class*=st-key-]')?.className.match(/st-key-(\\S+)/) || [])[1],
                    right: r.right, scroll: s.scrollWidth, width: s.clientWidth}; }"""
        )
        assert box["scroll"] <= box["width"] + 1, f"{box['key']}: a column is cut off ({box})"
        assert box["right"] <= VIEWPORT["width"], f"{box['key']}: past the viewport's right edge ({box})"
        checked.append(box["key"])
    return checked


def _headers_fit(page, columns: dict) -> dict[str, float]:
    """Each header of ``columns`` (Streamlit column configs) ends inside its column: the grid starts it 8 px
    in, in 14-px Source Sans (its width measured by the page's canvas); returns the text widths."""
    page.evaluate("document.fonts.load('14px \"Source Sans\"')")
    assert page.evaluate("document.fonts.check('14px \"Source Sans\"')"), "the grid's font is not loaded"
    named = {"small": 75, "medium": 200, "large": 400}
    labels = [config["label"] for config in columns.values()]
    text = page.evaluate(
        """labels => { const c = document.createElement('canvas').getContext('2d');
        c.font = '14px "Source Sans"'; return labels.map(l => c.measureText(l).width); }""",
        labels,
    )
    widths = dict(zip(labels, text, strict=True))
    for config in columns.values():
        width = named.get(config["width"], config["width"])
        assert 8 + widths[config["label"]] <= width, f"header {config['label']!r} cut at {width} px"
    return widths


def test_runs_page(page, served, tmp_path):
    page.goto(served["url"] + "/")
    page.get_by_role("heading", name="Runs", exact=True).wait_for()
    report = served["report"]  # the newest run (real-copy) is shown first; it is a copy of this one
    page.get_by_text(report["diagnosis"]["sentence"]).wait_for()  # the verdict, as the report words it
    _settled(page)
    step = f"{report['job']['step_ms']:.2f} ms"
    page.get_by_text(step, exact=True).wait_for()
    page.locator(".js-plotly-plot").first.wait_for()
    text = page.locator("[data-testid='stMain']").inner_text()
    assert text.index("Verdict:") < text.index("2 run(s) under")  # the verdict first
    assert "2 run(s) under" in text and str(served["root"]) in text
    assert "2 run directories could not be read" in text
    content = page.content()
    for title in ("Where the step time goes", "where each step", "Step time per step, per rank"):
        assert title in content, title
    assert page.locator(".js-plotly-plot").count() >= 3  # by rank, per step stacked, per step per rank
    assert "Local dataset" in text
    assert f"Measured from {served['root'] / 'real-copy'}" in text
    assert "Download summary.json" in text and "Download the HTML report" in text
    checked = _no_clipped_column(page)
    assert {"runs_table", "breakdown_table", "broken_table", "store_table"} <= set(checked), checked
    widths = _headers_fit(page, NUMBER_COLUMNS)
    assert widths["wait for peers"] > 75 - 8  # a header that 'small' cut
    shot = _screenshot(page, tmp_path, "runs")
    assert shot.stat().st_size > 10_000
    # the runs table draws a command from its script on; a double-click on the cell shows it whole (after
    # the screenshot, which would show the cell picked)
    manifest = json.loads((served["root"] / "real" / "manifest.json").read_text())
    grid = page.locator(".st-key-runs_table [data-testid='stDataFrame']")
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    page.mouse.dblclick(box["x"] + box["width"] - 30, box["y"] + 35 + 17)  # the first run's command
    assert page.locator("#portal textarea").input_value() == shlex.join(manifest["command"])
    page.keyboard.press("Escape")
    page.locator("#portal textarea").wait_for(state="detached")


def test_compare_page(page, served, tmp_path):
    page.goto(served["url"] + "/compare")
    page.get_by_role("heading", name="Compare", exact=True).wait_for()
    _settled(page)
    page.locator(".js-plotly-plot").first.wait_for()
    picked = page.locator("[data-testid='stMultiSelect']").inner_text()
    assert "real" in picked and "real-copy" in picked
    text = page.locator("[data-testid='stMain']").inner_text()
    step = served["report"]["job"]["step_ms"]  # real-copy is a copy of real: no difference
    assert "Against the baseline, real" in text
    assert f"real-copy against real: 1.00x the throughput (step {step:.2f} ms against {step:.2f})" in text
    content = page.content()
    assert "Step time breakdown side by side" in content and "Throughput" in content
    assert "Per rank, side by side" in content
    assert page.locator(".js-plotly-plot").count() == 3  # breakdown, throughput, per rank on one axis
    checked = _no_clipped_column(page)
    assert {"compare_differences", "compare_table", "compare_settings"} <= set(checked), checked
    _screenshot(page, tmp_path, "compare")


def test_models_page(page, served, tmp_path):
    page.goto(served["url"] + "/models")
    page.get_by_role("heading", name="Models", exact=True).wait_for()
    page.get_by_text("Cross-validation errors").wait_for()
    _settled(page)
    page.locator(".js-plotly-plot").first.wait_for()
    table = page.locator("[data-testid='stTable'] table")
    rows = {r.locator("th").first.inner_text().strip(): r for r in table.locator("tbody tr").all()}
    assert list(rows) == ["step time", "interconnect stall", "network stall"]  # words, not summary keys
    cells = [c.strip() for c in rows["step time"].locator("td").all_inner_texts()]
    step = served["evaluation"]["targets"]["step_ms"]
    for name in ("baseline", "learned"):
        assert f"{step[name]['mape_pct']:.2f}" in cells
        assert f"{step[name]['mae_ms']:.2f}" in cells
    assert "no multi-node data" in rows["network stall"].inner_text()
    assert (
        "Why the step time and interconnect stall rows agree"
        in page.locator("[data-testid='stMain']").inner_text()
    )
    assert "models_store_table" in _no_clipped_column(page)
    _screenshot(page, tmp_path, "models")


def test_advisor_page(page, served, tmp_path):
    done = ddlprof("advise", "--model", "resnet50", "--json", env=served["env"])
    assert done.returncode == 0, done.stderr
    top = json.loads(done.stdout)["options"][0]
    page.goto(served["url"] + "/advisor")
    page.get_by_role("heading", name="Advisor", exact=True).wait_for()
    page.get_by_text("Fill in the form").wait_for()
    _settled(page)
    page.get_by_role("button", name="Advise").click()  # the form's defaults: resnet50, batch 32, no limits
    page.get_by_text("Top choice:").wait_for()
    _settled(page)
    page.locator(".js-plotly-plot").first.wait_for()
    text = page.locator("[data-testid='stMain']").inner_text()
    assert top["instance_type"] in text  # the top choice's sentence, and the launch spec
    assert f'instance_type: "{top["instance_type"].split("+")[0]}"' in text
    assert "torchrun command" in text and "SkyPilot task YAML" in text
    assert page.locator(".st-key-advisor_table [data-testid='stDataFrame']").count() == 1
    content = page.content()
    assert "Throughput vs cost per hour" in content and "USD per 1M samples" in content
    assert page.locator(".js-plotly-plot").count() == 2
    warnings = page.locator("[data-testid='stAlertContentWarning']").all_inner_texts()
    assert any("prices may have changed" in w for w in warnings), warnings  # a warning, not grey text
    checked = _no_clipped_column(page)
    assert {"advisor_table", "advisor_prices"} <= set(checked), checked
    # the launch spec's long run: line is wrapped, not cut: the code block does not scroll sideways
    code = page.locator("[data-testid='stCode'] pre").last
    assert code.evaluate("e => e.scrollWidth <= e.clientWidth + 1")
    _screenshot(page, tmp_path, "advisor")


def test_ctrl_c_stops_the_dashboard(served):
    """Ctrl-C stops a dashboard cleanly: exit status 0, one line saying so, no traceback."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "ddlprof", "dashboard", "--runs", str(served["root"]), "--port", str(port)],
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    _wait_healthy(f"http://127.0.0.1:{port}", process)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "ddlprof dashboard: stopped" in output and "Traceback" not in output
