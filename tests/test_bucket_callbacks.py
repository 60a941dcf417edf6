"""The CPU completion callbacks that gloo's threads hold: the session waits for them at exit.

A gloo thread that still has to release a Python callback once the interpreter finalizes aborts the
process ("terminate called without an active exception"); ``BucketCallbacks.settle`` is what the
session's exit handler runs so that never happens. Real torch futures, completed from another thread
as gloo completes them.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import torch
from conftest import REPO, env, torchrun

from ddlprof.collectors.comm import BucketCallbacks


def test_settle_waits_until_the_completing_thread_lets_the_callback_go():
    callbacks = BucketCallbacks()
    future = torch.futures.Future()
    ran_on = []
    child = future.then(callbacks.track(lambda done: ran_on.append(threading.get_ident()) or done.value()))
    assert callbacks.held
    threading.Thread(target=lambda: (time.sleep(0.2), future.set_result(7))).start()
    started = time.perf_counter()
    assert callbacks.settle(timeout_s=10)
    assert time.perf_counter() - started >= 0.15  # it waited for the other thread
    assert not callbacks.held and ran_on and ran_on[0] != threading.get_ident()
    assert child.wait() == 7


def test_settle_gives_up_after_its_timeout():
    callbacks = BucketCallbacks()
    future = torch.futures.Future()  # never completed: the callback stays held
    future.then(callbacks.track(lambda done: done.value()))
    started = time.perf_counter()
    assert callbacks.settle(timeout_s=0.05) is False
    assert 0.05 <= time.perf_counter() - started < 1.0
    assert callbacks.held


def test_a_callback_still_held_at_exit_is_still_counted_by_the_exit_handlers(tmp_path):
    # weakref.finalize runs its live finalizers in an exit handler of its own, registered after the
    # session's and so run before it: it must not empty the set before the session settles it
    script = tmp_path / "held.py"
    script.write_text(
        "import atexit\n"
        "atexit.register(lambda: print('held at exit:', len(callbacks.held)))  # as early as the session's\n"
        "import torch\n"
        "from ddlprof.collectors.comm import BucketCallbacks\n"
        "callbacks = BucketCallbacks()\n"
        "future = torch.futures.Future()\n"
        "future.then(callbacks.track(lambda done: done.value()))\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "held at exit: 1"


def test_a_gloo_job_whose_callback_is_busy_at_exit_exits_cleanly_after_settle():
    # without the settle this script aborts ("terminate called without an active exception"):
    # benchmarks/results/cpu/gloo_exit_abort.txt
    done = subprocess.run(
        [*torchrun(2), str(REPO / "benchmarks" / "gloo_exit_abort.py"), "--settle"],
        capture_output=True,
        text=True,
        env=env(),
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    assert "terminate called" not in done.stderr
