"""Why ddlprof waits for gloo at exit: a Python callback that gloo's thread still holds while the
interpreter shuts down aborts the process ("terminate called without an active exception").

Each rank starts an all-reduce whose completion callback (Python, run on gloo's thread) is still
busy when the script exits. With ``--settle`` the script first waits, as ddlprof's session does at
exit (``BucketCallbacks.settle``), until gloo's thread has let the callback go.

    torchrun --standalone --nproc_per_node=2 benchmarks/gloo_exit_abort.py            # aborts
    torchrun --standalone --nproc_per_node=2 benchmarks/gloo_exit_abort.py --settle   # exits 0
"""

from __future__ import annotations

import sys
import time

import torch
import torch.distributed as dist

from ddlprof.collectors.comm import BucketCallbacks


def slow_callback(done: torch.futures.Future) -> list[torch.Tensor]:
    time.sleep(0.2)  # still running on gloo's thread when the main thread leaves
    return done.value()


def main() -> int:
    dist.init_process_group("gloo")
    callbacks = BucketCallbacks()
    work = dist.all_reduce(torch.ones(1 << 20), async_op=True)
    work.get_future().then(callbacks.track(slow_callback))
    if "--settle" in sys.argv:
        callbacks.settle(timeout_s=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
