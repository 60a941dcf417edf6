"""Terminal tables for ``ddlprof model``: one rich table per result, with its sources in the caption."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

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
    shown = " ".join(f"{size / (1 << 20):.3g}" for size in sizes[:_SHOWN_BUCKETS])
    return shown + (f" … (+{len(sizes) - _SHOWN_BUCKETS})" if len(sizes) > _SHOWN_BUCKETS else "") + " MiB"


def print_features(result: dict[str, Any], console: Console | None = None) -> None:
    """The macro features of one model; missing values are a dash with the reason under the table."""
    console = console or Console()
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
    order = {"gradient_ready": "gradient-ready", "parameter": "initial"}.get(
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
