"""DDP gradient communication: when each bucket's all-reduce is launched and completes, and how
much of it the step waits for after backward has finished (the exposed, non-overlapped part).

DDP calls a comm hook once per gradient bucket as soon as the bucket is ready. We time the hook
the user registered (wrapping it, never replacing it), or, when there is none, DDP's default
``allreduce_hook`` registered just before the first forward. Every bucket's launch is taken from the
host clock. On GPUs the exposed part comes from two CUDA events on the compute stream (the last
bucket's hand-over, and the point after DDP's finalize where the stream may go on), read at a later
step so the CPU never waits; per-bucket completion on GPUs is in the trace windows. On CPU (gloo)
each bucket's completion comes from the host clock, which is exact there.
"""

from __future__ import annotations

import functools
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ddlprof.collectors.batches import batch_size

if TYPE_CHECKING:
    from ddlprof.collectors.session import Session


@dataclass(slots=True)
class BucketTiming:
    index: int
    nbytes: int
    ready: float
    hook_s: float = 0.0
    done: float | None = None
    device: Any = None  # the CUDA device of the bucket, None on the CPU
    ready_event: Any = None
    done_event: Any = None


def install(session: Session) -> None:
    from torch.nn.parallel import DistributedDataParallel as DDP

    original_init = DDP.__init__
    original_register = DDP.register_comm_hook
    original_builtin = DDP._register_builtin_comm_hook

    @functools.wraps(original_init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        session.guard.call("steps", CommTracker, session, self, original_register)

    @functools.wraps(original_register)
    def register_comm_hook(self: Any, state: object, hook: Any) -> None:
        tracker: CommTracker | None = getattr(self, "_ddlprof_comm", None)
        if tracker is not None and session.guard.active("comm"):
            tracker.user_hook = True
            hook = tracker.wrap(hook)
        return original_register(self, state, hook)

    @functools.wraps(original_builtin)
    def _register_builtin_comm_hook(self: Any, comm_hook_type: Any) -> None:
        session.guard.fail("comm", f"built-in C++ comm hook {comm_hook_type} cannot be timed", quiet=True)
        return original_builtin(self, comm_hook_type)

    DDP.__init__ = __init__  # type: ignore[method-assign]
    DDP.register_comm_hook = register_comm_hook  # type: ignore[method-assign]
    DDP._register_builtin_comm_hook = _register_builtin_comm_hook  # type: ignore[method-assign]


class CommTracker:
    """Attached to one DDP instance: counts its forwards and times its gradient buckets."""

    def __init__(self, session: Session, ddp: Any, register: Any) -> None:
        self.session = session
        self.ddp = weakref.ref(ddp)
        self.register = register
        self.user_hook = False
        self.hooked = False
        ddp._ddlprof_comm = self
        ddp.register_forward_pre_hook(self.before_forward, with_kwargs=True)
        session.ddp_seen = True
        if session.ddp is None:
            session.ddp = weakref.ref(ddp)
            self._probe(ddp)

    def _probe(self, ddp: Any) -> None:
        from ddlprof.collectors.probe import run_probe

        guard = self.session.guard
        if guard.active("probe"):
            record = guard.call("probe", run_probe, ddp)
            if record is not None:
                self.session.write_record(record)

    def before_forward(self, module: Any, args: Any, kwargs: Any) -> None:
        import torch

        if not (module.training and torch.is_grad_enabled()):
            return
        session = self.session
        session.guard.call("steps", session.on_forward, batch_size(args) or batch_size(kwargs))
        if not self.hooked and not self.user_hook and session.guard.active("comm"):
            self.hooked = True
            session.guard.call("comm", self._register_default_hook, module)

    def _register_default_hook(self, ddp: Any) -> None:
        from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

        self.register(ddp, ddp.process_group, self.wrap(allreduce_hook))

    def wrap(self, hook: Any) -> Any:
        guard = self.session.guard

        @functools.wraps(hook)
        def timed_hook(state: object, bucket: Any) -> Any:
            timing = guard.call("comm", self._begin, bucket) if guard.active("comm") else None
            future = hook(state, bucket)
            if timing is None:
                return future
            timed = guard.call("comm", self._end, timing, future)
            return future if timed is None else timed

        return timed_hook

    def _begin(self, bucket: Any) -> BucketTiming:
        buffer = bucket.buffer()
        timing = BucketTiming(bucket.index(), buffer.numel() * buffer.element_size(), time.perf_counter())
        if buffer.is_cuda and bucket.is_last():
            import torch

            timing.device = buffer.device
            stream = torch.cuda.current_stream(buffer.device)
            timing.ready_event = _record_event(stream)
            self._record_after_ddp_finalize(timing, stream)
        elif buffer.is_cuda:
            timing.device = buffer.device
        self.session.state.buckets.append(timing)
        return timing

    def _record_after_ddp_finalize(self, timing: BucketTiming, stream: Any) -> None:
        """Mark the moment the compute stream may go on after the all-reduces, on that stream.

        DDP queues its ``finalize_backward`` (which makes the compute stream wait for every bucket)
        on the autograd engine right after this last bucket's hook; a callback queued now runs
        before it and queues a second one, which runs after it. A timing event recorded in the
        all-reduce future's own callback would be simpler but costs ~2 ms a step on H200 (see
        benchmarks/comm_hook_cost.py), while events on the compute stream cost nothing measurable.
        """
        from torch.autograd import Variable

        engine = Variable._execution_engine
        guard = self.session.guard

        def after_finalize() -> None:
            timing.done_event = _record_event(stream)

        def before_finalize() -> None:
            engine.queue_callback(lambda: guard.call("comm", after_finalize))

        engine.queue_callback(lambda: guard.call("comm", before_finalize))

    def _end(self, timing: BucketTiming, future: Any) -> Any:
        timing.hook_s = time.perf_counter() - timing.ready
        if timing.device is not None:
            return future  # GPU: timed by the events above, the future is left as it is
        guard = self.session.guard

        def on_done(done: Any) -> Any:
            value = done.value()  # re-raises a failed all-reduce exactly as without ddlprof
            guard.call("comm", _mark_done, timing)
            return value

        return future.then(on_done)


def _record_event(stream: Any) -> Any:
    import torch

    event = torch.cuda.Event(enable_timing=True)
    event.record(stream)
    return event


def _mark_done(timing: BucketTiming) -> None:
    timing.done = time.perf_counter()


def resolve_buckets(buckets: list[BucketTiming], step_start: float, final: bool) -> dict[str, Any] | bool:
    """The step's communication figures, or False while GPU events are still in flight.

    GPU: exposed = from the last bucket's hand-over to the moment the compute stream may go on.
    CPU: the host clock at each all-reduce's completion; the hooks of earlier buckets block
    backward itself, so their time is exposed too.
    """
    if not buckets:
        return {"buckets": 0, "bytes": 0, "exposed_ms": 0.0, "busy_ms": 0.0, "hook_ms": 0.0, "clock": None}
    nbytes = sum(b.nbytes for b in buckets)
    hook_ms = sum(b.hook_s for b in buckets) * 1e3
    busy: float | None
    if buckets[0].device is not None:
        last = next((b for b in buckets if b.ready_event is not None), None)
        if last is None or last.done_event is None or not last.done_event.query():
            if final or last is None:
                return {"buckets": len(buckets), "bytes": nbytes, "unresolved": True}
            return False
        exposed = last.ready_event.elapsed_time(last.done_event)
        busy, clock = None, "cuda"
    else:
        if any(b.done is None for b in buckets):
            if final:
                return {"buckets": len(buckets), "bytes": nbytes, "unresolved": True}
            return False
        last = max(buckets, key=lambda b: b.ready)
        done = max(b.done for b in buckets)  # type: ignore[type-var]
        exposed = (done - last.ready) * 1e3 + sum(b.hook_s for b in buckets if b is not last) * 1e3
        busy = sum(b.done - b.ready for b in buckets) * 1e3  # type: ignore[operator]
        clock = "cpu"
    per_bucket = [
        [b.index, b.nbytes, round((b.ready - step_start) * 1e3, 3),
         None if b.done is None else round((b.done - step_start) * 1e3, 3)]
        for b in buckets
    ]  # fmt: skip
    return {
        "buckets": len(buckets),
        "bytes": nbytes,
        "exposed_ms": max(0.0, exposed),
        "busy_ms": busy,
        "hook_ms": hook_ms,
        "clock": clock,
        "per_bucket": per_bucket,
    }
