"""What ``ddlprof advise`` prints: the ranked options as a rich table (with ``--explain``, the excluded
ones and why), as CSV (``--csv``), and the top option as a launch spec (``--emit torchrun|skypilot``).
``--json`` is ``Advice.to_dict``; the advice itself is :func:`ddlprof.advisor.ranking.advise_result`.
"""

from __future__ import annotations

import csv
import json
import shlex
from typing import Any

from ddlprof.advisor.options import SIGNIFICANT, figure
from ddlprof.console import stdout_console
from ddlprof.errors import DdlprofError

_SOURCE = {"predicted": "pred", "measured": "measured"}


# -- launch specs ---------------------------------------------------------------------------------


def launch_spec(advice: Any, result: dict[str, Any], emit: str, script: str = "train.py") -> str:
    """The ``--emit torchrun|skypilot`` spec of the top option of ``advise_result``'s answer."""
    if not advice.met_constraints or not advice.options:
        raise DdlprofError(
            "no option meets the budget and deadline, so there is nothing to launch; run without --emit "
            "to see how far over the cheapest options are"
        )
    spec = emit_torchrun if emit == "torchrun" else emit_skypilot
    return spec(result["options"][0], advice.basis.model, result["assumptions"]["workload"], script)


#: Catalog GPU names -> SkyPilot accelerator names (``sky show-gpus``).
SKYPILOT_ACCELERATORS = {
    "V100-16GB": "V100",
    "V100-32GB": "V100-32GB",
    "A100-40GB": "A100",
    "A100-80GB": "A100-80GB",
}


def _header(option: dict[str, Any], model: str, workload: dict[str, Any]) -> list[str]:
    pricing = "spot" if option["spot"] else "on-demand"
    return [
        f"ddlprof advise: top option for {model}: {option['count']} x {option['instance_type']} "
        f"({option['world_size']} x {option['gpu']}), {option['cloud']} {option['region']}, {pricing}",
        f"predicted {option['hours']:,.1f} h and ${option['total_cost_usd']:,.2f} for "
        f"{workload['total_samples']:,.0f} samples at batch {option['batch_per_gpu']} per GPU "
        f"(step {option['step_ms']:.1f} ms, {option['step_source']})",
    ]


def _memory_line(assumptions: dict[str, Any]) -> str:
    memory = assumptions["memory"]
    if memory["source"].startswith("none"):
        return "memory: no estimate, GPU fit not checked"
    if memory["required_gb"] is None:  # the batch chosen per GPU
        sixteen = memory["source"].partition(", activations x ")[2]
        return (
            f"memory: {memory['source'].split(', batch')[0]}, at each option's batch"
            + (f", activations x {sixteen}" if sixteen else "")
            + f", with {memory['allowance']} (memory_required_gb in --json)"
        )
    return f"memory: {memory['source']}; needs {memory['required_gb']} GB per GPU with {memory['allowance']}"


def emit_torchrun(option: dict[str, Any], model: str, workload: dict[str, Any], script: str) -> str:
    """A torchrun command line for the option (run it on every instance)."""
    nodes, gpus = option["count"], option["gpus_per_node"]
    args = ["torchrun", f"--nnodes={nodes}", f"--nproc_per_node={gpus}"]
    if nodes > 1:
        args += ["--node_rank=$NODE_RANK", "--rdzv_backend=c10d", "--rdzv_endpoint=$MASTER_ADDR:29500"]
        args += ["--rdzv_id=ddlprof-job"]
    else:
        args += ["--standalone"]
    lines = [f"# {line}" for line in _header(option, model, workload)]
    if nodes > 1:
        lines.append(
            f"# run on each of the {nodes} instances, with NODE_RANK=0..{nodes - 1} and MASTER_ADDR = the "
            "address of instance 0"
        )
    command = " ".join(
        a if a.startswith(("--node_rank=$", "--rdzv_endpoint=$")) else shlex.quote(a) for a in args
    )
    lines.append(f"{command} {shlex.quote(script)}")
    return "\n".join(lines)


def _yaml_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid YAML flow scalar


def emit_skypilot(option: dict[str, Any], model: str, workload: dict[str, Any], script: str) -> str:
    """A SkyPilot task YAML for the option."""
    accelerator = SKYPILOT_ACCELERATORS.get(option["gpu"], option["gpu"])
    instance_type = option["instance_type"].split("+")[0]  # GCP N1 + attached GPUs: the host VM's type
    run = (
        "torchrun --nnodes=$SKYPILOT_NUM_NODES --nproc_per_node=$SKYPILOT_NUM_GPUS_PER_NODE "
        '--node_rank=$SKYPILOT_NODE_RANK --master_addr=$(echo "$SKYPILOT_NODE_IPS" | head -n1) '
        f"--master_port=29500 {shlex.quote(script)}"
    )
    accelerators = f"{accelerator}:{option['gpus_per_node']}"
    lines = [f"# {line}" for line in _header(option, model, workload)]
    lines += [
        f"name: {_yaml_string('ddlprof-' + model)}",
        f"num_nodes: {option['count']}",
        "resources:",
        f"  cloud: {option['cloud']}",
        f"  region: {option['region']}",
        f"  instance_type: {_yaml_string(instance_type)}",
        f"  accelerators: {_yaml_string(accelerators)}",
        f"  use_spot: {'true' if option['spot'] else 'false'}",
        "workdir: .",
        "run: |",
        f"  {run}",
    ]
    return "\n".join(lines)


# -- CSV and the table ----------------------------------------------------------------------------

CSV_COLUMNS = (
    "rank",
    "cloud",
    "instance_type",
    "region",
    "count",
    "spot",
    "gpu",
    "gpus_per_node",
    "world_size",
    "batch_per_gpu",
    "step_ms",
    "step_source",
    "precision",
    "step_basis",
    "throughput_samples_per_s",
    "usd_per_instance_hour",
    "price_date",
    "compute_hours",
    "egress_usd",
    "hours",
    "total_cost_usd",
    "usd_per_million_samples",
    "pareto",
    "over_budget_usd",
    "over_deadline_hours",
    "other_regions",
    "error_pct",
    "within_error_of_top",
    "copies_per_gpu",
    "energy_kwh",
    "emissions_kg_co2e",
)


def write_csv(options: list[dict[str, Any]], stream: Any) -> None:
    writer = csv.DictWriter(stream, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for option in options:
        writer.writerow(option)


def print_advice(result: dict[str, Any], explain: bool = False) -> None:
    from rich.table import Table

    console = stdout_console()
    if not result["options"]:
        console.print(f"[bold]{result['top_choice']}[/bold]", highlight=False)
        _print_excluded(console, result["excluded"])
        return
    assumptions = result["assumptions"]
    workload = assumptions["workload"]
    step = assumptions["step_time"]
    mape = step["validation"]["step_ms_mape_pct"]
    error = step["scaling_error"]
    met = result["met_constraints"]
    batch = assumptions["batch_per_gpu"]
    title = (
        f"ddlprof advise: {assumptions['model']}, "
        f"{'batch per GPU: the largest that fits each GPU' if batch is None else f'batch {batch} per GPU'}, "
        f"{workload['total_samples']:,.0f} samples"
    )
    if not met:
        title += ": no option meets the limits, the cheapest shown"
    sort = result.get("sort", "cost")  # what ranks them and what ≈ compares
    table = Table(title=title, title_justify="left")
    for name, justify in (
        ("#", "right"),
        ("instance", "left"),
        ("n", "right"),
        ("region", "left"),
        ("pricing", "left"),
        ("GPUs", "left"),
        ("precision", "left"),
        ("batch", "right"),
        ("step ms", "right"),
        ("samples/s", "right"),
        ("hours", "right"),
        ("total $", "right"),
        ("$/1M samples", "right"),
        ("kWh", "right"),
        ("kg CO2e", "right"),
        ("Pareto", "center"),
        ("source", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for option in result["options"]:
        source = f"{_SOURCE[option['step_source']]}"
        basis = option["step_basis"]
        if option["step_source"] == "predicted" and basis.startswith("scaled"):
            source += f", {basis}, err {option['error_pct']:g}%"
            if "no published or measured reference" in option["error_basis"]:
                source += f" (worst case: no {option['gpu']} reference)"
        elif option["step_source"] == "predicted" and basis.startswith(("calibrated", "measured by ddlprof")):
            source += f", {basis.split(':')[0]}, err {option['error_pct']:g}%"
        elif option["step_source"] == "predicted":
            source += f", CV {mape:.1f}%"
        source += f"; price {option['price_date']}"
        if option["egress_usd"]:
            source += f"; egress ${option['egress_usd']:,.2f}"
        total = f"{option['total_cost_usd']:,.2f}"
        if option.get("over_budget_usd") is not None:
            total += f" (+{option['over_budget_usd']:,.2f})"
        hours = figure(option["hours"])  # as --sort time compares them
        if option.get("over_deadline_hours") is not None:
            hours += f" (+{option['over_deadline_hours']:,.1f})"
        pricing = "spot" if option["spot"] else "on-demand"
        region = option["region"] + (f" +{option['other_regions']}" if option["other_regions"] else "")
        marked = option["rank"] > 1 and option.get("within_error_of_top")
        table.add_row(
            f"≈{option['rank']}" if marked else str(option["rank"]),
            option["instance_type"],
            str(option["count"]),
            region,
            pricing,
            f"{option['world_size']} x {option['gpu']}"
            + (
                f", {option['copies_per_gpu']} copies each ({option['packing']['mode']})"
                if option.get("packing")
                else ""
            ),
            option["precision"] or "",
            str(option["batch_per_gpu"]),
            f"{option['step_ms']:,.1f}",
            f"{option['throughput_samples_per_s']:,.0f}",
            hours,
            total,
            f"{option['usd_per_million_samples']:,.3f}",
            "—" if option.get("energy_kwh") is None else f"{option['energy_kwh']:,.1f}",
            "—" if option.get("emissions_kg_co2e") is None else figure(option["emissions_kg_co2e"]),
            "★" if option["pareto"] else "",
            source,
        )
    console.print(table)
    console.print(f"[bold]Top choice:[/bold] {result['top_choice']}", highlight=False)
    spot = assumptions["spot"]
    lines = [
        f"workload: {workload['total_samples']:,.0f} samples = {workload['samples_per_epoch']:,} x "
        f"{workload['epochs']:g} epoch(s); {workload['source']}",
        f"step ms: {step['description']}; pred = {step['stall_model']} stall model, leave-one-model-out "
        f"step error (CV) {mape:.1f}% ({step['validation']['models']} models on 2 x H200 in one host; the "
        "other world sizes and multi-instance jobs are not validated); err = leave-one-GPU-out median error "
        "of the roofline scaling to another GPU or precision against published and our own measured 1-GPU "
        f"throughput ({error['rows']} rows, worst {error['worst_off_by_factor']:g}x; "
        "benchmarks/fit_cross_gpu.py); an option whose GPU type ddlprof measured the model on says "
        "'measured by ddlprof' and uses that step, its error the spread between machines with the CV; one "
        "of the same chip (an H200 for the H100) says 'same chip': that step with its memory-bound part "
        "scaled by the bandwidths, its error the scaling's with the spread and the CV"
        + _batch_error_note(error.get("batch_extrapolation") or {}),
        f"precision: {step['precision']} ({step['precision_meaning']}); measured at "
        f"{step['measured_precision']}",
        f"prices: catalog snapshot {assumptions['catalog']['snapshot_date']} (each row's price date shown)",
        _egress_line(assumptions["egress"]),
        f"spot: checkpoint every {spot['checkpoint_interval_min']:g} min, restart "
        f"{spot['restart_min']:g} min; "
        + (
            f"--interruptions-per-day {spot['interruptions_per_day']:g} for every spot option"
            if spot["interruptions_per_day"] is not None
            else "AWS Spot Instance Advisor buckets: the midpoint as interruptions per instance per month, "
            f"the upper edge for the range; {spot['unpublished_pct_per_month']:g}% a month "
            f"({spot['unpublished_per_day']:g} a day) assumed where none is published (GCP): "
            f"{spot['unpublished_meaning'].split(': ', 1)[1]}"
        ),
        _memory_line(assumptions),
        "energy: GPUs only (host and cooling not counted): measured J/sample where `ddlprof share` "
        "measured it (packed rows), else the GPUs' datasheet max power x hours, an upper bound "
        "(advisor/data/gpu_power.csv); kg CO2e at the region's grid intensity (advisor/data/"
        "grid_intensity.csv: CodeCarbon's tables, GCP per region, AWS per country; per row in --json)",
        "★ Pareto-optimal: no other option is both faster and cheaper; region +N: N more regions "
        f"{REGIONS_LEFT_OUT[sort]} (--all-regions)",
    ]
    if met and sort != "cost":
        lines.append(
            f"ranked by {SORT_FIGURE[sort]} as shown ({SIGNIFICANT} significant figures); equal figures "
            "are tied and the cheaper per sample ranks first"
        )
    if any(o["rank"] > 1 and o.get("within_error_of_top") for o in result["options"]):
        lines.append(WITHIN_ERROR[sort])
    for line in lines:
        console.print(f"  {line}", highlight=False, soft_wrap=True)
    excluded = result["excluded"]
    if not explain:
        if excluded:
            console.print(
                f"  {len(excluded)} group(s) of options excluded (no price, memory, deadline, budget, ...): "
                "--explain lists them with the reasons",
                highlight=False,
            )
        return
    _print_spot(console, result["options"])
    _print_uncertainty(console, result["options"], sort)
    _print_scaling_warnings(console, result["options"])
    _print_excluded(console, excluded)


def _egress_line(egress: dict[str, Any]) -> str:
    if egress["data_region"] is None:
        return (
            "egress: none priced (no --data-region); every option runs in one region, so no gradient "
            "traffic crosses regions"
        )
    return (
        f"egress: {egress['dataset_gb'] or 0:g} GB from {egress['data_region']} to each option elsewhere, at "
        "the source cloud's first-tier price (advisor/data/egress.csv, source and date per route in "
        "--json); inter-region gradient traffic is not modelled: every option runs in one region"
    )


#: Spot options whose interruption numbers --explain prints.
SPOT_SHOWN = 5


def _print_spot(console: Any, options: list[dict[str, Any]]) -> None:
    """The spot model's numbers for the top spot options: rate, its source, expected interruptions,
    hours and USD lost (and their high end where the rate has one)."""
    shown = [o for o in options if o["interruption"]][:SPOT_SHOWN]
    if not shown:
        return
    console.print("[bold]spot interruptions: the top spot options[/bold]", highlight=False)
    for option in shown:
        spot = option["interruption"]
        high = (
            f" (high end {spot['rate_per_day_high']:.4g}/day: {spot['overhead_hours_high']:.3g} h, "
            f"${spot['cost_usd_high']:,.2f})"
            if spot["rate_per_day_high"] is not None
            else " (no high end known)"
        )
        console.print(
            f"  {option['rank']} {option['count']} x {option['instance_type']} {option['region']}: "
            f"{spot['rate_per_day']:.4g} interruptions per instance-day -> "
            f"{spot['expected_interruptions']:.2f} expected over {option['compute_hours']:,.1f} h x "
            f"{option['count']} instance(s), {spot['hours_lost_per_interruption'] * 60:g} min lost each = "
            f"{spot['overhead_hours']:.3g} h, ${spot['cost_usd']:,.2f}{high}; price of "
            f"{option['price_date']}; rate: {spot['source']}",
            highlight=False,
            soft_wrap=True,
        )


def _print_uncertainty(console: Any, options: list[dict[str, Any]], sort: str = "cost") -> None:
    """The basis and error of the top choice and of every option within its error, with the range of the
    figure they are ranked by."""
    shown = [o for o in options if o["rank"] == 1 or o.get("within_error_of_top")]
    if not shown:
        return
    title = f"uncertainty: the top choice and the options within its error ({SORT_FIGURE[sort]})"
    console.print(f"[bold]{title}[/bold]", highlight=False)
    for option in shown:
        mark = "" if option["rank"] == 1 else "≈"
        console.print(
            f"  {mark}{option['rank']} {option['count']} x {option['instance_type']} "
            f"({'spot' if option['spot'] else 'on-demand'}): {_sort_range(option, sort)}, "
            f"±{option['error_pct']:g}%; {option['error_basis']}",
            highlight=False,
            soft_wrap=True,
        )


#: What each ``--sort`` ranks by, in the legend.
SORT_FIGURE = {
    "cost": "cost per sample",
    "worst": "worst-case cost per sample",
    "time": "hours",
    "carbon": "kg CO2e",
}

#: The regions ``region +N`` counts, per ``--sort`` (``ranking.best_region`` keeps the best-ranked one).
REGIONS_LEFT_OUT = {
    "cost": "priced higher",
    "worst": "priced higher",
    "time": "slower, or as fast and priced higher",
    "carbon": "with more kg CO2e, or as much and priced higher",
}

#: The ``≈`` legend per ``--sort``: the range each compares (``Option.sort_range``).
WITHIN_ERROR = {
    "cost": "≈: cost per sample within the error of the top choice; the ranking among them is not certain "
    "(each row's step time, and so its cost, lies within ± its err/CV: cost_per_1m_samples_range in --json)",
    "worst": "≈: cost per sample within the error of the top choice; the ranking among them is not certain "
    "(ranked by the high end of each row's range: cost_per_1m_samples_range in --json)",
    "time": "≈: hours within the error of the top choice; the ranking among them is not certain (each "
    "row's step time, and so its hours, lies within ± its err/CV, the high end raised by the spot "
    "interruption rate's: hours_range in --json)",
    "carbon": "≈: kg CO2e within the error of the top choice; the ranking among them is not certain (the "
    "energy is power x hours, so kg CO2e spans the row's hours range; a measured J/sample row only the "
    "spot interruptions' redone work; the power and grid figures' own error not counted: "
    "emissions_kg_co2e_range in --json)",
}


def _sort_range(option: dict[str, Any], sort: str) -> str:
    if sort == "time":
        low, high = option["hours_range"]
        return f"{figure(low)}-{figure(high)} h"
    if sort == "carbon":
        low, high = option["emissions_kg_co2e_range"] or (None, None)
        return "no emissions figure" if low is None else f"{figure(low)}-{figure(high)} kg CO2e"
    low, high = option["cost_per_1m_samples_range"]
    return f"${low:,.3f}-{high:,.3f} per 1M samples"


def _print_scaling_warnings(console: Any, options: list[dict[str, Any]]) -> None:
    """What the roofline scaling warned of, once per GPU type and precision shown."""
    seen: dict[tuple[str, str], list[str]] = {}
    for option in options:
        key = (option["gpu"], option["precision"] or "")
        if option.get("step_warnings") and key not in seen:
            seen[key] = option["step_warnings"]
    if not seen:
        return
    console.print("[bold]step-time scaling warnings[/bold]", highlight=False)
    for (gpu, precision), warnings in seen.items():
        for warning in warnings:
            console.print(f"  {gpu} {precision}: {warning}", highlight=False, soft_wrap=True)


def _print_excluded(console: Any, excluded: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title="excluded options", title_justify="left")
    for name in ("instance", "regions", "n", "pricing", "reason"):
        table.add_column(name)
    for item in excluded:
        regions = item["regions"] if isinstance(item["regions"], str) else ", ".join(item["regions"])
        counts = item["counts"] if isinstance(item["counts"], str) else ",".join(map(str, item["counts"]))
        spot_values = item["spot"]
        pricing = (
            "all"
            if isinstance(spot_values, str)
            else "/".join("spot" if value else "on-demand" for value in spot_values)
        )
        table.add_row(item["instance_type"], regions, counts, pricing, item["reason"])
    console.print(table)


def _batch_error_note(extrapolation: dict) -> str:
    """What a batch outside the measured ones adds to err, where that was measured."""
    if extrapolation.get("per_doubling_pct") is None:
        return ""
    low, high = extrapolation["measured_batches"]
    return (
        f", plus {extrapolation['per_doubling_pct']:g}% per doubling of a batch outside the measured "
        f"{low}-{high} (the median of {extrapolation['pairs']} measured large-batch steps)"
    )
