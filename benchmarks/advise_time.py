"""Wall time of ``ddlprof advise --model resnet50 --budget 100``, the offline path of issue 5.

    /tmp/venv/bin/python benchmarks/advise_time.py [--runs 7]

Runs the command as a user would, ``python -m ddlprof advise ...`` in a new process, with stdout to a
pipe (the rich table is rendered), no GPU and no network needed:

- *fresh*: a new, empty ``$DDLPROF_HOME`` for every run (a fresh install: the stall models are not
  fitted yet, so the fit shipped with ddlprof is copied in);
- *warm*: one home, used once before timing (the fitted models are read back).

Prints JSON: the median, min and max wall seconds of each, every sample, and whether torch,
scikit-learn or boto3 were imported (checked in one more run, in-process, on a fresh home). The
target is under 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COMMAND = ["advise", "--model", "resnet50", "--budget", "100"]
CHECK = (
    "import sys, io, json, contextlib\n"
    "from ddlprof.cli import main\n"
    "with contextlib.redirect_stdout(io.StringIO()):\n"
    f"    rc = main({COMMAND!r})\n"
    "print(json.dumps({**{m: m in sys.modules for m in ('torch', 'sklearn', 'boto3')}, 'exit_code': rc}))\n"
)


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["DDLPROF_HOME"] = str(home)
    env.pop("DDLPROF_CATALOG_DIR", None)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _once(home: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "ddlprof", *COMMAND],
        capture_output=True,
        text=True,
        env=_env(home),
        check=False,
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"ddlprof advise failed ({done.returncode}): {done.stderr.strip()}")
    return elapsed


def _stats(samples: list[float]) -> dict:
    return {
        "median_s": round(statistics.median(samples), 3),
        "min_s": round(min(samples), 3),
        "max_s": round(max(samples), 3),
        "samples_s": [round(s, 3) for s in samples],
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=7, help="timed runs of each kind (default: 7)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ddlprof-advise-time-") as tmp:
        root = Path(tmp)
        fresh = [_once(root / f"fresh-{i}") for i in range(args.runs)]
        warm_home = root / "warm"
        _once(warm_home)
        warm = [_once(warm_home) for _ in range(args.runs)]
        check = subprocess.run(
            [sys.executable, "-c", CHECK],
            capture_output=True,
            text=True,
            env=_env(root / "check"),
            check=True,
        )
    result = {
        "command": "python -m ddlprof " + " ".join(COMMAND),
        "runs": args.runs,
        "fresh_home": _stats(fresh),
        "warm_home": _stats(warm),
        "imported": json.loads(check.stdout),
        "under_1s": max(statistics.median(fresh), statistics.median(warm)) < 1.0,
        "python": platform.python_version(),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "platform": platform.platform(),
        },
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
