"""What a rank file's records must hold before the summary uses them.

Rank files are written line by line by the training processes, so a crash may cut them anywhere,
and nothing stops a hand-edited or foreign file: every field the summary reads is checked here. A
bad rank header refuses the run with one line naming the file and the field; a bad step, probe,
trace or warning record is skipped (and counted, for a warning), since the rest of the file is
still good. Bounds keep every sum and mean finite, so that ``summary.json`` stays strict JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ddlprof.errors import DdlprofError

MAX_WORLD_SIZE = 1 << 20  # ranks in one job: far above any job run so far (about 10^5 GPUs)
MAX_STEP = 10**12  # a step number
MAX_MS = 1e9  # one step, or part of one, in ms: 11.6 days
MAX_COUNT = 10**12  # samples in one step, bytes in one bucket
MAX_UNIX = 1e11  # a Unix time in seconds (year 5138)


def _reject(constant: str) -> float:
    raise ValueError(f"{constant} is not a number JSON allows")


def loads(text: str) -> Any:
    """``json.loads`` without Python's NaN/Infinity extension: such a line is unreadable, as a
    summary built from it could not be strict JSON."""
    return json.loads(text, parse_constant=_reject)


def number(value: Any, low: float = 0.0, high: float = MAX_MS, integer: bool = False) -> bool:
    """Whether ``value`` is a JSON number (an integer where asked) in [low, high]."""
    kinds = int if integer else int | float
    return isinstance(value, kinds) and not isinstance(value, bool) and low <= value <= high


def _optional(value: Any, high: float = MAX_MS) -> bool:
    return value is None or number(value, high=high)


def check_header(record: dict[str, Any], path: Path) -> None:
    """A rank header the summary can trust: its rank and world size are sane integers."""
    fields = (
        ("rank", record.get("rank", 0), MAX_WORLD_SIZE - 1, 0),
        ("world_size", record.get("world_size", 1), MAX_WORLD_SIZE, 1),
    )
    for name, value, high, low in fields:
        if not number(value, low, high, integer=True):
            raise DdlprofError(
                f"{path}: rank header field {name} must be an integer from {low} to {high:,}, "
                f"not {json.dumps(value)[:40]}"
            )


def _bucket(row: Any) -> bool:
    return isinstance(row, list) and len(row) >= 2 and number(row[1], high=MAX_COUNT)


def _comm(comm: Any) -> bool:
    if comm is None:
        return True
    if not isinstance(comm, dict):
        return False
    buckets = comm.get("per_bucket", [])
    return (
        _optional(comm.get("exposed_ms"))
        and _optional(comm.get("gpu_lag_ms"))
        and _optional(comm.get("backward_end_ms"))
        and isinstance(buckets, list)
        and all(_bucket(row) for row in buckets)
    )


def good_step(record: dict[str, Any]) -> bool:
    """A step record whose every field the summary reads is a number in range (or absent)."""
    return (
        number(record.get("step"), high=MAX_STEP, integer=True)
        and number(record.get("step_ms"))
        and all(_optional(record.get(key)) for key in ("data_wait_ms", "loop_ms", "own_ms"))
        and all(_optional(record.get(key), MAX_UNIX) for key in ("start", "end"))
        and (record.get("samples") is None or number(record["samples"], high=MAX_COUNT, integer=True))
        and _comm(record.get("comm"))
        and _own_by(record.get("own_ms_by"))
        and _loader(record.get("loader"))
    )


def _loader(loader: Any) -> bool:
    """What the step's batches cost to make (``collectors/session.py``: LOADER_FIELDS), or absent."""
    if loader is None:
        return True
    keys = ("batches", "uncosted", "workers", "wall_ms", "cpu_ms", "cpu_wait_ms", "replayed")
    return isinstance(loader, dict) and all(number(loader.get(k, 0), high=MAX_COUNT) for k in keys)


def _own_by(parts: Any) -> bool:
    return parts is None or (isinstance(parts, dict) and all(number(v) for v in parts.values()))


def _link(stats: Any) -> bool:
    return (
        isinstance(stats, dict)
        and number(stats.get("ranks"), 1, MAX_WORLD_SIZE, integer=True)
        and number(stats.get("latency_us"), high=MAX_MS)
        and number(stats.get("busbw_gbps"), 1e-9, MAX_MS)
    )


def good_probe(record: dict[str, Any]) -> bool:
    """A probe record: skipped, or its links' figures usable by the ring cost model."""
    full, intra = record.get("full"), record.get("intra")
    return (
        (full is None or _link(full))
        and (intra is None or _link(intra))
        and (record.get("local_size") is None or number(record["local_size"], 1, MAX_WORLD_SIZE, True))
        and _optional(record.get("seconds"))
    )


def good_trace(record: dict[str, Any]) -> bool:
    """A trace record: the window's first and last step, and the file it went to."""
    steps = record.get("steps")
    return (
        isinstance(steps, list)
        and len(steps) == 2
        and all(number(s, high=MAX_STEP, integer=True) for s in steps)
        and isinstance(record.get("file"), str)
    )


def good_warning(record: dict[str, Any]) -> bool:
    """A collector's warning: which collector and why, both text."""
    return isinstance(record.get("collector"), str) and isinstance(record.get("reason"), str)
