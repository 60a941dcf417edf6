"""The per-rank record file, ``ranks/rank-<k>.jsonl``: one JSON object a line, flushed as written,
so a job killed with SIGKILL still leaves every step it finished on disk."""

from __future__ import annotations

import json
import os
from typing import Any


def rank_file(run_dir: str, rank: int) -> str:
    return os.path.join(run_dir, "ranks", f"rank-{rank}.jsonl")


class RecordWriter:
    def __init__(self, path: str) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # "x": a second process claiming the same rank must not clobber the first one's records.
        self._file = open(path, "x", encoding="utf-8")  # noqa: SIM115  (kept open for the whole job)

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
