"""One profiling session per training process: the step in progress and the records it becomes.

Collectors report events here (a batch waited for, a DDP forward, a gradient bucket, an optimizer
step); the session closes a step at each boundary and writes the steps closed since its last write
every FLUSH_S, each once its GPU timings are resolved, so that nothing ever waits on the GPU.
"""

from __future__ import annotations

import atexit
import os
import sys
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddlprof.collectors.comm import GpuClock, resolve_buckets
from ddlprof.collectors.config import CollectorConfig, host_id
from ddlprof.collectors.guard import Guard
from ddlprof.collectors.loader_workers import usable_cpus
from ddlprof.collectors.records import RecordWriter, rank_file
from ddlprof.collectors.workload import ddp_bucket_sizes

SCHEMA_VERSION = 1
WORKLOAD_AFTER_STEP = 3
#: Finished steps wait this long (s) before their records are made and written, all at once: at each
#: boundary that cost the training thread 0.13-0.17 ms of a 2-rank gloo step on 2 busy cores, mostly
#: JSON encoding and resolving with cold caches; a batch pays that once. A job killed with SIGKILL
#: still leaves on disk every step it finished up to FLUSH_S before.
FLUSH_S = 0.5
COMPILED_DDP = (
    "a step without a DDP forward ddlprof could see (a DDP module run by torch.compile, where its hooks "
    "stand aside so as not to break the graph): no communication timing, samples from the DataLoader"
)  # DDP rebuilds its buckets during the first iterations; read them after.


LOADER_FIELDS = ("batches", "uncosted", "workers", "wall_ms", "cpu_ms", "cpu_wait_ms", "replayed")


@dataclass
class StepState:
    """What happened since the last step boundary."""

    start: float
    data_wait_s: float = 0.0
    first_forward: float | None = None
    data_wait_before_forward_s: float = 0.0
    forwards: int = 0
    samples_forward: int = 0
    samples_loader: int = 0
    samples_manual: int | None = None
    buckets: list[Any] = field(default_factory=list)
    waits: list[Any] = field(default_factory=list)  # comm.BackwardWait, on backends that complete off-thread
    traced: bool = False
    after_trace_export: bool = False
    own_ns: int = 0  # host time spent inside ddlprof's hooks and callbacks during the step
    own_ns_by: dict[str, int] = field(default_factory=dict)  # the same, per hook (OWN_PARTS)
    loader: dict[str, float] | None = None  # what the step's batches cost to make (loader_workers.py)
    bucket_sizes: list[int] | None = None  # DDP's, read at the step's end (the module may be gone later)


class Session:
    def __init__(self, config: CollectorConfig) -> None:
        self.config = config
        self.writer: RecordWriter | None = None
        self.early_warnings: list[dict[str, Any]] = []
        self.step = 0
        self.guard = Guard()
        self.guard.on_failure = self._record_warning
        for name in config.disabled:
            self.guard.fail(name, "switched off with --disable", quiet=True)
        self.rank: int | None = None
        self.state = StepState(start=time.perf_counter())
        self.pending: deque[tuple[int, StepState, float]] = deque()
        self.flushed = float("-inf")  # when pending steps were last written (perf_counter s)
        self.said_done = False  # a `ddlprof share` copy said it has done its steps (_may_stop)
        self.manual_steps = False
        self.step_optimizer: Any = None  # weakref to the optimizer whose steps are step boundaries
        self.ddp_seen = False
        self.ddp_forwards = 0  # DDP forwards the hooks saw, over the steps ended so far
        self.ddp: Any = None  # weakref to the first DDP module
        self.workload_written = False
        self.closed = False
        self.unix_offset = time.time() - time.perf_counter()
        self.traces: Any = None
        self.gpu_clock = GpuClock()
        self.probe_tensors: list[Any] = []  # the probe's, until the first step ends (see probe.py)
        self.bucket_sizes: list[int] | None = None  # DDP's, once it has rebuilt its buckets
        self.precision: str | None = None  # what the first training forward ran at ("" unknown)
        self.layout: dict[str, Any] = {}  # a conv net's memory layout at that forward (conv_layout)

    # -- life cycle ------------------------------------------------------------------------------

    def install(self) -> None:
        from ddlprof.collectors import comm, dataloader, steps, traces

        self.guard.call("steps", steps.install, self)
        self.guard.call("data", dataloader.install, self)
        if self.config.replay_batches:  # `ddlprof stalls --data`'s replayed variant only
            from ddlprof.collectors import replay

            self.guard.call("replay", replay.install, self, self.config.replay_batches)
        self.guard.call("steps", comm.install, self)  # DDP forwards count samples even without comm timing
        self.traces = self.guard.call("traces", traces.TraceWindows, self, self.config.trace_windows)
        os.register_at_fork(after_in_child=self._forked)
        atexit.register(self.close)

    def _forked(self) -> None:
        # A forked child (a DataLoader worker) shares our state and file; it must stay silent.
        self.closed = True
        self.writer = None
        for name in ("steps", "data", "comm", "traces", "records"):
            self.guard.fail(name, "forked child process", quiet=True)

    def close(self) -> None:
        """At interpreter exit: settle GPU timings, finish a trace window, write the end record."""
        if self.closed:
            return
        self.closed = True
        if self.traces is not None:
            self.guard.call("traces", self.traces.finish, True)
        if self.pending:
            self.guard.call("comm", _synchronize_cuda)
            self._flush(final=True)
        if self.writer is not None:
            self._write_workload()
            self._write({"type": "end", "steps": self.step, "unix": time.time()})
            self.guard.call("records", self.writer.close)

    # -- events from the collectors --------------------------------------------------------------

    def count_own(self, started_ns: int, part: str, user_ns: int = 0) -> None:
        """Book the host time since ``started_ns``, less ``user_ns`` spent in the user's own code, as
        ddlprof's own (the step's ``own_ms``, and ``own_ms_by[part]``): every hook and callback ddlprof
        puts into the job does this, so that each run states what the collectors cost it, and which
        hook (one of ``OWN_PARTS``)."""
        self.book_own(part, time.perf_counter_ns() - started_ns - user_ns)

    def book_own(self, part: str, spent_ns: int) -> None:
        state = self.state
        state.own_ns += spent_ns
        state.own_ns_by[part] = state.own_ns_by.get(part, 0) + spent_ns

    def on_batch(
        self, start: float, end: float, samples: int | None, cost: Any, workers: int, replayed: bool = False
    ) -> None:
        """A batch reached the loop after ``end - start`` s in ``next()``; ``cost``: what it cost its
        producer (a ``loader_workers.BatchCost``, None where not known); ``replayed``: it came from
        memory (``replay.py``)."""
        state = self.state
        state.data_wait_s += end - start
        if state.first_forward is None:
            state.data_wait_before_forward_s += end - start
        if samples:
            state.samples_loader += samples
        loader = state.loader
        if loader is None:
            loader = state.loader = dict.fromkeys(LOADER_FIELDS, 0.0)
        loader["batches"] += 1
        loader["workers"] = max(loader["workers"], workers)
        if replayed:
            loader["replayed"] += 1
        if cost is None:
            loader["uncosted"] += 1
        else:
            loader["wall_ms"] += cost.wall_ms
            loader["cpu_ms"] += cost.cpu_ms
            loader["cpu_wait_ms"] += cost.cpu_wait_ms

    def on_step_work(self) -> None:
        """The loop starts work of the step (a DataLoader ``next()``, a DDP forward), outside any
        profiler range: where a trace window's boundary that is due runs (see ``traces.py``)."""
        traces = self.traces
        if traces is None or traces.due is None:
            return  # the common case, on every next() and forward: nothing due
        if self.guard.call("traces", traces.next_step_began):
            self.state.after_trace_export = True

    def on_forward(self, samples: int | None) -> None:
        state = self.state
        if state.first_forward is None:
            state.first_forward = time.perf_counter()
        state.forwards += 1
        if samples:
            state.samples_forward += samples

    def on_optimizer_step(self, optimizer: Any) -> None:
        if self.manual_steps:
            return
        owner = self.step_optimizer() if self.step_optimizer is not None else None
        if owner is None:
            self.step_optimizer = weakref.ref(optimizer)
        elif owner is not optimizer:
            return  # a second optimizer (GANs, multi-optimizer loops) steps inside the same step
        self.end_step()

    def mark_step(self, samples: int | None) -> None:
        started = time.perf_counter_ns()
        self.manual_steps = True
        self.guard.call("steps", self.end_step, samples)
        self.count_own(started, "steps")

    def end_step(self, samples: int | None = None) -> None:
        now = time.perf_counter()
        self.step += 1
        finished, self.state = self.state, StepState(start=now)
        if samples is not None:
            finished.samples_manual = int(samples)
        if self.traces is not None:
            finished.traced = self.traces.covers(self.step)
            exported = self.guard.call("traces", self.traces.step_ended, self.step, self.manual_steps)
            self.state.after_trace_export = bool(exported)
        self.ddp_forwards += finished.forwards
        if finished.waits and not finished.buckets:
            finished.bucket_sizes = self.guard.call("comm", self._bucket_sizes)
        if self.ddp_seen and self.ddp_forwards == 0 and self.guard.active("comm"):
            self.guard.fail("comm", COMPILED_DDP, quiet=True)  # comm.py's module docstring says why
        self.pending.append((self.step, finished, now))
        self.probe_tensors.clear()
        if now - self.flushed >= FLUSH_S:
            self.flushed = now
            self._flush(final=False)
        if self.step == WORKLOAD_AFTER_STEP:
            self._write_workload()
        if self.config.stop_after is not None and self.step >= self.config.stop_after and self._may_stop():
            self._stop_process()

    def _may_stop(self) -> bool:
        """Past its steps a rank ends, unless ``ddlprof share`` runs it as one of K copies: then it says
        so once (``done-<pid>``) and steps on until share writes ``stop`` (when every copy is done),
        so that a copy that started first is still stepping while the last one does its steps."""
        folder = self.config.stop_together
        if folder is None:
            return True
        try:
            if not self.said_done:
                Path(folder, f"done-{os.getpid()}").touch()
                self.said_done = True
            return Path(folder, "stop").exists()
        except OSError:
            return True  # no folder to meet in: end as a lone run would, never run on unbounded

    def _stop_process(self) -> None:
        """End a `ddlprof stalls` variant run: every rank stops at the same step boundary, after the
        step's all-reduce, so no rank is left waiting in a collective."""
        self.close()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    # -- records ---------------------------------------------------------------------------------

    def _flush(self, final: bool) -> None:
        records = []
        while self.pending:
            step, state, end = self.pending[0]
            comm = self.guard.call("comm", self._resolve_comm, state, final) if self.ddp_seen else None
            if comm is False:
                break  # GPU timings not there yet: this step and those after it wait for the next flush
            self.pending.popleft()
            records.append(self._step_record(step, state, end, comm or None))
        if records:
            self._write(*records)

    def _resolve_comm(self, state: StepState, final: bool) -> dict | bool:
        return resolve_buckets(
            state.buckets, state.waits, state.start, final, self.gpu_clock, state.bucket_sizes
        )

    def _bucket_sizes(self) -> list[int] | None:
        """DDP's bucket sizes, read from its logging data (tens of us in a busy step) until it has
        rebuilt its buckets, which it does once, early: after WORKLOAD_AFTER_STEP they are kept."""
        if self.bucket_sizes is not None:
            return self.bucket_sizes
        ddp = self.ddp() if self.ddp is not None else None
        sizes = ddp_bucket_sizes(ddp) if ddp is not None else None
        if self.step > WORKLOAD_AFTER_STEP:
            self.bucket_sizes = sizes
        return sizes

    def _step_record(self, step: int, state: StepState, end: float, comm: dict | None) -> dict:
        if state.samples_manual is not None:
            samples: int | None = state.samples_manual
        elif self.ddp_seen and state.forwards:
            samples = state.samples_forward or None
        else:
            samples = state.samples_loader or None
        loop_ms = None
        if state.first_forward is not None:
            loop_ms = max(0.0, (state.first_forward - state.start - state.data_wait_before_forward_s) * 1e3)
        return {
            "type": "step",
            "step": step,
            "start": state.start + self.unix_offset,
            "end": end + self.unix_offset,
            "step_ms": (end - state.start) * 1e3,
            "data_wait_ms": state.data_wait_s * 1e3 if self.guard.active("data") else None,
            "loop_ms": loop_ms,
            "forwards": state.forwards,
            "samples": samples,
            "comm": comm,
            "traced": state.traced or state.after_trace_export,
            "own_ms": round(state.own_ns / 1e6, 4),
            "own_ms_by": {part: round(ns / 1e6, 4) for part, ns in state.own_ns_by.items()},
            "loader": {k: round(v, 4) for k, v in state.loader.items()} if state.loader else None,
        }

    def _write(self, *records: dict) -> None:
        if self.writer is None:
            if not self.guard.active("records"):
                return
            self.guard.call("records", self._open_writer)
            if self.writer is None:
                return
        self.guard.call("records", self.writer.write, *records)

    def _open_writer(self) -> None:
        meta = rank_meta()
        self.rank = meta["rank"]
        self.writer = RecordWriter(rank_file(self.config.run_dir, meta["rank"]))
        self.writer.write(meta)
        for warning in self.early_warnings:
            self.writer.write(warning)
        self.early_warnings.clear()

    def _record_warning(self, collector: str, reason: str) -> None:
        record = {"type": "warning", "collector": collector, "reason": reason, "step": self.step}
        if self.writer is not None and collector != "records":
            self.writer.write(record)
        elif collector != "records":
            self.early_warnings.append(record)

    def write_record(self, record: dict) -> None:
        """For collectors that write records of their own (traces, the bandwidth probe)."""
        self._write(record)

    def _write_workload(self) -> None:
        if self.workload_written or self.ddp is None:
            return
        from ddlprof.collectors.workload import ddp_facts

        ddp = self.ddp()
        if ddp is None:
            return
        facts = self.guard.call("workload", ddp_facts, ddp)
        if facts is not None:
            self.workload_written = True
            precision = {"precision": self.precision} if self.precision else {}
            self._write({"type": "workload", "after_step": self.step, **facts, **precision, **self.layout})


def _synchronize_cuda() -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def rank_meta() -> dict[str, Any]:
    """Who this rank is, read when its first record is written (the process group exists by then)."""
    import torch
    import torch.distributed as dist

    env = os.environ
    meta: dict[str, Any] = {
        "type": "rank",
        "schema_version": SCHEMA_VERSION,
        "rank": int(env.get("RANK", 0)),
        "world_size": int(env.get("WORLD_SIZE", 1)),
        "local_rank": int(env.get("LOCAL_RANK", 0)),
        "local_world_size": int(env.get("LOCAL_WORLD_SIZE", 1)),
        "node_rank": int(env.get("GROUP_RANK", 0)),
        "host": host_id(),
        "pid": os.getpid(),
        "argv": sys.argv,
        "torch": torch.__version__,
        "backend": None,
        "device": "cpu",
        "device_name": None,
        "cpus": usable_cpus(),  # the cores this rank may run on: room for DataLoader workers
        "unix": time.time(),
    }
    if dist.is_available() and dist.is_initialized():
        meta["rank"] = dist.get_rank()
        meta["world_size"] = dist.get_world_size()
        meta["backend"] = str(dist.get_backend())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        index = torch.cuda.current_device()
        meta["device"] = f"cuda:{index}"
        meta["device_name"] = torch.cuda.get_device_name(index)
        meta["cuda"] = torch.version.cuda
        if dist.is_available() and dist.is_nccl_available():
            meta["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
    return meta


_SESSION: Session | None = None


def current_session() -> Session | None:
    return _SESSION


def start_session() -> None:
    global _SESSION
    config = CollectorConfig.from_environ()
    if config is None or _SESSION is not None:
        return
    _SESSION = Session(config)
    _SESSION.install()
