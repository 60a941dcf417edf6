"""Which of gloo's threads take the GIL in a 2-rank DDP job, and why: with and without ddlprof.

A thread other than the training thread that waits for the GIL while the interpreter finalizes
aborts the process ("terminate called without an active exception"), so ddlprof must add no such
acquisition. Each rank of ``examples/ddp_train.py`` runs under gdb, which stops at every
``PyThreadState_New`` on a thread other than the main one (how torch's C++ takes the GIL on a thread
of its own) and prints its stack; the stacks are counted by what asked for the GIL.

    python benchmarks/gloo_thread_gil.py -- --steps 14            # the job alone
    python benchmarks/gloo_thread_gil.py --wrap -- --steps 14     # under ddlprof wrap
    python benchmarks/gloo_thread_gil.py --wrap --disable probe -- --steps 14

Prints one JSON object: the job's exit code and, per rank, the count of each kind. Needs gdb.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "ddp_train.py"
GDB_COMMANDS = """\
set pagination off
set confirm off
set print thread-events off
set breakpoint pending on
handle SIGPIPE nostop noprint pass
break PyThreadState_New if $_thread != 1
commands
silent
printf "=== GIL taken on a thread of its own\\n"
bt 12
continue
end
run
"""
# what asked for the GIL, by a frame of its stack; the first that matches names it
KINDS = (
    ("PythonFunctionGuard", "python_then_callback_released"),  # its frames name the then as well
    ("PythonFutureWrapper::then", "python_then_callback_run"),
    ("ConcretePyObjectHolder", "python_result_released"),
    ("TensorImpl::decref_pyobject", "tensor_python_object_released"),
    ("ThreadLocalState", "work_thread_local_state_released"),  # torch's own: in every gloo job
)


def kind_of(stack: str) -> str:
    for marker, kind in KINDS:
        if marker in stack:
            return kind
    frames = re.findall(r"#\d+\s+(?:0x[0-9a-f]+ in )?([^\s(]+)", stack)
    return "other: " + (frames[2] if len(frames) > 2 else "?")


def count_kinds(gdb_output: str) -> dict[str, int]:
    stacks = gdb_output.split("=== GIL taken on a thread of its own")[1:]
    return dict(Counter(kind_of(stack) for stack in stacks))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch_ranks(folder: Path, script: str, train_args: list[str]) -> int:
    """Both ranks under gdb, as torchrun would start them; each rank's gdb output in ``folder``."""
    commands = folder / "gdb-commands"
    commands.write_text(GDB_COMMANDS)
    env = dict(os.environ, WORLD_SIZE="2", LOCAL_WORLD_SIZE="2", MASTER_ADDR="127.0.0.1")
    env.update(MASTER_PORT=str(free_port()), OMP_NUM_THREADS="1")
    ranks = []
    for rank in (0, 1):
        rank_env = dict(env, RANK=str(rank), LOCAL_RANK=str(rank))
        command = ["gdb", "-batch", "-x", str(commands), "--args", sys.executable, script, *train_args]
        with open(folder / f"gdb-rank{rank}.txt", "w") as out:
            ranks.append(subprocess.Popen(command, env=rank_env, stdout=out, stderr=subprocess.STDOUT))
    for process in ranks:
        process.wait()
    exits = [
        re.search(r"exited (?:normally|with code (\d+))", (folder / f"gdb-rank{r}.txt").read_text())
        for r in (0, 1)
    ]
    return 0 if all(e and e.group(1) is None for e in exits) else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--wrap", action="store_true", help="run the job under ddlprof wrap")
    parser.add_argument("--script", default=str(EXAMPLE), help="the training script (default: the example)")
    parser.add_argument("--disable", metavar="COLLECTOR", action="append", default=[], help="with --wrap")
    parser.add_argument("--keep", metavar="DIR", help="keep the gdb output (and ddlprof's run) in DIR")
    parser.add_argument("--launch-ranks", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument(
        "train_args", nargs=argparse.REMAINDER, help="after --: examples/ddp_train.py's arguments"
    )
    args = parser.parse_args()
    train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    if args.launch_ranks:  # the job ddlprof wraps
        return launch_ranks(Path(args.launch_ranks), args.script, train_args)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.keep or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        if args.wrap:
            launcher = [sys.executable, __file__, "--launch-ranks", str(folder), "--script", args.script]
            launcher += ["--", *train_args]
            options = [option for name in args.disable for option in ("--disable", name)]
            wrap = ["-m", "ddlprof", "wrap", "--out", str(folder / "run"), "--trace-steps", "0", *options]
            code = subprocess.run([sys.executable, *wrap, "--", *launcher], capture_output=True).returncode
        else:
            code = launch_ranks(folder, args.script, train_args)
        outputs = [(folder / f"gdb-rank{r}.txt").read_text() for r in (0, 1)]
        ranks = {f"rank{r}": count_kinds(output) for r, output in enumerate(outputs)}
        aborted = [
            r for r, output in enumerate(outputs) if "terminate called without an active exception" in output
        ]
    print(
        json.dumps(
            {
                "wrapped": args.wrap,
                "exit_code": code,
                "aborted_ranks": aborted,
                "args": train_args,
                "gil_on_other_threads": ranks,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
