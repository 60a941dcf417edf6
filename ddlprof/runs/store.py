"""The local dataset: one row per run that ``ddlprof report`` summarised, in SQLite.

Every run a user wraps and reports adds a row to ``$DDLPROF_HOME/dataset.sqlite`` (default home:
``~/.ddlprof``), so that the stall and step-time models can learn from the user's own hardware and
models next to the shipped measurements. A run is identified by its manifest (``run_id`` and
``created_unix`` of each run directory) and its hosts: reporting the same run again replaces its row,
even from a copied or moved directory.

The store is a side effect of a report and never fails one: :func:`record_run` catches SQLite and
file-system errors (read-only home, full disk, a corrupt database) and returns False.
``DDLPROF_NO_STORE=1`` (or ``ddlprof report --no-store``) skips it.

Columns of :func:`load_rows`: first those of the measured stall dataset
(``ddlprof/models/data/stall_dataset.csv``, built by ``benchmarks/build_stall_dataset.py``), in its
order, then ``source`` ("reported") and the rest of the runs table.

    model                 the class name of the module DDP wraps (``ResNet``, ``BertModel``): a
                          reported run does not know the name the user gave the model
    batch_per_gpu         samples per rank per steady step (the lowest rank's throughput x step time)
    transport             always "": one run cannot tell NVLink from PCIe or the kind of network
    gpus_per_node, nodes, world_size
    single_gpu_step_ms    null from ``ddlprof report``: one wrapped run cannot know the step time on
                          one GPU; the row ``ddlprof stalls`` adds for its full job has it (the
                          median of its one-GPU variant), so the stall models can learn from it
    step_ms               the job's steady DDP step time (summary ``job.step_ms``)
    intra_busbw_gbps      bandwidth probe among the GPUs of one node, ``inter_busbw_gbps`` among all
                          ranks (bounded by the network), ``latency_us`` the intra-node latency: the
                          probe runs in multi-node jobs only, so single-node rows have nulls here
    interconnect_stall_ms, network_stall_ms   the single-run attribution (null when not measured)
    num_layers, num_grad_tensors, num_params, grad_bytes, num_buckets, last_bucket_bytes
                          the workload record (null when no DDP module was seen)
    flops_per_sample, precision   always null (``ddlprof model features`` computes the FLOPs from
                          the model's name, which a run does not record; ``parameter_dtype`` is kept)
    gpu                   the CUDA device name the ranks ran on, else the nodes' NVML inventory
    single_gpu_step_ms_ranks   always null; ``step_ms_ranks``: each rank's steady step time, ";"-joined

The rest: compute_ms, data_stall_ms, other_ms, throughput_samples_per_s, steady_steps,
intra_latency_us, inter_latency_us, bucket_cap_bytes, parameter_dtype, backend, driver, torch, cuda,
nccl, ddlprof_version, run_key (the identity, JSON), run_id, run_dir, run_dirs, hosts, command,
created_unix, reported_unix, job_json (the summary's whole ``job`` object, JSON text) and
workload_json (the whole workload record).
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from ddlprof.runs.breakdown import batch_per_gpu

HOME_ENV = "DDLPROF_HOME"
NO_STORE_ENV = "DDLPROF_NO_STORE"
DATABASE = "dataset.sqlite"
SCHEMA_VERSION = 2  # 2: single_gpu_step_ms (what ddlprof stalls measures beside its full job)

# (column, SQL type) of the runs table, in order.
_COLUMNS: tuple[tuple[str, str], ...] = (
    ("run_key", "TEXT PRIMARY KEY"),
    ("model", "TEXT"),
    ("batch_per_gpu", "REAL"),
    ("transport", "TEXT"),
    ("gpus_per_node", "INTEGER"),
    ("nodes", "INTEGER"),
    ("world_size", "INTEGER"),
    ("step_ms", "REAL"),
    ("intra_busbw_gbps", "REAL"),
    ("inter_busbw_gbps", "REAL"),
    ("intra_latency_us", "REAL"),
    ("inter_latency_us", "REAL"),
    ("interconnect_stall_ms", "REAL"),
    ("network_stall_ms", "REAL"),
    ("num_layers", "INTEGER"),
    ("num_grad_tensors", "INTEGER"),
    ("num_params", "INTEGER"),
    ("grad_bytes", "INTEGER"),
    ("num_buckets", "INTEGER"),
    ("last_bucket_bytes", "INTEGER"),
    ("gpu", "TEXT"),
    ("step_ms_ranks", "TEXT"),
    ("compute_ms", "REAL"),
    ("data_stall_ms", "REAL"),
    ("other_ms", "REAL"),
    ("throughput_samples_per_s", "REAL"),
    ("steady_steps", "INTEGER"),
    ("bucket_cap_bytes", "INTEGER"),
    ("parameter_dtype", "TEXT"),
    ("backend", "TEXT"),
    ("driver", "TEXT"),
    ("torch", "TEXT"),
    ("cuda", "TEXT"),
    ("nccl", "TEXT"),
    ("ddlprof_version", "TEXT"),
    ("run_id", "TEXT"),
    ("run_dir", "TEXT"),
    ("run_dirs", "TEXT"),
    ("hosts", "TEXT"),
    ("command", "TEXT"),
    ("created_unix", "REAL"),
    ("reported_unix", "REAL"),
    ("job_json", "TEXT"),
    ("workload_json", "TEXT"),
    ("single_gpu_step_ms", "REAL"),
    ("precision", "TEXT"),
)
COLUMNS = tuple(name for name, _ in _COLUMNS)
_WORKLOAD = (
    "num_layers",
    "num_grad_tensors",
    "num_params",
    "grad_bytes",
    "num_buckets",
    "bucket_cap_bytes",
    "parameter_dtype",
    "precision",
)
# The columns of the measured stall dataset (benchmarks/build_stall_dataset.py), in its order.
DATASET_COLUMNS = (
    "model",
    "batch_per_gpu",
    "transport",
    "gpus_per_node",
    "nodes",
    "world_size",
    "single_gpu_step_ms",
    "step_ms",
    "intra_busbw_gbps",
    "inter_busbw_gbps",
    "latency_us",
    "interconnect_stall_ms",
    "network_stall_ms",
    "num_layers",
    "num_grad_tensors",
    "num_params",
    "grad_bytes",
    "num_buckets",
    "flops_per_sample",
    "last_bucket_bytes",
    "precision",
    "gpu",
    "single_gpu_step_ms_ranks",
    "step_ms_ranks",
)
# Columns ``ddlprof stalls`` measures beside a run (null from a plain report; kept when the run is
# reported again), and columns always null in rows from reported runs (transport is "" instead).
MEASURED_BESIDE = ("single_gpu_step_ms",)
UNKNOWN_TO_A_RUN = ("single_gpu_step_ms_ranks", "flops_per_sample")


#: Fewest steady steps per rank of a run the local dataset takes. Steps of one run vary: in the shipped
#: 2 x H200 resnet50 runs (benchmarks/results/gpu-2xh200/runs.tgz) and a CPU run of
#: examples/ddp_train.py the steady step times have a coefficient of variation of 0.09 to 0.18, so the
#: mean of n steps is off by about 0.17 / sqrt(n): 7.6% at 5 steps, already two thirds of the shipped
#: stall model's own error (11.9%, README), and 12% at 2. Fewer steps would teach the models noise.
MIN_STEADY_STEPS = 5
#: Under this many the run is added with a caveat (0.17 / sqrt(20) = 3.8%, a third of the model's
#: error): the steps ``ddlprof stalls`` measures per run by default.
FEW_STEADY_STEPS = 20


class StoreError(Exception):
    """The dataset cannot be used (newer schema); worded for a one-line warning."""


def home() -> Path:
    """The ddlprof home directory: ``$DDLPROF_HOME``, or ``~/.ddlprof``."""
    value = os.environ.get(HOME_ENV)
    return Path(value).expanduser() if value else Path.home() / ".ddlprof"


def database_path() -> Path:
    return home() / DATABASE


def disabled() -> bool:
    """True when ``DDLPROF_NO_STORE`` is set to anything but empty, 0, false or no."""
    return os.environ.get(NO_STORE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def ensure_table(
    conn: sqlite3.Connection, table: str, columns: tuple[tuple[str, str], ...], key: tuple[str, ...] = ()
) -> None:
    """Create ``table`` of ``columns`` ((name, SQL type) pairs, primary ``key``), or add in place the
    columns a later ddlprof added to the table of an older one (without NOT NULL, which rows already
    there could not meet)."""
    spec = ", ".join(f"{name} {kind}" for name, kind in columns)
    if key:
        spec += f", PRIMARY KEY ({', '.join(key)})"
    conn.execute(f"CREATE TABLE IF NOT EXISTS {table} ({spec})")
    have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    for name, kind in columns:
        if name not in have:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind.replace(' NOT NULL', '')}")


def read_only(path: Path) -> closing[sqlite3.Connection]:
    """The store opened read-only (reading it never creates or changes it)."""
    return closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10))


@contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(path, timeout=10)) as conn:
        with conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            found = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
            if found is not None and found > SCHEMA_VERSION:
                raise StoreError(f"written by a newer ddlprof (dataset schema {found}); upgrade ddlprof")
            ensure_table(conn, "runs", _COLUMNS)
            if found is None or found < SCHEMA_VERSION:
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        yield conn


def admission(summary: dict[str, Any]) -> tuple[str | None, str | None]:
    """(refusal, caveat) for adding a report's run to the dataset, each a few words or None.

    Refused: a run with ranks that recorded no step (the job's figures would be those of the ranks
    left, not of the job that ran: its throughput is a sum over them), or with fewer than
    ``MIN_STEADY_STEPS`` steady steps per rank. Added with a caveat: fewer than ``FEW_STEADY_STEPS``,
    or ranks that stopped without an end record (killed or crashed)."""
    from ddlprof.runs.summary import absent_ranks, ranks_label

    world = int(summary.get("world_size") or 0)
    absent = absent_ranks(world, (row["rank"] for row in summary.get("ranks") or []))
    if absent:
        return (
            f"{ranks_label(absent)} of {world} recorded no step: the job's figures are those of "
            f"{world - len(absent)} rank(s), not of the job that ran",
            None,
        )
    steady = (summary.get("steps") or {}).get("steady_per_rank") or 0
    if steady < MIN_STEADY_STEPS:
        return (
            f"{steady} steady step(s) per rank, under the {MIN_STEADY_STEPS} a row needs "
            "(one step's time is 9 to 18% off the mean step: fewer would teach the models noise)",
            None,
        )
    caveats = []
    if steady < FEW_STEADY_STEPS:
        caveats.append(
            f"only {steady} steady steps per rank (under {FEW_STEADY_STEPS}: the mean step is less sure)"
        )
    caveats += [
        f"rank {m['rank']} stopped after step {m['last_step']} (killed or crashed)"
        for m in stopped_ranks(summary)
    ]
    return None, "; ".join(caveats) or None


def stopped_ranks(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The ranks that stopped without an end record (killed, crashed, or a rank file cut short)."""
    return [m for m in summary.get("missing_ranks") or [] if "last_step" in m]


def record_run(
    summary: dict[str, Any],
    run_dirs: list[Path],
    on_error: Callable[[str], None] | None = None,
    measured: dict[str, Any] | None = None,
) -> str | None:
    """Add the reported run to the local dataset, or replace its row: "added"; None when it cannot be
    written. A report with ranks that stopped early never replaces a row the run has already ("kept"):
    a damaged copy of a run directory (a rank file cut short) has the run's identity and fewer steps.

    ``on_error`` gets the reason in a few words (the report turns it into one warning line).
    ``measured`` fills columns one run cannot know: ``ddlprof stalls`` gives ``single_gpu_step_ms``
    from its one-GPU variant, which makes the row one the stall models can learn from.
    """
    where = "ddlprof home"
    try:
        path = database_path()
        where = str(path)
        row = {**run_row(summary, run_dirs), **(measured or {})}
        path.parent.mkdir(parents=True, exist_ok=True)
        with _connect(path) as conn, conn:
            names = ", ".join(COLUMNS)
            marks = ", ".join("?" for _ in COLUMNS)
            # a later plain report of the same run keeps what ddlprof stalls measured beside it
            kept = [f"{c} = COALESCE(excluded.{c}, runs.{c})" for c in COLUMNS if c in MEASURED_BESIDE]
            fresh = [f"{c} = excluded.{c}" for c in COLUMNS if c not in MEASURED_BESIDE and c != "run_key"]
            update = "NOTHING" if stopped_ranks(summary) else f"UPDATE SET {', '.join(kept + fresh)}"
            written = conn.execute(
                f"INSERT INTO runs ({names}) VALUES ({marks}) ON CONFLICT(run_key) DO {update}",
                [row[c] for c in COLUMNS],
            ).rowcount
        return "added" if written else "kept"
    except (sqlite3.Error, OSError, StoreError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    except Exception as exc:  # an odd run directory: the report itself must still succeed
        reason = f"{type(exc).__name__}: {exc}"
    if on_error is not None:
        on_error(" ".join(f"{where}: {reason}".split()))
    return None


def load_rows() -> Any:
    """The recorded runs as a pandas DataFrame, newest report first, in the dataset's column names.

    An absent database gives an empty frame with the same columns; an unreadable one raises
    :class:`StoreError`.
    """
    import pandas as pd

    order = [*DATASET_COLUMNS, "source", *(c for c in COLUMNS if c not in DATASET_COLUMNS)]
    path = database_path()
    if not path.exists():
        return pd.DataFrame(columns=order)
    try:
        with read_only(path) as conn:
            frame = pd.read_sql_query("SELECT * FROM runs ORDER BY reported_unix DESC", conn)
    except (sqlite3.Error, pd.errors.DatabaseError) as exc:
        raise StoreError(f"{path}: unreadable dataset ({exc})") from None
    for column in (*UNKNOWN_TO_A_RUN, *(c for c in COLUMNS if c not in frame)):
        frame[column] = None  # (a database no newer ddlprof wrote to since it was made may lack some)
    frame["latency_us"] = frame["intra_latency_us"]
    frame["source"] = "reported"
    frame["transport"] = frame["transport"].fillna("")
    return frame[order]


def run_row(summary: dict[str, Any], run_dirs: list[Path]) -> dict[str, Any]:
    """The dataset row of one report: the summary, plus manifest, node and rank facts from the runs."""
    manifests = [_read_json(d / "manifest.json") for d in run_dirs]
    nodes = [n for d in run_dirs for n in _read_nodes(d)]
    header = _first_rank_header(run_dirs)
    job = summary.get("job") or {}
    workload = summary.get("workload") or {}
    hosts = sorted(summary.get("hosts") or [])
    world_size = summary.get("world_size")
    n_nodes = summary.get("nodes")
    probe = next((p for p in (summary.get("probes") or {}).values() if p.get("full")), None)
    ranks = summary.get("ranks") or []
    buckets = workload.get("bucket_sizes")
    created = [m.get("created_unix") for m in manifests]
    run_ids = [m.get("run_id") or d.resolve().name for m, d in zip(manifests, run_dirs, strict=True)]
    return {
        "run_key": _run_key(run_ids, created, hosts, nodes, run_dirs),
        "run_id": run_ids[0] if len(run_ids) == 1 else "+".join(str(r) for r in run_ids),
        "run_dir": str(run_dirs[0].resolve()),
        "run_dirs": json.dumps([str(d.resolve()) for d in run_dirs]),
        "created_unix": min((c for c in created if c is not None), default=None),
        "reported_unix": time.time(),
        "hosts": json.dumps(hosts),
        "command": json.dumps(manifests[0].get("command")) if manifests[0].get("command") else None,
        "model": workload.get("module"),
        "batch_per_gpu": batch_per_gpu(ranks),
        "transport": "",
        "world_size": world_size,
        "gpus_per_node": _gpus_per_node(summary, probe),
        "nodes": n_nodes,
        "gpu": _gpu_name(ranks, nodes),
        "driver": _most_common(g.get("driver") for g in _node_gpus(nodes)),
        "torch": header.get("torch"),
        "cuda": header.get("cuda"),
        "nccl": header.get("nccl"),
        "backend": workload.get("backend") or header.get("backend"),
        **{key: job.get(key) for key in ("step_ms", "compute_ms", "data_stall_ms", "other_ms")},
        "interconnect_stall_ms": job.get("interconnect_stall_ms"),
        "network_stall_ms": job.get("network_stall_ms"),
        "throughput_samples_per_s": job.get("throughput_samples_per_s"),
        "steady_steps": (summary.get("steps") or {}).get("steady_per_rank"),
        "intra_busbw_gbps": _probed(probe, "intra", "busbw_gbps"),
        "inter_busbw_gbps": _probed(probe, "full", "busbw_gbps"),
        "intra_latency_us": _probed(probe, "intra", "latency_us"),
        "inter_latency_us": _probed(probe, "full", "latency_us"),
        "last_bucket_bytes": buckets[-1] if buckets else None,
        "step_ms_ranks": ";".join(_ms(r.get("step_ms")) for r in ranks) or None,
        **{key: workload.get(key) for key in _WORKLOAD},
        "ddlprof_version": summary.get("ddlprof_version"),
        "job_json": json.dumps(job, sort_keys=True),
        "workload_json": json.dumps(workload, sort_keys=True) if workload else None,
        "single_gpu_step_ms": None,  # one run cannot know it; ddlprof stalls passes it as measured
    }


def _run_key(
    run_ids: list[Any], created: list[Any], hosts: list[str], nodes: list[dict[str, Any]], dirs: list[Path]
) -> str:
    """The run's identity: each directory's manifest (id, creation time) and the hosts.

    A manifest without a creation time (older or hand-made) falls back to the nodes' start times,
    and without those to the directory's path, so that two different runs never share a row.
    """
    starts = sorted(n["start_unix"] for n in nodes if isinstance(n.get("start_unix"), int | float))
    parts = []
    for run_id, when, folder in zip(run_ids, created, dirs, strict=True):
        if when is None:
            when = starts[0] if starts else str(folder.resolve())
        parts.append([str(run_id), when])
    return json.dumps({"runs": sorted(parts, key=json.dumps), "hosts": hosts}, sort_keys=True)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _read_nodes(run_dir: Path) -> list[dict[str, Any]]:
    return [node for f in sorted((run_dir / "nodes").glob("*.json")) if (node := _read_json(f))]


def _first_rank_header(run_dirs: list[Path]) -> dict[str, Any]:
    """The ``rank`` record of the lowest rank (torch, CUDA and NCCL versions), read from its first line."""
    files = sorted(
        (f for d in run_dirs for f in (d / "ranks").glob("rank-*.jsonl")),
        key=lambda f: int(f.stem.split("-")[1]) if f.stem.split("-")[1].isdigit() else math.inf,
    )
    for file in files:
        try:
            with file.open(encoding="utf-8", errors="replace") as f:
                record = json.loads(f.readline())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(record, dict) and record.get("type") == "rank":
            return record
    return {}


def _gpus_per_node(summary: dict[str, Any], probe: dict[str, Any] | None) -> int | None:
    world_size, nodes = summary.get("world_size"), summary.get("nodes")
    if probe and probe.get("local_size"):
        return int(probe["local_size"])
    if not world_size or not nodes:
        return None
    per_host = Counter(r.get("host") for r in summary.get("ranks") or [])
    return max(math.ceil(world_size / nodes), max(per_host.values(), default=0))


def _gpu_name(ranks: list[dict[str, Any]], nodes: list[dict[str, Any]]) -> str | None:
    """The GPU the ranks ran on (the rank header's CUDA device name), else the nodes' NVML inventory.

    None for a job on CPUs, even on a host with GPUs.
    """
    devices = [str(r["device"]) for r in ranks if r.get("device")]
    if devices and all(d == "cpu" for d in devices):
        return None
    used = _most_common(d for d in devices if not d.startswith(("cpu", "cuda")))
    return used or _most_common(g.get("name") for g in _node_gpus(nodes))


def _node_gpus(nodes: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The GPUs of the nodes' NVML inventories (a node file cut or edited by hand may hold anything)."""
    for node in nodes:
        gpus = node.get("gpus")
        yield from (g for g in gpus if isinstance(g, dict)) if isinstance(gpus, list) else ()


def _most_common(values: Iterator[Any] | Any) -> str | None:
    counts = Counter(v for v in values if v and isinstance(v, str))
    return counts.most_common(1)[0][0] if counts else None


def _probed(probe: dict[str, Any] | None, part: str, key: str) -> float | None:
    """A bandwidth probe figure; the probe runs only in multi-node jobs (``collectors/probe.py``)."""
    found = (probe or {}).get(part)
    return found.get(key) if isinstance(found, dict) else None


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"
