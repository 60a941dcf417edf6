"""DDP gradient communication: when each bucket's all-reduce is launched, and how much of it the
step waits for after backward has finished (the exposed, non-overlapped part).

One rule shapes it: ddlprof runs no Python on a backend's own threads. A Python callback there, or a
Python object one of them releases, takes the GIL on that thread, and a thread that waits for the GIL
while the interpreter finalizes aborts the process ("terminate called without an active exception").

NCCL (GPUs) completes a collective's future on the thread that launched it, so a comm hook's Python
runs on the training thread. We time the hook the user registered (wrapping it, never replacing it),
or, when there is none, register DDP's default mean all-reduce (``mean_allreduce``) just before the
first forward. The exposed part comes from two CUDA events on the compute stream (the last bucket's
hand-over, and the point after DDP's finalize where the stream may go on), read at a later step so the
CPU never waits; per-bucket completion on GPUs is in the trace windows.

Gloo (CPU) completes futures on its own threads, so there we register no hook and add no callback:
DDP's own C++ all-reduce runs as it would without ddlprof. The exposed part is the host time from the
end of backward to the end of DDP's finalize, which waits for every bucket (``BackwardWait``); both
are taken on the training thread by the autograd engine's final callbacks, queued from a hook on the
DDP output's gradient. A hook the user registered is still wrapped, for its launches and for the time
it holds backward up.

A DDP module run by ``torch.compile`` runs its forward inside the compiled region, where any call
Dynamo cannot trace (a clock) breaks the graph and prints a warning, and where a forward hook on the
module, even one that does nothing, adds a graph break of its own. So ddlprof wraps ``DDP.forward``
instead of hooking the module, and the wrapper stands aside while Dynamo traces it
(``torch.compiler.is_compiling``, which Dynamo reads as a constant): the job's graph is the one it has
without ddlprof, steps are still timed at the optimizer step, outside the compiled module, and the
comm collector records, once, that it has nothing to measure.
"""

from __future__ import annotations

import functools
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ddlprof.collectors.batches import batch_size
from ddlprof.collectors.workload import forward_precision

if TYPE_CHECKING:
    from ddlprof.collectors.session import Session


@dataclass(slots=True)
class BucketTiming:
    index: int
    nbytes: int
    ready: float
    hook_s: float = 0.0
    device: Any = None  # the CUDA device of the bucket, None on the CPU
    ready_event: Any = None
    done_event: Any = None
    done_host: float | None = None  # host clock when done_event was recorded


@dataclass(slots=True)
class BackwardWait:
    """One backward pass on a backend that completes on its own threads: host clock at its end, and
    after DDP's finalize, which returns once every bucket's all-reduce is done."""

    backward_end: float
    synced: float | None = None


def install(session: Session) -> None:
    from torch.nn.parallel import DistributedDataParallel as DDP

    original_init = DDP.__init__
    original_forward = DDP.forward
    original_register = DDP.register_comm_hook
    original_builtin = DDP._register_builtin_comm_hook

    @functools.wraps(original_init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        session.guard.call("steps", CommTracker, session, self, original_register)

    @functools.wraps(original_forward)
    def forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        # Not forward hooks: any hook on the module adds a graph break where torch.compile runs DDP.
        tracker: CommTracker | None = None if _compiling() else getattr(self, "_ddlprof_comm", None)
        if tracker is not None:
            tracker.before_forward(self, args, kwargs)
        output = original_forward(self, *args, **kwargs)
        if tracker is not None:
            tracker.after_forward(self, args, output)
        return output

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
    DDP.forward = forward  # type: ignore[method-assign]
    DDP.register_comm_hook = register_comm_hook  # type: ignore[method-assign]
    DDP._register_builtin_comm_hook = _register_builtin_comm_hook  # type: ignore[method-assign]


class CommTracker:
    """Attached to one DDP instance: counts its forwards and times its gradient communication."""

    def __init__(self, session: Session, ddp: Any, register: Any) -> None:
        self.session = session
        self.ddp = weakref.ref(ddp)
        self.register = register
        self.user_hook = False
        self.inline: bool | None = None  # the backend completes on the launching thread; None: not known yet
        self.backward_watched = False
        ddp._ddlprof_comm = self  # DDP.forward (patched in install) calls before_ and after_forward
        session.ddp_seen = True
        if session.ddp is None:
            session.ddp = weakref.ref(ddp)
            self._probe(ddp)

    def _probe(self, ddp: Any) -> None:
        from ddlprof.collectors.probe import run_probe

        guard = self.session.guard
        if guard.active("probe"):
            record = guard.call("probe", run_probe, ddp, self.session.probe_tensors)
            if record is not None:
                self.session.write_record(record)

    def before_forward(self, module: Any, args: Any, kwargs: Any) -> None:
        started = time.perf_counter_ns()
        self._before_forward(module, args, kwargs)
        self.session.count_own(started, "comm_forward")

    def _before_forward(self, module: Any, args: Any, kwargs: Any) -> None:
        import torch

        if not (module.training and torch.is_grad_enabled()):
            return
        session = self.session
        session.on_step_work()
        session.guard.call("steps", session.on_forward, batch_size(args) or batch_size(kwargs))
        if session.precision is None and session.guard.active("workload"):
            session.precision = session.guard.call("workload", forward_precision, module.module) or ""
        self.backward_watched = False  # a new forward: any backward of an earlier one is over
        if self.inline is None and session.guard.active("comm"):
            self.inline = bool(session.guard.call("comm", completes_on_caller, module))
            if self.inline and not self.user_hook:
                session.guard.call("comm", self._register_default_hook, module)

    def after_forward(self, module: Any, args: Any, output: Any) -> None:
        if self.inline is False and module.training and self.session.guard.active("comm"):
            started = time.perf_counter_ns()
            self.session.guard.call("comm", self._watch_backward, output)
            self.session.count_own(started, "comm_forward")

    def _register_default_hook(self, ddp: Any) -> None:
        self.register(ddp, ddp.process_group, self.wrap(mean_allreduce, unwrap=True))

    def wrap(self, hook: Any, unwrap: bool = False) -> Any:
        """``hook`` timed; ``unwrap``: its future holds a list whose first tensor is the result, and
        the hook is ddlprof's own (DDP's default all-reduce, registered by us), so its host time counts
        as ddlprof's; a user's hook's does not."""
        session, guard = self.session, self.session.guard

        @functools.wraps(hook)
        def timed_hook(state: object, bucket: Any) -> Any:
            entered = time.perf_counter_ns()
            timing = guard.call("comm", self._begin, bucket) if guard.active("comm") else None
            called = time.perf_counter_ns()
            future = hook(state, bucket)
            returned = time.perf_counter_ns()
            if timing is not None:
                timing.hook_s = returned / 1e9 - timing.ready
            result = future.then(_first) if unwrap else future
            session.count_own(entered, "comm_hook", user_ns=returned - called)
            if unwrap:  # DDP's own all-reduce, issued from Python by ddlprof's stand-in for its C++ hook
                session.book_own("comm_allreduce", returned - called)
            return result

        return timed_hook

    def _begin(self, bucket: Any) -> BucketTiming:
        buffer = bucket.buffer()
        timing = BucketTiming(bucket.index(), buffer.numel() * buffer.element_size(), time.perf_counter())
        if self.inline and buffer.is_cuda:
            timing.device = buffer.device
            if bucket.is_last():
                import torch

                stream = torch.cuda.current_stream(buffer.device)
                timing.ready_event = _record_event(stream)
                self._record_after_ddp_finalize(timing, stream)
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

        def after_finalize() -> None:
            timing.done_host = time.perf_counter()
            timing.done_event = _record_event(stream)

        self._around_ddp_finalize(None, after_finalize)

    def _watch_backward(self, output: Any) -> None:
        tensor = _first_grad_tensor(output)
        if tensor is not None:
            tensor.register_hook(self._backward_began)

    def _backward_began(self, grad: Any) -> None:
        """A hook on the gradient of the DDP output: the first moment of its backward pass, long
        before DDP queues its finalize. Returns None, so the gradient is unchanged."""
        if not self.backward_watched:
            started = time.perf_counter_ns()
            self.backward_watched = True
            self.session.guard.call("comm", self._time_backward)
            self.session.count_own(started, "comm_backward")

    def _time_backward(self) -> None:
        state = self.session.state
        wait = BackwardWait(0.0)

        def backward_ended() -> None:
            wait.backward_end = time.perf_counter()
            state.waits.append(wait)

        def finalized() -> None:
            wait.synced = time.perf_counter()

        self._around_ddp_finalize(backward_ended, finalized)

    def _around_ddp_finalize(self, before: Any, after: Any) -> None:
        """Run ``before`` ahead of DDP's finalize and ``after`` once it has returned, on the thread that
        runs backward: the engine runs its final callbacks in order, and one queued from a final
        callback runs after those queued already, DDP's finalize among them."""
        from torch.autograd import Variable

        engine = Variable._execution_engine
        session, guard = self.session, self.session.guard

        def counted(callback: Any) -> None:
            started = time.perf_counter_ns()
            guard.call("comm", callback)
            session.count_own(started, "comm_backward")

        def before_finalize() -> None:
            if before is not None:
                before()
            engine.queue_callback(lambda: counted(after))

        engine.queue_callback(lambda: counted(before_finalize))


def _compiling() -> bool:
    """True while Dynamo traces the caller (a constant in the graph it makes, so no graph break)."""
    import torch

    return torch.compiler.is_compiling()


def completes_on_caller(ddp: Any) -> bool:
    """NCCL on CUDA tensors completes a collective's future on the launching thread; gloo (and any
    other backend) on threads of its own."""
    import torch.distributed as dist

    parameter = next(ddp.module.parameters(), None)
    return "nccl" in str(dist.get_backend(ddp.process_group)) and parameter is not None and parameter.is_cuda


def _first_grad_tensor(output: Any) -> Any:
    """The first tensor in a forward's output (a tensor, or tuples, lists and mappings of them,
    transformers' ModelOutput among them) that backward will reach, or None."""
    import torch

    if isinstance(output, torch.Tensor):
        return output if output.requires_grad else None
    items = output.values() if isinstance(output, Mapping) else output
    if isinstance(items, (tuple, list)) or isinstance(output, Mapping):
        for item in items:
            found = _first_grad_tensor(item)
            if found is not None:
                return found
    return None


def mean_allreduce(process_group, bucket):  # no annotations: DDP checks them as real types
    """torch's ``allreduce_hook`` (the mean of the bucket over the group) without its own ``then``."""
    import torch.distributed as dist

    group = process_group if process_group is not None else dist.group.WORLD
    tensor = bucket.buffer().div_(group.size())
    return dist.all_reduce(tensor, group=group, async_op=True).get_future()


def _first(done: Any) -> Any:
    return done.value()[0]


def _record_event(stream: Any) -> Any:
    import torch

    event = torch.cuda.Event(enable_timing=True)
    event.record(stream)
    return event


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
    buckets: list[BucketTiming],
    waits: list[BackwardWait],
    step_start: float,
    final: bool,
    clock: GpuClock | None = None,
    bucket_sizes: list[int] | None = None,
) -> dict[str, Any] | bool:
    """The step's communication figures, or False while GPU events are still in flight.

    GPU: exposed = the part of the wait from the last bucket's hand-over to the moment the compute
    stream may go on that is spent on the wire (see ``gpu_waits``).
    CPU: exposed = each backward's wait for DDP's finalize, plus the time timed hooks held backward
    up. ``bucket_sizes`` (DDP's) stand in for the buckets when no hook was timed.
    """
    if buckets and buckets[0].device is not None:
        return _gpu_comm(buckets, step_start, final, clock or GpuClock())
    return _host_comm(buckets, waits, step_start, bucket_sizes)


def _per_bucket(buckets: list[BucketTiming], step_start: float) -> list[list[Any]]:
    """[index, bytes, launch ms into the step, completion ms (None: in the trace windows)] per bucket."""
    return [[b.index, b.nbytes, round((b.ready - step_start) * 1e3, 3), None] for b in buckets]


def _gpu_comm(
    buckets: list[BucketTiming], step_start: float, final: bool, clock: GpuClock
) -> dict[str, Any] | bool:
    nbytes = sum(b.nbytes for b in buckets)
    last = next((b for b in buckets if b.ready_event is not None), None)
    if last is None or last.done_event is None or not last.done_event.query():
        if final or last is None:
            return {"buckets": len(buckets), "bytes": nbytes, "unresolved": True}
        return False
    exposed, finalize, lag = gpu_waits(last, clock)
    return {
        "buckets": len(buckets),
        "bytes": nbytes,
        "exposed_ms": max(0.0, exposed),
        "hook_ms": sum(b.hook_s for b in buckets) * 1e3,
        "clock": "cuda",
        "finalize_wait_ms": finalize,
        "gpu_lag_ms": lag,
        "handover_to_resume_ms": last.ready_event.elapsed_time(last.done_event),
        "per_bucket": _per_bucket(buckets, step_start),
    }


def _host_comm(
    buckets: list[BucketTiming], waits: list[BackwardWait], step_start: float, bucket_sizes: list[int] | None
) -> dict[str, Any]:
    if buckets or not bucket_sizes:
        per_bucket = _per_bucket(buckets, step_start)
    else:  # DDP's own C++ all-reduce: every bucket, once per backward
        per_bucket = [[i, size, None, None] for _ in waits for i, size in enumerate(bucket_sizes)]
    nbytes = sum(row[1] for row in per_bucket)
    if any(w.synced is None for w in waits) or (buckets and not waits):
        return {"buckets": len(per_bucket), "bytes": nbytes, "unresolved": True}
    hook_ms = sum(b.hook_s for b in buckets) * 1e3
    waited_ms = sum(w.synced - w.backward_end for w in waits) * 1e3  # type: ignore[operator]
    return {
        "buckets": len(per_bucket),
        "bytes": nbytes,
        "exposed_ms": max(0.0, waited_ms + hook_ms),
        "hook_ms": hook_ms,
        "clock": "cpu" if waits else None,
        "per_bucket": per_bucket,
    }
