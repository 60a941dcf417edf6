"""What the worker-side batch timing (``ddlprof/collectors/loader_workers.py``) adds to one fetch:
a trivial map-style dataset fetched in the calling process, untimed and timed, interleaved.

    python benchmarks/fetch_timing_cost.py
"""

from __future__ import annotations

import json
import statistics
import time

import torch
from torch.utils.data._utils.collate import default_collate
from torch.utils.data._utils.fetch import _MapDatasetFetcher

from ddlprof.collectors import loader_workers


def per_fetch_us(fetch, fetcher, n: int) -> float:
    started = time.perf_counter_ns()
    for i in range(n):
        fetch(fetcher, [i % 8, (i + 1) % 8])
    return (time.perf_counter_ns() - started) / n / 1e3


def main() -> None:
    data = [torch.ones(4) for _ in range(8)]
    fetcher = _MapDatasetFetcher(data, True, default_collate, False)
    plain = _MapDatasetFetcher.fetch
    timed = loader_workers._timed(plain)
    rounds: dict[str, list[float]] = {"plain": [], "timed": []}
    for _ in range(7):
        rounds["plain"].append(per_fetch_us(plain, fetcher, 20_000))
        rounds["timed"].append(per_fetch_us(timed, fetcher, 20_000))
    medians = {k: round(statistics.median(v), 2) for k, v in rounds.items()}
    print(json.dumps({"fetch_us": medians, "added_us": round(medians["timed"] - medians["plain"], 2)}))


if __name__ == "__main__":
    main()
