"""A full disk during ``ddlprof wrap``: the job goes on; each output that cannot be written stops,
says "disk full (ENOSPC)" once, and leaves no half-written line or temporary file behind."""

from __future__ import annotations

import errno
import gzip
import json
import os
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from ddlprof.collectors import records, traces
from ddlprof.collectors.guard import Guard
from ddlprof.runs.rundir import read_rank

DISK_FULL = "disk full (ENOSPC) writing"


def _disk_of(monkeypatch, capacity: int) -> None:
    """Files written by the record writer fit in ``capacity`` bytes each, as on a disk that is full."""
    real = os.pwrite

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        room = capacity - offset
        if room <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, bytes(data[:room]), offset)

    monkeypatch.setattr(records.os, "pwrite", pwrite)


@pytest.mark.parametrize("batched", [False, True], ids=["one-by-one", "batched"])
def test_a_full_disk_cuts_the_records_back_to_whole_lines_and_says_why(
    tmp_path, monkeypatch, capsys, batched
):
    path = tmp_path / "ranks" / "rank-0.jsonl"
    writer = records.RecordWriter(str(path))
    header = {"type": "rank", "rank": 0}
    steps = [{"type": "step", "step": step, "step_ms": 1.0, "pad": "x" * 200} for step in range(1, 20)]
    # Room for the header and four steps, and some: the fifth step is cut, and its room holds a warning.
    _disk_of(monkeypatch, capacity=len(json.dumps(header)) + 4 * len(json.dumps(steps[0])) + 120)
    guard = Guard()
    if batched:  # the session writes the steps of FLUSH_S in one call: those that fit are kept
        guard.call("records", writer.write, header)
        guard.call("records", writer.write, *steps[:10])
        guard.call("records", writer.write, *steps[10:])
    else:
        for record in [header, *steps]:
            guard.call("records", writer.write, record)
    log = read_rank(path, 0)
    assert log.torn_lines == 0  # the report has no cut line to blame on a killed rank
    assert [s["step"] for s in log.steps] == [1, 2, 3, 4]
    assert log.warnings[-1] == {"type": "warning", "collector": "records", "reason": "disk full (ENOSPC)"}
    assert guard.off["records"] == f"{DISK_FULL} {path}"
    assert capsys.readouterr().err.count(DISK_FULL) == 1  # warned once, then switched off


class _Profiler:
    """torch.profiler's export as Kineto does it on a full disk: RAW.tmp written, RAW never made."""

    def __init__(self, write_raw: bool) -> None:
        self.write_raw = write_raw

    def stop(self) -> None:
        pass

    def export_chrome_trace(self, raw: str) -> None:
        trace = json.dumps({"traceEvents": [{"name": "x", "ph": "X", "ts": 1, "dur": 1}]})
        Path(raw if self.write_raw else f"{raw}.tmp").write_text(trace[: None if self.write_raw else 20])


def _window(tmp_path: Path, profiler: _Profiler) -> tuple[traces.TraceWindows, list[dict]]:
    written: list[dict] = []
    session = SimpleNamespace(
        config=SimpleNamespace(run_dir=str(tmp_path)), rank=0, write_record=written.append
    )
    windows = traces.TraceWindows(session, ((1, 2),))
    windows.profiler, windows.window = profiler, (1, 2)
    return windows, written


def _full(monkeypatch) -> None:
    real = os.statvfs
    monkeypatch.setattr(
        traces.os, "statvfs", lambda p: SimpleNamespace(**{**_fields(real(p)), "f_bavail": 0})
    )


def _fields(result: os.statvfs_result) -> dict:
    return {name: getattr(result, name) for name in dir(result) if name.startswith("f_")}


def test_a_trace_kineto_could_not_write_leaves_no_temporary_file_and_says_disk_full(tmp_path, monkeypatch):
    _full(monkeypatch)
    windows, written = _window(tmp_path, _Profiler(write_raw=False))
    guard = Guard()
    guard.call("traces", windows.finish)
    assert guard.off["traces"].startswith(DISK_FULL)
    assert written == []
    assert [p.name for p in (tmp_path / "traces").rglob("*") if p.is_file()] == []


def test_a_trace_whose_gzip_fails_leaves_no_part_file(tmp_path, monkeypatch):
    real_open = gzip.open

    def no_room(_text: str) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def failing_open(path, *args, **kwargs):
        file = real_open(path, *args, **kwargs)
        file.write = no_room
        return file

    monkeypatch.setattr(gzip, "open", failing_open)
    windows, written = _window(tmp_path, _Profiler(write_raw=True))
    with pytest.raises(Exception, match=re.escape(DISK_FULL)):
        windows.finish()
    assert written == []
    assert [p.name for p in (tmp_path / "traces").rglob("*") if p.is_file()] == []
