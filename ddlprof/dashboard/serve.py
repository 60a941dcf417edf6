"""``ddlprof dashboard``: serve the Streamlit app (``app.py``) on a loopback port.

Runs ``python -m streamlit run app.py`` in a child process with the runs directory in
``$DDLPROF_DASHBOARD_RUNS``, headless, without usage statistics, without a file watcher, and with
the server address set, so that Streamlit makes no network call of its own. Ctrl-C (or SIGTERM)
is passed on to Streamlit, which stops cleanly.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from ddlprof.dashboard.data import RUNS_ENV
from ddlprof.errors import DdlprofError, require

APP = Path(__file__).resolve().with_name("app.py")
_ANY = ("0.0.0.0", "::", "")  # listening on every address


def check_port(host: str, port: int) -> None:
    """A one-line ``DdlprofError`` when ``host:port`` cannot be listened on."""
    if not 1 <= port <= 65535:
        raise DdlprofError(f"--port {port}: not a port number (1 to 65535)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise DdlprofError(f"--host {host}: not an address of this machine") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Streamlit's server does
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise DdlprofError(
                    f"port {port} on {host} is in use (another dashboard?); choose another with --port"
                ) from None
            if exc.errno == errno.EACCES:
                raise DdlprofError(f"port {port}: not allowed (ports below 1024 need root)") from None
            raise DdlprofError(f"--host {host}: cannot listen there ({exc.strerror or exc})") from None


def _shown(host: str) -> str:
    """The address to browse to: ``localhost`` for a server listening on every address."""
    return "localhost" if host in _ANY else host


def url(host: str, port: int) -> str:
    shown = _shown(host)
    return f"http://{f'[{shown}]' if ':' in shown else shown}:{port}"


def streamlit_command(runs: Path, host: str, port: int) -> list[str]:
    """``python -m streamlit run app.py`` with the options that keep it local and quiet."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--server.fileWatcherType",
        "none",
        "--server.runOnSave",
        "false",
        "--browser.gatherUsageStats",
        "false",
        # set, so that Streamlit never looks up this machine's external address to print or check it
        "--browser.serverAddress",
        _shown(host),
        "--browser.serverPort",
        str(port),
        "--global.developmentMode",
        "false",
        "--client.toolbarMode",
        "minimal",
        "--",
        "--runs",
        str(runs),
    ]


def serve(runs: Path, host: str, port: int) -> int:
    """``ddlprof dashboard``: Streamlit on ``host:port`` over ``runs`` until Ctrl-C or SIGTERM."""
    # The app runs in a child process: here only their presence is checked (the Models page
    # cross-validates the stall models, hence scikit-learn).
    for module in ("streamlit", "plotly", "sklearn"):
        require(module, "dashboard", "ddlprof dashboard", import_it=False)
    check_port(host, port)
    runs = runs.expanduser().resolve()
    if not runs.exists():
        print(f"ddlprof dashboard: note: {runs} does not exist yet; the Runs page says how to make a run")
    elif not runs.is_dir():
        print(f"ddlprof dashboard: note: {runs} is not a directory; pick the runs directory in the sidebar")
    env = {**os.environ, RUNS_ENV: str(runs)}
    print(f"ddlprof dashboard: {runs} at {url(host, port)} (Ctrl-C stops it)", flush=True)
    # A session of its own: Ctrl-C reaches this process only, which passes it on once.
    child = subprocess.Popen(streamlit_command(runs, host, port), env=env, start_new_session=True)
    stopping: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        stopping.append(signum)
        if child.poll() is None:
            child.send_signal(signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        while True:
            try:
                code = child.wait()
                break
            except KeyboardInterrupt:  # raised before the handler was in place
                forward(signal.SIGINT, None)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if child.poll() is None:
            child.kill()
            child.wait()
    if code == 0 or stopping:
        print("ddlprof dashboard: stopped")
        return 0
    raise DdlprofError(f"streamlit exited with code {code} (see its output above)")
