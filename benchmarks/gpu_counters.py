"""Summarise the NVML samples of run directories (gpu/*.csv) while the GPUs were busy.

python benchmarks/gpu_counters.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

COLUMNS = ["util_pct", "power_w", "pcie_tx_mb_per_s", "pcie_rx_mb_per_s", "nvlink_tx_mb_per_s",
           "nvlink_rx_mb_per_s"]  # fmt: skip


def main(paths: list[str]) -> int:
    for path in paths:
        samples = pd.concat(pd.read_csv(f) for f in sorted(Path(path, "gpu").glob("*.csv")))
        busy = samples[samples["util_pct"] >= 50]
        medians = busy.groupby("gpu")[COLUMNS].median().round(1)
        print(f"{path}: {len(busy)} busy samples of {len(samples)} (util >= 50%), medians per GPU")
        print(medians.to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
