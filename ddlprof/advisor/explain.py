"""What ``ddlprof advise`` says about its answer: where each step time comes from, every assumption
made, the warnings, and the top choice in one sentence."""

from __future__ import annotations

from datetime import date
from typing import Any

from ddlprof.advisor.catalog import STALE_AFTER_DAYS, Catalog
from ddlprof.advisor.filters import batch_per_gpu_type
from ddlprof.advisor.options import (
    SIGNIFICANT,
    Advice,
    AdviseRequest,
    Option,
    figure,
    figure_value,
    lowest_worst_case,
)
from ddlprof.advisor.spot import BUCKETS_PCT, UNPUBLISHED_PCT_PER_MONTH, UNPUBLISHED_REASON, per_day
from ddlprof.advisor.throughput import StepBasis
from ddlprof.advisor.workloads import Workload
from ddlprof.models.batchfit import MAX_BATCH
from ddlprof.models.memory import MEMORY_CONTEXT_GB, MEMORY_FRAGMENTATION
from ddlprof.models.published import scaling_error
from ddlprof.models.step_error import DATASET_BATCHES


def step_provenance(basis: StepBasis, fitted: Any) -> dict[str, str]:
    cv = fitted.cv(fitted.selected)
    single = (
        "the single-GPU step measured on one H200"
        if basis.kind == "dataset"
        else f"the single-GPU step of {basis.description}"
    )
    error = scaling_error()
    stall = (
        f"{fitted.selected} stall model (leave-one-model-out step MAPE {cv['step_ms_mape_pct']:.1f}%, "
        f"{cv['models']} models, world size 2 on one node only)"
    )
    return {
        "predicted": f"predicted: {stall} on {single}",
        "scaled": f"predicted: {stall} on {single}, scaled to the GPU and precision by fitted roofline "
        "ratios (that scaling's leave-one-GPU-out median error against published and our own measured "
        "1-GPU throughput: "
        f"{error['median_abs_error_pct']:g}%, "
        f"worst {error['worst_off_by_factor']:g}x over {error['rows']} rows; the CV does not cover it)",
        "measured": f"measured: {basis.description}",
        "calibrated": f"predicted: {stall} on the single-GPU step measured on the option's GPU type",
    }


def assumptions(
    request: AdviseRequest,
    basis: StepBasis,
    workload: Workload,
    catalog: Catalog,
    fitted: Any,
    required_gb: float | None,
    met: bool = True,
) -> dict[str, Any]:
    cv = fitted.cv(fitted.selected)
    fixed_batch = not batch_per_gpu_type(request, basis)
    return {
        "model": basis.model,
        "workload": workload.to_dict(),
        # None: each option at the largest batch that fits its GPU (the option's batch_per_gpu says)
        "batch_per_gpu": basis.batch_per_gpu if fixed_batch else None,
        "batch_per_gpu_choice": "given, or the run's"
        if fixed_batch
        else f"the largest power of two (at most {MAX_BATCH}) whose memory estimate fits each option's GPU",
        "step_time": {
            "basis": basis.kind,
            "description": basis.description,
            "stall_model": fitted.selected,
            "validation": {
                "step_ms_mape_pct": cv["step_ms_mape_pct"],
                "method": cv["method"],
                "models": cv["models"],
                "rows": cv["rows"],
            },
            "gpus_per_node": "every GPU of the instance",
            "intra_node_bandwidth": "from the GPU type's NVLink or PCIe generation, calibrated on the "
            "measured H200 pair (as `ddlprof model predict --instance`)",
            "inter_node_bandwidth": "the catalog's network Gbit/s / 8 taken as the all-reduce bus bandwidth "
            "(EFA/GPUDirect can beat it, TCP on a busy link falls short; 'up to' rates are bursts)",
            "extrapolation": "trained on world size 2 in one host: other world sizes and every "
            "multi-instance option are extrapolations of the stall model, not validated",
            "precision": basis.precision or f"as measured ({basis.measured_precision})",
            "precision_meaning": "amp: autocast to bf16 where the GPU has BF16 tensor cores (Ampere and "
            "later), else fp16; each option's precision field says which",
            "measured_precision": basis.measured_precision,
            "scaling_error": scaling_error(),
        },
        "throughput": "world size x batch per GPU x 1000 / step_ms",
        "hours": "samples x epochs / throughput / 3600, plus the expected interruption overhead for spot",
        "total_cost": "hours x USD per instance-hour x instances + egress of the dataset",
        "egress": {
            "data_region": request.data_region,
            "dataset_gb": request.dataset_gb,
            "meaning": "moving --dataset-gb once from --data-region to the option's region, at the source "
            "cloud's first-tier price (inter-region within a cloud, internet to the other cloud; ingress "
            "free); 0 in the data region or without --data-region; routes with no sourced price are "
            "excluded; sources per row in advisor/data/egress.csv",
            "gradient_traffic": "not modelled across regions: every option runs in one region of one cloud",
        },
        "spot": {
            "checkpoint_interval_min": request.checkpoint_interval_min,
            "restart_min": request.restart_min,
            "lost_per_interruption": "half a checkpoint interval of work + the restart, all instances billed",
            "expected_interruptions": "instances x interruptions per instance-day x compute hours / 24 "
            "(first order)",
            "interruptions_per_day": request.interruptions_per_day,
            "given_meaning": "--interruptions-per-day, when given, is used for every spot option (AWS too)",
            "aws_buckets_pct_per_month": {k: list(v) for k, v in BUCKETS_PCT.items()},
            "aws_buckets_meaning": "Spot Instance Advisor 'frequency of interruption' (trailing month), "
            "read as interruptions per instance per month: the midpoint is the rate, the upper edge the "
            "range's high end; '>20%' has no upper edge: 20% is the rate (a floor), no high end",
            "unpublished_pct_per_month": UNPUBLISHED_PCT_PER_MONTH,
            "unpublished_per_day": round(per_day(UNPUBLISHED_PCT_PER_MONTH), 6),
            "unpublished_meaning": f"assumed where no rate is published (GCP; AWS rows without a bucket): "
            f"{UNPUBLISHED_REASON}",
        },
        "memory": {  # at the basis' batch; with the batch chosen per GPU, each option's memory_required_gb
            "estimate_gb": None
            if basis.memory_bytes is None or not fixed_batch
            else round(basis.memory_bytes / 1e9, 3),
            "source": basis.memory_source or "none: memory fit not checked",
            "required_gb": None if required_gb is None or not fixed_batch else round(required_gb, 3),
            "allowance": f"+{MEMORY_FRAGMENTATION:.0%} allocator fragmentation, +{MEMORY_CONTEXT_GB:g} GB "
            "CUDA context and library workspaces",
        },
        "catalog": {
            "snapshot_date": catalog.snapshot_date.isoformat(),
            "age_days": catalog.snapshot_age_days(),
            "directory": str(catalog.data_dir),
            # shipped, refreshed by `ddlprof catalog refresh`, or $DDLPROF_CATALOG_DIR
            "origin": getattr(catalog, "origin", None),
        },
        "ranking": ranking_words(request, met),
        "filters": {
            "budget_usd": request.budget_usd,
            "deadline_hours": request.deadline_hours,
            "clouds": list(request.clouds) if request.clouds else ["aws", "gcp"],
            "regions": list(request.regions) if request.regions else "all",
            "instances": list(request.instances) if request.instances else "all",
            "spot": {None: "both", True: "spot only", False: "on-demand only"}[request.spot],
            "max_nodes": request.max_nodes,
        },
        "notes": basis.notes,
    }


#: ``assumptions["ranking"]``: each ``--sort`` in words, and what the regions left out are.
SORT_WORDS = {
    "cost": (
        "USD per 1M samples, lowest first (ties: fewer hours first)",
        "the others cost more for the same time",
    ),
    "worst": (
        "the high end of USD per 1M samples (the figure plus its error), lowest first (ties: the lower "
        "figure first)",
        "the others cost more for the same time",
    ),
    "time": (
        f"hours, fewest first, at {SIGNIFICANT} significant figures as the table shows them (whole hours "
        "from 100 up); ties: USD per 1M samples, lowest first",
        "the others take longer, or as long for more money",
    ),
    "carbon": (
        f"kg CO2e, lowest first, at {SIGNIFICANT} significant figures as the table shows them (options "
        "without an emissions figure last); ties: USD per 1M samples, lowest first",
        "the others emit more, or as much for more money",
    ),
}


def ranking_words(request: AdviseRequest, met: bool = True) -> str:
    """How the options are ranked (``assumptions["ranking"]``)."""
    order, others = SORT_WORDS[request.sort]
    if not met:
        order = "no option meets the budget and deadline: total cost, lowest first (whatever --sort says)"
        others = "the others cost more"
    words = f"{order}; Pareto: not beaten in both hours and total cost"
    if request.all_regions:
        return words
    return (
        f"{words}; one row per instance type, count and pricing: its best region ({others}; "
        "other_regions counts them, --all-regions lists them)"
    )


def oldest_price_dates(options: list[Option]) -> dict[str, date]:
    """Each cloud's oldest price date among the options (the rows the ranking uses)."""
    oldest: dict[str, date] = {}
    for option in options:
        dated = option.price.spot_source_date if option.spot else option.price.source_date
        if dated is not None and (option.cloud not in oldest or dated < oldest[option.cloud]):
            oldest[option.cloud] = dated
    return oldest


def price_age_warning(options: list[Option], today: date | None = None) -> str | None:
    """One line when any price in use is older than 30 days: each cloud's oldest price date in use and
    its age (the snapshot's date is only its newest source)."""
    today = today or date.today()
    oldest = oldest_price_dates(options)
    if not oldest or all((today - d).days <= STALE_AFTER_DAYS for d in oldest.values()):
        return None
    ages = ", ".join(
        f"{cloud} {day.isoformat()} ({(today - day).days} days old)" for cloud, day in sorted(oldest.items())
    )
    return (
        f"the oldest prices in use are: {ages}; prices may have changed since, check each figure's "
        "source (ddlprof catalog show INSTANCE)"
    )


def advice_warnings(
    basis: StepBasis, catalog: Catalog, workload: Workload, options: list[Option]
) -> list[str]:
    out = [*basis.notes]
    if workload.note:
        out.append(workload.note)
    stale = price_age_warning(options) if options else catalog.staleness_warning()
    if stale:
        out.append(stale)
    ranges: dict[tuple[int, int], set[int]] = {}  # measured batches -> the batches beyond them
    for option in options:
        if option.step.batch_outside:
            batch, low, high = option.step.batch_outside
            ranges.setdefault((low, high), set()).add(batch)
    low, high = DATASET_BATCHES
    if not options and not low <= basis.batch_per_gpu <= high:
        ranges[(low, high)] = {basis.batch_per_gpu}
    if ranges:
        beyond = "; ".join(
            f"{', '.join(map(str, sorted(batches)))} outside the measured {lo}-{hi}"
            for (lo, hi), batches in sorted(ranges.items())
        )
        out.append(
            f"batch per GPU {beyond}: step times are extrapolated (linearly in the batch from the "
            "measured ones; the further out, the further off they can be, BENCHMARKS.md: issue 14)"
        )
    if basis.memory_bytes is None:
        out.append("no memory estimate for this model: GPU memory fit not checked")
    from ddlprof.models.predict import tuned_code_note  # pandas: not at advise's start-up

    if basis.kind == "dataset" and (
        tuned := tuned_code_note(basis.model, (o.step.precision for o in options))
    ):
        out.append(tuned)
    return out


def format_hours(hours: float) -> str:
    """'3.21 h' (as the table shows hours: :func:`figure`), or minutes under an hour."""
    return f"{hours * 60:.0f} min" if hours < 1 else f"{figure(hours)} h"


def explain_top(advice: Advice) -> str:
    """The top choice in one sentence."""
    if not advice.options:
        return "No option is left to rank: every one was excluded, for the reasons listed."
    top = advice.options[0]
    request = advice.request
    limits = []
    if request.budget_usd is not None:
        limits.append(f"the ${request.budget_usd:,.0f} budget")
    if request.deadline_hours is not None:
        limits.append(f"the {request.deadline_hours:g} h deadline")
    within = " and ".join(limits)
    samples = f"{advice.workload.total_samples:,.0f} samples"
    if not advice.met_constraints:
        over = []
        if top.over_budget_usd is not None:
            over.append(f"${top.over_budget_usd:,.2f} over budget")
        if top.over_deadline_hours is not None:
            over.append(f"{format_hours(top.over_deadline_hours)} over the deadline")
        return (
            f"No option meets {within}: the cheapest is {top.label}, ${top.total_cost_usd:,.2f} for the "
            f"{samples} in {format_hours(top.hours)} ({', '.join(over)})."
        )
    sort = advice.sort_key
    lead = (
        "No option has an emissions figure (no sourced GPU power or grid intensity), so by cost: "
        if request.sort == "carbon" and sort == "cost"
        else ""
    )
    of = f"of the {len(advice.options)} options{' within ' + within if within else ''}"
    low, high = top.total_cost_range()
    cost = f"${top.total_cost_usd:,.2f} (${low:,.2f} to ${high:,.2f})"
    per_sample = f"${top.usd_per_million_samples:,.3f} per 1M samples"  # as the table shows it
    step = (
        f"at {top.step.precision}, batch {top.batch_per_gpu} per GPU, step time {top.step.basis} "
        f"(error {top.error_pct:.0f}%)"
    )
    cheapest = min(advice.options, key=lambda o: (o.usd_per_million_samples, o.hours))
    if sort == "worst":
        tail = (
            "; it is also the cheapest expected"
            if cheapest is top
            else f"; the cheapest expected, {cheapest.label}, costs ${cheapest.usd_per_million_samples:,.3f} "
            f"per 1M samples but up to ${cheapest.cost_per_million_range()[1]:,.3f} (error "
            f"{cheapest.error_pct:.0f}%)"
        )
        return (
            f"{top.label} has the lowest worst-case cost per sample (at most "
            f"${top.cost_per_million_range()[1]:,.3f} per 1M samples, {per_sample} expected) {of}: {cost} "
            f"for the {samples} in {format_hours(top.hours)} {step}{tail}."
        )
    if sort == "cost":
        fastest = min(advice.options, key=lambda o: o.hours)
        tail = (
            "; it is also the fastest"
            if fastest is top
            else f"; the fastest, {fastest.count} x {fastest.instance_type}, takes "
            f"{format_hours(fastest.hours)} for ${fastest.total_cost_usd:,.2f}"
        )
        if not top.error_referenced and request.model:
            tail += (
                f"; no published or measured {top.gpu} figure checks its step: `ddlprof calibrate --model "
                f"{request.model} --batch-per-gpu {top.batch_per_gpu}` on one {top.instance_type} (a few "
                "minutes) gives advise a measured one"
            )
        safest = lowest_worst_case(advice.options)
        if safest is not top:
            tail += (
                f"; the lowest worst case is {safest.label}: at most ${safest.total_cost_range()[1]:,.2f} "
                f"(${safest.total_cost_usd:,.2f}, error {safest.error_pct:.0f}%) against ${high:,.2f}"
            )
        return (
            f"{lead}{top.label} has the lowest cost per sample ({per_sample}) {of}: {cost} for the "
            f"{samples} in {format_hours(top.hours)} {step}{tail}."
        )
    tail = (
        "; it is also the cheapest per sample"
        if cheapest.usd_per_million_samples >= top.usd_per_million_samples
        else f"; the cheapest per sample, {cheapest.label}, costs ${cheapest.usd_per_million_samples:,.3f} "
        f"per 1M samples and takes {format_hours(cheapest.hours)}"
        + (
            f" and emits {figure(cheapest.kg_co2e)} kg CO2e"
            if sort == "carbon" and cheapest.kg_co2e is not None
            else ""
        )
    )
    if sort == "time":
        hours_low, hours_high = top.hours_range()
        key = (
            f"is the fastest {of}: the {samples} in {figure(top.hours)} h ({format_hours(top.hours)}; "
            f"{figure(hours_low)} to {figure(hours_high)} h)"
        )
        tied = [o for o in advice.options if figure_value(o.hours) == figure_value(top.hours)]
        what = "time"
    else:
        kg = top.kg_co2e
        emissions = top.emissions_range() or (kg, kg)
        energy = (
            "the GPUs' max power x hours, an upper bound"
            if top.energy["basis"].startswith("upper bound")
            else "measured J per sample"
        )
        key = (
            f"has the lowest emissions {of}: {figure(kg)} kg CO2e ({figure(emissions[0])} to "
            f"{figure(emissions[1])}; {top.energy['kwh']:,.1f} kWh from {energy}) for the {samples} "
            f"in {format_hours(top.hours)}"
        )
        tied = [
            o for o in advice.options if o.kg_co2e is not None and figure_value(o.kg_co2e) == figure_value(kg)
        ]
        what = "emissions"
    tie = (
        f", tied on {what} with {len(tied) - 1} other option(s) at {SIGNIFICANT} significant figures and "
        "the cheapest per sample of them"
        if len(tied) > 1
        else ""
    )
    return f"{top.label} {key}{tie}, costing {cost}, {per_sample}, {step}{tail}."
