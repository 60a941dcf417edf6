"""The ``calibrations`` table of the local store: single-GPU step times that ``ddlprof calibrate``
measured on the user's own GPU, one row per (gpu, model, precision, batch per GPU), a newer
measurement replacing the older one.

It lives in the same SQLite file as the reported runs (``$DDLPROF_HOME/dataset.sqlite``,
``ddlprof.runs.store``): the table is created, and a column a later ddlprof adds is added, in place
when the database is opened, as the runs table is. Adding a table needs no new schema version: an
older ddlprof opens the file and never reads it.

    gpu               the GPU type as the specs table names it (``ddlprof.models.gpus``), e.g. "L4"
    model             the model's name (the dataset's name for its models, e.g. "resnet50")
    precision         fp32, tf32, fp16 or bf16: the math the steps ran at
    batch_per_gpu     samples per step
    step_ms           the median of the timed steps (forward, backward, optimizer step, synchronised)
    steps_ms          every timed step, JSON
    warmup_steps, device_name (torch's name of the device), torch, cuda, ddlprof_version,
    calibrated_unix, date (UTC, YYYY-MM-DD)
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from ddlprof.errors import DdlprofError
from ddlprof.runs.records import MAX_MS, loads, number
from ddlprof.runs.store import StoreError, _connect, database_path, ensure_table, read_only

TABLE = "calibrations"
MAX_BATCH = 1 << 20
KEY = ("gpu", "model", "precision", "batch_per_gpu")
_COLUMNS: tuple[tuple[str, str], ...] = (
    ("gpu", "TEXT NOT NULL"),
    ("model", "TEXT NOT NULL"),
    ("precision", "TEXT NOT NULL"),
    ("batch_per_gpu", "INTEGER NOT NULL"),
    ("step_ms", "REAL NOT NULL"),
    ("steps_ms", "TEXT"),
    ("warmup_steps", "INTEGER"),
    ("device_name", "TEXT"),
    ("torch", "TEXT"),
    ("cuda", "TEXT"),
    ("ddlprof_version", "TEXT"),
    ("calibrated_unix", "REAL"),
    ("date", "TEXT"),
)
COLUMNS = tuple(name for name, _ in _COLUMNS)


def record_calibration(row: dict[str, Any]) -> None:
    """Write one calibration, replacing the row of the same (gpu, model, precision, batch); a store
    that cannot be written is a one-line :class:`DdlprofError` (calibrating is about storing it)."""
    missing = [c for c in (*KEY, "step_ms") if row.get(c) in (None, "")]
    if missing:
        raise DdlprofError(f"a calibration needs {', '.join(missing)}")
    values = {c: row.get(c) for c in COLUMNS}
    if isinstance(values["steps_ms"], list | tuple):
        values["steps_ms"] = json.dumps([round(float(v), 4) for v in values["steps_ms"]])
    path = database_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _connect(path) as conn, conn:
            ensure_table(conn, TABLE, _COLUMNS, KEY)
            marks = ", ".join("?" for _ in COLUMNS)
            conn.execute(
                f"INSERT OR REPLACE INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({marks})",
                [values[c] for c in COLUMNS],
            )
    except (sqlite3.Error, OSError, StoreError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise DdlprofError(f"{path}: calibration not stored: {' '.join(reason.split())}") from None


def load_calibrations(gpu: str | None = None, model: str | None = None) -> list[dict[str, Any]]:
    """Stored calibrations (of one GPU type and model when given), newest first; [] when there is no
    store or no table yet. The store is opened read-only: predicting never writes."""
    path = database_path()
    if not path.exists():
        return []
    where, params = [], []
    for column, value in (("gpu", gpu), ("model", model)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    query = f"SELECT * FROM {TABLE}" + (f" WHERE {' AND '.join(where)}" if where else "")
    try:
        with read_only(path) as conn:
            conn.row_factory = sqlite3.Row
            if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (TABLE,)).fetchone():
                return []
            have = {row[1] for row in conn.execute(f"PRAGMA table_info({TABLE})")}
            order = "calibrated_unix DESC" if "calibrated_unix" in have else "rowid DESC"
            rows = [dict(r) for r in conn.execute(f"{query} ORDER BY {order}", params)]
    except sqlite3.Error as exc:
        raise DdlprofError(f"{path}: unreadable store ({exc})") from None
    usable = []
    for row in rows:
        for column in COLUMNS:  # a table an older ddlprof made, not written to since: no such column
            row.setdefault(column, None)
        row["steps_ms"] = _steps(row.get("steps_ms"))
        if _usable(row):
            usable.append(row)
    return usable


def _usable(row: dict[str, Any]) -> bool:
    """A row whose key and step time are of their types and in range: another program's, or a
    damaged file's, rows are left out rather than break every advise."""
    return (
        all(isinstance(row[c], str) and row[c] for c in ("gpu", "model", "precision"))
        and number(row["batch_per_gpu"], 1, MAX_BATCH, integer=True)
        and number(row["step_ms"], 1e-6, MAX_MS)
        and (row["date"] is None or isinstance(row["date"], str))
    )


def _steps(text: Any) -> list[float]:
    """The stored steps, or [] where they are not a JSON list of finite numbers."""
    try:
        steps = loads(text) if isinstance(text, str) and text else []
    except ValueError:
        return []
    return steps if isinstance(steps, list) and all(number(v, high=MAX_MS) for v in steps) else []
