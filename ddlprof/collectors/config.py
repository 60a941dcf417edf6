"""The environment variables through which ``ddlprof wrap`` configures the collectors in each rank.

One module owns the names so the launcher (which writes them) and the collectors (which read them)
cannot drift apart. Nothing here imports torch.
"""

from __future__ import annotations

import itertools
import os
import socket
from dataclasses import dataclass

RUN_DIR = "DDLPROF_RUN_DIR"
TRACE_STEPS = "DDLPROF_TRACE_STEPS"
DISABLED = "DDLPROF_DISABLE"
STOP_AFTER = "DDLPROF_STOP_AFTER_STEPS"  # set by `ddlprof stalls`: end each rank after this many steps
# set by `ddlprof share`: a folder; past STOP_AFTER steps a rank writes done-<pid> there and goes on
# until share writes 'stop' in it, so that every copy is still stepping while the slowest does its steps
STOP_TOGETHER = "DDLPROF_STOP_TOGETHER"
REPLAY = "DDLPROF_REPLAY_BATCHES"  # set by `ddlprof stalls --data`: replay each DataLoader's first N batches
COLLECTORS = ("steps", "data", "comm", "traces", "workload", "probe")
DEFAULT_TRACE_STEPS = "6-8"


class TraceStepsError(ValueError):
    """A --trace-steps value that cannot be parsed."""


MAX_STEP = 10**9  # a step number no job reaches (a step a millisecond for 11 days)
#: steps in one trace window: Kineto keeps a window's events in the job's memory until it ends
MAX_WINDOW_STEPS = 100
_ALLOWED = f"steps from 1 to {MAX_STEP:,}, at most {MAX_WINDOW_STEPS} in a window"


def parse_trace_steps(text: str) -> tuple[tuple[int, int], ...]:
    """Parse '6-8', '10', '6-8,100-102' or '0' (none) into inclusive, 1-based step windows."""
    text = text.strip()
    if text in ("0", "", "none"):
        return ()
    windows = []
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        try:
            lo, hi = int(first), int(last or first)
        except ValueError:
            raise TraceStepsError(
                f"--trace-steps {text!r}: expected steps like '6-8', '10' or '6-8,100-102' (or 0 for none); "
                f"the allowed range: {_ALLOWED}"
            ) from None
        if not 1 <= lo <= hi <= MAX_STEP or hi - lo >= MAX_WINDOW_STEPS:
            raise TraceStepsError(
                f"--trace-steps {text!r}: {part.strip()} is outside the allowed range: {_ALLOWED}, "
                "and a window runs low-high"
            )
        windows.append((lo, hi))
    windows.sort()
    for (_, prev_hi), (lo, _) in itertools.pairwise(windows):
        if lo <= prev_hi + 1:
            raise TraceStepsError(f"--trace-steps {text!r}: windows overlap or touch; merge them")
    return tuple(windows)


def host_id() -> str:
    """The name of this machine as ddlprof groups ranks into nodes.

    NCCL_HOSTID wins over the hostname so that a single host emulating several nodes (each group of
    GPUs launched with its own NCCL_HOSTID, see TESTBED.md) is seen as the nodes NCCL sees.
    """
    return os.environ.get("NCCL_HOSTID") or socket.gethostname()


@dataclass(frozen=True)
class CollectorConfig:
    run_dir: str
    trace_windows: tuple[tuple[int, int], ...]
    disabled: frozenset[str] = frozenset()
    stop_after: int | None = None
    stop_together: str | None = None
    replay_batches: int | None = None

    @classmethod
    def from_environ(cls) -> CollectorConfig | None:
        run_dir = os.environ.get(RUN_DIR)
        if not run_dir:
            return None
        try:
            windows = parse_trace_steps(os.environ.get(TRACE_STEPS, DEFAULT_TRACE_STEPS))
        except TraceStepsError:
            windows = ()
        disabled = frozenset(p.strip() for p in os.environ.get(DISABLED, "").split(",") if p.strip())
        stop_after, replay = os.environ.get(STOP_AFTER, ""), os.environ.get(REPLAY, "")
        return cls(
            run_dir=run_dir,
            trace_windows=windows,
            disabled=disabled,
            stop_after=int(stop_after) if stop_after.isdigit() else None,
            stop_together=os.environ.get(STOP_TOGETHER) or None,
            replay_batches=int(replay) if replay.isdigit() and int(replay) > 0 else None,
        )
