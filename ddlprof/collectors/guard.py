"""The promise every collector keeps: never break the user's job.

Each collector runs its work through a Guard under its own name. The first exception switches that
collector off for the rest of the process, prints one warning, and is recorded in the rank file so
the report can say why a category is missing. The user's own code always runs outside the guard.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Stop(Exception):
    """A failure a collector has worded itself (``disk full (ENOSPC) writing ...``): recorded as it is."""


class Guard:
    def __init__(self) -> None:
        self.off: dict[str, str] = {}
        self.on_failure: Callable[[str, str], None] | None = None

    def active(self, name: str) -> bool:
        return name not in self.off

    def call(self, name: str, fn: Callable[..., T], *args: Any) -> T | None:
        """Run ``fn(*args)`` for collector ``name``; on error switch ``name`` off and return None."""
        if name in self.off:
            return None
        try:
            return fn(*args)
        except Stop as exc:
            self.fail(name, str(exc))
            return None
        except Exception as exc:
            self.fail(name, f"{type(exc).__name__}: {exc}")
            return None

    def fail(self, name: str, reason: str, *, quiet: bool = False) -> None:
        if name in self.off:
            return
        self.off[name] = reason
        if not quiet:
            print(
                f"ddlprof: the {name} collector stopped ({reason}); the job itself is not affected",
                file=sys.stderr,
                flush=True,
            )
        if self.on_failure is not None:
            with contextlib.suppress(Exception):
                self.on_failure(name, reason)
