"""Host time of the CUDA-event pieces of ddlprof's backward timing (``collectors/comm.py``), one GPU:
a new ``torch.cuda.Event(enable_timing=True)`` recorded on the current stream (what each backward
does twice), the same event object recorded again, and ``torch.cuda.current_stream`` alone. The GPU
is kept busy by a queue of matmuls, as in training, so that records go into a non-empty stream.

    python benchmarks/event_record_cost.py --out results.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def timed(fn, repeats: int) -> list[float]:
    """Microseconds of host time per call of ``fn``, ``repeats`` calls, each one timed."""
    out = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - start) / 1e3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    device = torch.device("cuda", 0)
    a = torch.randn(4096, 4096, device=device)
    kept: list[torch.cuda.Event] = []
    reused = torch.cuda.Event(enable_timing=True)

    def new_event() -> None:
        event = torch.cuda.Event(enable_timing=True)
        event.record(torch.cuda.current_stream(device))
        kept.append(event)

    def reuse_event() -> None:
        reused.record(torch.cuda.current_stream(device))

    def stream_only() -> None:
        torch.cuda.current_stream(device)

    pieces = {
        "new_event_record": new_event,
        "reused_event_record": reuse_event,
        "current_stream": stream_only,
    }
    results: dict[str, list[float]] = {name: [] for name in pieces}
    for _ in range(5):  # interleaved rounds, the GPU busy with queued work in each
        for name, fn in pieces.items():
            for _ in range(20):
                a @ a
            results[name] += timed(fn, args.repeats // 5)
            torch.cuda.synchronize()
            kept.clear()  # events destroyed here, outside the timing
    summary = {
        name: {"median_us": statistics.median(v), "p90_us": statistics.quantiles(v, n=10)[-1]}
        for name, v in results.items()
    }
    report = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "summary": summary}
    print(json.dumps(report, indent=1))
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
