"""Run the user's command as a child and pass everything through unchanged: stdin/stdout/stderr
are inherited, the exit status comes back as it was (a death by signal is re-raised on ourselves),
and signals sent to ``ddlprof wrap`` reach the job exactly once.

The child gets its own process group. When ddlprof runs in the terminal's foreground, that group is
made the foreground group, so Ctrl-C and terminal input reach the job directly, as they would
without ddlprof; signals sent to the wrapper by other processes (schedulers, ``kill``, ``timeout``)
are forwarded to the child. On Linux the child dies with the wrapper: a wrapper killed with SIGKILL
leaves no job behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


class CommandNotFound(Exception):
    def __init__(self, program: str, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.program, self.exit_code = program, exit_code


def check_command(argv: list[str]) -> str:
    """The executable ``argv[0]`` resolves to, or CommandNotFound with the shell's wording and code."""
    program = argv[0]
    if os.sep in program:
        if not os.path.exists(program):
            raise CommandNotFound(program, 127, f"{program}: No such file or directory")
        if os.path.isdir(program) or not os.access(program, os.X_OK):
            raise CommandNotFound(program, 126, f"{program}: Permission denied")
        return program
    # A command installed beside the running Python (torchrun in ddlprof's own venv) counts too, so
    # `.venv/bin/ddlprof wrap torchrun ...` works without activating the venv.
    found = shutil.which(program) or shutil.which(program, path=os.path.dirname(sys.executable))
    if found is None:
        raise CommandNotFound(program, 127, f"{program}: command not found")
    return found


@contextlib.contextmanager
def _ignoring(sig: signal.Signals) -> Iterator[None]:
    previous = signal.signal(sig, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(sig, previous)


def _terminal_fd() -> int | None:
    """stdin's fd when we are the terminal's foreground job, else None."""
    try:
        fd = sys.stdin.fileno()
        if os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp():
            return fd
    except (OSError, ValueError, AttributeError):
        pass
    return None


_WAITED = {*FORWARDED, signal.SIGCHLD}


@contextlib.contextmanager
def signals_held() -> Iterator[set[signal.Signals]]:
    """Hold the forwarded signals for ``sigtimedwait``; enter before starting any thread, so that no
    thread can take a signal meant for the job. Yields the mask the child must start with."""
    original_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _WAITED)
    try:
        yield original_mask
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, original_mask)


def run_command(
    executable: str, argv: list[str], env: dict[str, str], child_mask: set[signal.Signals]
) -> int:
    """Run the command to the end, inside ``signals_held``; returns ``os.waitstatus_to_exitcode``."""
    terminal = _terminal_fd()
    try:
        child = subprocess.Popen(  # fds pass through as they are, as they would without ddlprof
            argv,
            executable=executable,
            env=env,
            close_fds=False,
            process_group=0,
            preexec_fn=_child_setup(child_mask, os.getpid()),
        )
        pid = child.pid
        if terminal is not None:
            with _ignoring(signal.SIGTTOU), contextlib.suppress(OSError):
                os.tcsetpgrp(terminal, pid)
        while True:
            info = signal.sigtimedwait(_WAITED, 1.0)
            if info is not None and info.si_signo != signal.SIGCHLD:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, info.si_signo)
                continue
            done, status = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                child.returncode = os.waitstatus_to_exitcode(status)
                return child.returncode
    finally:
        if terminal is not None:
            with _ignoring(signal.SIGTTOU), contextlib.suppress(OSError):
                os.tcsetpgrp(terminal, os.getpgrp())


def _child_setup(child_mask: set[signal.Signals], parent: int) -> Callable[[], None]:
    """What the child does before it executes the command: take the job's signal mask, and ask Linux
    to send it SIGTERM when the wrapper dies (``PR_SET_PDEATHSIG``), so that a wrapper killed with
    SIGKILL (``timeout -s KILL``, a scheduler) never leaves the job running; SIGTERM, not SIGKILL, so
    that torchrun still stops its workers. Elsewhere the job outlives a killed wrapper, as before."""
    prctl = _prctl()

    def setup() -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, child_mask)
        if (
            prctl is not None
            and prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0
            and os.getppid() != parent
        ):
            os.kill(os.getpid(), signal.SIGTERM)  # the wrapper died before the request was in place

    return setup


_PR_SET_PDEATHSIG = 1


def _prctl() -> Any:
    """libc's ``prctl``, loaded before the fork (the child only calls it); None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def exit_like(exit_code: int) -> int:
    """Leave the way the child did: re-raise its fatal signal on ourselves, or return its code.

    SIGKILL's handler cannot be reset (nor SIGSTOP's, which never ends a process); SIGKILL is sent as it
    is, and a signal that cannot be re-raised at all ends us with the shell's code for it, 128 + n.
    """
    if exit_code >= 0:
        return exit_code
    sig = -exit_code
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        signal.signal(sig, signal.SIG_DFL)
    except (OSError, ValueError):
        if sig != signal.SIGKILL:
            return 128 + sig
    with contextlib.suppress(OSError, ValueError):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
        os.kill(os.getpid(), sig)
    return 128 + sig  # the signal did not end us (it is ignored or blocked elsewhere)
