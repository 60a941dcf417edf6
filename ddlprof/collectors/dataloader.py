"""Data stall: the time the training loop is blocked in ``next()`` on a DataLoader iterator, and what
the batches it waited for cost to make (``loader_workers.py``).

Every DataLoader iterator (single- and multi-process) inherits ``__next__`` from
``_BaseDataLoaderIter``; wrapping it once times every loader the job creates. A multi-process
iterator also gets a shared ring for its workers' batch costs while it starts them, and reads a
batch's row when the batch arrives (``_process_data``, which names the worker that made it).
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any

from ddlprof.collectors import loader_workers
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
            session.guard.call("data", _on_batch, session, self, start / 1e9, end / 1e9, batch)
        # the fetch timing and the worker rings' reads ran inside original(): ours, not the job's
        session.count_own(entered, "data", user_ns=end - start - loader_workers.take_own_ns())
        return batch

    _BaseDataLoaderIter.__next__ = __next__  # type: ignore[method-assign]
    if session.guard.active("data"):
        loader_workers.install()
        _install_worker_rings(session)


def _on_batch(session: Session, iterator: Any, start: float, end: float, batch: Any) -> None:
    workers = getattr(iterator, "_num_workers", 0)
    cost = iterator.__dict__.pop("_ddlprof_cost", None) if workers else loader_workers.take_inline()
    replayed = iterator.__dict__.pop("_ddlprof_replayed", False)
    session.on_batch(start, end, batch_size(batch), None if replayed else cost, workers, replayed)


def _install_worker_rings(session: Session) -> None:
    from torch.utils.data._utils import ExceptionWrapper
    from torch.utils.data.dataloader import _MultiProcessingDataLoaderIter as Iterator

    original_init, original_reset = Iterator.__init__, Iterator._reset
    original_process = Iterator._process_data

    @functools.wraps(original_init)
    def __init__(self: Any, loader: Any) -> None:
        job_init = loader.worker_init_fn
        reader = session.guard.call("data", _ring_for, loader) if session.guard.active("data") else None
        if reader is None:
            return original_init(self, loader)
        self._ddlprof_reader = reader
        loader.worker_init_fn = loader_workers.WorkerInit(reader.ring, job_init)
        try:
            original_init(self, loader)
        finally:
            loader.worker_init_fn = job_init  # the job's loader is as it was once the workers run

    @functools.wraps(original_reset)
    def _reset(self: Any, loader: Any, first_iter: bool = False) -> None:
        original_reset(self, loader, first_iter)
        entered = time.perf_counter_ns()
        reader = getattr(self, "_ddlprof_reader", None)
        if reader is not None:
            reader.reset()
        loader_workers.book_own(time.perf_counter_ns() - entered)  # booked at the next next()

    @functools.wraps(original_process)
    def _process_data(self: Any, data: Any, worker_idx: Any) -> Any:
        entered = time.perf_counter_ns()
        reader = getattr(self, "_ddlprof_reader", None)
        if reader is not None and not isinstance(data, ExceptionWrapper) and session.guard.active("data"):
            self._ddlprof_cost = session.guard.call("data", reader.take, worker_idx)
        loader_workers.book_own(time.perf_counter_ns() - entered)  # inside next(): see __next__
        return original_process(self, data, worker_idx)

    Iterator.__init__ = __init__  # type: ignore[method-assign]
    Iterator._reset = _reset  # type: ignore[method-assign]
    Iterator._process_data = _process_data  # type: ignore[method-assign]


def _ring_for(loader: Any) -> loader_workers.Reader | None:
    workers = int(loader.num_workers)
    return loader_workers.Reader(loader_workers.new_ring(workers), workers) if workers > 0 else None
