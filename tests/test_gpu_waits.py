"""The split of the GPU's wait after backward into the wire and DDP's host-side finalize.

CUDA events cannot be recorded on this CPU-only machine, so the events here are stand-ins that
carry the time the GPU reached them; ``elapsed_time`` is the only method the code under test calls,
with the meaning CUDA gives it (ms from this event to the other). The GPU results of the same code
are in BENCHMARKS.md (the GPU-side step period from these lags matches the timed one within 1%).
"""

from __future__ import annotations

import pytest

from ddlprof.collectors.comm import BackwardWait, GpuClock, gpu_waits, resolve_buckets

GPU_CLOCK_START = 5_000.0  # ms: the GPU's clock is not the host's


class Event:
    def __init__(self, gpu_ms: float) -> None:
        self.gpu_ms = gpu_ms

    def elapsed_time(self, other: Event) -> float:
        return other.gpu_ms - self.gpu_ms

    def query(self) -> bool:
        return True


def backward(ready_host: float, ready_gpu: float, done_host: float, done_gpu: float) -> BackwardWait:
    """One backward's end and DDP's finalize. Times in host ms; the GPU's are shifted onto its own clock."""
    return BackwardWait(
        backward_end=ready_host / 1e3,
        synced=done_host / 1e3,
        device="cuda:0",
        end_event=Event(ready_gpu + GPU_CLOCK_START),
        synced_event=Event(done_gpu + GPU_CLOCK_START),
    )


def calibrated() -> GpuClock:
    """A clock that has seen one moment where the GPU had caught up with the host."""
    clock = GpuClock()
    idle = backward(ready_host=100.0, ready_gpu=100.0, done_host=100.5, done_gpu=100.5)
    gpu_waits(idle, clock)
    return clock


def test_gpu_bound_step_waits_on_the_wire_for_the_whole_interval() -> None:
    # the GPU reaches the end of backward 40 ms after the host queued it, then waits 12 ms for the wire
    step = backward(ready_host=1_000.0, ready_gpu=1_040.0, done_host=1_001.0, done_gpu=1_052.0)
    wire, finalize, lag = gpu_waits(step, calibrated())
    assert wire == pytest.approx(12.0)
    assert finalize == pytest.approx(0.0)
    assert lag == pytest.approx(40.0)


def test_launch_bound_step_books_the_hosts_finalize_as_no_wire() -> None:
    # the GPU is idle at the end of backward; the wire is done after 1 ms, but the host queues DDP's
    # finalize (copies back into the gradients) only 6 ms later, and the GPU resumes just after it
    step = backward(ready_host=1_000.0, ready_gpu=1_000.0, done_host=1_006.0, done_gpu=1_006.05)
    wire, finalize, lag = gpu_waits(step, calibrated())
    assert finalize == pytest.approx(6.0)
    assert wire == pytest.approx(0.05)
    assert lag == pytest.approx(0.0)


def test_the_offset_is_the_tightest_lower_bound_seen() -> None:
    clock = GpuClock()
    # first seen while the GPU was 30 ms behind: the offset is 30 ms too low ...
    behind = backward(ready_host=10.0, ready_gpu=40.0, done_host=11.0, done_gpu=45.0)
    assert gpu_waits(behind, clock)[2] == pytest.approx(0.0)
    # ... until an idle moment shows the real one; a later GPU-bound step then gets its full lag
    gpu_waits(backward(ready_host=200.0, ready_gpu=200.0, done_host=200.2, done_gpu=200.2), clock)
    later = backward(ready_host=300.0, ready_gpu=330.0, done_host=301.0, done_gpu=335.0)
    assert gpu_waits(later, clock) == pytest.approx((5.0, 0.0, 30.0))


def test_resolve_buckets_reports_the_wire_as_exposed_and_keeps_the_raw_interval() -> None:
    clock = calibrated()
    step = backward(ready_host=1_000.0, ready_gpu=1_000.0, done_host=1_006.0, done_gpu=1_009.0)
    comm = resolve_buckets([], [step], step_start=0.99, final=False, clock=clock, bucket_sizes=[64, 32])
    assert isinstance(comm, dict)
    assert comm["exposed_ms"] == pytest.approx(3.0)
    assert comm["finalize_wait_ms"] == pytest.approx(6.0)
    assert comm["backward_end_to_resume_ms"] == pytest.approx(9.0)
    assert comm["backward_end_ms"] == pytest.approx(10.0)
    assert comm["clock"] == "cuda" and comm["bytes"] == 96


def test_a_step_waits_for_gpu_events_still_in_flight_and_gives_up_at_the_end() -> None:
    step = backward(ready_host=1_000.0, ready_gpu=1_000.0, done_host=1_006.0, done_gpu=1_009.0)
    step.synced_event.query = lambda: False  # type: ignore[method-assign]
    assert resolve_buckets([], [step], step_start=0.99, final=False, clock=calibrated()) is False
    assert resolve_buckets([], [step], step_start=0.99, final=True, clock=calibrated())["unresolved"]


def test_gradient_accumulation_adds_the_wire_of_every_synchronised_backward() -> None:
    clock = calibrated()
    first = backward(ready_host=1_000.0, ready_gpu=1_000.0, done_host=1_000.1, done_gpu=1_004.0)
    second = backward(ready_host=1_010.0, ready_gpu=1_010.0, done_host=1_010.1, done_gpu=1_012.0)
    comm = resolve_buckets([], [first, second], step_start=0.99, final=False, clock=clock)
    assert comm["exposed_ms"] == pytest.approx(3.9 + 1.9)


def test_launch_bound_runs_get_a_footnote_on_the_stall_they_may_overstate() -> None:
    from ddlprof.runs.breakdown import reasons

    launch_bound = reasons(False, ["timed"], True, {}, gpu_lag_ms=3.2)
    assert "launch-bound" in launch_bound["interconnect_stall_ms"]
    assert "3.2 ms" in launch_bound["interconnect_stall_ms"]
    assert "launch-bound" not in launch_bound["network_stall_ms"]  # single node: nothing to overstate
    assert "interconnect_stall_ms" not in reasons(False, ["timed"], True, {}, gpu_lag_ms=45.0)
    assert "interconnect_stall_ms" not in reasons(False, ["timed"], True, {}, gpu_lag_ms=None)  # CPU
    multi_node = reasons(True, ["timed"], True, {}, gpu_lag_ms=1.0)
    assert all("launch-bound" in multi_node[k] for k in ("interconnect_stall_ms", "network_stall_ms"))
