"""Load trace files the way TensorBoard's profiler plugin (torch-tb-profiler) does, and print what
it finds: the steps of its overview, whether it saw GPU kernels and communication, and the
distributed info. A check that ddlprof's traces open in the plugin with ddlprof's step numbers.

    python benchmarks/tb_plugin_check.py RUN/traces/RUN_NAME
    python benchmarks/tb_plugin_check.py --rewrite DIR   # first as ddlprof now writes them

``--rewrite`` passes each file through ``write_without_gpu_step_marks`` (what ``ddlprof wrap`` does
since it leaves out Kineto's GPU-side step markers) into a temporary folder, for traces recorded before.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def main() -> int:
    logging.disable(logging.WARNING)
    from torch_tb_profiler.profiler.data import RunProfileData
    from torch_tb_profiler.profiler.run_generator import RunGenerator

    rewrite = "--rewrite" in sys.argv[1:]
    folder = Path(next(a for a in sys.argv[1:] if a != "--rewrite"))
    if rewrite:
        folder = rewritten(folder)
    for trace in sorted(folder.glob("*.pt.trace.json*")):
        worker = trace.name.split(".")[0]
        data = RunProfileData.parse(worker, 0, str(trace), str(folder / ".tb-cache"))
        data.process()
        steps = [
            row[0] for row in RunGenerator(worker, 0, data).generate_run_profile().overview["steps"]["rows"]
        ]
        info = data.distributed_info or {}
        print(
            f"{trace.name}: {len(steps)} steps ({steps[0]} .. {steps[-1]}), kernels {data.has_kernel}, "
            f"communication {data.has_communication}, backend {info.get('backend')}, "
            f"world size {info.get('world_size')}"
        )
    return 0


def rewritten(folder: Path) -> Path:
    import gzip
    import tempfile

    from ddlprof.collectors.traces import write_without_gpu_step_marks

    out = Path(tempfile.mkdtemp(prefix="tb-check-"))
    for trace in sorted(folder.glob("*.pt.trace.json*")):
        raw = out / "raw.json"
        data = trace.read_bytes()
        raw.write_bytes(gzip.decompress(data) if trace.suffix == ".gz" else data)
        name = trace.name if trace.suffix == ".gz" else f"{trace.name}.gz"
        write_without_gpu_step_marks(str(raw), str(out / name))
        raw.unlink()
    return out


if __name__ == "__main__":
    sys.exit(main())
