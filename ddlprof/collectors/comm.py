"""DDP gradient communication: when each bucket's all-reduce is launched and completes, and how
much of it the step waits for after backward has finished (the exposed, non-overlapped part).

DDP calls a comm hook once per gradient bucket as soon as the bucket is ready. We time the hook
the user registered (wrapping it, never replacing it), or, when there is none, DDP's default
all-reduce (``mean_allreduce``) registered just before the first forward. Every bucket's launch is
taken from the host clock. On GPUs the exposed part comes from two CUDA events on the compute stream (the last
bucket's hand-over, and the point after DDP's finalize where the stream may go on), read at a later
step so the CPU never waits; per-bucket completion on GPUs is in the trace windows. On CPU (gloo)
each bucket's completion comes from the host clock, which is exact there.

On CPU that completion is a Python callback that the backend (gloo) runs on its own thread. A
Python object that such a thread still has to release when the interpreter finalizes aborts the
process ("terminate called without an active exception"), so the callbacks are counted and the
session lets them go before exit (``BucketCallbacks``); the default hook is torch's
``allreduce_hook`` with our callback as its only one.
"""

from __future__ import annotations

import functools
import itertools
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
    done_host: float | None = None  # host clock when done_event was recorded
    result: Any = None  # the CPU callback's future, released on this thread rather than gloo's


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
        session.on_step_work()
        session.guard.call("steps", session.on_forward, batch_size(args) or batch_size(kwargs))
        if not self.hooked and not self.user_hook and session.guard.active("comm"):
            self.hooked = True
            session.guard.call("comm", self._register_default_hook, module)

    def _register_default_hook(self, ddp: Any) -> None:
        self.register(ddp, ddp.process_group, self.wrap(mean_allreduce, unwrap=True))

    def wrap(self, hook: Any, unwrap: bool = False) -> Any:
        """``hook`` timed; ``unwrap``: its future holds a list whose first tensor is the result."""
        guard = self.session.guard

        @functools.wraps(hook)
        def timed_hook(state: object, bucket: Any) -> Any:
            timing = guard.call("comm", self._begin, bucket) if guard.active("comm") else None
            future = hook(state, bucket)
            timed = None if timing is None else guard.call("comm", self._end, timing, future, unwrap)
            if timed is not None:
                return timed
            return future.then(_first) if unwrap else future

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
            timing.done_host = time.perf_counter()
            timing.done_event = _record_event(stream)

        def before_finalize() -> None:
            engine.queue_callback(lambda: guard.call("comm", after_finalize))

        engine.queue_callback(lambda: guard.call("comm", before_finalize))

    def _end(self, timing: BucketTiming, future: Any, unwrap: bool) -> Any:
        timing.hook_s = time.perf_counter() - timing.ready
        if timing.device is not None:  # GPU: timed by the events above
            return future.then(_first) if unwrap else future
        guard = self.session.guard

        def on_done(done: Any) -> Any:
            value = done.value()  # re-raises a failed all-reduce exactly as without ddlprof
            guard.call("comm", _mark_done, timing)
            return value[0] if unwrap else value

        timing.result = future.then(self.session.callbacks.track(on_done))
        return timing.result


def mean_allreduce(process_group, bucket):  # no annotations: DDP checks them as real types
    """torch's ``allreduce_hook`` (the mean of the bucket over the group) without its own ``then``."""
    import torch.distributed as dist

    group = process_group if process_group is not None else dist.group.WORLD
    tensor = bucket.buffer().div_(group.size())
    return dist.all_reduce(tensor, group=group, async_op=True).get_future()


def _first(done: Any) -> Any:
    return done.value()[0]


class BucketCallbacks:
    """The completion callbacks handed to the backend's threads that those threads still hold."""

    def __init__(self) -> None:
        self.held: set[int] = set()  # set.add/discard are atomic under the GIL, from any thread
        self.ids = itertools.count()

    def track(self, callback: Any) -> Any:
        key = next(self.ids)
        self.held.add(key)
        # not at exit: weakref's own exit handler runs before the session's and would empty the set
        weakref.finalize(callback, self.held.discard, key).atexit = False
        return callback

    def settle(self, timeout_s: float = 1.0) -> bool:
        """Wait, with the GIL free, until the backend's threads let every callback go."""
        deadline = time.perf_counter() + timeout_s
        while self.held and time.perf_counter() < deadline:
            time.sleep(0.001)
        return not self.held


def _record_event(stream: Any) -> Any:
    import torch

    event = torch.cuda.Event(enable_timing=True)
    event.record(stream)
    return event


def _mark_done(timing: BucketTiming) -> None:
    timing.done = time.perf_counter()


class GpuClock:
    """Puts CUDA event times on the host clock, without ever synchronising.

    A GPU cannot run an event before the host has recorded it, so ``host time - event time`` (event
    time from a reference event of the same device) is a lower bound of the clocks' offset, met
    whenever the GPU had caught up with the host, which launch-bound steps do every step. The running
    maximum is the offset. On a GPU that never catches up it stays low, which only makes the GPU look
    further behind than it is: the exposed wait of such GPU-bound steps is unchanged by it.
    """

    def __init__(self) -> None:
        self.reference: dict[Any, Any] = {}
        self.offset_ms: dict[Any, float] = {}

    def place(self, device: Any, pairs: list[tuple[Any, float]]) -> list[float]:
        """Host-clock ms of each (event on ``device``, host seconds when it was recorded)."""
        reference = self.reference.setdefault(device, pairs[0][0])
        raw = [reference.elapsed_time(event) for event, _ in pairs]
        bounds = [host * 1e3 - r for (_, host), r in zip(pairs, raw, strict=True)]
        offset = self.offset_ms[device] = max(self.offset_ms.get(device, float("-inf")), *bounds)
        return [r + offset for r in raw]


def gpu_waits(last: BucketTiming, clock: GpuClock) -> tuple[float, float, float]:
    """(exposed wire wait, GPU waiting on DDP's host-side finalize, GPU lag behind the host), in ms.

    After the last bucket's hand-over (GPU time ``ready``) the compute stream goes on once the
    all-reduces are done and the host has queued DDP's finalize (host time ``host_done``). Only the
    part of that interval after both the hand-over and the host's finalize is waiting on the wire;
    the rest is the GPU idling while the host finishes DDP's bookkeeping, which is not communication.
    The lag is how far the GPU ran behind the host at the hand-over: near zero in launch-bound steps.
    """
    ready, done = clock.place(
        last.device, [(last.ready_event, last.ready), (last.done_event, last.done_host)]
    )
    host_done = last.done_host * 1e3  # type: ignore[operator]
    wire = max(0.0, done - max(ready, host_done))
    finalize = max(0.0, min(done, host_done) - ready)
    return wire, finalize, max(0.0, ready - last.ready * 1e3)


def resolve_buckets(
    buckets: list[BucketTiming], step_start: float, final: bool, clock: GpuClock | None = None
) -> dict[str, Any] | bool:
    """The step's communication figures, or False while GPU events are still in flight.

    GPU: exposed = the part of the wait from the last bucket's hand-over to the moment the compute
    stream may go on that is spent on the wire (see ``gpu_waits``).
    CPU: the host clock at each all-reduce's completion; the hooks of earlier buckets block
    backward itself, so their time is exposed too.
    """
    if not buckets:
        return {"buckets": 0, "bytes": 0, "exposed_ms": 0.0, "busy_ms": 0.0, "hook_ms": 0.0, "clock": None}
    nbytes = sum(b.nbytes for b in buckets)
    hook_ms = sum(b.hook_s for b in buckets) * 1e3
    busy: float | None
    extra: dict[str, float] = {}
    if buckets[0].device is not None:
        last = next((b for b in buckets if b.ready_event is not None), None)
        if last is None or last.done_event is None or not last.done_event.query():
            if final or last is None:
                return {"buckets": len(buckets), "bytes": nbytes, "unresolved": True}
            return False
        exposed, finalize, lag = gpu_waits(last, clock or GpuClock())
        interval = last.ready_event.elapsed_time(last.done_event)
        extra = {"finalize_wait_ms": finalize, "gpu_lag_ms": lag, "handover_to_resume_ms": interval}
        busy, clock_name = None, "cuda"
    else:
        if any(b.done is None for b in buckets):
            if final:
                return {"buckets": len(buckets), "bytes": nbytes, "unresolved": True}
            return False
        last = max(buckets, key=lambda b: b.ready)
        done = max(b.done for b in buckets)  # type: ignore[type-var]
        exposed = (done - last.ready) * 1e3 + sum(b.hook_s for b in buckets if b is not last) * 1e3
        busy = sum(b.done - b.ready for b in buckets) * 1e3  # type: ignore[operator]
        clock_name = "cpu"
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
        "clock": clock_name,
        **extra,
        "per_bucket": per_bucket,
    }
