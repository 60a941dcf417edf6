"""Step boundaries from torch's global optimizer-step hook, so gradient accumulation (several
forwards and backwards per ``optimizer.step()``) counts as one step."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ddlprof.collectors.session import Session


def install(session: Session) -> None:
    from torch.optim.optimizer import register_optimizer_step_post_hook

    def after_optimizer_step(optimizer: Any, _args: Any, _kwargs: Any) -> None:
        started = time.perf_counter_ns()
        session.guard.call("steps", session.on_optimizer_step, optimizer)
        session.count_own(started, "steps")

    register_optimizer_step_post_hook(after_optimizer_step)
