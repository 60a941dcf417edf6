"""Attach the collectors the moment the process imports torch, without importing it ourselves.

Importing torch at interpreter start would slow every process of the job (launcher agents, data
loader workers, helper scripts) and change the user's import order. Instead a meta-path finder waits
for ``import torch`` to finish and then starts the session. Hand-written because the collectors must
load in the user's interpreter with nothing but the standard library and torch available.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import itertools
import os
import sys
from collections.abc import Callable
from types import ModuleType

_LAUNCHER_MODULES = ("torch.distributed.run", "torch.distributed.launch")


class _PostImportFinder(importlib.abc.MetaPathFinder):
    def __init__(self, name: str, callback: Callable[[ModuleType], None]) -> None:
        self.name = name
        self.callback = callback
        self.busy = False

    def find_spec(self, fullname, path, target=None):  # type: ignore[override]
        if fullname != self.name or self.busy:
            return None
        self.busy = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self.busy = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        original_exec = spec.loader.exec_module
        finder = self

        def exec_module(module: ModuleType) -> None:
            original_exec(module)
            if finder in sys.meta_path:
                sys.meta_path.remove(finder)
            finder.callback(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def is_launcher_process() -> bool:
    """True in torchrun's agent (console script or ``python -m torch.distributed.run``)."""
    argv = getattr(sys, "orig_argv", sys.argv)
    if any(os.path.basename(arg) == "torchrun" for arg in argv[:2]):
        return True
    return any(a == "-m" and b in _LAUNCHER_MODULES for a, b in itertools.pairwise(argv))


def _on_torch_imported(_torch: ModuleType) -> None:
    if is_launcher_process():
        return
    try:
        from ddlprof.collectors.session import start_session

        start_session()
    except Exception as exc:
        print(f"ddlprof: collectors failed to start ({exc!r}); the job runs unprofiled", file=sys.stderr)


def arm() -> None:
    """Start the session now if torch is already loaded, else as soon as it is."""
    if "torch" in sys.modules:
        _on_torch_imported(sys.modules["torch"])
    else:
        sys.meta_path.insert(0, _PostImportFinder("torch", _on_torch_imported))
