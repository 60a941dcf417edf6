"""GPU timeline windows: torch.profiler (Kineto) records the steps named by --trace-steps.

The profiler starts at the boundary before a window and stops at its last step, so each window holds
whole steps marked ``ProfilerStep#N`` with ddlprof's step numbers. A step ends inside the optimizer's
own ``Optimizer.step#...`` profiler range (torch runs step hooks within it); a ``ProfilerStep#N`` opened
or closed there would straddle that range, and Kineto then books every GPU kernel of the window to the
first step (TensorBoard lists it twice, the other steps have no GPU time). So the profiler's boundary
moves to the next step's first event outside any range (its first ``next()`` on a DataLoader or its
first DDP forward), and only where a step has neither happens at the optimizer step. Files go to
``traces/<run>/<host>_<rank>.<first step>.pt.trace.json.gz``: the layout torch-tb-profiler reads
(``tensorboard --logdir RUN/traces``), and a file Perfetto opens as it is.

Kineto prints lines of its own into the job's output at every window (``USDT: ... profiler_start``
in torch 2.11 to 2.13, at any log level below 6); a window sets ``KINETO_LOG_LEVEL=6`` unless the job
set it, since the job did not ask for a profiler. Kineto reads it once, at its first use, so it then
holds for the whole process (its warnings and errors too): a job that wants them sets its own level.

Kineto keeps CUPTI attached after the profiler stops unless ``TEARDOWN_CUPTI=1``, and an attached
CUPTI slowed every later step of a bf16 resnet50 loop on 1 x H100 by about 20% (BENCHMARKS.md,
issue 12), so a window that traces the GPU sets it, unless the job set it already (torch itself sets
0 where CUDA graphs need CUPTI kept).
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from typing import TYPE_CHECKING, Any

from ddlprof.collectors.config import host_id
from ddlprof.collectors.records import write_failed

TEARDOWN_CUPTI = "TEARDOWN_CUPTI"
KINETO_LOG_LEVEL = "KINETO_LOG_LEVEL"
QUIET = "6"  # above every level Kineto logs at (USDT is 5)

if TYPE_CHECKING:
    from ddlprof.collectors.session import Session


class TraceWindows:
    def __init__(self, session: Session, windows: tuple[tuple[int, int], ...]) -> None:
        self.session = session
        self.windows = list(windows)
        self.profiler: Any = None
        self.window: tuple[int, int] | None = None
        self.due: int | None = None  # a step that ended inside the optimizer, its boundary not yet run
        self.start_s = 0.0  # how long the running window's profiler took to start

    def covers(self, step: int) -> bool:
        return any(lo <= step <= hi for lo, hi in self.windows)

    def step_ended(self, step: int, top_level: bool) -> bool:
        """At the end of ``step``: the boundary runs now when the caller is outside every profiler
        range (``mark_step``), else at ``next_step_began``. True when a trace was exported here."""
        exported = self.next_step_began()  # one still due (a step with no DataLoader or DDP forward)
        self.due = step
        return (self.next_step_began() if top_level else False) or exported

    def next_step_began(self) -> bool:
        """Run a boundary that is due; True when it exported a trace (a slow boundary)."""
        if self.due is None:
            return False
        step, self.due = self.due, None
        return self._boundary(step)

    def _boundary(self, step: int) -> bool:
        if self.profiler is None:
            upcoming = next((w for w in self.windows if w[0] == step + 1), None)
            if upcoming is not None:
                self._start(upcoming)
            return False
        assert self.window is not None
        if step < self.window[1]:
            self.profiler.step()
            return False
        self.finish()
        return True

    def _start(self, window: tuple[int, int]) -> None:
        from torch.profiler import ProfilerAction, profile

        os.environ.setdefault(KINETO_LOG_LEVEL, QUIET)
        self.window = window
        # A schedule (always RECORD: the window's bounds are ours) makes torch mark ProfilerStep#N.
        options: dict = {"activities": activities(), "schedule": lambda _step: ProfilerAction.RECORD}
        try:  # keep events across our per-step profiler.step() calls (and no warning about it)
            self.profiler = profile(**options, acc_events=True)
        except TypeError:  # torch before acc_events
            self.profiler = profile(**options)
        self.profiler.step_num = window[0]  # ProfilerStep#N carries ddlprof's step number
        started = time.perf_counter()
        self.profiler.start()
        self.start_s = time.perf_counter() - started

    def finish(self, at_exit: bool = False) -> None:
        """Stop a running window and export it (also at exit, when the job ends inside a window)."""
        if self.profiler is None or self.window is None:
            return
        profiler, window = self.profiler, self.window
        self.profiler = self.window = None
        stopping = time.perf_counter()
        profiler.stop()
        session = self.session
        run_dir = os.path.abspath(session.config.run_dir)
        folder = os.path.join(run_dir, "traces", os.path.basename(run_dir))
        os.makedirs(folder, exist_ok=True)
        rank = session.rank if session.rank is not None else int(os.environ.get("RANK", 0))
        path = os.path.join(folder, f"{host_id()}_{rank}.{window[0]}.pt.trace.json.gz")
        started = time.perf_counter()
        raw = f"{path}.{os.getpid()}.json"
        try:
            profiler.export_chrome_trace(raw)
            if not os.path.exists(raw):  # Kineto logs a failed write, leaves RAW.tmp and returns
                raise _not_written(folder, raw)
            write_without_gpu_step_marks(raw, path)
        except OSError as exc:
            raise write_failed(exc, path) from None
        finally:
            for leftover in (raw, f"{raw}.tmp"):
                with contextlib.suppress(OSError):
                    os.remove(leftover)
        session.write_record(
            {
                "type": "trace",
                "steps": list(window),
                "file": os.path.relpath(path, run_dir),
                "start_s": round(self.start_s, 4),
                "stop_s": round(started - stopping, 4),
                "export_s": round(time.perf_counter() - started, 4),
                "at_exit": at_exit,
            }
        )


def activities() -> list[Any]:
    """What a window records: the CPU, and the GPU when the job uses one. For the GPU, Kineto is asked
    to release CUPTI when the window ends (see the module's docstring); a value the job set wins."""
    import torch
    from torch.profiler import ProfilerActivity

    chosen = [ProfilerActivity.CPU]
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        chosen.append(ProfilerActivity.CUDA)
        if _cuda_at_least(torch.version.cuda, (12, 6)):
            os.environ.setdefault(TEARDOWN_CUPTI, "1")
    return chosen


def _cuda_at_least(version: str | None, wanted: tuple[int, int]) -> bool:
    """Before CUDA 12.6 a CUPTI torn down and set up again could crash a job that uses CUDA graphs
    (torch's own comment in torch/profiler/profiler.py), so older CUDA keeps Kineto's default."""
    try:
        major, minor = (int(part) for part in (version or "").split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= wanted


def write_without_gpu_step_marks(raw: str, path: str) -> None:
    """Gzip Kineto's trace ``raw`` into ``path``, less the GPU-side copies of ``ProfilerStep#N``.

    Kineto mirrors every step marker onto the GPU timeline as a ``gpu_user_annotation``, and
    torch-tb-profiler (0.4.3, no longer developed) counts those as steps of their own, so TensorBoard
    would list every step twice. The CPU markers, which every tool reads, stay. Written by hand: no
    profiler option leaves out only these spans.
    """
    import gzip
    import json

    with open(raw, encoding="utf-8") as f:
        trace = json.load(f)
    trace["traceEvents"] = [event for event in trace.get("traceEvents", []) if not _gpu_step_mark(event)]
    part = f"{path}.{os.getpid()}.part"
    try:
        with gzip.open(part, "wt", encoding="utf-8", compresslevel=6) as f:
            json.dump(trace, f)
        os.replace(part, path)
    finally:
        with contextlib.suppress(OSError):
            os.remove(part)  # left only by a failed write


def _not_written(folder: str, raw: str) -> OSError:
    """Why Kineto wrote no trace (it says so only in its log): a full disk, or a reason not known."""
    try:
        full = os.statvfs(folder).f_bavail == 0
    except OSError:
        full = False
    if full:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), raw)
    return OSError(errno.EIO, "Kineto wrote no trace (see its log)", raw)


def _gpu_step_mark(event: dict) -> bool:
    name = str(event.get("name", ""))
    return event.get("cat") == "gpu_user_annotation" and name.startswith("ProfilerStep#")
