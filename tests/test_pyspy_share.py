"""``benchmarks/pyspy_share.py``: which of py-spy's samples are ddlprof's own time."""

from __future__ import annotations

import importlib.util

from conftest import REPO

_spec = importlib.util.spec_from_file_location("pyspy_share", REPO / "benchmarks" / "pyspy_share.py")
share = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(share)

LOOP = "main (plain_loop.py:80)"
FORWARD = "install.<locals>.forward (ddlprof/collectors/comm.py:88)"
CONV = "Conv2d.forward (torch/nn/modules/conv.py:548)"
BACKWARD = "CommTracker._time_backward (ddlprof/collectors/comm.py:190)"
RECORD = "Event.record (torch/cuda/streams.py:210)"


def test_the_jobs_code_under_a_wrapper_is_the_jobs_and_what_ddlprof_calls_is_ddlprofs():
    assert share.is_ours([LOOP, FORWARD, CONV]) == (False, "install.<locals>.forward")
    assert share.is_ours([LOOP, FORWARD]) == (True, "install.<locals>.forward")  # the wrapper's own lines
    assert share.is_ours([LOOP, FORWARD, CONV, BACKWARD, RECORD]) == (True, "CommTracker._time_backward")
    assert share.is_ours([LOOP, CONV]) == (False, "")


def test_a_raw_file_is_counted_per_thread(tmp_path):
    raw = tmp_path / "pyspy_plain_wrapped_1.txt"
    raw.write_text(
        f"thread (7): MainThread;{LOOP};{FORWARD};{CONV} 90\n"
        f"thread (7): MainThread;{LOOP};{FORWARD};{CONV};{BACKWARD};{RECORD} 6\n"
        "thread (7): MainThread 4\n"
        f"thread (7);{LOOP};{CONV} 5\n"  # py-spy leaves the name off some of a thread's lines
        f"thread (9);{BACKWARD} 3\n"
        "not a sample line\n"
    )
    threads = share.parse(raw)
    assert threads["MainThread"]["samples"] == 105 and threads["MainThread"]["ddlprof"] == 6
    assert threads["thread 9"]["ddlprof"] == 3
    assert share.variant_of(raw) == ("plain", "wrapped")
