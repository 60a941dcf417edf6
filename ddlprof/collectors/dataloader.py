"""Data stall: the time the training loop is blocked in ``next()`` on a DataLoader iterator.

Every DataLoader iterator (single- and multi-process) inherits ``__next__`` from
``_BaseDataLoaderIter``; wrapping it once times every loader the job creates.
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any

from ddlprof.collectors.batches import batch_size

if TYPE_CHECKING:
    from ddlprof.collectors.session import Session


def install(session: Session) -> None:
    from torch.utils.data.dataloader import _BaseDataLoaderIter

    original = _BaseDataLoaderIter.__next__

    @functools.wraps(original)
    def __next__(self: Any) -> Any:
        entered = time.perf_counter_ns()
        session.on_step_work()
        start = time.perf_counter_ns()
        batch = original(self)
        end = time.perf_counter_ns()
        if session.guard.active("data"):
            session.guard.call("data", _on_batch, session, start / 1e9, end / 1e9, batch)
        session.count_own(entered, "data", user_ns=end - start)
        return batch

    _BaseDataLoaderIter.__next__ = __next__  # type: ignore[method-assign]


def _on_batch(session: Session, start: float, end: float, batch: Any) -> None:
    session.on_batch(start, end, batch_size(batch))
