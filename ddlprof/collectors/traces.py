"""GPU timeline windows: torch.profiler (Kineto) records the steps named by --trace-steps.

The profiler starts at the boundary before a window and stops at its last step, so each window holds
whole steps marked ``ProfilerStep#N`` with ddlprof's step numbers. Files go to
``traces/<run>/<host>_<rank>.<first step>.pt.trace.json.gz``: the layout torch-tb-profiler reads
(``tensorboard --logdir RUN/traces``), and a file Perfetto opens as it is.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from ddlprof.collectors.config import host_id

if TYPE_CHECKING:
    from ddlprof.collectors.session import Session


class TraceWindows:
    def __init__(self, session: Session, windows: tuple[tuple[int, int], ...]) -> None:
        self.session = session
        self.windows = list(windows)
        self.profiler: Any = None
        self.window: tuple[int, int] | None = None

    def covers(self, step: int) -> bool:
        return any(lo <= step <= hi for lo, hi in self.windows)

    def after_step(self, step: int) -> bool:
        """Called at the end of ``step``; returns True when it exported a trace (a slow boundary)."""
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
        import torch
        from torch.profiler import ProfilerAction, ProfilerActivity, profile

        activities = [ProfilerActivity.CPU]
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            activities.append(ProfilerActivity.CUDA)
        self.window = window
        # A schedule (always RECORD: the window's bounds are ours) makes torch mark ProfilerStep#N.
        options: dict = {"activities": activities, "schedule": lambda _step: ProfilerAction.RECORD}
        try:  # keep events across our per-step profiler.step() calls (and no warning about it)
            self.profiler = profile(**options, acc_events=True)
        except TypeError:  # torch before acc_events
            self.profiler = profile(**options)
        self.profiler.step_num = window[0]  # ProfilerStep#N carries ddlprof's step number
        self.profiler.start()

    def finish(self) -> None:
        """Stop a running window and export it (also at exit, when the job ends inside a window)."""
        if self.profiler is None or self.window is None:
            return
        profiler, window = self.profiler, self.window
        self.profiler = self.window = None
        profiler.stop()
        session = self.session
        run_dir = os.path.abspath(session.config.run_dir)
        folder = os.path.join(run_dir, "traces", os.path.basename(run_dir))
        os.makedirs(folder, exist_ok=True)
        rank = session.rank if session.rank is not None else int(os.environ.get("RANK", 0))
        path = os.path.join(folder, f"{host_id()}_{rank}.{window[0]}.pt.trace.json.gz")
        started = time.perf_counter()
        profiler.export_chrome_trace(path)
        session.write_record(
            {
                "type": "trace",
                "steps": list(window),
                "file": os.path.relpath(path, run_dir),
                "export_s": time.perf_counter() - started,
            }
        )
