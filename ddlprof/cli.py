"""The ``ddlprof`` command. Sub-commands import their heavy parts only when they run, so that the
offline commands start fast and never import torch."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from ddlprof import __version__
from ddlprof.advisor.catalog.browse import add_catalog_command, run_catalog
from ddlprof.advisor.render import add_advise_command, run_advise
from ddlprof.collectors.config import COLLECTORS
from ddlprof.dashboard.serve import add_dashboard_command, run_dashboard
from ddlprof.errors import DdlprofError

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

REPORT_HELP = """\
Merge the ranks (and nodes) of a run, drop warm-up and traced steps, and show where the step time
went per rank and for the job. The categories add up to the step time:
compute_ms + data_stall_ms + interconnect_stall_ms + network_stall_ms + other_ms = step_ms.
Writes summary.json into the (first) run directory, and adds the run to the local dataset
(SQLite in $DDLPROF_HOME, default ~/.ddlprof: one row per run, replaced when the run is reported
again) that the stall models learn from; --no-store or DDLPROF_NO_STORE=1 skips that.

examples:
  ddlprof report ddlprof-runs/20261123T101500Z-train
  ddlprof report --json RUN | jq .job
  ddlprof report --html report.html RUN
  ddlprof report node0-run node1-run     # a multi-node job profiled into separate directories
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and a hint, not the whole usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_command(
    commands: argparse._SubParsersAction, name: str, summary: str, text: str
) -> argparse.ArgumentParser:
    return commands.add_parser(
        name, help=summary, description=text, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def _job(args: argparse.Namespace) -> list[str]:
    """The command after the options, without the optional ``--`` before it."""
    return args.job[1:] if args.job[:1] == ["--"] else args.job


def _show(result: dict, as_json: bool, table: Callable[[dict], None]) -> int:
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        table(result)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ddlprof", description="Distributed deep-learning profiler and cloud cost advisor.")
    parser.add_argument("--version", action="version", version=f"ddlprof {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

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
        help="skip the bandwidth probe that multi-node jobs run after building DDP (under a second); "
        "then the interconnect/network split is not measured",
    )
    wrap.add_argument(
        "--gpu-sample-interval",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="seconds between NVML samples (default: 0.5)",
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

    stalls = _add_command(
        commands, "stalls", "interconnect and network stalls by differential runs", STALLS_HELP
    )
    stalls.add_argument("--steps", type=int, default=20, help="steady steps measured per run (default: 20)")
    stalls.add_argument("--warmup", type=int, default=5, help="steps run first and not measured (default: 5)")
    stalls.add_argument(
        "--repeats", type=int, default=3, help="runs of each variant, interleaved (default: 3)"
    )
    stalls.add_argument(
        "--emulate-nodes",
        type=int,
        metavar="K",
        help="split this host's GPUs into K nodes joined by NCCL's socket transport",
    )
    stalls.add_argument(
        "--emulate-pcie", action="store_true", help="turn NCCL peer-to-peer off in every variant"
    )
    stalls.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="where the variant runs go (default: ./ddlprof-runs/<UTC time>-stalls)",
    )
    stalls.add_argument(
        "--timeout",
        type=float,
        default=900,
        metavar="SECONDS",
        help="time limit of one variant run (default: 900)",
    )
    stalls.add_argument("--json", action="store_true", help="print stalls.json to stdout instead of a table")
    stalls.add_argument("job", nargs=argparse.REMAINDER, metavar="COMMAND ...", help="the torchrun command")

    analyze = _add_command(
        commands,
        "analyze",
        "the step breakdown from any torch.profiler traces (one file per rank)",
        ANALYZE_HELP,
    )
    analyze.add_argument("traces", nargs="+", type=Path, metavar="TRACE_DIR_OR_FILE")
    analyze.add_argument("--json", action="store_true", help="print the analysis as JSON instead of a table")

    report = _add_command(
        commands, "report", "where the step time went, per rank and for the job", REPORT_HELP
    )
    report.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    report.add_argument("--json", action="store_true", help="print summary.json to stdout instead of a table")
    report.add_argument("--html", type=Path, metavar="FILE", help="also write a self-contained HTML report")
    report.add_argument(
        "--warmup",
        type=int,
        metavar="N",
        help="steps to drop at the start (default: a fifth of the steps, 1 to 10)",
    )
    report.add_argument(
        "--no-store",
        action="store_true",
        help="do not add the run to the local dataset in $DDLPROF_HOME (default ~/.ddlprof)",
    )

    _add_model_commands(commands)
    add_catalog_command(commands, _add_command)
    add_advise_command(commands, _add_command)
    add_dashboard_command(commands, _add_command)
    return parser


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
models of the dataset, the step measured on one H200 scaled to --gpu by roofline ratios (TF32 for
convolutional models, fp32 for matmul-heavy ones, as fp32 training runs under PyTorch's defaults).
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


def _add_model_commands(commands: argparse._SubParsersAction) -> None:
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
        "--batch-per-gpu", type=int, default=32, metavar="B", help="samples per GPU per step (default: 32)"
    )
    features.add_argument(
        "--bucket-cap-mb",
        type=float,
        metavar="MB",
        help="DDP's bucket_cap_mb (default: DDP's own, 25 MiB after a 1 MiB first bucket; when given, "
        "the first bucket has this cap too, as in DDP)",
    )
    features.add_argument(
        "--seq-len",
        type=int,
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
        "--batch-per-gpu", type=int, required=True, metavar="B", help="samples per GPU per step"
    )
    predict.add_argument("--gpus-per-node", type=int, required=True, metavar="G", help="GPUs in each node")
    predict.add_argument("--nodes", type=int, default=1, metavar="N", help="nodes (default: 1)")
    single = predict.add_mutually_exclusive_group(required=False)
    single.add_argument(
        "--single-gpu-step-ms", type=float, metavar="MS", help="the measured step time on one GPU, in ms"
    )
    single.add_argument(
        "--gpu",
        metavar="TYPE",
        help="a GPU type (H200, A100-80GB, T4, ...): the dataset's H200 step scaled to it (its models only)",
    )
    predict.add_argument(
        "--intra-busbw-gbps",
        type=float,
        metavar="X",
        help="all-reduce bus bandwidth among the GPUs of a node, GB/s (default: from --gpu)",
    )
    predict.add_argument(
        "--inter-busbw-gbps",
        type=float,
        metavar="Y",
        help="all-reduce bus bandwidth across all ranks of a multi-node job, GB/s (no default)",
    )
    predict.add_argument(
        "--precision",
        choices=("fp32", "tf32", "fp16", "bf16"),
        help="math the step runs at, for scaling to --gpu (default: the model's under fp32 defaults)",
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


def _run_model(args: argparse.Namespace) -> int:
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
        precision=args.precision,
        use=args.use,
        instance=instance,
    )
    return _show(result, args.json, print_prediction)


def _run_model_features(args: argparse.Namespace) -> int:
    import torch

    from ddlprof.models.features import macro_features
    from ddlprof.models.render import print_features

    result = macro_features(
        args.model,
        batch_per_gpu=args.batch_per_gpu,
        bucket_cap_mb=args.bucket_cap_mb,
        dtype=getattr(torch, args.dtype),
        optimizer=args.optimizer,
        seq_len=args.seq_len,
    )
    return _show(result, args.json, print_features)


STALLS_HELP = """\
The differential method, automated: with the per-GPU batch fixed, run the job for a few steady
steps on one GPU, on all GPUs of one node, and as launched (or as K emulated nodes on this host),
and take the differences:

  interconnect stall = t(one node) - t(one GPU)      network stall = t(full) - t(one node)

Each variant is an ordinary ddlprof run under --out; the result goes to OUT/stalls.json. The full
job's last run is added to the local dataset ($DDLPROF_HOME/dataset.sqlite) with the one-GPU step
time beside it, so `ddlprof model fit` learns from your own models and hardware (DDLPROF_NO_STORE=1
skips it).

examples:
  ddlprof stalls -- torchrun --nproc_per_node=2 examples/ddp_train.py --model resnet50
  ddlprof stalls --emulate-nodes 2 -- torchrun --nproc_per_node=4 train.py     # 2 nodes x 2 GPUs
  ddlprof stalls --emulate-pcie --repeats 5 --json -- torchrun --nproc_per_node=2 train.py
"""


ANALYZE_HELP = """\
The step breakdown from Kineto traces written by any torch.profiler run (tensorboard_trace_handler
output: one .json or .json.gz file per rank), with no ddlprof wrap involved. Per rank and per step
(ProfilerStep#N): compute, exposed communication, memory copies and idle time on the device
timeline (they add up to the step), data-loader time where the trace shows it, the share of
communication overlapped with compute, and straggler ranks. Files are streamed, never loaded whole.

examples:
  ddlprof analyze ./log/resnet50                  # a tensorboard_trace_handler directory
  ddlprof analyze --json rank0.pt.trace.json.gz rank1.pt.trace.json.gz
"""


def _run_analyze(args: argparse.Namespace) -> int:
    from ddlprof.profiler.render import print_analysis
    from ddlprof.profiler.trace_analysis import analyze

    return _show(analyze(args.traces), args.json, print_analysis)


def _run_wrap(args: argparse.Namespace) -> int:
    from ddlprof.profiler.wrap import wrap

    job = _job(args)
    if args.gpu_sample_interval <= 0:
        raise DdlprofError("--gpu-sample-interval must be positive")
    disabled = [*args.disable, *(["probe"] if args.no_probe else [])]
    return wrap(job, args.out, args.trace_steps, not args.no_gpu_sampling, args.gpu_sample_interval, disabled)


def _run_stalls(args: argparse.Namespace) -> int:
    from ddlprof.profiler.differential import run_stalls
    from ddlprof.profiler.render import print_stalls
    from ddlprof.profiler.wrap import default_out

    job = _job(args)
    if not job:
        raise DdlprofError("no command given; e.g. ddlprof stalls -- torchrun --nproc_per_node=2 train.py")
    if args.steps < 1 or args.repeats < 1 or args.warmup < 0:
        raise DdlprofError("--steps and --repeats must be at least 1, --warmup at least 0")
    if args.emulate_nodes is not None and args.emulate_nodes < 1:
        raise DdlprofError("--emulate-nodes must be at least 1")
    out = args.out or default_out(["stalls"])
    result = run_stalls(
        job, args.steps, args.repeats, args.warmup, args.emulate_nodes, args.emulate_pcie, out, args.timeout
    )
    return _show(result, args.json, print_stalls)


def _run_report(args: argparse.Namespace) -> int:
    from ddlprof.profiler.report import report

    if args.warmup is not None and args.warmup < 0:
        raise DdlprofError("--warmup must be 0 or more")
    return report(args.runs, as_json=args.json, html=args.html, warmup=args.warmup, store=not args.no_store)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {
        "wrap": _run_wrap,
        "stalls": _run_stalls,
        "analyze": _run_analyze,
        "report": _run_report,
        "model": _run_model,
        "catalog": run_catalog,
        "advise": run_advise,
        "dashboard": run_dashboard,
    }
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return handlers[args.command](args)
    except DdlprofError as exc:
        print(f"ddlprof {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
