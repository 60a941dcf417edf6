"""What each batch cost to make, measured where it is made: in the DataLoader's worker processes (or in
the training process itself with ``num_workers=0``).

Each fetch (the samples' ``__getitem__`` and the collation, as torch's dataset fetchers run them) is
timed with the wall clock, the thread's CPU clock and, where Linux has it, the thread's wait for a
CPU (``/proc/thread-self/schedstat``). CPU time (and the wait for a CPU) is preparation: decoding,
augmentation, collation. The rest of the wall time the thread was blocked: fetch (storage, network,
a sleep). Nothing is written per sample: a worker puts each batch's three figures in a small ring in
shared memory (one row per worker and batch sequence number), and the training process reads the row
of each batch it receives, by worker and sequence, before the batch is handed to the loop. A row that
is not the expected one (a worker that restarted, a batch dropped) gives no figure, never a wrong one.

The worker side never raises into the worker and never touches what the fetch returns: every error
of ours switches the timing off in that process.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from typing import Any, NamedTuple

RING = 64  # rows per worker: far more than the batches a worker may have in flight (prefetch_factor)
_FIELDS = 4  # sequence + 1 (0: empty), wall ns, CPU ns, wait-for-CPU ns


class BatchCost(NamedTuple):
    """What one batch cost its producer, in ms."""

    wall_ms: float
    cpu_ms: float
    cpu_wait_ms: float  # runnable but not running: the host's cores were busy

    @property
    def blocked_ms(self) -> float:
        return max(0.0, self.wall_ms - self.cpu_ms - self.cpu_wait_ms)


class _State:
    on = True
    schedstat = True  # /proc/thread-self/schedstat readable
    fd: int | None = None  # that file, open for the thread that fetches
    fd_thread: int | None = None
    installed = False
    ring: Any = None  # in a worker: the shared tensor, and this worker's id
    worker = -1
    fetcher: Any = None  # the fetcher whose batches are being counted (a new one after a resume)
    seq = 0
    inline: BatchCost | None = None  # the training process's own last fetch (num_workers=0)
    own_ns = 0  # ddlprof's host time inside the loop's next(), not yet booked (see take_own_ns)


_state = _State()


def _cpu_wait_ns() -> int:
    """This thread's time waiting for a CPU so far, from its schedstat, kept open (a read of an open
    /proc file costs a few us; opening it each time, tens)."""
    if not _state.schedstat:
        return 0
    try:
        thread = threading.get_ident()
        if _state.fd_thread != thread:
            if _state.fd is not None:
                os.close(_state.fd)
                _state.fd = None
            _state.fd, _state.fd_thread = os.open("/proc/thread-self/schedstat", os.O_RDONLY), thread
        return int(os.pread(_state.fd, 128, 0).split()[1])
    except (OSError, ValueError, IndexError):
        _state.schedstat = False
        return 0


def _forget_thread() -> None:
    """In a forked child: the parent's open schedstat is its thread's, not the child's."""
    if _state.fd is not None:
        os.close(_state.fd)  # the child's copy of the descriptor
    _state.fd = _state.fd_thread = None


def install() -> None:
    """Time every dataset fetch in this process (idempotent)."""
    from torch.utils.data._utils import fetch

    if not _state.installed:
        _state.installed = True
        os.register_at_fork(after_in_child=_forget_thread)
    for cls in (fetch._MapDatasetFetcher, fetch._IterableDatasetFetcher):
        if not getattr(cls.fetch, "_ddlprof", False):
            cls.fetch = _timed(cls.fetch)  # type: ignore[method-assign]


def _timed(original: Any) -> Any:
    @functools.wraps(original)
    def fetch(self: Any, possibly_batched_index: Any) -> Any:
        if not _state.on:
            return original(self, possibly_batched_index)
        entered = time.perf_counter_ns()
        cpu, waited = time.thread_time_ns(), _cpu_wait_ns()
        wall = time.perf_counter_ns()
        data = original(self, possibly_batched_index)
        wall_ns = time.perf_counter_ns() - wall
        try:
            _record(self, wall_ns, time.thread_time_ns() - cpu, _cpu_wait_ns() - waited)
        except Exception:  # ours: never into the worker
            _state.on = False
        book_own(time.perf_counter_ns() - entered - wall_ns)
        return data

    fetch._ddlprof = True  # type: ignore[attr-defined]
    return fetch


def _record(fetcher: Any, wall_ns: int, cpu_ns: int, wait_ns: int) -> None:
    if _state.ring is None:
        _state.inline = BatchCost(wall_ns / 1e6, cpu_ns / 1e6, wait_ns / 1e6)
        return
    if fetcher is not _state.fetcher:  # a worker's fetcher is made anew when an epoch resumes
        _state.fetcher, _state.seq = fetcher, 0
    row = _state.ring[_state.worker, _state.seq % RING]
    row[1], row[2], row[3] = wall_ns, cpu_ns, wait_ns
    row[0] = _state.seq + 1  # last: the row is whole once its sequence is there
    _state.seq += 1


def book_own(spent_ns: int) -> None:
    """Host time of ddlprof's own inside the job's ``next()`` (the rings' reads), for take_own_ns."""
    _state.own_ns += spent_ns


def take_own_ns() -> int:
    """ddlprof's host time inside the loop's ``next()`` since the last call, once: the fetch timing
    of a ``num_workers=0`` loader and the reads of the workers' rings, which the data collector books
    as ddlprof's. In a worker the fetch timing is the worker's time, and nobody reads it."""
    spent, _state.own_ns = _state.own_ns, 0
    return spent


def take_inline() -> BatchCost | None:
    """The training process's own last fetch (``num_workers=0``), once."""
    cost, _state.inline = _state.inline, None
    return cost


class WorkerInit:
    """Stands in for the loader's ``worker_init_fn`` while its workers start: in each worker it
    points the fetch timing at the shared ring (and installs it where the worker was spawned, not
    forked), then runs the job's own ``worker_init_fn``, whose errors are the job's. Picklable, so
    that spawned workers get it."""

    def __init__(self, ring: Any, job_init: Any) -> None:
        self.ring = ring
        self.job_init = job_init

    def __call__(self, worker_id: int) -> None:
        try:
            install()
            _state.ring, _state.worker, _state.fetcher, _state.seq = self.ring, worker_id, None, 0
        except Exception:
            _state.on = False
        if self.job_init is not None:
            self.job_init(worker_id)


def new_ring(workers: int) -> Any:
    import torch

    return torch.zeros((workers, RING, _FIELDS), dtype=torch.int64).share_memory_()


class Reader:
    """The training process's side of one multi-process iterator: which row to read next for each
    worker."""

    def __init__(self, ring: Any, workers: int) -> None:
        self.ring = ring
        self.expected = [0] * workers

    def reset(self) -> None:
        """A new epoch on persistent workers: each starts counting again."""
        self.expected = [0] * len(self.expected)

    def take(self, worker: int) -> BatchCost | None:
        seq = self.expected[worker]
        self.expected[worker] = seq + 1
        done, wall, cpu, waited = self.ring[worker, seq % RING].tolist()
        if done != seq + 1:
            return None
        return BatchCost(wall / 1e6, cpu / 1e6, waited / 1e6)


def usable_cpus() -> int | None:
    """The CPU cores this process may run on (its affinity), where the OS says."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()
