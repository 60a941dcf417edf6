"""The per-rank record file, ``ranks/rank-<k>.jsonl``: one JSON object a line, each call's records
written with one system call as soon as they come (the session batches step records: FLUSH_S).

A write that fails (a full disk) leaves no half line: the file is cut back to its last whole record,
and, where the room that frees allows, ends with a warning record that says why it stops there.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from typing import Any

from ddlprof.collectors.guard import Stop


def rank_file(run_dir: str, rank: int) -> str:
    return os.path.join(run_dir, "ranks", f"rank-{rank}.jsonl")


def write_failed(exc: OSError, path: str) -> Stop:
    """The reason a collector records for a file it could not write, naming a full disk as such."""
    if exc.errno == errno.ENOSPC:
        why = "disk full (ENOSPC)"
    elif exc.errno == errno.EDQUOT:
        why = "disk quota exceeded (EDQUOT)"
    else:
        why = exc.strerror or str(exc)
    return Stop(f"{why} writing {path}")


_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def _line(record: dict[str, Any]) -> bytes:
    return (_encode(record) + "\n").encode()


class RecordWriter:
    def __init__(self, path: str) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.path = path
        # O_EXCL: a second process claiming the same rank must not clobber the first one's records.
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self._end = 0  # bytes of whole records written

    def write(self, *records: dict[str, Any]) -> None:
        """Append ``records``, whole: where they do not all fit, each on its own up to the one that
        does not, which is cut back."""
        lines = [_line(record) for record in records]
        try:
            try:
                self._write_at_end(b"".join(lines))
            except OSError:
                if len(lines) == 1:
                    raise
                for line in lines:
                    self._write_at_end(line)
        except OSError as exc:
            stop = write_failed(exc, self.path)
            with contextlib.suppress(OSError):  # where the cut freed room: say why the records end here
                reason = str(stop).removesuffix(f" writing {self.path}")  # (this file)
                self._write_at_end(_line({"type": "warning", "collector": "records", "reason": reason}))
            raise stop from None

    def _write_at_end(self, data: bytes) -> None:
        """Append ``data`` whole, or cut the file back to its last whole record and raise."""
        written = 0
        try:
            while written < len(data):
                written += os.pwrite(self._fd, data[written:], self._end + written)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._end)
            raise
        self._end += len(data)

    def close(self) -> None:
        os.close(self._fd)
