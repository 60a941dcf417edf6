"""``python tests/foreign_job.py SCRIPT ARGS...``: run a job of ``benchmarks/foreign/`` (written as users
write them, with Hugging Face's ``Trainer`` or Lightning) as its own ``__main__``, once
``import_torchvision`` has made PyPI's torchvision importable beside a CPU build of torch: transformers
and Lightning import torchvision, and PyPI's wheel cannot load its C++ ops without a CUDA torch (see
``ddlprof.models.zoo.import_torchvision``). Where torchvision imports as it is, nothing changes."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

if __name__ == "__main__":
    script = Path(sys.argv[1]).resolve()
    sys.argv = sys.argv[1:]
    sys.path.insert(0, str(script.parent))  # as `python SCRIPT` puts it (the jobs import steptimer)
    from ddlprof.models.zoo import import_torchvision

    import_torchvision()
    runpy.run_path(str(script), run_name="__main__")
