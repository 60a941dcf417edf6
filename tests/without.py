"""``python tests/without.py MOD,MOD ARGS...``: run ``ddlprof ARGS...`` as if the top-level modules
``MOD`` were not installed (an import of one, or ``importlib.util.find_spec``, raises
ModuleNotFoundError, as in an environment without it). Child processes (a wrapped job) are not
affected: they are the job's own interpreter."""

from __future__ import annotations

import sys


class _NotInstalled:
    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


if __name__ == "__main__":
    sys.meta_path.insert(0, _NotInstalled(set(sys.argv[1].split(","))))
    from ddlprof.cli import main

    sys.exit(main(sys.argv[2:]))
