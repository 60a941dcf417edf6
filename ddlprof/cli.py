"""The ``ddlprof`` command line: for each command an ``add_<command>`` (its flags and help) and a
``run_<command>`` (checks the flags, calls the part of ddlprof that does the work, prints), listed in
``COMMANDS``; ``main`` runs one and turns a ``DdlprofError`` into one line and an exit code.

Deferred imports, the one rule of this module: it is imported and its whole parser is built at every
start, for every command and every ``--help``. So at module level it imports only the standard
library and the light names the parser needs (the version, the collectors' names, the default runs
directory, the error type), and each ``run_<command>`` imports the parts it runs in its first lines.
The offline commands (``report``, ``advise``, ``model``, ``catalog``) then start fast and never
import torch, and ``--help`` imports none of torch, streamlit, plotly, scikit-learn or boto3
(``tests/test_layering.py`` checks ``advise --help``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ddlprof import __version__
from ddlprof.collectors.config import COLLECTORS
from ddlprof.dashboard.data import DEFAULT_RUNS
from ddlprof.errors import DdlprofError, require_torch


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and a hint, not the whole usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def bounded(kind: type, low: float, high: float) -> Callable[[str], Any]:
    """An argparse type: a finite ``kind`` (int or float) from ``low`` to ``high``, else a usage error
    naming the allowed range (NaN and infinities are refused: no option means them)."""

    lowest = "above 0" if low == TINY else f"from {_number(low)}"
    allowed = f"the allowed range: {lowest} to {_number(high)}"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {_KIND_NAMES[kind]}; {allowed}") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"{text} is outside {allowed}")
        return value

    parse.bounds = (kind, low, high)  # type: ignore[attr-defined]  # for the test that tries each option
    return parse


_KIND_NAMES = {int: "an integer", float: "a number"}


def _number(value: float) -> str:
    return f"{int(value):,}" if value == int(value) and abs(value) < 1e15 else f"{value:g}"


#: A float option that must be above zero: its smallest allowed value.
TINY = 1e-9
#: ``ddlprof.advisor.filters.MAX_NODES``, which this module may not import at start-up (a test
#: checks that they agree)
MAX_ADVISE_NODES = 256
MAX_RANKS = 1 << 20  # GPUs per node, nodes, world sizes: as a rank header may have them
MAX_BATCH = 1 << 20
MAX_MS = 1e9


def _add_command(
    commands: argparse._SubParsersAction, name: str, summary: str, text: str
) -> argparse.ArgumentParser:
    return commands.add_parser(
        name, help=summary, description=text, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def _prog(args: argparse.Namespace) -> str:
    """The command as typed, for the prefix of its error and warning lines: ``ddlprof catalog show``
    (``main`` sets it; the prefix of argparse's usage errors of that command too)."""
    return getattr(args, "command_prog", None) or f"ddlprof {args.command}"


def _command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the (sub-)command ``args`` chose: ``ddlprof model predict``'s for model predict."""
    while True:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        chosen = getattr(args, subs[0].dest, None) if subs else None
        if chosen is None:
            return parser
        parser = subs[0].choices[chosen]


def _job(args: argparse.Namespace) -> list[str]:
    """The command after the options, without the optional ``--`` before it."""
    return args.job[1:] if args.job[:1] == ["--"] else args.job


def _show(result: dict, as_json: bool, table: Callable[[dict], None]) -> int:
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        table(result)
    return 0


# -- wrap ------------------------------------------------------------------------------------------


WRAP_HELP = """\
Profile an unmodified training job. The collectors load in every training process (never in
torchrun's agent) and record each step: data-loader wait, DDP gradient communication, a few
steps of GPU timeline, and GPU counters. The job's output, exit code and signals pass through.

examples:
  ddlprof wrap torchrun --nproc_per_node=2 examples/ddp_train.py
  ddlprof wrap --out runs/r50 --trace-steps 20-22 -- python -m torch.distributed.run --nproc_per_node=8 t.py
  ddlprof wrap python train.py --epochs 1

multi-node: run `ddlprof wrap torchrun --nnodes=N ...` on every node; with a shared --out the
ranks land in one run directory, otherwise `ddlprof report DIR1 DIR2 ...` merges them.
"""


def add_wrap(commands: argparse._SubParsersAction) -> None:
    """``ddlprof wrap [options] COMMAND ...``"""
    wrap = _add_command(
        commands, "wrap", "profile a training job (torchrun, python -m ..., python train.py)", WRAP_HELP
    )
    wrap.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="run directory (default: ./ddlprof-runs/<UTC time>-<script>); never overwritten",
    )
    wrap.add_argument(
        "--trace-steps",
        default="6-8",
        metavar="STEPS",
        help="steps that get a full torch.profiler GPU timeline: '6-8', '10', '6-8,200-202', "
        "or 0 for none (default: 6-8); traced steps are left out of the averages",
    )
    wrap.add_argument("--no-gpu-sampling", action="store_true", help="do not sample GPU counters with NVML")
    wrap.add_argument(
        "--no-probe",
        action="store_true",
        help="skip the bandwidth probe that every multi-GPU job runs once after building DDP (under a "
        "second); then a multi-node run's interconnect/network split is not measured and the run "
        "records no bandwidth",
    )
    wrap.add_argument(
        "--gpu-sample-interval",
        type=bounded(float, 0.01, 3600),
        default=0.5,
        metavar="SECONDS",
        help="seconds between NVML samples, 0.01 to 3600 (default: 0.5)",
    )
    wrap.add_argument(
        "--disable",
        action="append",
        default=[],
        choices=COLLECTORS,
        metavar="COLLECTOR",
        help=f"switch a collector off (repeatable): {', '.join(COLLECTORS)}",
    )
    wrap.add_argument(
        "job",
        nargs=argparse.REMAINDER,
        metavar="COMMAND ...",
        help="the command to run (put -- before it when it could be mistaken for an option)",
    )


def run_wrap(args: argparse.Namespace) -> int:
    from ddlprof.profiler.wrap import wrap

    job = _job(args)
    disabled = [*args.disable, *(["probe"] if args.no_probe else [])]
    return wrap(job, args.out, args.trace_steps, not args.no_gpu_sampling, args.gpu_sample_interval, disabled)


# -- stalls ----------------------------------------------------------------------------------------


STALLS_HELP = """\
The differential method, automated: with the per-GPU batch fixed, run the job for a few steady
steps on one GPU, on all GPUs of one node, and as launched (or as K emulated nodes on this host),
and take the differences:

  interconnect stall = t(one node) - t(one GPU)      network stall = t(full) - t(one node)

Each variant is an ordinary ddlprof run under --out; the result goes to OUT/stalls.json. The full
job's last run is added to the local dataset ($DDLPROF_HOME/dataset.sqlite) with the one-GPU step
time beside it, so `ddlprof model fit` learns from your own models and hardware (DDLPROF_NO_STORE=1
skips it).

--data measures the input pipeline instead: the job as launched, and again with each DataLoader's
first 8 batches kept and replayed from memory (no fetch, no preparation: the loop's ceiling; at most
1 GiB kept per DataLoader); the difference is what the input pipeline costs the step in all, shown
beside the launched runs' own split of their data stall (fetch / prep / other).

examples:
  ddlprof stalls -- torchrun --nproc_per_node=2 examples/ddp_train.py --model resnet50
  ddlprof stalls --data -- torchrun --nproc_per_node=2 train.py --workers 4
  ddlprof stalls --emulate-nodes 2 -- torchrun --nproc_per_node=4 train.py     # 2 nodes x 2 GPUs
  ddlprof stalls --emulate-nodes 2 --emulate-link 2gbit -- torchrun --nproc_per_node=4 train.py
  ddlprof stalls --emulate-pcie --repeats 5 --json -- torchrun --nproc_per_node=2 train.py
"""


def add_stalls(commands: argparse._SubParsersAction) -> None:
    """``ddlprof stalls [options] -- COMMAND ...``"""
    stalls = _add_command(
        commands, "stalls", "interconnect and network stalls by differential runs", STALLS_HELP
    )
    stalls.add_argument(
        "--steps",
        type=bounded(int, 1, 100_000),
        default=20,
        help="steady steps measured per run (default: 20)",
    )
    stalls.add_argument(
        "--warmup",
        type=bounded(int, 0, 100_000),
        default=5,
        help="steps run first and not measured (default: 5)",
    )
    stalls.add_argument(
        "--repeats",
        type=bounded(int, 1, 1000),
        default=3,
        help="runs of each variant, interleaved (default: 3)",
    )
    stalls.add_argument(
        "--emulate-nodes",
        type=bounded(int, 1, 1024),
        metavar="K",
        help="split this host's GPUs into K nodes joined by NCCL's socket transport",
    )
    stalls.add_argument(
        "--emulate-link",
        metavar="RATE[,DELAY]",
        help="with --emulate-nodes: run each emulated node in its own network namespace, joined by links "
        "shaped with tc to RATE (e.g. 2gbit) and one-way DELAY (e.g. 1ms); needs root",
    )
    stalls.add_argument(
        "--emulate-pcie", action="store_true", help="turn NCCL peer-to-peer off in every variant"
    )
    stalls.add_argument(
        "--data",
        action="store_true",
        help="the input pipeline's cost: the job as launched, and with its DataLoader batches replayed",
    )
    stalls.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="where the variant runs go (default: ./ddlprof-runs/<UTC time>-stalls)",
    )
    stalls.add_argument(
        "--timeout",
        type=bounded(float, 1, 7 * 24 * 3600),
        default=900,
        metavar="SECONDS",
        help="time limit of one variant run (default: 900)",
    )
    stalls.add_argument("--json", action="store_true", help="print stalls.json to stdout instead of a table")
    stalls.add_argument("job", nargs=argparse.REMAINDER, metavar="COMMAND ...", help="the torchrun command")


def run_stalls(args: argparse.Namespace) -> int:
    require_torch("ddlprof stalls")
    from ddlprof.profiler.differential import run_stalls
    from ddlprof.profiler.netem import parse_link
    from ddlprof.profiler.render import print_data_stalls, print_stalls
    from ddlprof.profiler.wrap import default_out

    job = _job(args)
    if not job:
        raise DdlprofError("no command given; e.g. ddlprof stalls -- torchrun --nproc_per_node=2 train.py")
    out = args.out or default_out(["stalls"])
    if args.data:
        from ddlprof.profiler.data_ceiling import run_data_stalls

        if args.emulate_nodes or args.emulate_link:
            raise DdlprofError(
                "--data runs the job as launched: leave out --emulate-nodes and --emulate-link"
            )
        result = run_data_stalls(
            job, args.steps, args.repeats, args.warmup, args.emulate_pcie, out, args.timeout
        )
        return _show(result, args.json, print_data_stalls)
    link = parse_link(args.emulate_link) if args.emulate_link else None
    result = run_stalls(
        job,
        args.steps,
        args.repeats,
        args.warmup,
        args.emulate_nodes,
        args.emulate_pcie,
        out,
        args.timeout,
        link,
    )
    for warning in result["warnings"]:
        print(f"{_prog(args)}: warning: {warning}", file=sys.stderr)
    return _show(result, args.json, print_stalls)


# -- share -----------------------------------------------------------------------------------------


SHARE_HELP = """\
Pack K copies of a one-GPU training job onto one GPU and measure what it gives: for each K of -n and
each --mode, the copies run together, each an ordinary `ddlprof wrap` run under OUT/<mode>/k<K>/.
The table: aggregate samples/s, each copy's step time and slowdown against one copy alone, peak GPU
memory per copy and in total, GPU utilisation, power and energy per sample; then the K and mode with
the most samples per GPU-hour and per joule, and where adding a copy stops paying (out of memory, or
under 5% more samples/s). All from one measure: the steps and samples each copy completed in the
window where every copy was stepping, over its seconds (a copy's step time is its mean step there,
its turn's waits included; at one batch size the gain is the sum of the copies' 1/slowdown). A copy
that has done --warmup + --steps steps goes on until every copy has, then all are stopped together,
so the job must run longer than that. Copies that run out of memory are reported as such; a copy
that fails, with its exit code, its log's last line and the log (OUT/<mode>/k<K>/copy<i>.log). The
result goes to OUT/share.json; on a GPU the factors are kept in the local store ($DDLPROF_HOME) for
`ddlprof advise --jobs N`. Exit status 1 when no K gave a result.

modes: timeslice (plain concurrent processes), mps (ddlprof starts its own MPS daemon with its own
pipe and log directories, never changes the GPU's compute mode, and always stops the daemon), mig
(one copy per MIG device of a GPU that is already partitioned; ddlprof never creates partitions).
Without an NVIDIA GPU the copies run on the CPU, time-sliced.

examples:
  ddlprof share -n 1,2,4 -- python train.py --batch-size 32
  ddlprof share -n 1,2,4 --mode timeslice,mps --model resnet50 -- python train.py --model resnet50
"""


_COPIES = "the allowed range: copies from 1 to 64"


def _counts(text: str) -> list[int]:
    try:
        counts = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: copies as integers, e.g. 1,2,4; {_COPIES}") from None
    if not counts or counts[0] < 1 or counts[-1] > 64:
        raise argparse.ArgumentTypeError(f"{text!r} is outside {_COPIES}, e.g. 1,2,4")
    return counts


def _modes(text: str) -> list[str]:
    modes = _names(text)
    unknown = [m for m in modes if m not in ("timeslice", "mps", "mig")]
    if unknown or not modes:
        raise argparse.ArgumentTypeError(f"{text!r}: modes among timeslice, mps, mig")
    return list(dict.fromkeys(modes))


def add_share(commands: argparse._SubParsersAction) -> None:
    """``ddlprof share -n 1,2,4 [--mode timeslice,mps,mig] -- COMMAND ...``"""
    share = _add_command(commands, "share", "pack K copies of a one-GPU job on one GPU", SHARE_HELP)
    share.add_argument(
        "-n", dest="counts", type=_counts, default=[1, 2, 4], metavar="K1,K2", help="copies (default: 1,2,4)"
    )
    share.add_argument(
        "--mode",
        type=_modes,
        default=["timeslice"],
        metavar="MODES",
        help="timeslice, mps, mig, comma-separated (default: timeslice)",
    )
    share.add_argument(
        "--steps", type=bounded(int, 1, 100_000), default=50, help="steps measured per copy (default: 50)"
    )
    share.add_argument(
        "--warmup", type=bounded(int, 0, 100_000), default=10, help="steps first, not measured (default: 10)"
    )
    share.add_argument(
        "--out", type=Path, metavar="DIR", help="where the runs go (default: ./ddlprof-runs/<UTC time>-share)"
    )
    share.add_argument(
        "--timeout",
        type=bounded(float, 1, 7 * 24 * 3600),
        default=1800,
        metavar="SECONDS",
        help="time limit of one K (default: 1800)",
    )
    share.add_argument(
        "--model",
        metavar="NAME",
        help="the name advise knows the job's model by, to store the factors under (default: the script's)",
    )
    share.add_argument("--no-store", action="store_true", help="keep nothing in the local store")
    share.add_argument("--json", action="store_true", help="print share.json to stdout instead of a table")
    share.add_argument("job", nargs=argparse.REMAINDER, metavar="COMMAND ...", help="the one-GPU job")


def run_share(args: argparse.Namespace) -> int:
    from ddlprof.profiler.render import print_share
    from ddlprof.profiler.share import run_share as share
    from ddlprof.profiler.wrap import default_out

    job = _job(args)
    out = args.out or default_out(["share"])
    result = share(
        job, args.counts, args.mode, args.steps, args.warmup, out, args.timeout, args.model, not args.no_store
    )
    _show(result, args.json, print_share)
    if not any(group["status"] == "ok" for group in result["groups"]):
        why = "; ".join(f"{g['mode']} K={g['copies']} {g['status']}" for g in result["groups"])
        print(
            f"ddlprof share: error: no K produced a result ({why}); {out / 'share.json'} has why",
            file=sys.stderr,
        )
        return 1
    return 0


# -- analyze ---------------------------------------------------------------------------------------


ANALYZE_HELP = """\
The step breakdown from Kineto traces written by any torch.profiler run (tensorboard_trace_handler
output: one .json or .json.gz file per rank), with no ddlprof wrap involved. Per rank and per step
(ProfilerStep#N): compute, exposed communication, memory copies and idle time on the device
timeline (they add up to the step), the exposed communication split into waiting for the last rank
to reach the all-reduce and time on the wire (the traces' clock; ranks of one host), data-loader time
where the trace shows it, the share of communication overlapped with compute, and straggler ranks,
each charged with the waiting it caused. Files are streamed, never loaded whole.

examples:
  ddlprof analyze ./log/resnet50                  # a tensorboard_trace_handler directory
  ddlprof analyze --json rank0.pt.trace.json.gz rank1.pt.trace.json.gz
"""


def add_analyze(commands: argparse._SubParsersAction) -> None:
    """``ddlprof analyze TRACE_DIR_OR_FILE ...``"""
    analyze = _add_command(
        commands,
        "analyze",
        "the step breakdown from any torch.profiler traces (one file per rank)",
        ANALYZE_HELP,
    )
    analyze.add_argument("traces", nargs="+", type=Path, metavar="TRACE_DIR_OR_FILE")
    analyze.add_argument("--json", action="store_true", help="print the analysis as JSON instead of a table")
    analyze.add_argument(
        "--jobs",
        type=bounded(int, 1, 1024),
        help="files read at a time, a worker process each (default: one per file, up to the CPU count "
        "and what the available memory holds)",
    )


def run_analyze(args: argparse.Namespace) -> int:
    from ddlprof.profiler.render import print_analysis
    from ddlprof.profiler.trace_analysis import analyze

    return _show(analyze(args.traces, args.jobs), args.json, print_analysis)


# -- report ----------------------------------------------------------------------------------------


REPORT_HELP = """\
Merge the ranks (and nodes) of a run, drop warm-up and traced steps, and show where the step time
went per rank and for the job. The categories add up to the step time:
compute_ms + data_stall_ms + interconnect_stall_ms + network_stall_ms + wait_for_peers_ms + other_ms
= step_ms, where the two stalls are time on the wire and wait_for_peers_ms the wait for the last rank
to reach the all-reduce, charged to that rank (ranks of one host, CPU clock; null elsewhere).
Writes summary.json into the (first) run directory, and adds the run to the local dataset
(SQLite in $DDLPROF_HOME, default ~/.ddlprof: one row per run, replaced when the run is reported
again) that the stall models learn from; --no-store or DDLPROF_NO_STORE=1 skips that.

examples:
  ddlprof report ddlprof-runs/20261123T101500Z-train
  ddlprof report --json RUN | jq .job
  ddlprof report --html report.html RUN
  ddlprof report node0-run node1-run     # a multi-node job profiled into separate directories
"""


def add_report(commands: argparse._SubParsersAction) -> None:
    """``ddlprof report RUN_DIR ...``"""
    report = _add_command(
        commands, "report", "where the step time went, per rank and for the job", REPORT_HELP
    )
    report.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    report.add_argument("--json", action="store_true", help="print summary.json to stdout instead of a table")
    report.add_argument(
        "--html",
        type=Path,
        metavar="FILE",
        help="also write a self-contained HTML report to FILE (a new file)",
    )
    report.add_argument(
        "--warmup",
        type=bounded(int, 0, 10**12),
        metavar="N",
        help="steps to drop at the start (default: a fifth of the steps, 1 to 10)",
    )
    report.add_argument(
        "--no-store",
        action="store_true",
        help="do not add the run to the local dataset in $DDLPROF_HOME (default ~/.ddlprof)",
    )


def run_report(args: argparse.Namespace) -> int:
    from ddlprof.profiler.report import report

    return report(args.runs, as_json=args.json, html=args.html, warmup=args.warmup, store=not args.no_store)


# -- trace -----------------------------------------------------------------------------------------


TRACE_HELP = """\
The trace windows of a run (--trace-steps of ddlprof wrap). Without --merge: each window with every
rank's steps, trace file and size, and the command that merges one. --merge writes one Chrome-trace
JSON file of a window holding every rank, each as its own processes (rank N CPU, rank N GPU d, rank N
ddlprof), on one clock (Unix time, from Kineto's baseTimeNanoseconds), with ddlprof's step markers and
its per-step breakdown as a counter track: Perfetto (ui.perfetto.dev) opens the whole window in one
tab. Traces are streamed, never loaded whole; an existing OUT is never replaced. TensorBoard reads
RUN/traces as it is: pip install 'ddlprof[tensorboard]', then tensorboard --logdir RUN/traces.

examples:
  ddlprof trace RUN                                     # the windows, per rank: steps, file, size
  ddlprof trace RUN --merge window.json.gz
  ddlprof trace RUN --merge late.json --window 500      # the window that starts at step 500
"""


def add_trace(commands: argparse._SubParsersAction) -> None:
    """``ddlprof trace RUN [--merge OUT]``"""
    trace = _add_command(
        commands,
        "trace",
        "a run's trace windows, or one window of every rank merged into one Perfetto-ready file",
        TRACE_HELP,
    )
    trace.add_argument("run", type=Path, metavar="RUN_DIR")
    trace.add_argument(
        "--merge",
        type=Path,
        metavar="OUT",
        help="the merged file to write: OUT.json.gz (gzip) or OUT.json; never overwritten (default: list "
        "the windows, write nothing)",
    )
    trace.add_argument(
        "--window",
        type=bounded(int, 0, 10**12),
        metavar="FIRST_STEP",
        help="the window that starts at this step, when the run has several (default: the first; without "
        "--merge: all)",
    )
    trace.add_argument("--json", action="store_true", help="print the result as one JSON line")


def run_trace(args: argparse.Namespace) -> int:
    from ddlprof.profiler.trace_merge import list_windows, merge_window, windows_lines
    from ddlprof.runs.rundir import load_run

    run = load_run(args.run)
    if args.merge is None:
        listing = list_windows(run, args.window)
        print(json.dumps(listing) if args.json else "\n".join(windows_lines(listing)))
        return 0
    result = merge_window(run, args.merge, args.window)
    print(json.dumps(result.as_dict()) if args.json else result.line())
    return 0


# -- model -----------------------------------------------------------------------------------------


MODEL_HELP = """\
Workload models: the DNN macro features, and the stall and step-time models learned from them and
from the measured stall dataset (2 x H200 in one host: world size 2 only, no multi-node data).
Each sub-command has its own --help.

examples:
  ddlprof model features resnet50
  ddlprof model features --json bert-base
  ddlprof model evaluate
  ddlprof model predict --model resnet50 --batch-per-gpu 32 --gpus-per-node 2 --gpu H200
"""


MODEL_FEATURES_HELP = """\
The macro features of a model, in seconds, from shapes alone: the model is built on PyTorch's meta
device (no weights, no download, no GPU) and one forward and backward pass of a sample batch runs
on fake tensors.

  num_layers, num_grad_tensors,   modules holding parameters, parameters that need gradients,
  num_params, grad_bytes          all parameters, bytes all-reduced per step
  num_buckets, bucket_bytes       DDP's gradient buckets, by DDP's own assignment function in the
                                  order gradients become ready (what DDP uses from iteration 2 on)
  flops_per_sample                forward + backward, torch.utils.flop_counter (2 per multiply-add)
  memory_bytes                    weights, gradients, DDP bucket buffers, optimizer state and
                                  activations (tensors saved for backward) at --batch-per-gpu

NAME_OR_PATH is one of
  a torchvision classification model   resnet50, vgg16, efficientnet_b0, vit_b_16, swin_t, ...
  a transformers architecture          bert-base, bert-large, distilbert-base, roberta-base,
    (published config, no weights)     roberta-large, gpt2, gpt2-medium, gpt2-large, t5-small,
                                       t5-base, vit-base, vit-large
  a timm model (timm installed)        convnext_nano, or timm/resnet50 where torchvision has the name
  your own model                       FILE.py:FACTORY, FACTORY() returning an nn.Module; the input
                                       is guessed from the first layer, or define
                                       sample_input(batch_size) in FILE.py

examples:
  ddlprof model features resnet50
  ddlprof model features bert-base --batch-per-gpu 16 --optimizer adam --dtype bfloat16
  ddlprof model features --json gpt2 | jq .bucket_bytes
  ddlprof model features --bucket-cap-mb 50 my_model.py:build
"""


MODEL_FIT_HELP = """\
Fit the stall models on the shipped dataset (ddlprof/models/data/stall_dataset.csv: 20 models x
batch 32/64 x NVLink/PCIe/socket on 2 x H200, one host) plus the usable runs from the local store
of reported runs, validate them leave-one-model-out, and save them as JSON (no pickle) to
$DDLPROF_HOME/models/stall_models.json (default ~/.ddlprof), stamped with the ddlprof version and a
hash of the rows. predict refits by itself when that file is missing or stale.

  baseline   ring all-reduce per DDP bucket (latency + 2(n-1)/n x bytes / busbw), hidden under the
             backward pass (2/3 of the single-GPU step), the last bucket always exposed; not fitted
  learned    non-negative linear regression of the stall on the ring terms, the exposed
             communication, DDP's number of gradient tensors and the single-GPU step

examples:
  ddlprof model fit
  ddlprof model fit --json | jq .learned.coef
"""


MODEL_EVALUATE_HELP = """\
Leave-one-model-out cross-validation (every model's rows held out in turn, the learned model
refitted on the rest): per target, the baseline's and the learned model's mean absolute percentage
error (step time) and mean absolute error in ms. The network stall is not evaluable on the shipped
data: every row is single-node (world size 2 only).

examples:
  ddlprof model evaluate
  ddlprof model evaluate --json | jq .targets.step_ms
"""


MODEL_PREDICT_HELP = """\
Predict a DDP job's step time, interconnect stall and network stall without running it:

  step_ms = single_gpu_step_ms + interconnect_stall_ms + network_stall_ms

The single-GPU step is yours (--single-gpu-step-ms, e.g. from `ddlprof stalls`), or, for the 20
models of the dataset: your `ddlprof calibrate` step of that GPU type, else the step ddlprof measured
on that GPU type (the H100 today), else either of those of a GPU type with the same chip at that
precision (the H100's for an H200, an A100-80GB's for an A100-40GB) with its memory-bound part scaled
by the bandwidths, else the step measured on one H200 scaled to --gpu and --precision by roofline
ratios. The H200 steps ran in fp32 under PyTorch's defaults (TF32 convolutions, fp32 matmuls); the
default --precision amp (autocast to bf16 where the GPU has BF16, else fp16) credits the GPU's 16-bit
peak and halves the activations' bytes. The precision used is printed.
The intra-node bandwidth defaults from --gpu (NVLink or PCIe generation, calibrated on the measured
H200 pair); the inter-node one has no default. The features of the dataset's models are shipped
(no torch); any other model name, or FILE.py:FACTORY, is built on the meta device (imports torch).

Every input's source is printed. Warnings flag what lies outside the training data: world size
other than 2, more than one node (never measured), bandwidth outside 4-297 GB/s, batch outside
32-64. The result names the model used (learned or baseline) and its leave-one-model-out error.

examples:
  ddlprof model predict --model resnet50 --batch-per-gpu 32 --gpus-per-node 2 --gpu H200
  ddlprof model predict --model bert-base --batch-per-gpu 64 --gpus-per-node 8 --gpu A100-80GB
  ddlprof model predict --model vgg16 --batch-per-gpu 32 --gpus-per-node 2 --single-gpu-step-ms 26 \\
      --intra-busbw-gbps 28 --json
  ddlprof model predict --model resnet50 --batch-per-gpu 64 --gpus-per-node 8 --nodes 2 --gpu H100 \\
      --inter-busbw-gbps 40
"""


def add_model(commands: argparse._SubParsersAction) -> None:
    """``ddlprof model SUB-COMMAND``: features, fit, evaluate, predict."""
    model = _add_command(commands, "model", "DNN macro features and the stall models", MODEL_HELP)
    model_commands = model.add_subparsers(
        dest="model_command", metavar="MODEL_COMMAND", parser_class=_Parser, required=True
    )
    features = _add_command(
        model_commands,
        "features",
        "layers, gradients, DDP buckets, FLOPs and memory of a model, without weights",
        MODEL_FEATURES_HELP,
    )
    features.add_argument("model", metavar="NAME_OR_PATH", help="a model name or FILE.py:FACTORY")
    features.add_argument(
        "--batch-per-gpu",
        type=bounded(int, 1, MAX_BATCH),
        default=32,
        metavar="B",
        help="samples per GPU per step (default: 32)",
    )
    features.add_argument(
        "--bucket-cap-mb",
        type=bounded(float, TINY, 1e6),
        metavar="MB",
        help="DDP's bucket_cap_mb (default: DDP's own, 25 MiB after a 1 MiB first bucket; when given, "
        "the first bucket has this cap too, as in DDP)",
    )
    features.add_argument(
        "--seq-len",
        type=bounded(int, 1, 1 << 20),
        default=128,
        metavar="N",
        help="tokens per sample for text models (default: 128)",
    )
    features.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "bfloat16", "float16"),
        help="parameter and activation type (default: float32)",
    )
    features.add_argument(
        "--optimizer",
        default="sgd",
        choices=("sgd", "adam", "adamw", "none"),
        help="optimizer state in the memory estimate: sgd (momentum, 1x the gradients), adam/adamw "
        "(2x), none (default: sgd)",
    )
    features.add_argument("--json", action="store_true", help="print the features as JSON instead of a table")

    fit = _add_command(model_commands, "fit", "fit the stall models and save them as JSON", MODEL_FIT_HELP)
    fit.add_argument("--json", action="store_true", help="print the fitted models as JSON instead of a table")
    evaluate = _add_command(
        model_commands, "evaluate", "leave-one-model-out errors of the stall models", MODEL_EVALUATE_HELP
    )
    evaluate.add_argument(
        "--json", action="store_true", help="print the evaluation as JSON instead of a table"
    )
    _add_predict_command(model_commands)


def _add_predict_command(model_commands: argparse._SubParsersAction) -> None:
    predict = _add_command(
        model_commands, "predict", "step time and stalls of a DDP job that has not run", MODEL_PREDICT_HELP
    )
    predict.add_argument("--model", required=True, metavar="NAME", help="a model name or FILE.py:FACTORY")
    predict.add_argument(
        "--batch-per-gpu",
        type=bounded(int, 1, MAX_BATCH),
        required=True,
        metavar="B",
        help="samples per GPU per step",
    )
    predict.add_argument(
        "--gpus-per-node", type=bounded(int, 1, 1024), required=True, metavar="G", help="GPUs in each node"
    )
    predict.add_argument(
        "--nodes", type=bounded(int, 1, MAX_RANKS), default=1, metavar="N", help="nodes (default: 1)"
    )
    single = predict.add_mutually_exclusive_group(required=False)
    single.add_argument(
        "--single-gpu-step-ms",
        type=bounded(float, TINY, MAX_MS),
        metavar="MS",
        help="the measured step time on one GPU, in ms",
    )
    single.add_argument(
        "--gpu",
        metavar="TYPE",
        help="a GPU type (H200, A100-80GB, T4, ...): the dataset's H200 step scaled to it (its models only)",
    )
    predict.add_argument(
        "--intra-busbw-gbps",
        type=bounded(float, TINY, 1e6),
        metavar="X",
        help="all-reduce bus bandwidth among the GPUs of a node, GB/s (default: from --gpu)",
    )
    predict.add_argument(
        "--inter-busbw-gbps",
        type=bounded(float, TINY, 1e6),
        metavar="Y",
        help="all-reduce bus bandwidth across all ranks of a multi-node job, GB/s (no default)",
    )
    predict.add_argument(
        "--precision",
        choices=("amp", "fp32", "tf32", "fp16", "bf16"),
        help="math the step is predicted at with --gpu (default: amp, autocast to bf16 where the GPU has "
        "it, else fp16); the dataset's step, measured at tf32 (CNNs) or fp32, is scaled to it",
    )
    predict.add_argument(
        "--use",
        choices=("auto", "learned", "baseline"),
        default="auto",
        help="stall model (default: auto, the one with the lower validation error)",
    )
    predict.add_argument(
        "--instance",
        metavar="TYPE",
        help="a cloud instance type from `ddlprof catalog list`: its GPU type (instead of --gpu) and, for "
        "--nodes > 1, its network bandwidth as the inter-node bandwidth",
    )
    predict.add_argument(
        "--json", action="store_true", help="print the prediction as JSON instead of a table"
    )


def run_model(args: argparse.Namespace) -> int:
    handlers = {
        "features": _run_model_features,
        "fit": _run_model_fit,
        "evaluate": _run_model_evaluate,
        "predict": _run_model_predict,
    }
    return handlers[args.model_command](args)


def _run_model_fit(args: argparse.Namespace) -> int:
    from ddlprof.models.registry import fit
    from ddlprof.models.render import print_fit

    fitted = fit()
    saved = not any(note.startswith("fitted models not saved") for note in fitted.notes)
    result = {**fitted.record, "path": str(fitted.path), "saved": saved, "notes": fitted.notes}
    return _show(result, args.json, print_fit)


def _run_model_evaluate(args: argparse.Namespace) -> int:
    from ddlprof.models.dataset import training_rows
    from ddlprof.models.evaluate import evaluate
    from ddlprof.models.render import print_evaluation

    rows, info = training_rows()
    return _show({**evaluate(rows), "training": info}, args.json, print_evaluation)


def _run_model_predict(args: argparse.Namespace) -> int:
    from ddlprof.models.gpus import DEFAULT_PRECISION
    from ddlprof.models.predict import predict
    from ddlprof.models.render import print_prediction

    instance = None
    if args.instance is not None:
        from ddlprof.advisor.catalog import load_catalog

        instance = load_catalog().instance(args.instance)
    result = predict(
        args.model,
        batch_per_gpu=args.batch_per_gpu,
        gpus_per_node=args.gpus_per_node,
        nodes=args.nodes,
        single_gpu_step_ms=args.single_gpu_step_ms,
        gpu=args.gpu,
        intra_busbw_gbps=args.intra_busbw_gbps,
        inter_busbw_gbps=args.inter_busbw_gbps,
        # --precision matters only for a step scaled to a GPU type: amp unless told
        precision=args.precision or (None if args.single_gpu_step_ms is not None else DEFAULT_PRECISION),
        use=args.use,
        instance=instance,
    )
    return _show(result, args.json, print_prediction)


def _run_model_features(args: argparse.Namespace) -> int:
    torch = require_torch("ddlprof model features")
    from ddlprof.models.features import NO_GRADIENTS, macro_features
    from ddlprof.models.render import print_features

    result = macro_features(
        args.model,
        batch_per_gpu=args.batch_per_gpu,
        bucket_cap_mb=args.bucket_cap_mb,
        dtype=getattr(torch, args.dtype),
        optimizer=args.optimizer,
        seq_len=args.seq_len,
    )
    if result["num_grad_tensors"] == 0:
        print(f"ddlprof model features: warning: {result['model']}: {NO_GRADIENTS}", file=sys.stderr)
    return _show(result, args.json, print_features)


# -- catalog ---------------------------------------------------------------------------------------


CATALOG_HELP = """\
The cloud instance and price catalog that `ddlprof advise` ranks: GPU instance types of AWS and
GCP (GPUs, memory, intra-node GPU link, network, EFA) and their on-demand and spot prices per
region, in USD per hour. It is a dated snapshot of public figures: every price carries its source
and date, and a figure that could not be established is empty (never guessed). A warning goes to
stderr when a price shown (or the snapshot) is older than 30 days: it names each cloud's oldest price
date among those shown, with its age, and the snapshot's date and age (the date of its newest source).

examples:
  ddlprof catalog list
  ddlprof catalog list --cloud gcp --gpu A100-80GB
  ddlprof catalog show p4d.24xlarge
  ddlprof catalog show a2-highgpu-8g --region us-central1 --json | jq .prices
  ddlprof catalog refresh aws          # current prices into ~/.ddlprof/catalog (needs AWS credentials)

The snapshot in use: $DDLPROF_CATALOG_DIR when set (a directory with instances.csv, prices.csv,
catalog.json); else the one `ddlprof catalog refresh` wrote to $DDLPROF_HOME/catalog (default
~/.ddlprof/catalog), when there is one; else the one shipped with ddlprof. list and show say which.
"""


LIST_HELP = """\
One row per instance type: GPUs, GPU memory, vCPUs, host memory, the link between the GPUs of one
instance (NVLink/NVSwitch generation or PCIe, with GB/s per GPU), network Gbit/s ("up to" marks
burst bandwidth), EFA, the on-demand and spot price range over the regions priced in the snapshot,
and how many regions that is.

examples:
  ddlprof catalog list
  ddlprof catalog list --cloud aws --gpu H100
  ddlprof catalog list --json | jq '.instances[] | select(.gpu_count == 8) | .instance_type'
"""


SHOW_HELP = """\
The specs of one instance type and its prices in every region of the snapshot (or in --region),
each with the source it was taken from and that source's date.

examples:
  ddlprof catalog show g5.12xlarge
  ddlprof catalog show p5.48xlarge --region us-east-1
  ddlprof catalog show a3-highgpu-8g --json
"""


REFRESH_HELP = """\
Fetch current prices from a cloud's own API and write a new catalog snapshot (default:
$DDLPROF_HOME/catalog, i.e. ~/.ddlprof/catalog, which list, show and advise then use). Instance types
and machine shapes stay as the snapshot has them; the other cloud's rows are kept unchanged.

  aws  boto3 with your usual AWS credentials: on-demand prices from the Price List API
       (pricing.get_products), spot prices from ec2.describe_spot_price_history (per region: the
       lowest of its availability zones, as in the shipped snapshot), and vCPUs, memory, network
       and EFA from ec2.describe_instance_types. Needs pricing:GetProducts,
       ec2:DescribeSpotPriceHistory and ec2:DescribeInstanceTypes. Interruption buckets come from
       the Spot Instance Advisor's public file (spot-bid-advisor.s3.amazonaws.com, no credentials);
       if it cannot be read, the prices are written without buckets and one warning says so.
  gcp  the Cloud Billing Catalog API (Compute Engine, service 6F81-5844-456A) with an API key
       (GOOGLE_API_KEY or --api-key): on-demand and spot prices as the sum of each machine's vCPU,
       memory, GPU (and bundled local SSD) SKUs.

The new files are checked like any catalog before they replace the old ones in one step; a refresh
that fails (no credentials, no network, an API error or a bad answer) writes nothing. Every price
gets the API call it came from as its source and the refresh day as its date.

examples:
  ddlprof catalog refresh aws
  ddlprof catalog refresh aws --regions us-east-1,us-west-2 --dry-run
  GOOGLE_API_KEY=... ddlprof catalog refresh gcp
  ddlprof catalog refresh gcp --out /shared/ddlprof-catalog   # then DDLPROF_CATALOG_DIR=/shared/...
"""


def add_catalog(commands: argparse._SubParsersAction) -> None:
    """Register ``ddlprof catalog`` (sub-commands list, show and refresh) on ``commands``."""
    catalog = _add_command(
        commands, "catalog", "the cloud instance and price catalog (list, show, refresh)", CATALOG_HELP
    )
    sub = catalog.add_subparsers(
        dest="catalog_command", metavar="CATALOG_COMMAND", parser_class=_Parser, required=True
    )
    listing = _add_command(
        sub, "list", "instance types with GPUs, links, network and price ranges", LIST_HELP
    )
    listing.add_argument("--cloud", metavar="CLOUD", help="only this cloud: aws or gcp")
    listing.add_argument("--gpu", metavar="GPU", help="only this GPU model, e.g. A100-40GB, H100, T4, L4")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")

    show = _add_command(sub, "show", "one instance type: specs and per-region prices with sources", SHOW_HELP)
    show.add_argument(
        "instance", metavar="INSTANCE", help="an instance type, e.g. p4d.24xlarge or a2-highgpu-8g"
    )
    show.add_argument("--region", metavar="REGION", help="only this region, e.g. us-east-1 or us-central1")
    show.add_argument("--json", action="store_true", help="print JSON instead of a table")

    refresh = _add_command(
        sub, "refresh", "fetch current prices from the AWS or GCP API into a new snapshot", REFRESH_HELP
    )
    refresh.add_argument("cloud", metavar="CLOUD", help="aws or gcp")
    refresh.add_argument(
        "--regions",
        metavar="R1,R2",
        help="only these regions (default: the cloud's regions in the current snapshot); rows of other "
        "regions are kept as they are",
    )
    refresh.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="snapshot directory to write (default: $DDLPROF_HOME/catalog); its current snapshot, if any, "
        "is the one refreshed",
    )
    refresh.add_argument(
        "--dry-run",
        action="store_true",
        help="fetch and check the new snapshot, show the changes, write nothing",
    )
    refresh.add_argument(
        "--api-key",
        metavar="KEY",
        help="gcp: Google API key (default: $GOOGLE_API_KEY, which keeps it out of ps)",
    )
    refresh.add_argument(
        "--endpoint",
        metavar="URL",
        help="gcp: Cloud Billing API base URL (default: https://cloudbilling.googleapis.com)",
    )
    refresh.add_argument("--json", action="store_true", help="print a JSON summary instead of text")


def run_catalog(args: argparse.Namespace) -> int:
    if args.catalog_command == "refresh":
        from ddlprof.advisor.catalog.refresh import fetcher_for, print_summary, progress_printer, refresh

        regions = [r for r in (args.regions or "").split(",") if r.strip()] or None
        fetcher = fetcher_for(args.cloud, args.api_key, args.endpoint)
        summary = refresh(
            fetcher, regions=regions, out=args.out, dry_run=args.dry_run, progress=progress_printer()
        )
        for warning in summary["warnings"]:
            print(f"ddlprof catalog refresh: warning: {warning}", file=sys.stderr)
        return _show(summary, args.json, print_summary)

    from ddlprof.advisor.catalog import load_catalog
    from ddlprof.advisor.catalog.browse import details, listing, print_snapshot_line

    catalog = load_catalog()
    # Look everything up first: bad input is one error line, without the staleness warning.
    if args.catalog_command == "list":
        result, render, warning = listing(catalog, args.cloud, args.gpu)
    else:
        result, render, warning = details(catalog, args.instance, args.region)
    if warning:
        print(f"{_prog(args)}: warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        render()
        print_snapshot_line(catalog)
    return 0


# -- calibrate -------------------------------------------------------------------------------------


CALIBRATE_HELP = """\
Measure the single-GPU step of a model on the GPU you are on, and keep it in the local store
($DDLPROF_HOME/dataset.sqlite, default ~/.ddlprof) so that `ddlprof advise` and `ddlprof model
predict` use it for that GPU type from then on, instead of scaling a step measured on another GPU
by roofline ratios (the widest error of the advice on GPUs with no published or measured reference:
T4, L4, L40S, A10G). Rent one cheap instance for ten minutes before you commit the budget.

Per model: the model is built with real (random) weights on the device, then --warmup untimed and
--steps timed training steps run on a synthetic batch made on the device (forward, mean of the output
as the loss, backward, SGD with momentum, CUDA synchronised; one process, no DDP). The median step is
stored with the GPU type (torch's device name looked up in the GPU specs table), precision, batch,
torch and CUDA versions and the date, replacing an older calibration of the same GPU type, model,
precision and batch. Calibrate two batches (e.g. 32 and 64) and every batch between and beyond is a
straight line through them; one batch is used at that batch only.

On a machine without CUDA the steps run on the CPU: the result is printed and not stored (a CPU is
not a GPU type advise prices).

examples:
  ddlprof calibrate                                   # resnet50 and bert-base, batch 32, 30 steps, amp
  ddlprof calibrate --model resnet50 --batch-per-gpu 64 --precision tf32
  ddlprof calibrate --model my_net.py:build --steps 50 --json
  ddlprof advise --model resnet50 --budget 100        # the L4 options now say "calibrated ... on DATE"
"""

#: What ``ddlprof calibrate`` measures when no --model is given: a CNN and a transformer of the zoo.
CALIBRATE_MODELS = ("resnet50", "bert-base")


def add_calibrate(commands: argparse._SubParsersAction) -> None:
    """``ddlprof calibrate [--model NAME ...] [options]``."""
    calibrate = _add_command(
        commands,
        "calibrate",
        "measure a model's step on this GPU and keep it for advise and model predict",
        CALIBRATE_HELP,
    )
    calibrate.add_argument(
        "--model",
        action="append",
        metavar="NAME",
        help=f"a model name or FILE.py:FACTORY, repeatable (default: {', '.join(CALIBRATE_MODELS)})",
    )
    calibrate.add_argument(
        "--batch-per-gpu",
        type=bounded(int, 1, MAX_BATCH),
        default=32,
        metavar="B",
        help="samples per step (default: 32)",
    )
    calibrate.add_argument(
        "--precision",
        choices=("amp", "bf16", "fp16", "tf32", "fp32"),
        default="amp",
        help="amp (the default, as advise's): autocast to bf16 where the GPU has BF16 tensor cores, else "
        "fp16, stored as that; bf16/fp16: that autocast; tf32/fp32: TF32 on/off",
    )
    calibrate.add_argument(
        "--steps", type=bounded(int, 1, 100_000), default=30, metavar="N", help="timed steps (default: 30)"
    )
    calibrate.add_argument(
        "--warmup",
        type=bounded(int, 0, 100_000),
        default=5,
        metavar="N",
        help="untimed steps first (default: 5)",
    )
    calibrate.add_argument(
        "--gpu",
        metavar="TYPE",
        help="store as this GPU type of the specs table (default: torch's device name, looked up)",
    )
    calibrate.add_argument("--no-store", action="store_true", help="measure and print, store nothing")
    calibrate.add_argument("--json", action="store_true", help="print the measurements as JSON")


def run_calibrate(args: argparse.Namespace) -> int:
    require_torch("ddlprof calibrate")
    from ddlprof.models import zoo
    from ddlprof.models.benchmark import calibrate, device
    from ddlprof.models.calibration import amp_precision, gpu_type, store_calibration
    from ddlprof.runs.store import database_path

    for name in args.model or CALIBRATE_MODELS:  # an unknown model is its one line, before anything else
        zoo.resolve(name)
    where, device_name = device()
    if args.precision == "amp":
        cuda = where.type == "cuda"
        args.precision = amp_precision(
            (args.gpu or device_name) if cuda else None, cuda and torch_bf16_supported()
        )
    store_as, not_stored = None, None
    if where.type == "cpu":
        if args.gpu:
            raise DdlprofError(f"--gpu {args.gpu}: no CUDA GPU here; a CPU step is never stored as a GPU")
        not_stored = "measured on the CPU (no CUDA GPU here): a CPU is not a GPU type advise prices"
        print("ddlprof calibrate: no CUDA GPU here: the steps run on the CPU, not stored", file=sys.stderr)
    elif args.no_store:
        not_stored = "--no-store"
    else:
        store_as = gpu_type(args.gpu or device_name)
    results = []
    for name in args.model or CALIBRATE_MODELS:
        result = _calibrate_one(calibrate, name, args, where.type == "cuda" or sys.stderr.isatty())
        if store_as is not None:
            store_calibration(result, store_as)
            result["stored"] = {"gpu": store_as, "store": str(database_path())}
        else:
            result["stored"] = None
            result["not_stored"] = not_stored
        results.append(result)
        if not args.json:
            _print_calibration(result)
    if args.json:
        print(json.dumps({"calibrations": results}, indent=2))
    return 0


def torch_bf16_supported() -> bool:
    import torch

    return bool(torch.cuda.is_bf16_supported())


def _calibrate_one(calibrate: Callable, name: str, args: argparse.Namespace, bar: bool) -> dict:
    if not bar:
        return calibrate(name, args.batch_per_gpu, args.precision, args.steps, args.warmup)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(f"calibrating {name}", total=args.warmup + args.steps)
        return calibrate(
            name,
            args.batch_per_gpu,
            args.precision,
            args.steps,
            args.warmup,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )


def _print_calibration(result: dict) -> None:
    times = sorted(result["steps_ms"])
    print(
        f"{result['model']} on {result['device_name']}: {result['step_ms']:.2f} ms per step (median of "
        f"{len(times)}, {times[0]:.2f}-{times[-1]:.2f} ms), {result['samples_per_s']:,.1f} samples/s "
        f"at batch {result['batch_per_gpu']}, {result['precision']} ({result['precision_settings']}); torch "
        f"{result['torch']}, CUDA {result['cuda'] or 'none'}, {result['date']}"
    )
    stored = result["stored"]
    if stored:
        print(
            f"  stored for {stored['gpu']} in {stored['store']}: advise and model predict use it as the "
            f"single-GPU step of {result['model']} on {stored['gpu']}"
        )
    else:
        print(f"  not stored: {result['not_stored']}")


# -- advise ----------------------------------------------------------------------------------------


ADVISE_HELP = """\
Rank every way to train a model on AWS and GCP: instance type x number of instances x region x
on-demand or spot, by cost per throughput (USD per 1M samples), within a budget and a deadline.
For each option: the step time (predicted by the stall models for the 20 measured models, or
measured from --run), throughput, hours to finish the workload, total cost (hours x price x
instances, plus the expected cost of spot interruptions), and where each number comes from
(measured / predicted with its validation error / catalog snapshot date). Pareto-optimal options
(no other option is both faster and cheaper) are marked. Offline: no network, no GPU, no torch.

precision: --precision amp (the default: autocast to bf16 where the GPU has BF16 tensor cores,
Ampere and later, else fp16), tf32, fp32, fp16 or bf16. A measured step (the dataset's H200 step at
tf32/fp32, a --run at the precision it recorded) is scaled to each GPU and precision; a run's measured
step is shown as measured only at its own precision. Each row shows the precision it is for. Before
any scaling come, for an option's GPU type and precision, your own `ddlprof calibrate` steps, then the
steps ddlprof measured on that GPU type (the H100 today; their error adds the measured spread between
two machines of the type), then either of those of the same chip (an H200 from the H100's, an
A100-40GB from an A100-80GB's), scaled by memory bandwidth alone; the basis column says which.

workload: --samples N (per epoch) or --dataset NAME|SIZE, times --epochs. Defaults: ImageNet-1k
(1,281,167 images) x 90 epochs for the ImageNet models (resnet50, vgg16, vit_b_16, ...), BERT-Base
pre-training (1M steps x 256 sequences) for bert-base; other models need --samples.

spot: each interruption loses half a --checkpoint-interval of work plus a --restart-time. The rate
(interruptions per instance per day) is --interruptions-per-day when given (for every spot option,
AWS too); else the AWS Spot Instance Advisor bucket of the catalog row, its midpoint as the rate per
month and its upper edge as the high end of the range; else (GCP publishes no rate) an assumed 20% a
month, the lower edge of AWS's worst bucket, named as such in each option. --explain shows the rate,
expected interruptions, hours and USD lost for the top options.

data: --data-region REGION --dataset-gb GB adds, to each option in another region or cloud, the cost
of moving the dataset there once at the source cloud's published egress price (sources and dates in
advisor/data/egress.csv; a route without one is excluded, never priced at 0). Every option runs in
one region, so no gradient traffic crosses regions: none is modelled.

examples:
  ddlprof advise --model resnet50 --budget 100
  ddlprof advise --model bert-base --deadline 72 --clouds aws --no-spot
  ddlprof advise --model vit_b_16 --batch-per-gpu 64 --dataset imagenet-1k --epochs 300 --json
  ddlprof advise --model resnet50 --regions us-east-1,us-central1 --max-nodes 2 --explain
  ddlprof advise --model resnet50 --budget 100 --emit skypilot > task.yaml
  ddlprof advise --model resnet50 --budget 100 --data-region us-east-1 --dataset-gb 150 --json
  ddlprof advise --run ddlprof-runs/20261123T101500Z-train --model resnet50 --csv
  ddlprof advise --model my_net.py:build --single-gpu-step-ms 41 --step-gpu A10G --samples 2M
  ddlprof advise --model resnet50 --jobs 16 --sort carbon      # a sweep; packed where share measured it

energy and carbon: each option's kWh (GPUs only: measured joules per sample where `ddlprof share`
measured them, else the GPUs' datasheet maximum power x hours, an upper bound; advisor/data/
gpu_power.csv) and kg CO2e at its region's grid intensity (advisor/data/grid_intensity.csv, from
CodeCarbon's tables: source, commit and date per row).
"""


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def add_advise(commands: argparse._SubParsersAction) -> None:
    """``ddlprof advise [options]``."""
    advise = _add_command(
        commands, "advise", "rank instances, regions and spot options by cost per throughput", ADVISE_HELP
    )
    what = advise.add_argument_group("model and measurements")
    what.add_argument(
        "--model", metavar="NAME", help="one of the 20 measured models (resnet50, bert-base, ...)"
    )
    what.add_argument(
        "--run",
        type=Path,
        metavar="RUN_DIR",
        help="a ddlprof run of the job: its measured step time (and its GPU, batch and DDP features)",
    )
    what.add_argument(
        "--single-gpu-step-ms",
        type=bounded(float, TINY, MAX_MS),
        metavar="MS",
        help="your measured step time on one GPU (with --step-gpu); other models' features import torch",
    )
    what.add_argument("--step-gpu", metavar="GPU", help="the GPU --single-gpu-step-ms was measured on")
    what.add_argument(
        "--precision",
        choices=("amp", "fp32", "tf32", "fp16", "bf16"),
        help="math the job trains at (default: amp, autocast to bf16 where the GPU has it, else fp16); "
        "a measured step is scaled from the precision it ran at",
    )
    what.add_argument(
        "--batch-per-gpu",
        type=bounded(int, 1, MAX_BATCH),
        metavar="B",
        help="samples per GPU per step (default: the run's, else the largest power of two whose memory "
        "estimate fits each option's GPU; the H200 steps cover 32-64, ddlprof's H100 steps 32-1024, a "
        "batch beyond what an option's step was measured at is extrapolated and its error widened)",
    )

    work = advise.add_argument_group("workload")
    size = work.add_mutually_exclusive_group()
    size.add_argument("--samples", metavar="N", help="samples per epoch (1281167, 50k, 2.5M)")
    size.add_argument(
        "--dataset", metavar="NAME|SIZE", help="imagenet-1k, cifar-10, cifar-100, mnist, coco-2017, or a size"
    )
    work.add_argument(
        "--epochs", type=bounded(float, TINY, 1e6), metavar="E", help="epochs (default: the model's, else 1)"
    )
    work.add_argument(
        "--jobs",
        type=bounded(int, 1, 10**6),
        metavar="N",
        help="a sweep of N runs of this workload: options may also pack k copies per GPU where `ddlprof "
        "share` measured the factor for the model and GPU type (local store); never a guessed factor",
    )

    limits = advise.add_argument_group("filters")
    limits.add_argument(
        "--budget", type=bounded(float, TINY, 1e12), metavar="USD", help="most the whole run may cost"
    )
    limits.add_argument(
        "--deadline", type=bounded(float, TINY, 1e6), metavar="HOURS", help="longest the whole run may take"
    )
    limits.add_argument("--clouds", type=_names, metavar="aws,gcp", help="clouds to consider (default: both)")
    limits.add_argument("--regions", type=_names, metavar="R1,R2", help="regions to consider (default: all)")
    limits.add_argument(
        "--instances", type=_names, metavar="T1,T2", help="instance types to consider (default: all)"
    )
    limits.add_argument(
        "--spot",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="--spot: spot options only; --no-spot: on-demand only (default: both)",
    )
    limits.add_argument(
        "--max-nodes",
        type=bounded(int, 1, MAX_ADVISE_NODES),
        default=4,
        metavar="N",
        help="most instances per option (default: 4)",
    )

    spot = advise.add_argument_group("spot interruptions")
    spot.add_argument(
        "--checkpoint-interval",
        type=bounded(float, TINY, 1e6),
        default=30.0,
        metavar="MIN",
        help="minutes between checkpoints, above 0; half of it is lost per interruption (default: 30)",
    )
    spot.add_argument(
        "--restart-time",
        type=bounded(float, 0, 1e6),
        default=10.0,
        metavar="MIN",
        help="minutes to restart (default: 10)",
    )
    spot.add_argument(
        "--interruptions-per-day",
        type=bounded(float, 0, 1e6),
        metavar="RATE",
        help="interruptions per instance per day, >= 0, for every spot option (default: the AWS bucket's "
        "midpoint; where none is published, as on GCP, 20%% a month assumed)",
    )

    data = advise.add_argument_group("dataset location")
    data.add_argument(
        "--data-region",
        metavar="REGION",
        help="AWS or GCP region the dataset lies in: options elsewhere pay its egress (default: none priced)",
    )
    data.add_argument(
        "--dataset-gb",
        type=bounded(float, 0, 1e9),
        metavar="GB",
        help="dataset size in GB (>= 0) moved once to an option outside --data-region (default: 0)",
    )

    out = advise.add_argument_group("output")
    out.add_argument(
        "--top",
        type=bounded(int, 0, 10**6),
        default=10,
        metavar="N",
        help="options shown (default: 10; 0: all)",
    )
    out.add_argument(
        "--all-regions",
        action="store_true",
        help="one row per region (default: each instance type, count and pricing in its best region)",
    )
    fmt = out.add_mutually_exclusive_group()
    fmt.add_argument(
        "--json",
        action="store_true",
        help='print {"options": [...], "excluded": [...], "assumptions": {...}}',
    )
    fmt.add_argument("--csv", action="store_true", help="print the options as CSV")
    fmt.add_argument(
        "--emit",
        choices=("torchrun", "skypilot"),
        help="print a launch spec for the top option: a torchrun command line or a SkyPilot task YAML",
    )
    out.add_argument(
        "--sort",
        choices=("cost", "worst", "time", "carbon"),
        default="cost",
        help="rank by USD per 1M samples (default), by its worst case (the high end of its range: an "
        "option whose GPU has no reference cannot rank first on a hopeful estimate), by hours, or by kg "
        "CO2e (hours and kg CO2e at the 3 significant figures shown; ties: the cheaper per sample first)",
    )
    out.add_argument("--explain", action="store_true", help="also list the excluded options and why")
    out.add_argument(
        "--script",
        default="train.py",
        metavar="PATH",
        help="training script in --emit specs (default: train.py)",
    )


#: ``advise_result``'s keywords: the flags of ``ddlprof advise`` that shape the advice (argparse's names).
ADVISE_KEYWORDS = (
    "model",
    "run",
    "single_gpu_step_ms",
    "step_gpu",
    "precision",
    "batch_per_gpu",
    "samples",
    "dataset",
    "epochs",
    "budget",
    "deadline",
    "clouds",
    "regions",
    "instances",
    "spot",
    "max_nodes",
    "checkpoint_interval",
    "restart_time",
    "interruptions_per_day",
    "data_region",
    "dataset_gb",
    "all_regions",
    "top",
    "jobs",
    "sort",
)


def run_advise(args: argparse.Namespace) -> int:
    from ddlprof.advisor.ranking import advise_result
    from ddlprof.advisor.render import launch_spec, print_advice, write_csv

    if args.run is not None:  # a missing run is the first thing to fix, whatever the other flags
        from ddlprof.runs.rundir import check_run_dir

        check_run_dir(args.run)
    advice, result = advise_result(**{key: getattr(args, key) for key in ADVISE_KEYWORDS})
    for warning in advice.warnings:
        print(f"ddlprof advise: warning: {warning}", file=sys.stderr)
    if args.emit:
        print(launch_spec(advice, result, args.emit, args.script))
    elif args.json:
        print(json.dumps(result, indent=2))
    elif args.csv:
        write_csv(result["options"], sys.stdout)
    else:
        print_advice(result, explain=args.explain)
    return 0


# -- dashboard -------------------------------------------------------------------------------------


DASHBOARD_HELP = """\
A Streamlit app in the browser, next to the CLI and the HTML report and using the same functions:
  Runs      the runs under --runs (and the local dataset of reported runs) with model, GPUs, nodes,
            step time and throughput; one run's breakdown per rank, step-time timeline, stragglers
            and GPU counters over time (the summary of `ddlprof report`)
  Compare   runs side by side: breakdown and throughput
  Models    the stall models' leave-one-model-out predictions against the measured step time and
            stalls, and their errors (the numbers of `ddlprof model evaluate`)
It listens on 127.0.0.1 only unless --host says otherwise, and makes no network call of its own
(no usage statistics). Ctrl-C stops it.

examples:
  ddlprof dashboard                              # ./ddlprof-runs, http://127.0.0.1:8501
  ddlprof dashboard --runs ~/runs --port 8600
"""


DEFAULT_PORT = 8501


def add_dashboard(commands: argparse._SubParsersAction) -> None:
    """``ddlprof dashboard [--runs DIR] [--port P] [--host ADDRESS]``."""
    parser = _add_command(
        commands, "dashboard", "runs, comparisons and the stall models in the browser", DASHBOARD_HELP
    )
    parser.add_argument(
        "--runs",
        type=Path,
        default=Path(DEFAULT_RUNS),
        metavar="DIR",
        help="the directory holding run directories (default: ./ddlprof-runs)",
    )
    parser.add_argument(
        "--port",
        type=bounded(int, 1, 65535),
        default=DEFAULT_PORT,
        metavar="P",
        help=f"port (default: {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        metavar="ADDRESS",
        help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 opens it to the network)",
    )


def run_dashboard(args: argparse.Namespace) -> int:
    from ddlprof.dashboard.serve import serve

    return serve(args.runs, args.host, args.port)


# -- the command tree ------------------------------------------------------------------------------


#: Every command, in the order ``ddlprof --help`` lists them: (add_<command>, run_<command>).
COMMANDS: dict[
    str, tuple[Callable[[argparse._SubParsersAction], None], Callable[[argparse.Namespace], int]]
] = {
    "wrap": (add_wrap, run_wrap),
    "stalls": (add_stalls, run_stalls),
    "share": (add_share, run_share),
    "analyze": (add_analyze, run_analyze),
    "report": (add_report, run_report),
    "trace": (add_trace, run_trace),
    "model": (add_model, run_model),
    "catalog": (add_catalog, run_catalog),
    "calibrate": (add_calibrate, run_calibrate),
    "advise": (add_advise, run_advise),
    "dashboard": (add_dashboard, run_dashboard),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ddlprof", description="Distributed deep-learning profiler and cloud cost advisor.")
    parser.add_argument("--version", action="version", version=f"ddlprof {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for add, _ in COMMANDS.values():
        add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # parse_args would report an unknown option of any command as ddlprof's own ("ddlprof: error:
    # unrecognized arguments"): the command's parser reports it, with the prefix its other errors have.
    args, unknown = parser.parse_known_args(argv)
    command = _command_parser(parser, args)
    if unknown:
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.command_prog = command.prog
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command][1](args)
    except DdlprofError as exc:
        print(f"{_prog(args)}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
