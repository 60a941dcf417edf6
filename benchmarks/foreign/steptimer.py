"""The foreign jobs' own clock, kept apart from ddlprof: each job calls ``tick()`` after every
optimizer step and ``save()`` at the end. Steady state is timed from the end of step ``warmup`` to
the end of the last step (``last``, the job's step count), both after ``torch.cuda.synchronize()``,
so the figure does not depend on anything ddlprof records. (Until 2026-12-07 the end was taken in
``save()``, after the framework's own end of training: Lightning's teardown alone added about 2 ms a
step to ten 7 ms steps on the CPU, found by tests/test_foreign_jobs.py against ddlprof's clock.)
``step_ms`` (host time between steps, no synchronisation) is kept for looking at the spread, and
``first_step_to_warmup_s`` holds everything before steady state (a trace window's one-off cost lands
there).
"""

from __future__ import annotations

import json
import os
import time

import torch


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


class StepTimer:
    def __init__(self, last: int, warmup: int = 20) -> None:
        self.last = last
        self.warmup = warmup
        self.steps = 0
        self.times: list[float] = []
        self.synced: dict[int, float] = {}

    def tick(self) -> None:
        self.steps += 1
        if self.steps in (1, self.warmup, self.last):
            _sync()
            self.synced[self.steps] = time.perf_counter()
        self.times.append(time.perf_counter())

    def save(self, job: str, **facts: object) -> None:
        """Write the figures of rank 0 to $STEPTIMER_OUT (nothing when it is unset)."""
        path = os.environ.get("STEPTIMER_OUT")
        if not path or int(os.environ.get("RANK", "0")) != 0:
            return
        if self.last not in self.synced:  # the job ended before its last step: time to here
            _sync()
            self.synced[self.last] = time.perf_counter()
        end = self.synced[self.last]
        timed = min(self.steps, self.last) - self.warmup
        record = {
            "job": job,
            "steps": self.steps,
            "warmup": self.warmup,
            "ms_per_step": (end - self.synced[self.warmup]) / timed * 1e3 if timed > 0 else None,
            "first_step_to_warmup_s": self.synced[self.warmup] - self.synced[1],
            "step_ms": [round((b - a) * 1e3, 3) for a, b in zip(self.times, self.times[1:], strict=False)],
            **facts,
        }
        with open(path, "w", encoding="utf-8") as f:
            json.dump(record, f)
