"""The terminal report: one rich table, per rank and for the job, with footnotes for what is missing."""

from __future__ import annotations

import textwrap
from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ddlprof.console import stdout_console
from ddlprof.runs.breakdown import CATEGORIES, CAUSES, LABELS, data_line
from ddlprof.runs.energy import energy_line
from ddlprof.runs.intervals import runs_of
from ddlprof.runs.peer_wait import charge_sentence
from ddlprof.runs.summary import failed_line, missing_label

_HEADERS = {
    "step_ms": "step",
    "compute_ms": "compute",
    "data_stall_ms": "data",
    "interconnect_stall_ms": "intercon.",
    "network_stall_ms": "network",
    "wait_for_peers_ms": "wait",
    "other_ms": "other",
}


#: Columns of the report's table take this much beside their text: padding on each side and a rule.
_TABLE_EXTRA = 3
#: A host name may fold down to this many characters a line; numbers never fold.
_HOST_MIN = 12
#: Narrower forms of headers, for a table that does not fit its terminal with the headers on one line.
_NARROWER = {
    "compute": ("comp-\nute",),
    "intercon.": ("inter-\nconn.",),
    "network": ("net-\nwork",),
    "samples/s": ("samples\n/s",),
}


def _text_width(text: str) -> int:
    return max(cell_len(line) for line in text.split("\n"))


def _column_widths(
    headers: list[str], rows: list[list[str]], available: int | None, wrap: bool
) -> tuple[list[str], list[int]]:
    """Each column's header and text width. Where every header and cell fits in ``available`` columns
    (None: no limit) on one line, that; else every number keeps its width, and headers take their
    narrower forms (``_NARROWER``), each given back its wider form while the width allows, cheapest
    first (a header still too wide folds); a host column (``wrap``: the second) folds. A table whose
    numbers alone are wider than ``available`` is printed wider, its headers unfolded."""
    need = [max(_text_width(row[i]) for row in rows) for i in range(len(headers))]
    if wrap:
        need[1] = min(need[1], _HOST_MIN)
    natural = [
        max(_text_width(headers[i]), *(_text_width(row[i]) for row in rows)) for i in range(len(headers))
    ]
    extra = _TABLE_EXTRA * len(headers) + 1
    if available is None or sum(natural) + extra <= available:
        return headers, natural
    # each column's header forms, narrowest first, and the width each takes (never under the numbers')
    forms = [[h, *_NARROWER.get(h, ())][::-1] for h in headers]
    steps = [[max(need[i], _text_width(form)) for form in forms[i]] for i in range(len(headers))]
    chosen = [0] * len(headers)
    widths = [steps[i][0] for i in range(len(headers))]
    if sum(widths) + extra > available >= sum(need) + extra:  # (a table that cannot fit keeps them)
        widths = list(need)  # the narrowest forms fold, then unfold as below while the width allows
    while True:  # the cheapest next move that fits: unfold a header, or give it its next wider form
        spare = available - extra - sum(widths)
        moves = []
        for i, k in enumerate(chosen):
            if widths[i] < steps[i][k]:
                moves.append((steps[i][k] - widths[i], i, k))
            elif k + 1 < len(forms[i]):
                moves.append((steps[i][k + 1] - widths[i], i, k + 1))
        fitting = sorted(move for move in moves if move[0] <= spare)
        if not fitting:
            break
        cost, i, k = fitting[0]
        chosen[i], widths[i] = k, widths[i] + cost
    return [forms[i][k] for i, k in enumerate(chosen)], widths


def _precision_note(summary: dict[str, Any]) -> str:
    """The math the first training forward ran at (``workload.precision``), where it was read."""
    precision = (summary.get("workload") or {}).get("precision")
    return f"; at {escape(precision)}" if isinstance(precision, str) and precision else ""


def _ms(value: float | None, step: float | None, mark: str = "") -> str:
    """Milliseconds, and below them the share of the step, so columns stay narrow."""
    if value is None:
        return f"—{mark}"
    if step:
        return f"{value:.2f}{mark}\n{100 * value / step:.0f}%"
    return f"{value:.2f}{mark}"


def print_summary(summary: dict[str, Any], console: Console | None = None) -> None:
    console = console or stdout_console()
    steps = summary["steps"]
    reasons = summary["reasons"]
    marks = {key: "*" * (i + 1) for i, key in enumerate(k for k in CATEGORIES if k in reasons)}
    hosts = summary["nodes"] > 1
    straggling = {s["rank"] for s in summary["stragglers"]}
    rows = [
        [
            f"{row['rank']}" + (" slow" if row["rank"] in straggling else ""),
            *([str(row["host"])] if hosts else []),
            *_cells(row, marks),
        ]
        for row in summary["ranks"]
    ]
    job = ["job", *([f"{summary['nodes']} nodes"] if hosts else []), *_cells(summary["job"], marks)]
    headers = ["rank", *(["host"] if hosts else []), *(_HEADERS[k] for k in ("step_ms", *CATEGORIES))]
    headers.append("samples/s")
    headers, widths = _column_widths(headers, [*rows, job], console.width, wrap=hosts)
    table = Table(
        title=f"Where the step time goes, ms per step (steady state): {', '.join(summary['runs'])}",
        caption=(
            f"measured: {summary['world_size']} rank(s) on {summary['nodes']} node(s); "
            f"{steps['steady_per_rank']} steady steps per rank after {steps['warmup_dropped']} warm-up "
            f"step(s)"
            + _traced_note(steps["traced_excluded"], summary.get("traces", []))
            + _precision_note(summary)
        ),
        width=sum(widths) + _TABLE_EXTRA * len(widths) + 1,
    )
    for index, (header, width) in enumerate(zip(headers, widths, strict=True)):
        # a header or host name too long for its column folds; a number never is (its column is as wide)
        justify = "left" if index < 1 + hosts else "right"
        table.add_column(Text(header, overflow="fold"), justify=justify, width=width, overflow="fold")
    for cells in rows:
        table.add_row(*cells)
    table.add_section()
    table.add_row(*job, style="bold")
    console.print(table, crop=False)  # wider than the terminal only where its numbers need it
    if failed := failed_line(summary):
        console.print(f"[bold red]{escape(failed)}[/bold red]")
    for key, mark in marks.items():
        console.print(f"[dim]{mark} {_HEADERS[key]}: {reasons[key]}[/dim]")
    if line := data_line(summary):
        console.print(line)
    if "diagnosis" in summary:
        print_diagnosis(summary["diagnosis"], summary["job"]["step_ms"], console)
    for gpu in summary.get("gpus", []):
        console.print(
            f"GPU {gpu['gpu']} on {gpu['host']} (median of {gpu['samples']} NVML samples): "
            + ", ".join(_counter(gpu, key, label) for key, label in _COUNTERS if gpu.get(key))
        )
    if "energy" in summary:
        console.print(energy_line(summary["energy"]))
    if cost := own_cost_line(summary.get("ddlprof_overhead")):
        console.print(cost)
    if line := charge_sentence(summary["job"].get("wait_for_peers_ms"), summary.get("wait_charged_to") or []):
        console.print(line)
    for straggler in summary["stragglers"]:
        caused = straggler.get("caused_wait_ms")
        console.print(
            f"[yellow]straggler: rank {straggler['rank']} is busy {straggler['busy_ms']:.1f} ms per step, "
            f"{straggler['excess_pct']}% above the median rank, mostly {CAUSES[straggler['cause']]}; "
            "the other ranks wait for it at the all-reduce"
            + (f" ({caused:.1f} ms per step in all)" if caused is not None else "")
            + "[/yellow]"
        )
    for missing in summary["missing_ranks"]:
        console.print(f"[red]{missing_label(missing)}: {missing['problem']}[/red]")
    for warning in summary["warnings"]:
        what = (
            "rank file" if warning["collector"] == "records" else f"{warning['collector']} collector stopped"
        )
        console.print(f"[yellow]rank {warning['rank']}: {what}: {warning['reason']}[/yellow]")
    if summary.get("traces"):
        run = summary["runs"][0]
        console.print(
            f"{_timeline(summary)}: {len(summary['traces'])} trace file(s) under {run}/traces; all ranks of "
            f"a window in one Perfetto tab (ui.perfetto.dev): ddlprof trace {run} --merge window.json.gz"
        )


def _timeline(summary: dict[str, Any]) -> str:
    """What the traces show a timeline of: the device the traced ranks ran on (a CPU run's traces hold
    no GPU), or "trace timeline" where the ranks do not say or differ."""
    traced = {t["rank"] for t in summary.get("traces", [])}
    devices = {row.get("device") for row in summary["ranks"] if row["rank"] in traced}
    if devices == {"cpu"}:
        return "CPU timeline"
    if devices and None not in devices and "cpu" not in devices:
        return "GPU timeline"
    return "trace timeline"


def print_diagnosis(diagnosis: dict[str, Any], step_ms: float, console: Console) -> None:
    """The verdict in one line, then each recommendation with its evidence and predicted step."""
    console.print(f"[bold]verdict: {escape(diagnosis['sentence'])}[/bold]")
    for number, rec in enumerate(diagnosis["recommendations"], 1):
        console.print(f"[bold]{number}. {escape(rec['limit'])}[/bold]: {escape(rec['action'])}")
        console.print(f"   evidence: {escape(rec['evidence'])}")
        if rec["predicted_step_ms"] is None:
            console.print(f"   [dim]predicted step: not modelled ({escape(rec['basis'])})[/dim]")
            continue
        change = 100 * (rec["predicted_step_ms"] - step_ms) / step_ms if step_ms else 0.0
        console.print(
            f"   predicted step: {rec['predicted_step_ms']:.1f} ms (now {step_ms:.1f} ms, {change:+.0f}%)"
            f"[dim]; {escape(rec['basis'])}; {escape(rec['uncertainty'])}[/dim]"
        )
    if not diagnosis["recommendations"]:
        console.print(
            "[dim]no recommendation: no limit with measured evidence above "
            f"{100 * diagnosis['thresholds']['recommend_share']:.0f}% of the step[/dim]"
        )


_COUNTERS = (
    ("util_pct", "util {:.0f}%"),
    ("mem_used_mib", "{:.0f} MiB"),
    ("power_w", "{:.0f} W"),
    ("nvlink_tx_mb_per_s", "NVLink tx {:.0f} MB/s"),
    ("nvlink_rx_mb_per_s", "rx {:.0f} MB/s"),
    ("pcie_tx_mb_per_s", "PCIe tx {:.0f} MB/s"),
    ("pcie_rx_mb_per_s", "rx {:.0f} MB/s"),
)


def _counter(gpu: dict[str, Any], key: str, label: str) -> str:
    return label.format(gpu[key]["median"])


def _cells(row: dict[str, Any], marks: dict[str, str]) -> list[str]:
    step = row["step_ms"]
    cells = [_ms(step, None)]
    cells += [_ms(row[key], step, marks.get(key, "")) for key in CATEGORIES]
    throughput = row.get("throughput_samples_per_s")
    cells.append("—" if throughput is None else f"{throughput:,.1f}")
    return cells


def _traced_note(excluded: list[int], traces: list[dict[str, Any]]) -> str:
    """Which steps the trace windows cost the steady state: a window's own steps, and the step after
    it, which paid for writing the trace (a window inside the warm-up shows only that step)."""
    if not excluded:
        return ""
    windows = sorted({tuple(t["steps"]) for t in traces if len(t.get("steps") or ()) == 2})
    named = ", ".join(f"{lo}-{hi}" if hi > lo else f"{lo}" for lo, hi in windows)
    steps = f"step{'s' if len(excluded) > 1 else ''} {runs_of(excluded)} excluded"
    if not named:
        return f", {steps}"
    plural = "s" if len(windows) > 1 else ""
    return f", {steps} (trace window{plural} {named} and the step that wrote it)"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}%"


def print_stalls(result: dict[str, Any], console: Console | None = None) -> None:
    """``ddlprof stalls``: the variants' step times and the stalls they imply."""
    console = console or stdout_console()
    console.print(_variants_table(result))
    link = result.get("emulate_link")
    if link:
        delay = f", {link['delay_ms']:g} ms one way" if link["delay_ms"] else ""
        console.print(f"emulated nodes joined by links of {link['rate_gbps']:g} Gbit/s{delay} (tc)")
    for key, label in (("interconnect_stall", "interconnect"), ("network_stall", "network")):
        stall = result[key]
        if stall is None:
            console.print(f"{label} stall: n/a ({result['reasons'][label.split()[0]]})")
            continue
        low, high = stall["spread_ms"]
        console.print(
            f"{label} stall: {stall['ms']:.2f} ms ({stall['pct_of_step']:.1f}% of the step), "
            f"per-run differences {low:.2f} to {high:.2f} ms"
        )
    single = result.get("single_run")
    if single:
        console.print(
            "single-run attribution of the same runs (ddlprof report): interconnect "
            f"{_pct(single['interconnect_stall_pct'])}, network {_pct(single['network_stall_pct'])} "
            "of the step on the wire"
            + (
                f", waiting for other ranks {_pct(single['wait_for_peers_pct'])}"
                if single.get("wait_for_peers_pct") is not None
                else ""
            )
        )
    dataset = result.get("dataset") or {}
    if dataset.get("stored"):
        where = f"{dataset['run']} to the local dataset {dataset['database']}"
        if dataset.get("learned", True):
            fit = "`ddlprof model fit` (needs ddlprof\\[models]) learns from it"
        else:
            fit = "a CPU run, which the stall models (of GPU jobs) do not learn from"
        console.print(f"added {where}, with the one-GPU step time: {fit}")
    elif dataset.get("reason"):
        console.print(f"[dim]not added to the local dataset: {dataset['reason']}[/dim]")


def _variants_table(result: dict[str, Any]) -> Table:
    table = Table(
        title=f"Differential stalls (ms per step, median of {result['repeats']} runs): {result['out']}"
    )
    table.add_column("variant")
    table.add_column("step ms", justify="right")
    table.add_column("runs (ms)")
    for name, variant in result["variants"].items():
        runs = ", ".join(f"{t:.2f}" for t in variant["repeats_ms"])
        step = "failed" if variant["step_ms"] is None else f"{variant['step_ms']:.2f}"
        table.add_row(name, step, variant["error"] or runs)
    return table


def print_data_stalls(result: dict[str, Any], console: Console | None = None) -> None:
    """``ddlprof stalls --data``: what the input pipeline costs the step in all, beside the launched
    runs' own split of their data stall."""
    console = console or stdout_console()
    console.print(_variants_table(result))
    cost, reasons = result["input_pipeline"], result["reasons"]
    if cost is None:
        console.print(f"input pipeline: n/a ({reasons['input_pipeline']})")
    else:
        low, high = cost["spread_ms"]
        console.print(
            f"input pipeline (launched - replayed from memory): {cost['ms']:.2f} ms per step "
            f"({_pct(cost['pct_of_step'])} of the step), per-run differences {low:.2f} to {high:.2f} ms"
        )
        if "input_pipeline" in reasons:
            console.print(f"[yellow]{reasons['input_pipeline']}[/yellow]")
    split = result["single_run"]
    if split and split["data_fetch_ms"] is not None:
        console.print(
            "single-run split of the launched runs (ddlprof report): data stall "
            f"{split['data_stall_ms']:.2f} ms = fetch {split['data_fetch_ms']:.2f} "
            f"+ prep {split['data_prep_ms']:.2f} + other {split['data_other_ms']:.2f}"
        )
    elif "split" in reasons:
        console.print(f"[dim]single-run split: n/a ({reasons['split']})[/dim]")
    if result["replayed_data_stall_ms"] is not None:
        replay = result["replay"]
        console.print(
            f"replayed runs: data stall {result['replayed_data_stall_ms']:.2f} ms; each DataLoader's first "
            f"{replay['batches_kept']} batches kept (at most {replay['max_bytes'] / 2**30:g} GiB) and cycled"
        )


def _num(value: float | None, spec: str, suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def print_share(result: dict[str, Any], console: Console | None = None) -> None:
    """``ddlprof share``: one row per mode and K, then the best K and mode and where it stops paying."""
    console = console or stdout_console()
    gpu = result["gpu"]
    where = gpu["name"] or f"the CPU ({gpu['reason']})"
    device = "the GPU" if gpu["name"] else "the CPU"
    whole = " ".join(result["command"])
    command = textwrap.shorten(whole, 60, placeholder=" ...")
    if command == "...":  # a first word of over 60 characters: cut inside it
        command = whole[:57] + "..."
    table = Table(title=f"K copies of {command} sharing {where}: {result['out']}")
    for name in ("mode", "K", "samples/s", "gain", "step ms", "slowdown", "memory MiB"):
        table.add_column(name, justify="left" if name == "mode" else "right")
    for name in ("util %", "W", "J/sample"):
        table.add_column(name, justify="right")
    for row in result["groups"]:
        if row["status"] != "ok":
            table.add_row(row["mode"], str(row["copies"]), f"[red]{row['status']}[/red]")
            continue
        copies = row["copy_results"]
        memory = [c.get("memory_peak_mib") for c in copies]
        table.add_row(
            row["mode"],
            str(row["copies"]),
            _num(row["aggregate_samples_per_s"], ",.1f"),
            _num(row.get("gain_over_one"), ".2f", "x"),
            " ".join(_num(c["step_ms"], ".1f") for c in copies),
            " ".join(_num(c.get("slowdown"), ".2f", "x") for c in copies),
            " + ".join(_num(m, ".0f") for m in memory) + f" = {_num(row.get('memory_peak_mib'), '.0f')}",
            _num(row.get("util_pct_median"), ".0f"),
            _num(row.get("power_w"), ".0f"),
            _num(row.get("joules_per_sample"), ".4f"),
        )
    console.print(table)
    measured = any(row["status"] == "ok" for row in result["groups"])
    gauges = (
        "memory: each copy's peak (NVML, by process) = the GPU's peak in use"
        if gpu["name"]
        else "memory, util, W and J/sample: measured on an NVIDIA GPU only"
    )
    if measured:
        console.print(
            "[dim]samples/s: the samples all copies completed in the window where every copy was "
            "stepping (after its warm-up), per second of that window; step ms: the window over each copy's "
            "steps in it (the mean step, waits for its turn included); slowdown: that step over one copy "
            f"alone's on {device}; gain: samples/s over one copy alone's on {device} (at one batch size, "
            f"the sum of the copies' 1/slowdown); {gauges}[/dim]"
        )
    for row in result["groups"]:
        if row["status"] != "ok":
            console.print(
                f"[red]{row['mode']} K={row['copies']} {row['status']}[/red]: {escape(row['reason'])}"
            )
            if row["status"] == "out_of_memory":
                logs = [c["log"] for c in row["copy_results"] if c.get("status") == "out_of_memory"]
                console.print(
                    f"  log: {escape(logs[0])}" + (f" (and {len(logs) - 1} more)" if len(logs) > 1 else "")
                )
    for why in result["modes_skipped"].values():
        console.print(f"not run: {why}")
    if not measured:
        return  # the command says so on stderr, and exits 1
    found = result["verdict"]
    best = found["best_per_gpu_hour"]
    if best:
        unit = "GPU-hour" if gpu["name"] else "hour of this CPU"
        console.print(
            f"most samples per {unit}: {best['mode']} with K={best['copies']} "
            f"({best['samples_per_gpu_hour']:,} samples per {unit})"
        )
    joule = found["best_per_joule"]
    if joule:
        console.print(
            f"most samples per joule: {joule['mode']} with K={joule['copies']} "
            f"({joule['samples_per_joule']:.2f} samples/J)"
        )
    else:
        console.print(f"most samples per joule: n/a ({found['best_per_joule_reason']})")
    for mode, where_stops in found["stops_paying"].items():
        console.print(f"{mode} stops paying at {where_stops}")
    stored = result.get("store") or {}
    if stored.get("stored"):
        console.print(
            f"stored as model {stored['model']!r} on {stored['gpu_name']}: "
            f"`ddlprof advise --model {stored['model']} --jobs N` packs copies by these factors"
        )
    elif stored.get("reason"):
        console.print(f"[dim]packing factors not stored: {stored['reason']}[/dim]")


_ANALYSIS_COLUMNS = {
    "step_ms": "step",
    "compute_ms": "compute",
    "exposed_comm_ms": "exposed comm",
    "wait_for_peers_ms": "= wait",
    "wire_ms": "+ wire",
    "memory_ms": "memory",
    "idle_ms": "idle",
    "data_loader_ms": "data loader",
    "ddp_cpu_ms": "DDP host",
}


def print_analysis(result: dict[str, Any], console: Console | None = None) -> None:
    """``ddlprof analyze``: per rank and for the job, ms per step on the device timeline."""
    console = console or stdout_console()
    table = Table(
        title=f"Step breakdown from traces, ms per step (steps {runs_of(result['steps'])})",
        caption="compute + exposed comm + memory + idle = step; exposed comm = wait for the last rank to "
        "reach the all-reduce + wire; data loader and DDP host (DDP's own copies and launches) are host time",
    )
    table.add_column("rank", no_wrap=True)
    for header in _ANALYSIS_COLUMNS.values():
        table.add_column(header, justify="right")
    table.add_column("comm overlap", justify="right")
    slow = {s["rank"] for s in result["stragglers"]}
    for row in [*result["ranks"], {**result["job"], "rank": "job"}]:
        cells = ["—" if row[k] is None else f"{row[k]:.2f}" for k in _ANALYSIS_COLUMNS]
        overlap = row["overlap_pct"]
        label = f"{row['rank']}" + (" slow" if row["rank"] in slow else "")
        table.add_row(label, *cells, "—" if overlap is None else f"{overlap:.0f}%")
    console.print(table)
    if len(result["windows"]) > 1:
        console.print(_windows_table(result["windows"]))
    outside = [r for r in result["ranks"] if r["outside_steps_ms"]]
    if outside:
        console.print(
            "outside any step (between windows, evaluation, checkpoints; in no step above): "
            + ", ".join(f"rank {r['rank']} {r['outside_steps_ms']:.2f} ms" for r in outside)
        )
    if line := charge_sentence(result["job"]["wait_for_peers_ms"], result["wait_charged_to"]):
        console.print(line)
    for key, reason in result["reasons"].items():
        console.print(f"[dim]{LABELS.get(key, key)}: {reason}[/dim]")
    for straggler in result["stragglers"]:
        console.print(
            f"[yellow]straggler: rank {straggler['rank']} is busy {straggler['busy_ms']:.1f} ms per step, "
            f"{straggler['excess_pct']}% above the median rank, mostly {CAUSES[straggler['cause']]}[/yellow]"
        )
    for warning in result["warnings"]:
        console.print(f"[yellow]{warning}[/yellow]")


def _windows_table(windows: list[dict[str, Any]]) -> Table:
    """Job means per profiling window, so that windows far apart in a run can be told apart."""
    table = Table(title="Per window, job means, ms per step")
    table.add_column("steps", no_wrap=True)
    for header in _ANALYSIS_COLUMNS.values():
        table.add_column(header, justify="right")
    for window in windows:
        first, last = window["steps"]
        job = window["job"]
        cells = ["—" if job[k] is None else f"{job[k]:.2f}" for k in _ANALYSIS_COLUMNS]
        table.add_row(str(first) if first == last else f"{first}-{last}", *cells)
    return table


def own_cost_line(cost: dict[str, Any] | None) -> str | None:
    """What ddlprof says it cost the job, as Nsight Systems and torch.profiler state theirs."""
    if not cost or cost.get("own_ms_per_step") is None:
        return None
    parts = [f"ddlprof itself: {1e3 * cost['own_ms_per_step']:.0f} us of host time per step in its hooks"]
    if cost.get("own_pct_of_step") is not None:
        parts[0] += f" ({cost['own_pct_of_step']:.2f}% of the step)"
    by_hook = sorted((cost.get("own_ms_per_step_by_hook") or {}).items(), key=lambda kv: -kv[1])
    if len(by_hook) > 1:
        parts[0] += ": " + ", ".join(f"{part} {1e3 * ms:.0f} us" for part, ms in by_hook)
    if cost.get("trace_window_s") is not None:
        windows = cost.get("trace_windows") or 1
        parts.append(f"trace window{'s' if windows > 1 else ''} {cost['trace_window_s']:.1f} s once")
    if cost.get("probe_s") is not None:
        parts.append(f"bandwidth probe {cost['probe_s']:.2f} s once")
    return "; ".join(parts)
