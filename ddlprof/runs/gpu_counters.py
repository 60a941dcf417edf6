"""GPU counters of a run (``gpu/<host>.csv``, NVML samples) over the steady-state window."""

from __future__ import annotations

from pathlib import Path
from typing import Any

COUNTERS = (
    "util_pct",
    "mem_used_mib",
    "power_w",
    "nvlink_tx_mb_per_s",
    "nvlink_rx_mb_per_s",
    "pcie_tx_mb_per_s",
    "pcie_rx_mb_per_s",
)


def load_samples(run_dirs: list[Path]) -> Any:
    """All NVML samples of the runs as one pandas frame (with a ``host`` column), or None."""
    files = [f for run in run_dirs for f in sorted((run / "gpu").glob("*.csv"))]
    if not files:
        return None
    import pandas as pd

    frames = []
    for file in files:
        try:
            frame = pd.read_csv(file)
        except (OSError, ValueError, pd.errors.ParserError):
            continue  # a torn sampler file never stops the report
        if "unix" in frame and "gpu" in frame:
            frames.append(_samples(frame).assign(host=file.stem))
    return pd.concat(frames, ignore_index=True) if frames else None


def _samples(frame: Any) -> Any:
    """The rows of a sampler file that are samples: a cell cut or edited to text, NaN or infinity is
    not a counter's value, and a row without a time or a GPU index is no sample."""
    import numpy as np
    import pandas as pd

    numbers = frame.apply(pd.to_numeric, errors="coerce").astype(float)
    numbers = numbers.where(np.isfinite(numbers))
    gpu = numbers["gpu"]
    return numbers[numbers["unix"].notna() & (gpu >= 0) & (gpu < MAX_GPUS) & (gpu == gpu.round())]


MAX_GPUS = 1 << 16  # GPU indices on one host


def steady_counters(samples: Any, start: float, end: float) -> list[dict[str, Any]]:
    """Median and maximum of each counter per GPU between ``start`` and ``end`` (unix seconds)."""
    if samples is None:
        return []
    window = samples[(samples["unix"] >= start) & (samples["unix"] <= end)]
    rows = []
    for (host, gpu), group in window.groupby(["host", "gpu"]):
        row: dict[str, Any] = {"host": host, "gpu": int(gpu), "samples": len(group)}
        for counter in COUNTERS:
            values = group[counter].dropna() if counter in group else []
            row[counter] = (
                {"median": round(float(values.median()), 1), "max": round(float(values.max()), 1)}
                if len(values)
                else None
            )
        rows.append(row)
    return rows
