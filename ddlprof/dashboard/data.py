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

import math
import os
import shlex
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ddlprof.errors import DdlprofError
from ddlprof.runs.breakdown import CATEGORIES, LABELS
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
    """``{"summary": ..., "manifest": ...}`` (the summary as ``ddlprof report`` computes it, and the
    run's manifest: its date and command), or ``{"error": "one line"}``.

    A run's ``summary.json`` is used when it is still what the summary would be (see
    ``cached_summary``), so that a long run is read once, not at every dashboard start; a run that
    has none gets one.
    """
    from ddlprof.runs.rundir import load_run, read_manifest
    from ddlprof.runs.summary import cached_summary, summarize, write_summary_if_absent

    try:
        cached = cached_summary(path)
        if cached is not None:
            return {"summary": cached, "manifest": read_manifest(path)}
        run = load_run(path)
        summary = summarize([run])
        write_summary_if_absent(path, summary)
        return {"summary": summary, "manifest": run.manifest}
    except DdlprofError as exc:
        return {"error": " ".join(str(exc).split())}
    except Exception as exc:  # a run directory no one foresaw: listed with its error, never fatal
        return {"error": f"{path}: cannot be summarised ({type(exc).__name__}: {' '.join(str(exc).split())})"}


def load_detail(path: Path) -> dict[str, Any]:
    """The per-step rows (for the timelines), the NVML samples (None without ``gpu/*.csv``) and what
    the ranks' headers say of the software (torch version and backend, of the lowest rank that says)."""
    from ddlprof.runs.gpu_counters import load_samples
    from ddlprof.runs.rundir import load_run
    from ddlprof.runs.summary import step_rows

    run = load_run(path)
    headers = [log.meta for log in sorted(run.ranks, key=lambda log: log.rank) if log.meta]
    software = {key: next((m[key] for m in headers if m.get(key)), None) for key in ("torch", "backend")}
    return {"steps": step_rows([run]), "samples": load_samples([path]), "software": software}


def device(summary: dict[str, Any]) -> str | None:
    """The device the ranks ran on, as the ranks' headers name it (``cpu`` for a gloo job on CPUs)."""
    names = sorted({str(r["device"]) for r in summary["ranks"] if r.get("device")})
    return ", ".join(names) if names else None


def where(summary: dict[str, Any]) -> str:
    """``2 x cpu, 1 node(s)``: ranks, device and nodes."""
    return f"{summary['world_size']} x {device(summary) or '?'}, {summary['nodes']} node(s)"


def model_name(summary: dict[str, Any]) -> str | None:
    """The class name of the module DDP wrapped (what the local dataset calls the model)."""
    return (summary.get("workload") or {}).get("module")


def started(manifest: dict[str, Any]) -> str | None:
    """When the run was made (its manifest's ``created_unix``), UTC to the minute."""
    unix = _number(manifest.get("created_unix"))
    try:
        return None if unix is None else datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M")
    except (OverflowError, OSError, ValueError):  # a date no clock can show
        return None


def command(manifest: dict[str, Any]) -> str | None:
    """The profiled command line, as a shell would take it."""
    words = manifest.get("command")
    return shlex.join(map(str, words)) if words else None


def short_command(line: str | None) -> str | None:
    """What tells runs apart in a narrow column: the command from its Python script on, the script by
    its file name (``… train.py --steps 20`` for ``torchrun --nproc_per_node=2 /src/train.py --steps
    20``); a command with no ``.py`` word after its first, or that a shell cannot split, is left whole."""
    try:
        words = shlex.split(line or "")
    except ValueError:
        return line
    script = next((i for i, word in enumerate(words) if i and word.endswith(".py")), None)
    if script is None:
        return line
    return "… " + shlex.join([Path(words[script]).name, *words[script + 1 :]])


def diagnosis(summary: dict[str, Any]) -> dict[str, Any]:
    """The run's verdict and recommendations: a summary cached by an older ddlprof has none."""
    from ddlprof.runs.diagnosis import diagnose

    return summary.get("diagnosis") or diagnose(summary)


def table_row(name: str, summary: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    """One line of the Runs table: when, what, on what, and where the step time goes."""
    job = summary["job"]
    return {
        "run": name,
        "date": started(manifest),
        "model": model_name(summary),
        "where": where(summary),
        "step_ms": job["step_ms"],
        **{key: job[key] for key in CATEGORIES},
        "throughput_samples_per_s": job["throughput_samples_per_s"],
        "verdict": diagnosis(summary)["verdict"],
        "command": command(manifest),
    }


#: What a rank does with the time of a category, for the skew sentence.
DOING = {
    "compute_ms": "computes",
    "data_stall_ms": "waits for data",
    "interconnect_stall_ms": "waits on the interconnect",
    "network_stall_ms": "waits on the network",
    "wait_for_peers_ms": "waits for the other ranks at the all-reduce",
    "other_ms": "spends outside the step's parts",
}


def skew(summary: dict[str, Any], min_ms: float = 1.0, min_share: float = 0.05) -> list[dict[str, Any]]:
    """The categories whose time differs between ranks by at least ``min_ms`` and ``min_share`` of the
    job's step, largest spread first: the lowest and highest rank with their ms per step. A rank that
    waits longer for data makes the others wait for it in the all-reduce; the straggler rule sees only
    time outside communication, so this is the view that shows such a pair."""
    ranks = summary["ranks"]
    step = _number(summary["job"]["step_ms"]) or 0.0
    out = []
    for key in CATEGORIES:
        values = sorted((v, r["rank"]) for r in ranks if (v := _number(r.get(key))) is not None)
        if len(values) < 2:
            continue
        (low, low_rank), (high, high_rank) = values[0], values[-1]
        if high - low >= max(min_ms, min_share * step):
            out.append(
                {
                    "category": key,
                    "low_rank": low_rank,
                    "low_ms": low,
                    "high_rank": high_rank,
                    "high_ms": high,
                    "spread_ms": high - low,
                }
            )
    return sorted(out, key=lambda row: -row["spread_ms"])


def skew_sentence(rows: list[dict[str, Any]]) -> str:
    """``rank 1 waits on the interconnect 15.9 ms a step against rank 0's 10.0; ...``"""
    return "; ".join(
        f"rank {r['high_rank']} {DOING[r['category']]} {r['high_ms']:.1f} ms a step against rank "
        f"{r['low_rank']}'s {r['low_ms']:.1f}"
        for r in rows
    )


def _number(value: Any) -> float | None:
    """A recorded figure, or None for a missing (or not a finite number) one: a summary that passes its
    schema may still hold nulls and odd values where a figure was not recorded."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def run_context(
    summary: dict[str, Any], manifest: dict[str, Any], software: dict[str, Any]
) -> dict[str, str]:
    """What the run was: date, command, torch and backend, probe bandwidth, workload, precision; a fact
    the run did not record says so."""
    none = "not recorded"
    workload = _mapping(summary.get("workload"))
    probe = _mapping(next(iter(_mapping(summary.get("probes")).values()), None))
    if probe:
        parts = []
        scopes = [("intra", "within a node")] + ([("full", "all ranks")] if summary["nodes"] > 1 else [])
        for scope, label in scopes:
            measured = _mapping(probe.get(scope))
            bandwidth, latency = _number(measured.get("busbw_gbps")), _number(measured.get("latency_us"))
            if bandwidth is not None:
                delay = "" if latency is None else f", {latency:,.0f} µs latency"
                parts.append(f"{label} {bandwidth:g} GB/s bus bandwidth{delay}")
        bandwidth = "; ".join(parts) or none
    else:
        bandwidth = "no probe in this run"
    if workload:
        cap, params, grads = (
            _number(workload.get(k)) for k in ("bucket_cap_bytes", "num_params", "grad_bytes")
        )
        shown = [
            f"{workload.get('module') or 'model'}",
            f"{params:,.0f} parameters" if params is not None else None,
            f"{grads / 1e6:,.2f} MB of gradients" if grads else None,
            f"{workload['num_buckets']} bucket(s)" if workload.get("num_buckets") is not None else None,
            f"bucket_cap_mb {cap / 2**20:g}" if cap else None,
            f"comm hook {workload['comm_hook']}" if workload.get("comm_hook") else "no comm hook",
        ]
        described = ", ".join(part for part in shown if part)
    else:
        described = none
    return {
        "date": started(manifest) or none,
        "command": command(manifest) or none,
        "torch": software.get("torch") or none,
        "backend": workload.get("backend") or software.get("backend") or none,
        "probe": bandwidth,
        "workload": described,
        "precision": workload.get("precision") or none,
    }


def comparable(label: str, summary: dict[str, Any]) -> dict[str, Any]:
    """A measured run as an item of the Compare page (``figures.breakdown_by_run``/``throughput_bars``).

    Instance options from the advisor are items of the same shape, with ``kind`` "option", ``source``
    naming the model and catalog snapshot, and ``usd_per_hour`` set.
    """
    job = summary["job"]
    return {
        "label": label,
        "kind": "run",
        "model": model_name(summary),
        "source": f"measured: {', '.join(summary['runs'])}",
        "step_ms": job["step_ms"],
        **{key: job[key] for key in CATEGORIES},
        "throughput_samples_per_s": job["throughput_samples_per_s"],
        "usd_per_hour": None,
    }


def differences(items: list[dict[str, Any]], baseline: dict[str, Any]) -> list[dict[str, Any]]:
    """Each item against the baseline, per category and for the whole step: the baseline's ms, the item's,
    the difference in ms and in % of the baseline's, and the speed-up (baseline ms / item ms: above 1,
    the item spends less time there). A category an item has no figure for stays empty."""
    rows = []
    for item in items:
        if item is baseline:
            continue
        for key in ("step_ms", *CATEGORIES):
            base, mine = baseline.get(key), item.get(key)
            known = base is not None and mine is not None
            rows.append(
                {
                    "item": item["label"],
                    "category": "step" if key == "step_ms" else LABELS[key],
                    "baseline_ms": base,
                    "ms": mine,
                    "difference_ms": mine - base if known else None,
                    "difference_pct": 100 * (mine - base) / base if known and base else None,
                    "speed_up": base / mine if known and mine else None,
                }
            )
    return rows


def difference_sentence(item: dict[str, Any], baseline: dict[str, Any]) -> str:
    """``b128 against b32: 1.98x the throughput (step 78.80 ms against 38.65); data stall -4.2 ms, ...``"""
    step = f"step {item['step_ms']:.2f} ms against {baseline['step_ms']:.2f}"
    rate, base_rate = item.get("throughput_samples_per_s"), baseline.get("throughput_samples_per_s")
    text = f"**{item['label']}** against **{baseline['label']}**: " + (
        f"{rate / base_rate:.2f}x the throughput ({step})" if rate and base_rate else step
    )
    changes = sorted(
        (item[k] - baseline[k], k)
        for k in CATEGORIES
        if item.get(k) is not None and baseline.get(k) is not None
    )
    changes.sort(key=lambda change: -abs(change[0]))
    return text + "".join(f"; {LABELS[k]} {d:+.1f} ms" for d, k in changes[:2])


def settings(summary: dict[str, Any], manifest: dict[str, Any]) -> dict[str, str]:
    """What was run, setting by setting, for the Compare page's diff (a setting not recorded is "")."""
    workload = _mapping(summary.get("workload"))
    rate, step = (
        _number(summary["job"].get("throughput_samples_per_s")),
        _number(summary["job"].get("step_ms")),
    )
    per_rank = rate * step / 1e3 / summary["world_size"] if rate and step else None
    cap = _number(workload.get("bucket_cap_bytes"))
    return {
        "command": command(manifest) or "",
        "model": model_name(summary) or "",
        "ranks, device, nodes": where(summary),
        "samples per step per rank": "" if per_rank is None else f"{per_rank:.0f}",
        "backend": workload.get("backend") or "",
        "precision": workload.get("precision") or "",
        "bucket_cap_mb": "" if not cap else f"{cap / 2**20:g}",
        "buckets": "" if workload.get("num_buckets") is None else str(workload["num_buckets"]),
        "comm hook": workload.get("comm_hook") or ("none" if workload else ""),
        "steady steps per rank": str(summary["steps"]["steady_per_rank"]),
        "date": started(manifest) or "",
    }


def command_diff(baseline: str, other: str) -> str:
    """What changed between two command lines, word by word: ``--steps 30 -> --steps 40; + --workers 2``."""
    from difflib import SequenceMatcher

    before, after = shlex.split(baseline), shlex.split(other)
    changes = []
    for op, i1, i2, j1, j2 in SequenceMatcher(a=before, b=after, autojunk=False).get_opcodes():
        if op == "replace" and i1 and before[i1 - 1].startswith("-") and not before[i1].startswith("-"):
            i1, j1 = i1 - 1, j1 - 1  # name the flag whose value changed: --steps 30 -> --steps 40
        old, new = shlex.join(before[i1:i2]), shlex.join(after[j1:j2])
        if op == "replace":
            changes.append(f"{old} -> {new}")
        elif op == "delete":
            changes.append(f"- {old}")
        elif op == "insert":
            changes.append(f"+ {new}")
    return "; ".join(changes) or "the same command"


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


def under(rows: Any, root: Path) -> Any:
    """The local dataset's rows (a frame with ``run_dir``) of runs inside ``root``."""
    base = root.expanduser().resolve()

    def inside(run_dir: Any) -> bool:
        try:
            return Path(str(run_dir)).resolve().is_relative_to(base)
        except (OSError, ValueError):
            return False

    return rows[[inside(d) for d in rows["run_dir"]]]


def same_errors(rows: Any, predictions: dict[str, Any], first: str, second: str) -> bool:
    """Whether every model's held-out error in ms is the same on ``first`` as on ``second``, row by row
    (the step time is predicted as the single-GPU step plus the stalls: with no network stall, the step
    time's error is the interconnect stall's)."""
    import numpy as np

    for predicted in predictions.values():
        if first not in predicted or second not in predicted:
            return False
        a = (predicted[first] - rows[first]).astype(float).to_numpy()
        b = (predicted[second] - rows[second]).astype(float).to_numpy()
        known = ~(np.isnan(a) | np.isnan(b))
        if not known.any() or not np.allclose(a[known], b[known], rtol=1e-9, atol=1e-9):
            return False
    return True
