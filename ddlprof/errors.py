"""Errors that reach the user as one clear line (no traceback) and a non-zero exit, and the one place
that turns a missing optional dependency into such a line.

``pip install ddlprof`` is the core: what ``wrap``, ``report``, ``analyze``, ``stalls`` and ``advise``
need, and never a torch build. The rest comes as extras (``pyproject.toml``): ``dashboard``, ``html``,
``cloud``, ``models``, ``tensorboard``, ``all``. A command that needs an extra calls :func:`require`
(or :func:`require_torch`) before it imports the library, so that a missing one is one line naming
what to install.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import re
from types import ModuleType

#: The extras of ``pyproject.toml`` a message may name (the README's table says what each is for).
EXTRAS = ("dashboard", "html", "cloud", "models", "tensorboard", "all")
#: pip's name where it is not the import name.
DISTRIBUTIONS = {"sklearn": "scikit-learn", "pynvml": "nvidia-ml-py"}

TORCH_HINT = (
    "install the torch build for your machine (https://pytorch.org/get-started/locally/); "
    "ddlprof never installs one"
)


class DdlprofError(Exception):
    """A problem with the user's input or files, worded for the user."""

    exit_code = 2


class MissingDependency(DdlprofError):
    """An optional dependency (an extra's library, or torch) is not installed."""


def install_hint(extra: str) -> str:
    """``pip install 'ddlprof[EXTRA]'``, quoted for the shell."""
    if extra not in EXTRAS:
        raise ValueError(f"no such extra: {extra}")
    return f"pip install 'ddlprof[{extra}]'"


def _reason(module: str, exc: BaseException | None) -> str:
    """Why ``module`` is unusable, in a few words: not installed, or its import failed and how."""
    top = module.split(".")[0]
    if exc is None or (isinstance(exc, ModuleNotFoundError) and exc.name in (module, top)):
        return f"{DISTRIBUTIONS.get(top, top)} is not installed"
    text = " ".join(str(exc).split())[:160]
    return f"import {module} failed: {type(exc).__name__}: {text}"


def missing_extra(
    module: str, extra: str, for_what: str, exc: BaseException | None = None
) -> MissingDependency:
    """The error for ``for_what`` when ``module`` of ``extra`` cannot be imported: one line."""
    return MissingDependency(
        f"{for_what} needs the {extra} extra: {install_hint(extra)} ({_reason(module, exc)})"
    )


def require(module: str, extra: str, for_what: str, import_it: bool = True) -> ModuleType | None:
    """``import module``, or a one-line :class:`MissingDependency` naming ``ddlprof[extra]``.

    ``for_what`` starts the line (``ddlprof dashboard``, ``report --html``, ...). With ``import_it``
    False only the module's presence is checked (for a library that runs in a child process) and
    None is returned.
    """
    try:
        if not import_it:
            if importlib.util.find_spec(module) is None:
                raise missing_extra(module, extra, for_what)
            _check_floor(module, extra, for_what)
            return None
        return importlib.import_module(module)
    except MissingDependency:
        raise
    except (ImportError, ValueError) as exc:  # find_spec: ValueError when sys.modules holds None
        raise missing_extra(module, extra, for_what, exc) from None


def _release(version: str) -> tuple[int, ...]:
    """The leading release numbers of a version (``1.52.0rc1`` -> (1, 52, 0))."""
    match = re.match(r"\d+(?:\.\d+)*", version.strip())
    return tuple(int(part) for part in match.group().split(".")) if match else ()


def _check_floor(module: str, extra: str, for_what: str) -> None:
    """A one-line error when the installed ``module`` is older than the ``>=`` floor that ddlprof's
    own metadata (``pyproject.toml``) gives it under ``extra``. An older library can import and still
    fail later inside a child process (the dashboard's Streamlit), where the user sees no reason."""
    dist = DISTRIBUTIONS.get(module, module)
    try:
        requirements = importlib.metadata.requires("ddlprof") or []
        installed = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:  # run from a source tree: no metadata to go by
        return
    for requirement in requirements:
        match = re.match(rf"{re.escape(dist)}\s*>=\s*([\w.]+)\s*;\s*extra\s*==\s*\"{extra}\"", requirement)
        if match and _release(installed) < _release(match.group(1)):
            raise MissingDependency(
                f"{for_what} needs {dist} >= {match.group(1)} (installed: {installed}): "
                f"pip install -U '{dist}>={match.group(1)}'"
            )


def require_torch(for_what: str) -> ModuleType:
    """``import torch``, or a one-line :class:`MissingDependency`: ddlprof uses the torch it finds and
    never installs one, so the line says to install the user's own build."""
    try:
        return importlib.import_module("torch")
    except ImportError as exc:
        raise MissingDependency(f"{for_what} needs PyTorch: {_reason('torch', exc)}; {TORCH_HINT}") from None
