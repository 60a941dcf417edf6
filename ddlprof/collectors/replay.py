"""The loop's ceiling for ``ddlprof stalls --data``: each DataLoader's first batches, replayed from memory.

On only where ``DDLPROF_REPLAY_BATCHES=N`` is set, which ``ddlprof stalls --data`` does for its replayed
variant and nothing else does. Each DataLoader's first N batches come from its own iterator, as they
would without ddlprof, and are kept; from then on every ``next()`` hands back a kept batch, in turn:
no sample is read, no worker is asked, nothing is collated or pinned. What is left of the step is the
loop's own work, as with DS-Analyzer's synthetic data, on an unmodified job.

- Memory: at most N batches per DataLoader, fewer once they hold ``MAX_BYTES`` (one at least): the
  tensors the loader made (pinned where it pins), never copied.
- Each replayed batch is a new copy of its dicts, lists and tuples around the kept tensors, so that a
  loop which puts a moved tensor back into its batch (``batch["x"] = batch["x"].cuda()``) finds the
  host tensor again next time and copies it again; a tensor edited in place keeps the edit (its values,
  not the work).
- Epochs keep their length: ``len(loader)`` batches, or, for a dataset with no length, as many as its
  first epoch had if that ended while the batches were kept; otherwise they do not end (``ddlprof
  stalls`` stops the ranks after its steps).
- Once the batches are kept, ``iter(loader)`` gives an iterator that replays them and starts no worker.

Each batch replayed is counted in the step's ``loader`` record (``replayed``), so that ``stalls`` can
tell a job whose input never came from a DataLoader. An error of ours stops the replay (one warning):
iterators fetch for real again, and a replaying epoch ends.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ddlprof.collectors.session import Session

MAX_BYTES = 1 << 30  # per DataLoader: 8 ranks on a host keep at most 8 GiB
_DEPTH = 8  # nesting of a batch's containers that is copied and counted
_END = object()  # the epoch has its length: said without raising through the guard


class Held:
    """One DataLoader's kept batches."""

    def __init__(self, limit: int, max_bytes: int = MAX_BYTES) -> None:
        self.limit, self.max_bytes = limit, max_bytes
        self.batches: list[Any] = []
        self.bytes = 0
        self.full = False
        self.epoch: int | None = None  # the first epoch's batches, where it ended while they were kept
        self.turn = 0

    def keep(self, batch: Any) -> None:
        self.batches.append(fresh(batch))
        self.bytes += nbytes(batch)
        self.full = len(self.batches) >= self.limit or self.bytes >= self.max_bytes

    def ended(self, batches: int) -> None:
        """The epoch being kept ended: what is kept is all there is to keep, and says an epoch's length."""
        if self.batches:
            self.full, self.epoch = True, batches

    def take(self, yielded: int, epoch: int | None) -> Any:
        """The next kept batch for an iterator that has yielded ``yielded`` batches of an epoch of
        ``epoch`` (None: as long as the first one was, or without end), or ``_END``."""
        epoch = self.epoch if epoch is None else epoch
        if epoch is not None and yielded >= epoch:
            return _END
        batch = self.batches[self.turn % len(self.batches)]
        self.turn += 1
        return fresh(batch)


def fresh(batch: Any, depth: int = 0) -> Any:
    """A new copy of the batch's dicts, lists and tuples (named ones too) around the same leaves."""
    if depth > _DEPTH:
        return batch
    if isinstance(batch, MutableMapping):
        out = copy.copy(batch)
        for key in list(batch.keys()):
            out[key] = fresh(batch[key], depth + 1)
        return out
    if isinstance(batch, list):
        out = copy.copy(batch)
        out[:] = [fresh(item, depth + 1) for item in batch]
        return out
    if type(batch) is tuple:
        return tuple(fresh(item, depth + 1) for item in batch)
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(fresh(item, depth + 1) for item in batch))
    return batch


def nbytes(batch: Any, depth: int = 0) -> int:
    """The bytes of the tensors and arrays a batch holds."""
    size = getattr(batch, "nbytes", None)
    if isinstance(size, int):
        return size
    if depth > _DEPTH:
        return 0
    if isinstance(batch, Mapping):
        return sum(nbytes(item, depth + 1) for item in batch.values())
    if isinstance(batch, list | tuple):
        return sum(nbytes(item, depth + 1) for item in batch)
    return 0


def install(session: Session, limit: int) -> None:
    from torch.utils.data import DataLoader
    from torch.utils.data.dataloader import (
        _BaseDataLoaderIter,
        _MultiProcessingDataLoaderIter,
        _SingleProcessDataLoaderIter,
    )

    guard = session.guard

    def replay(iterator: Any, held: Held, fetch: Any) -> Any:
        batch = guard.call(
            "replay", held.take, iterator._num_yielded, iterator.__dict__.get("_ddlprof_epoch")
        )
        if not guard.active("replay"):
            if fetch is None:
                raise StopIteration
            return fetch(iterator)
        if batch is _END:
            raise StopIteration
        iterator._ddlprof_replayed = True
        return batch

    class Replayed(_BaseDataLoaderIter):
        """An epoch of kept batches: no worker, no fetch."""

        def __init__(self, loader: Any, held: Held, epoch: int | None) -> None:
            super().__init__(loader)
            self._ddlprof_held, self._ddlprof_epoch = held, epoch

        def _next_data(self) -> Any:
            return replay(self, self._ddlprof_held, None)

    def filling(original: Any) -> Any:
        @functools.wraps(original)
        def _next_data(self: Any) -> Any:
            held = self.__dict__.get("_ddlprof_held")
            if held is None or not guard.active("replay"):
                return original(self)
            if held.full:
                return replay(self, held, original)
            try:
                batch = original(self)
            except StopIteration:
                guard.call("replay", held.ended, self._num_yielded)
                raise
            guard.call("replay", held.keep, batch)
            return batch

        return _next_data

    for cls in (_SingleProcessDataLoaderIter, _MultiProcessingDataLoaderIter):
        cls._next_data = filling(cls._next_data)  # type: ignore[method-assign]

    original_iter = DataLoader.__iter__

    @functools.wraps(original_iter)
    def __iter__(self: Any) -> Any:
        held = guard.call("replay", _held, self, limit) if guard.active("replay") else None
        if held is None:
            return original_iter(self)
        epoch = _length(self)
        if held.full and (replayed := guard.call("replay", Replayed, self, held, epoch)) is not None:
            return replayed
        iterator = original_iter(self)
        iterator._ddlprof_held, iterator._ddlprof_epoch = held, epoch
        return iterator

    DataLoader.__iter__ = __iter__  # type: ignore[method-assign]


def _held(loader: Any, limit: int) -> Held:
    held = loader.__dict__.get("_ddlprof_held")
    if held is None:
        held = loader.__dict__["_ddlprof_held"] = Held(limit)
    return held


def _length(loader: Any) -> int | None:
    """The loader's batches per epoch, where it has a length."""
    try:
        return len(loader)
    except Exception:  # a dataset or sampler with no length
        return None
