"""DDP gradient communication: how much of it the step waits for after backward has finished (the
exposed, non-overlapped part), and, where the job registered a comm hook of its own, when each
bucket's all-reduce is launched.

DDP's own C++ all-reduce runs as it would without ddlprof, on every backend: ddlprof registers no comm
hook of its own. A Python hook in its place costs host time per bucket (the Python all-reduce call and
its future), which hides behind a GPU-bound step but not behind a host-bound one (a Lightning job).
And ddlprof runs no Python on a backend's own threads: a Python callback there, or a Python object one
of them releases, takes the GIL on that thread, and a thread that waits for the GIL while the
interpreter finalizes aborts the process ("terminate called without an active exception").

The exposed part is taken around DDP's ``finalize_backward``, which waits for every bucket: a hook on
the DDP output's gradient (the first moment of backward) queues two of the autograd engine's final
callbacks, one that runs before DDP's finalize and one after it. On the CPU the wait is the host time
between them (``BackwardWait``). On GPUs each also records a CUDA event on the compute stream, read at
a later step so the CPU never waits: the GPU time from the end of backward to the moment the stream may
go on, less what it spent waiting for DDP's host-side finalize, is the wire (``gpu_waits``).
Per-bucket completion on GPUs is in the trace windows. A hook the user registered is wrapped (never
replaced) for its launches and for the time it holds backward up; a built-in C++ hook is left alone.

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
from ddlprof.collectors.workload import conv_layout, forward_precision

if TYPE_CHECKING:
    from ddlprof.collectors.session import Session


@dataclass(slots=True)
class BucketTiming:
    """One bucket handed to a comm hook the user registered: host clock at the hand-over, and how long
    the hook held backward up."""

    index: int
    nbytes: int
    ready: float
    hook_s: float = 0.0


@dataclass(slots=True)
class BackwardWait:
    """One backward pass: host clock at its end and after DDP's finalize, which returns once every
    bucket's all-reduce is done (on GPUs: once the compute stream has been told to wait for them); on
    GPUs also a CUDA event on the compute stream at each of the two moments."""

    backward_end: float
    synced: float | None = None
    device: Any = None  # the CUDA device of the DDP module, None on the CPU
    end_event: Any = None
    synced_event: Any = None


def install(session: Session) -> None:
    from torch.nn.parallel import DistributedDataParallel as DDP

    original_init = DDP.__init__
    original_forward = DDP.forward
    original_register = DDP.register_comm_hook

    @functools.wraps(original_init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        session.guard.call("steps", CommTracker, session, self)

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
            hook = tracker.wrap(hook)
        return original_register(self, state, hook)

    DDP.__init__ = __init__  # type: ignore[method-assign]
    DDP.forward = forward  # type: ignore[method-assign]
    DDP.register_comm_hook = register_comm_hook  # type: ignore[method-assign]


class CommTracker:
    """Attached to one DDP instance: counts its forwards and times its gradient communication."""

    def __init__(self, session: Session, ddp: Any) -> None:
        self.session = session
        self.ddp = weakref.ref(ddp)
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
            session.layout = session.guard.call("workload", conv_layout, module.module, (args, kwargs)) or {}
        self.backward_watched = False  # a new forward: any backward of an earlier one is over

    def after_forward(self, module: Any, args: Any, output: Any) -> None:
        if module.training and self.session.guard.active("comm"):
            started = time.perf_counter_ns()
            self.session.guard.call("comm", self._watch_backward, output)
            self.session.count_own(started, "comm_forward")

    def wrap(self, hook: Any) -> Any:
        """The user's ``hook``, timed: when each bucket is handed over, and how long the hook holds
        backward up (the hook's own time is the job's, not ddlprof's)."""
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
            session.count_own(entered, "comm_hook", user_ns=returned - called)
            return future

        return timed_hook

    def _begin(self, bucket: Any) -> BucketTiming:
        buffer = bucket.buffer()
        timing = BucketTiming(bucket.index(), buffer.numel() * buffer.element_size(), time.perf_counter())
        self.session.state.buckets.append(timing)
        return timing

    def _watch_backward(self, output: Any) -> None:
        tensor = _first_grad_tensor(output)
        if tensor is not None:
            device = tensor.device if tensor.is_cuda else None
            tensor.register_hook(functools.partial(self._backward_began, device))

    def _backward_began(self, device: Any, grad: Any) -> None:
        """A hook on the gradient of the DDP output: the first moment of its backward pass, long
        before DDP queues its finalize. Returns None, so the gradient is unchanged."""
        if not self.backward_watched:
            started = time.perf_counter_ns()
            self.backward_watched = True
            self.session.guard.call("comm", self._time_backward, device)
            self.session.count_own(started, "comm_backward")

    def _time_backward(self, device: Any) -> None:
        """Host clock (and, on a GPU, a CUDA event on the compute stream) at the end of backward and
        after DDP's finalize. Events on the compute stream cost nothing measurable where one recorded
        in an all-reduce future's callback cost ~2 ms a step on H200 (benchmarks/comm_hook_cost.py)."""
        state = self.session.state
        wait = BackwardWait(0.0, device=device)

        def backward_ended() -> None:
            wait.backward_end = time.perf_counter()
            if device is not None:
                wait.end_event = _record_event(device)
            state.waits.append(wait)

        def finalized() -> None:
            wait.synced = time.perf_counter()
            if device is not None:
                wait.synced_event = _record_event(device)

        self._around_ddp_finalize(backward_ended, finalized)

    def _around_ddp_finalize(self, before: Any, after: Any) -> None:
        """Run ``before`` ahead of DDP's finalize and ``after`` once it has returned, on the thread that
        runs backward's final callbacks (with the caller's streams current): the engine runs its final
        callbacks in order, and one queued from a final callback runs after those queued already, DDP's
        finalize among them."""
        from torch.autograd import Variable

        engine = Variable._execution_engine
        session, guard = self.session, self.session.guard

        def counted(callback: Any) -> None:
            started = time.perf_counter_ns()
            guard.call("comm", callback)
            session.count_own(started, "comm_backward")

        def before_finalize() -> None:
            before()
            engine.queue_callback(lambda: counted(after))

        engine.queue_callback(lambda: counted(before_finalize))


def _compiling() -> bool:
    """True while Dynamo traces the caller (a constant in the graph it makes, so no graph break)."""
    import torch

    return torch.compiler.is_compiling()


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


def _record_event(device: Any) -> Any:
    import torch

    event = torch.cuda.Event(enable_timing=True)
    event.record(torch.cuda.current_stream(device))
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


def gpu_waits(wait: BackwardWait, clock: GpuClock) -> tuple[float, float, float]:
    """(exposed wire wait, GPU waiting on DDP's host-side finalize, GPU lag behind the host), in ms.

    After the end of backward (GPU time ``ready``) the compute stream goes on once the all-reduces are
    done and the host has queued DDP's finalize (host time ``host_done``). Only the part of that
    interval after both the end of backward and the host's finalize is waiting on the wire; the rest
    is the GPU idling while the host finishes DDP's bookkeeping, which is not communication. The lag is
    how far the GPU ran behind the host at the end of backward: near zero in launch-bound steps.
    """
    ready, done = clock.place(
        wait.device, [(wait.end_event, wait.backward_end), (wait.synced_event, wait.synced)]
    )
    host_done = wait.synced * 1e3  # type: ignore[operator]
    wire = max(0.0, done - max(ready, host_done))
    finalize = max(0.0, min(done, host_done) - ready)
    return wire, finalize, max(0.0, ready - wait.backward_end * 1e3)


def resolve_buckets(
    buckets: list[BucketTiming],
    waits: list[BackwardWait],
    step_start: float,
    final: bool,
    clock: GpuClock | None = None,
    bucket_sizes: list[int] | None = None,
) -> dict[str, Any] | bool:
    """The step's communication figures, or False while GPU events are still in flight.

    GPU: exposed = the part of each backward's wait from its end to the moment the compute stream may
    go on that is spent on the wire (see ``gpu_waits``).
    CPU: exposed = each backward's wait for DDP's finalize, plus the time timed hooks held backward up.
    ``buckets`` are those a user's hook was handed; ``bucket_sizes`` (DDP's) stand in for them when
    no hook was timed.
    """
    if buckets or not bucket_sizes:
        per_bucket = [[b.index, b.nbytes, round((b.ready - step_start) * 1e3, 3), None] for b in buckets]
    else:  # DDP's own C++ all-reduce: every bucket, once per backward
        per_bucket = [[i, size, None, None] for _ in waits for i, size in enumerate(bucket_sizes)]
    nbytes = sum(row[1] for row in per_bucket)
    hook_ms = sum(b.hook_s for b in buckets) * 1e3
    unresolved = {"buckets": len(per_bucket), "bytes": nbytes, "unresolved": True}
    if any(w.synced is None for w in waits) or (buckets and not waits):
        return unresolved
    if waits and waits[0].device is not None:
        if not all(w.synced_event.query() for w in waits):
            return unresolved if final else False
        return _gpu_comm(waits, per_bucket, nbytes, hook_ms, step_start, clock or GpuClock())
    waited_ms = sum(w.synced - w.backward_end for w in waits) * 1e3  # type: ignore[operator]
    return {
        "buckets": len(per_bucket),
        "bytes": nbytes,
        "exposed_ms": max(0.0, waited_ms + hook_ms),
        "hook_ms": hook_ms,
        "clock": "cpu" if waits else None,
        # when the step's last backward ended, ms into the step: the moment this rank reached the
        # all-reduce it then waits for; on the step's start clock, which ranks of one host share
        "backward_end_ms": round((waits[-1].backward_end - step_start) * 1e3, 3) if waits else None,
        "per_bucket": per_bucket,
    }


def _gpu_comm(
    waits: list[BackwardWait],
    per_bucket: list[list[Any]],
    nbytes: int,
    hook_ms: float,
    step_start: float,
    clock: GpuClock,
) -> dict[str, Any]:
    parts = [gpu_waits(w, clock) for w in waits]
    last = waits[-1]
    return {
        "buckets": len(per_bucket),
        "bytes": nbytes,
        "exposed_ms": sum(wire for wire, _, _ in parts),
        "hook_ms": hook_ms,
        "clock": "cuda",
        "finalize_wait_ms": sum(finalize for _, finalize, _ in parts),
        "gpu_lag_ms": parts[-1][2],
        "backward_end_ms": round((last.backward_end - step_start) * 1e3, 3),
        "backward_end_to_resume_ms": sum(w.end_event.elapsed_time(w.synced_event) for w in waits),
        "per_bucket": per_bucket,
    }
