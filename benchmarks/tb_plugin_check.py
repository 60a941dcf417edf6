"""Load trace files the way TensorBoard's profiler plugin (torch-tb-profiler) does, and print what
it finds: the steps of its overview, whether it saw GPU kernels and communication, and the
distributed info. A check that ddlprof's traces open in the plugin with ddlprof's step numbers.

    python benchmarks/tb_plugin_check.py RUN/traces/RUN_NAME
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def main() -> int:
    logging.disable(logging.WARNING)
    from torch_tb_profiler.profiler.data import RunProfileData
    from torch_tb_profiler.profiler.run_generator import RunGenerator

    folder = Path(sys.argv[1])
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


if __name__ == "__main__":
    sys.exit(main())
