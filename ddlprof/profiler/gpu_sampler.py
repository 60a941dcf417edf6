"""NVML sampler, one per host: it runs in the ``ddlprof wrap`` process beside the job, never inside a
training rank, so it costs the ranks no GIL time. Writes ``gpu/<host>.csv``.

NVLink throughput comes from NVML's cumulative per-link data counters (KiB), turned into rates
between samples; PCIe throughput is NVML's own 20 ms window (KB/s). ``energy_mj`` is NVML's total
energy counter (mJ since the driver loaded, Volta and later; empty where the GPU has none), which
``ddlprof.runs.energy`` turns into joules per step and per sample.
"""

from __future__ import annotations

import contextlib
import csv
import os
import threading
import time
from pathlib import Path
from typing import Any

COLUMNS = [
    "unix",
    "gpu",
    "util_pct",
    "mem_util_pct",
    "mem_used_mib",
    "power_w",
    "sm_clock_mhz",
    "pcie_tx_mb_per_s",
    "pcie_rx_mb_per_s",
    "nvlink_tx_mb_per_s",
    "nvlink_rx_mb_per_s",
    "energy_mj",
]  # fmt: skip  (throughputs in MB/s, 1 MB = 1e6 bytes; energy_mj: NVML's total-energy counter)


def _visible_indices(count: int) -> list[int]:
    """NVML sees every GPU; sample only those CUDA_VISIBLE_DEVICES gives the job (when numeric)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None or visible.strip() == "":
        return list(range(count))
    try:
        return [i for i in (int(p) for p in visible.split(",")) if 0 <= i < count]
    except ValueError:
        return list(range(count))


def gpu_inventory() -> tuple[list[dict[str, Any]], str | None]:
    """The GPUs of this host as NVML sees them, or an empty list and the reason there are none."""
    try:
        import pynvml
    except ImportError:
        return [], "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return [], f"no NVIDIA driver or GPU ({exc})"
    try:
        gpus = []
        for index in _visible_indices(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(
                {
                    "index": index,
                    "name": pynvml.nvmlDeviceGetName(handle),
                    "uuid": pynvml.nvmlDeviceGetUUID(handle),
                    "memory_mib": memory.total // 2**20,
                    "driver": pynvml.nvmlSystemGetDriverVersion(),
                }
            )
        return gpus, None if gpus else "NVML reports no GPU visible to the job"
    finally:
        pynvml.nvmlShutdown()


class GpuSampler(threading.Thread):
    """Samples ``indices`` into ``path``; with ``processes``, also each compute process's GPU memory
    (``unix,gpu,pid,used_mib``: how ``ddlprof share`` tells the copies on one GPU apart)."""

    def __init__(
        self, path: Path, indices: list[int], interval_s: float = 0.5, processes: Path | None = None
    ) -> None:
        super().__init__(name="ddlprof-gpu-sampler", daemon=True)
        self.path = path
        self.indices = indices
        self.interval_s = interval_s
        self.processes = processes
        self.stopping = threading.Event()
        self.error: str | None = None

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)

    def run(self) -> None:
        try:
            self._sample_until_stopped()
        except Exception as exc:  # the sampler must never take the wrapper down
            self.error = f"{type(exc).__name__}: {exc}"

    def _sample_until_stopped(self) -> None:
        import pynvml

        pynvml.nvmlInit()
        try:
            handles = {i: pynvml.nvmlDeviceGetHandleByIndex(i) for i in self.indices}
            links = {i: _active_links(pynvml, h) for i, h in handles.items()}
            previous: dict[int, tuple[float, int, int]] = {}
            # "w": wrap has claimed the file (made it empty, and only if absent) for this sampler.
            with contextlib.ExitStack() as files:
                file = files.enter_context(open(self.path, "w", newline="", encoding="utf-8"))
                writer = csv.writer(file)
                writer.writerow(COLUMNS)
                per_process = None
                if self.processes is not None:
                    per_process = csv.writer(
                        files.enter_context(open(self.processes, "w", newline="", encoding="utf-8"))
                    )
                    per_process.writerow(["unix", "gpu", "pid", "used_mib"])
                while not self.stopping.is_set():
                    now = time.time()
                    for index, handle in handles.items():
                        writer.writerow(_sample(pynvml, index, handle, links[index], now, previous))
                        if per_process is not None:
                            per_process.writerows(_processes(pynvml, index, handle, now))
                    file.flush()
                    self.stopping.wait(self.interval_s)
        finally:
            pynvml.nvmlShutdown()


def _processes(pynvml: Any, index: int, handle: Any, now: float) -> list[list[Any]]:
    """Each compute process on the GPU and its memory (none where NVML cannot say, as under MPS on
    some drivers)."""
    found = _try(pynvml.nvmlDeviceGetComputeRunningProcesses, handle) or []
    return [
        [round(now, 3), index, p.pid, p.usedGpuMemory // 2**20]
        for p in found
        if isinstance(getattr(p, "usedGpuMemory", None), int)
    ]


def _active_links(pynvml: Any, handle: Any) -> list[int]:
    links = []
    for link in range(pynvml.NVML_NVLINK_MAX_LINKS):
        try:
            if pynvml.nvmlDeviceGetNvLinkState(handle, link) == pynvml.NVML_FEATURE_ENABLED:
                links.append(link)
        except pynvml.NVMLError:
            break
    return links


def _try(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception:
        return None


def _nvlink_kib(pynvml: Any, handle: Any, links: list[int]) -> tuple[int, int] | None:
    if not links:
        return None
    fields = [(pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, link) for link in links]
    fields += [(pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX, link) for link in links]
    values = pynvml.nvmlDeviceGetFieldValues(handle, fields)
    if any(v.nvmlReturn != pynvml.NVML_SUCCESS for v in values):
        return None
    counts = [int(v.value.ullVal) for v in values]
    return sum(counts[: len(links)]), sum(counts[len(links) :])


def _sample(
    pynvml: Any,
    index: int,
    handle: Any,
    links: list[int],
    now: float,
    previous: dict[int, tuple[float, int, int]],
) -> list[Any]:
    util = _try(pynvml.nvmlDeviceGetUtilizationRates, handle)
    memory = _try(pynvml.nvmlDeviceGetMemoryInfo, handle)
    power = _try(pynvml.nvmlDeviceGetPowerUsage, handle)
    clock = _try(pynvml.nvmlDeviceGetClockInfo, handle, pynvml.NVML_CLOCK_SM)
    pcie_tx = _try(pynvml.nvmlDeviceGetPcieThroughput, handle, pynvml.NVML_PCIE_UTIL_TX_BYTES)
    pcie_rx = _try(pynvml.nvmlDeviceGetPcieThroughput, handle, pynvml.NVML_PCIE_UTIL_RX_BYTES)
    nvlink = _try(_nvlink_kib, pynvml, handle, links)
    energy = _try(pynvml.nvmlDeviceGetTotalEnergyConsumption, handle)
    nvlink_tx = nvlink_rx = None
    if nvlink is not None:
        if index in previous:
            then, tx, rx = previous[index]
            elapsed = max(now - then, 1e-6)
            # counters in KiB (1.024e-3 MB each), rates in MB/s
            nvlink_tx = round((nvlink[0] - tx) * 1.024e-3 / elapsed, 1)
            nvlink_rx = round((nvlink[1] - rx) * 1.024e-3 / elapsed, 1)
        previous[index] = (now, nvlink[0], nvlink[1])
    return [
        round(now, 3), index,
        util.gpu if util else None, util.memory if util else None,
        memory.used // 2**20 if memory else None,
        round(power / 1e3, 1) if power is not None else None,
        clock,
        round(pcie_tx / 1e3, 1) if pcie_tx is not None else None,
        round(pcie_rx / 1e3, 1) if pcie_rx is not None else None,
        nvlink_tx, nvlink_rx,
        energy,
    ]  # fmt: skip
