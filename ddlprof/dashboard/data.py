"""What the dashboard shows, computed by the same functions as the CLI; no Streamlit here.

The pages (``ddlprof/dashboard/views/``) call these through the caches in ``shared.py``; the
benchmark and the tests call them directly.

- runs: every directory under the runs directory that holds a ``manifest.json`` (a run directory
  of ``ddlprof wrap``; the variants of ``ddlprof stalls`` sit two levels further down), summarised
  by :func:`ddlprof.runs.summary.summarize`, exactly as ``ddlprof report`` does. A directory
  that cannot be read or summarised is kept with its one-line error.
- the local dataset: ``ddlprof.runs.store.load_rows`` (what every ``ddlprof report`` added).
- the stall models' validation: ``ddlprof.models.evaluate`` on ``training_rows()``, exactly as
  ``ddlprof model evaluate`` does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ddlprof.errors import DdlprofError
from ddlprof.runs.breakdown import CATEGORIES
from ddlprof.runs.rundir import MANIFEST

RUNS_ENV = "DDLPROF_DASHBOARD_RUNS"
DEFAULT_RUNS = "ddlprof-runs"
#: The README's main job, shown when there is no run yet.
EXAMPLE_COMMAND = "ddlprof wrap torchrun --standalone --nproc_per_node=2 examples/ddp_train.py"
#: How deep under the runs directory run directories are looked for (``ddlprof stalls`` puts its
#: variants at ``OUT/<variant>/r<k>``, three levels down).
MAX_DEPTH = 3


def runs_dir() -> Path:
    """The runs directory given by ``ddlprof dashboard --runs`` (``$DDLPROF_DASHBOARD_RUNS``), else
    ``./ddlprof-runs``."""
    return Path(os.environ.get(RUNS_ENV) or DEFAULT_RUNS).expanduser()


@dataclass(frozen=True)
class FoundRun:
    """A run directory under the runs directory: its path, its name relative to the runs directory,
    and a signature of its files (names, sizes, modification times) that changes when it does."""

    path: Path
    name: str
    signature: tuple[tuple[str, int, int], ...]


def signature(path: Path) -> tuple[tuple[str, int, int], ...]:
    """(relative name, size, mtime in ns) of the manifest and every file a summary reads."""
    from ddlprof.runs.rundir import source_files

    return tuple(source_files(path))


def find_runs(root: Path, max_depth: int = MAX_DEPTH) -> list[FoundRun]:
    """Run directories under ``root``, sorted by name (``ddlprof wrap`` names them by UTC time, so
    oldest first); ``DdlprofError`` when ``root`` is missing, not a directory or unreadable."""
    if not root.exists():
        raise DdlprofError(f"{root}: no such directory (no run has been profiled here yet)")
    if not root.is_dir():
        raise DdlprofError(f"{root}: not a directory")
    try:
        os.listdir(root)
    except OSError as exc:
        raise DdlprofError(f"{root}: unreadable ({exc.strerror or exc})") from None
    found: list[FoundRun] = []

    def walk(folder: Path, depth: int) -> None:
        try:
            with os.scandir(folder) as it:
                children = sorted(e.name for e in it if e.is_dir(follow_symlinks=True))
        except OSError:
            return
        for name in children:
            child = folder / name
            if (child / MANIFEST).exists():
                found.append(FoundRun(child, child.relative_to(root).as_posix(), signature(child)))
            elif depth < max_depth and not name.startswith("."):
                walk(child, depth + 1)

    walk(root, 1)
    return sorted(found, key=lambda f: f.name)


def load_summary(path: Path) -> dict[str, Any]:
    """``{"summary": ...}`` as ``ddlprof report`` computes it, or ``{"error": "one line"}``.

    A run's ``summary.json`` is used when it is still what the summary would be (see
    ``cached_summary``), so that a long run is read once, not at every dashboard start; a run that
    has none gets one.
    """
    from ddlprof.runs.rundir import load_run
    from ddlprof.runs.summary import cached_summary, summarize, write_summary_if_absent

    try:
        cached = cached_summary(path)
        if cached is not None:
            return {"summary": cached}
        summary = summarize([load_run(path)])
        write_summary_if_absent(path, summary)
        return {"summary": summary}
    except DdlprofError as exc:
        return {"error": " ".join(str(exc).split())}
    except Exception as exc:  # a run directory no one foresaw: listed with its error, never fatal
        return {"error": f"{path}: cannot be summarised ({type(exc).__name__}: {' '.join(str(exc).split())})"}


def load_detail(path: Path) -> dict[str, Any]:
    """The per-step rows (for the timeline) and the NVML samples (None without ``gpu/*.csv``)."""
    from ddlprof.runs.gpu_counters import load_samples
    from ddlprof.runs.rundir import load_run
    from ddlprof.runs.summary import step_rows

    return {"steps": step_rows([load_run(path)]), "samples": load_samples([path])}


def device(summary: dict[str, Any]) -> str | None:
    """The device the ranks ran on, as the ranks' headers name it (``cpu`` for a gloo job on CPUs)."""
    names = sorted({str(r["device"]) for r in summary["ranks"] if r.get("device")})
    return ", ".join(names) if names else None


def model_name(summary: dict[str, Any]) -> str | None:
    """The class name of the module DDP wrapped (what the local dataset calls the model)."""
    return (summary.get("workload") or {}).get("module")


def table_row(name: str, summary: dict[str, Any]) -> dict[str, Any]:
    """One line of the Runs table, from the report's summary."""
    job = summary["job"]
    return {
        "run": name,
        "model": model_name(summary),
        "GPUs (ranks)": summary["world_size"],
        "nodes": summary["nodes"],
        "device": device(summary),
        "step_ms": job["step_ms"],
        "throughput_samples_per_s": job["throughput_samples_per_s"],
        "steady_steps": summary["steps"]["steady_per_rank"],
        "stragglers": ", ".join(str(s["rank"]) for s in summary["stragglers"]) or "none",
    }


def comparable(label: str, summary: dict[str, Any]) -> dict[str, Any]:
    """A measured run as an item of the Compare page (``figures.breakdown_by_run``/``throughput_bars``).

    Instance options from the advisor will join as items of the same shape, with ``kind`` "option",
    ``source`` naming the model and catalog snapshot, and ``usd_per_hour`` set.
    """
    job = summary["job"]
    return {
        "label": label,
        "kind": "run",
        "source": f"measured: {', '.join(summary['runs'])}",
        "step_ms": job["step_ms"],
        **{key: job[key] for key in CATEGORIES},
        "throughput_samples_per_s": job["throughput_samples_per_s"],
        "usd_per_hour": None,
    }


STORE_COLUMNS = (
    "model",
    "world_size",
    "gpus_per_node",
    "nodes",
    "gpu",
    "precision",
    "step_ms",
    "interconnect_stall_ms",
    "network_stall_ms",
    "throughput_samples_per_s",
    "run_id",
    "run_dir",
    "reported_unix",
)


def store_state() -> tuple[str, int | None]:
    """The local dataset's path and modification time (None when absent): the cache key."""
    from ddlprof.runs.store import database_path

    path = database_path()
    try:
        return str(path), path.stat().st_mtime_ns
    except OSError:
        return str(path), None


def store_rows() -> dict[str, Any]:
    """The local dataset's rows (``store.load_rows``) in the dashboard's columns, or its error."""
    from ddlprof.runs.store import StoreError, load_rows

    try:
        frame = load_rows()
    except StoreError as exc:
        return {"rows": None, "error": str(exc)}
    except Exception as exc:  # a broken database must not stop the page
        return {"rows": None, "error": f"{type(exc).__name__}: {exc}"}
    return {"rows": frame[list(STORE_COLUMNS)].copy(), "error": None}


def model_validation() -> dict[str, Any]:
    """``ddlprof model evaluate --json`` (the same dict), plus the held-out predictions of each row.

    ``rows``: the training rows (shipped, then usable reported runs); ``predictions``: model name ->
    frame of predicted step_ms, interconnect_stall_ms, network_stall_ms on the same index.
    """
    from ddlprof.models.dataset import training_rows
    from ddlprof.models.evaluate import evaluate, lomo_predictions

    rows, info = training_rows()
    rows = rows.reset_index(drop=True)
    return {
        "evaluation": {**evaluate(rows), "training": info},
        "rows": rows,
        "predictions": lomo_predictions(rows),
    }


def training_sha256() -> str:
    """The hash that changes whenever the models' training rows do (the Models page's cache key)."""
    from ddlprof.models.dataset import training_rows

    return training_rows()[1]["training_sha256"]


def error_rows(evaluation: dict[str, Any]) -> list[dict[str, Any]]:
    """The cross-validation table of ``ddlprof model evaluate``: one row per target, both models."""
    out = []
    for target, entry in evaluation["targets"].items():
        row: dict[str, Any] = {"target": target, "rows": entry["rows"], "models": entry["models"]}
        for name in ("baseline", "learned"):
            errors = entry.get(name) or {}
            row[f"{name} MAPE %"] = errors.get("mape_pct")
            row[f"{name} MAE ms"] = errors.get("mae_ms")
            row[f"{name} max error ms"] = errors.get("max_abs_error_ms")
        row["learned better"] = entry.get("learned_beats_baseline") if entry["evaluable"] else None
        row["note"] = "" if entry["evaluable"] else entry["reason"]
        out.append(row)
    return out
