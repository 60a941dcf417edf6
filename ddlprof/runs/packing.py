"""The ``packing`` table of the local store: what ``ddlprof share`` measured when K copies of a one-GPU
job shared one GPU, one row per (GPU, model, mode, copies), a newer measurement replacing the older.

It lives in the local store's SQLite file beside the reported runs and the calibrations
(``$DDLPROF_HOME/dataset.sqlite``); ``ddlprof advise --jobs N`` reads it, and packs k copies per GPU
only where a row measured it.

    gpu_name                NVML's name of the GPU (the advisor maps it to its GPU type)
    model                   the name the job was stored under (``ddlprof share --model``)
    mode                    timeslice, mps or mig
    copies                  K, the copies that shared the GPU
    factor                  the K copies' aggregate samples/s over one copy's alone on the whole GPU
    aggregate_samples_per_s, single_samples_per_s   the two figures of that ratio
    batch_per_gpu           samples per step of one copy
    joules_per_sample       the GPU's energy per sample at K copies (null without an energy figure)
    peak_memory_mib         the GPU's peak memory use with the K copies (NVML)
    share_dir, ddlprof_version, measured_unix, date (UTC, YYYY-MM-DD)
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from ddlprof.runs.records import number
from ddlprof.runs.store import StoreError, _connect, database_path, ensure_table, read_only

TABLE = "packing"
KEY = ("gpu_name", "model", "mode", "copies")
_COLUMNS: tuple[tuple[str, str], ...] = (
    ("gpu_name", "TEXT NOT NULL"),
    ("model", "TEXT NOT NULL"),
    ("mode", "TEXT NOT NULL"),
    ("copies", "INTEGER NOT NULL"),
    ("factor", "REAL NOT NULL"),
    ("aggregate_samples_per_s", "REAL"),
    ("single_samples_per_s", "REAL"),
    ("batch_per_gpu", "REAL"),
    ("joules_per_sample", "REAL"),
    ("peak_memory_mib", "REAL"),
    ("share_dir", "TEXT"),
    ("ddlprof_version", "TEXT"),
    ("measured_unix", "REAL"),
    ("date", "TEXT"),
)
COLUMNS = tuple(name for name, _ in _COLUMNS)


def record_packing(rows: list[dict[str, Any]]) -> str | None:
    """Write the rows, each replacing the row of its key; the reason when the store cannot be written
    (``ddlprof share`` has measured by then: it reports the reason, it does not fail)."""
    path = database_path()
    now = time.time()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _connect(path) as conn, conn:
            ensure_table(conn, TABLE, _COLUMNS, KEY)
            marks = ", ".join("?" for _ in COLUMNS)
            for row in rows:
                values = {
                    "measured_unix": now,
                    "date": time.strftime("%Y-%m-%d", time.gmtime(now)),
                    **{c: row.get(c) for c in COLUMNS if row.get(c) is not None},
                }
                conn.execute(
                    f"INSERT OR REPLACE INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({marks})",
                    [values.get(c) for c in COLUMNS],
                )
    except (sqlite3.Error, OSError, StoreError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return f"{path}: {' '.join(reason.split())}"
    return None


def load_packing(model: str | None = None) -> list[dict[str, Any]]:
    """Stored packing measurements (of one model when given), newest first; [] without a store or
    table. Read-only: advising never writes. Rows of the wrong types are left out."""
    path = database_path()
    if not path.exists():
        return []
    query = f"SELECT * FROM {TABLE}" + (" WHERE model = ?" if model is not None else "")
    try:
        with read_only(path) as conn:
            conn.row_factory = sqlite3.Row
            if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (TABLE,)).fetchone():
                return []
            rows = [
                dict(r) for r in conn.execute(f"{query} ORDER BY measured_unix DESC", (model,) * bool(model))
            ]
    except sqlite3.Error:
        return []
    return [
        {**r, **{c: r[c] if number(r.get(c), 1e-12, 1e12) else None for c in _OPTIONAL_FIGURES}}
        for r in rows
        if all(isinstance(r.get(c), str) and r[c] for c in ("gpu_name", "model", "mode"))
        and number(r.get("copies"), 1, 1024, integer=True)
        and number(r.get("factor"), 1e-6, 1e6)
    ]


#: figures a row may lack; one of the wrong type or range (text, 0, 1e300) is read as not measured
_OPTIONAL_FIGURES = (
    "aggregate_samples_per_s",
    "single_samples_per_s",
    "batch_per_gpu",
    "joules_per_sample",
    "peak_memory_mib",
)
