"""Terminal tables for ``ddlprof model``: one rich table per result, with its sources in the caption."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from ddlprof.console import stdout_console
from ddlprof.models.stall_models import TARGET_LABELS

_SHOWN_BUCKETS = 8
_MEMORY = (
    ("weights", "weights, buffers"),
    ("gradients", "gradients"),
    ("ddp_buckets", "DDP buckets"),
    ("optimizer_state", "optimizer state"),
    ("activations", "activations"),
)
_OPTIMIZERS = {"sgd": "SGD with momentum", "adam": "Adam", "adamw": "AdamW", "none": "none"}


def _bytes(value: float | None) -> str:
    """Binary units, as DDP's bucket_cap_mb means MiB."""
    if value is None:
        return "—"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size:
            return f"{value / size:.3g} {unit}" if value < 100 * size else f"{value / size:.0f} {unit}"
    return f"{value:.0f} B"


def _flops(value: float | None) -> str:
    if value is None:
        return "—"
    for unit, size in (("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if value >= size:
            return f"{value / size:.3g} {unit}"
    return f"{value:.0f} FLOP"


def _buckets(sizes: list[int]) -> str:
    """MiB per bucket, the first few: enough to see the small first bucket and the usual size."""
    if not sizes:
        return "none"
    shown = " ".join(f"{size / (1 << 20):.3g}" for size in sizes[:_SHOWN_BUCKETS])
    return shown + (f" … (+{len(sizes) - _SHOWN_BUCKETS})" if len(sizes) > _SHOWN_BUCKETS else "") + " MiB"


def print_features(result: dict[str, Any], console: Console | None = None) -> None:
    """The macro features of one model; missing values are a dash with the reason under the table."""
    console = console or stdout_console()
    shape = "x".join(str(n) for n in (result["input"] or {}).get("shape", [])) or "?"
    table = Table(
        title=f"Macro features: {result['model']}, {result['batch_per_gpu']} per GPU, {result['dtype']}",
        caption=(
            f"{result['source']}; computed on the {result['device']} device in {result['elapsed_s']:.1f} s "
            f"(torch {result['torch']})"
        ),
    )
    table.add_column("feature", no_wrap=True)
    table.add_column("value", justify="right")
    table.add_column("how", style="dim")
    order = {"gradient_ready": "gradient-ready", "parameter": "initial", "none": "no gradients"}.get(
        result["bucket_order"], "reverse parameters"
    )
    rows = [
        ("num_layers", f"{result['num_layers']:,}", "modules holding parameters"),
        ("num_grad_tensors", f"{result['num_grad_tensors']:,}", "parameters needing gradients"),
        ("num_params", f"{result['num_params']:,}", "shared ones once"),
        ("grad_bytes", _bytes(result["grad_bytes"]), "all-reduced per step"),
        (
            "num_buckets",
            str(result["num_buckets"]),
            f"DDP caps: {result['first_bucket_mb']:g} MiB first, then {result['bucket_cap_mb']:g}",
        ),
        ("bucket_bytes", _buckets(result["bucket_bytes"]), f"all-reduce order ({order})"),
        (
            "flops_per_sample",
            _flops(result["flops_per_sample"]),
            f"fwd+bwd, input {shape}; 2 per multiply-add",
        ),
    ]
    for row in rows:
        table.add_row(*row)
    table.add_section()
    memory = result["memory_bytes"]
    for key, label in _MEMORY:
        how = {
            "optimizer_state": _OPTIMIZERS.get(result["optimizer"], result["optimizer"]),
            "activations": "saved for backward",
        }.get(key, "")
        table.add_row(f"memory: {label}", _bytes(memory[key]), how)
    table.add_row(
        "memory: total",
        _bytes(memory["total"]),
        "+ CUDA context, workspaces",
        style="bold",
    )
    console.print(table)
    for key, reason in result["reasons"].items():
        console.print(f"[dim]{key}: {reason}[/dim]")
    if result.get("note"):
        console.print(f"[yellow]note: {result['note']}[/yellow]")


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}%"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def print_evaluation(result: dict[str, Any], console: Console | None = None) -> None:
    """The leave-one-model-out table: per target, baseline vs learned, MAPE and MAE."""
    console = console or stdout_console()
    table = Table(
        title=f"Stall models, leave-one-model-out: {result['rows']} rows, {result['models']} models",
        caption=(
            f"world size {', '.join(map(str, result['world_sizes']))}, nodes "
            f"{', '.join(map(str, result['nodes']))}; MAPE for the step time only (stalls are often near 0); "
            f"target: learned step MAPE <= {result['target_step_mape_pct']:g}%"
        ),
    )
    table.add_column("target", min_width=12)
    table.add_column("rows\n(models)", justify="right", no_wrap=True)
    for column in ("MAPE\nbaseline", "MAPE\nlearned", "MAE ms\nbaseline", "MAE ms\nlearned"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("learned\nbetter", no_wrap=True)
    reasons = []
    for target, entry in result["targets"].items():
        label = TARGET_LABELS.get(target, target)
        if not entry["evaluable"]:
            table.add_row(label, "0", "—", "—", "—", "—", "n/a", style="dim")
            reasons.append(f"{label}: {entry['reason']}")
            continue
        base, learned = entry["baseline"], entry["learned"]
        table.add_row(
            label,
            f"{entry['rows']} ({entry['models']})",
            _pct(base["mape_pct"]),
            _pct(learned["mape_pct"]),
            _ms(base["mae_ms"]),
            _ms(learned["mae_ms"]),
            "yes" if entry["learned_beats_baseline"] else "[red]no[/red]",
        )
    console.print(table)
    step = result["targets"]["step_ms"]
    if step["evaluable"] and "mae_ms_by_transport" in step["learned"]:
        parts = ", ".join(
            f"{t} {step['baseline']['mae_ms_by_transport'][t]:.2f} -> {v:.2f}"
            for t, v in step["learned"]["mae_ms_by_transport"].items()
        )
        console.print(f"[dim]step MAE ms by transport, baseline -> learned: {parts}[/dim]")
    for reason in reasons:
        console.print(f"[dim]{reason}[/dim]")
    console.print(f"[dim]{result['method']}[/dim]")


_COEF_UNITS = {
    "bandwidth_ms": "ms per ms of ring transfer",
    "latency_ms": "ms per ms of bucket latencies",
    "exposed_comm_ms": "ms per ms not hidden by backward",
    "num_grad_tensors": "ms per gradient tensor",
    "single_gpu_step_ms": "ms per ms of single-GPU step",
    "gflop_per_step": "ms per GFLOP per step",
}


def print_fit(result: dict[str, Any], console: Console | None = None) -> None:
    """What was fitted, on what, where it was saved, and how well it validates."""
    console = console or stdout_console()
    training = result["training"]
    table = Table(title=f"Learned stall model: {training['rows']} rows, {training['models']} models")
    table.add_column("feature")
    table.add_column("coef", justify="right")
    table.add_column("unit", style="dim")
    for name, coef in result["learned"]["coef"].items():
        table.add_row(name, f"{coef:.4g}", _COEF_UNITS.get(name, ""), style=None if coef else "dim")
    table.add_row("intercept", f"{result['learned']['intercept']:.4g}", "ms")
    console.print(table)
    console.print(f"[dim]{result['learned']['estimator']}; stall = intercept + sum(coef x feature)[/dim]")
    evaluation = result["evaluation"]["targets"]
    step, stall, network = (evaluation[t] for t in ("step_ms", "interconnect_stall_ms", "network_stall_ms"))
    net = (
        f"baseline {_ms(network['baseline']['mae_ms'])} -> learned {_ms(network['learned']['mae_ms'])} ms"
        if network["evaluable"]
        else "not evaluable (no multi-node data)"
    )
    console.print(
        f"leave-one-model-out: step MAPE baseline {_pct(step['baseline']['mape_pct'])} -> learned "
        f"{_pct(step['learned']['mape_pct'])}; interconnect stall MAE baseline "
        f"{_ms(stall['baseline']['mae_ms'])} -> learned {_ms(stall['learned']['mae_ms'])} ms; network stall "
        f"MAE {net}"
    )
    console.print(f"selected for predictions: {result['selected']} ({result['selection']})")
    store = training.get("store")
    if store:
        used = training.get("store_rows_used")
        dropped = training.get("store_rows_dropped") or {}
        extra = f"; {used} used" if used is not None else ""
        extra += "".join(f", {n} without {why.removeprefix('no ')}" for why, n in dropped.items())
        console.print(f"[dim]{store}{extra}[/dim]")
    if result.get("saved"):
        console.print(f"[dim]saved to {result['path']}[/dim]")
    for note in result.get("notes", []):
        console.print(f"[yellow]{note}[/yellow]")


def print_prediction(result: dict[str, Any], console: Console | None = None) -> None:
    """Predicted step time and stalls, where each input came from, and the warnings."""
    console = console or stdout_console()
    inputs, model = result["inputs"], result["model"]
    where = f"{inputs['gpus_per_node']} GPU(s) x {inputs['nodes']} node(s)"
    gpu = f" of {inputs['gpu']}" if inputs["gpu"] else ""
    cv = model["cv"]
    precision = f" at {result['precision']}" if result.get("precision") else ""
    caption = (
        f"predicted by the {model['name']} model; leave-one-model-out error on {cv['rows']} rows of "
        f"{cv['models']} models: step MAPE {_pct(cv['step_ms_mape_pct'])}, stall MAE "
        f"{_ms(cv['interconnect_stall_ms_mae_ms'])} ms"
    )
    error = result.get("error")
    if error:
        caption += f"; the step's error from its basis: {error['pct']:.0f}% ({error['basis']})"
    table = Table(
        title=f"Predicted: {inputs['model']}, {inputs['batch_per_gpu']} per GPU, {where}{gpu}{precision}",
        caption=caption,
    )
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_column("from", style="dim")
    if inputs.get("precision"):
        table.add_row("precision", inputs["precision"], inputs["sources"].get("precision", ""))
    table.add_row(
        "single_gpu_step_ms", _ms(result["single_gpu_step_ms"]), inputs["sources"]["single_gpu_step_ms"]
    )
    table.add_row("interconnect_stall_ms", _ms(result["interconnect_stall_ms"]), model["name"])
    table.add_row("network_stall_ms", _ms(result["network_stall_ms"]), model["name"])
    table.add_row("step_ms", _ms(result["step_ms"]), model["name"], style="bold")
    table.add_row("throughput", f"{result['throughput_samples_per_s']:,.0f} samples/s", "all GPUs")
    table.add_section()
    for key in ("intra_busbw_gbps", "inter_busbw_gbps"):
        if inputs[key] is not None:
            table.add_row(key, f"{inputs[key]:.3g}", inputs["sources"].get(key, ""))
    for key in ("intra_latency_us", "inter_latency_us"):
        if inputs[key] is not None:
            table.add_row(key, f"{inputs[key]:.3g}", inputs["sources"].get(key, ""))
    table.add_row("features", "", inputs["sources"]["features"])
    console.print(table)
    for warning in result["warnings"]:
        console.print(f"[yellow]warning: {warning}[/yellow]")
