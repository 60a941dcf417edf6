"""Rank cloud options for a training job by cost per throughput: the one job of ``ddlprof advise``.

An *option* is an instance type x a count of instances (1 to ``max_nodes``) x a region x on-demand
or spot, from the catalog snapshot (``ddlprof.advisor.catalog``). For each option:

- **GPUs**: every GPU of each instance (``gpus_per_node`` = the instance's ``gpu_count``), so the
  world size is ``gpu_count x count``.
- **Step time**, ms: predicted or measured (``ddlprof.advisor.throughput``, all options in one batch).
- **Throughput** = world size x batch per GPU x 1000 / step_ms, samples/s.
- **Hours** = samples x epochs / throughput / 3600 (+ the spot overhead, ``ddlprof.advisor.spot``).
- **Total cost** = hours x price per instance-hour x instances + egress: moving ``--dataset-gb`` from
  ``--data-region`` to the option's region, at the source cloud's published price
  (``ddlprof.advisor.egress``; 0 in the data region or without ``--data-region``). Every option lies in
  one region of one cloud, so no gradient traffic crosses regions (none is priced); storage and the
  egress of results are not priced.

Options are filtered (memory, price, predictability, ``--deadline``, ``--budget``:
``ddlprof.advisor.filters``), ranked by USD per 1M samples, and the Pareto-optimal ones (time vs.
total cost, ``ddlprof.advisor.pareto``) are marked; ``ddlprof.advisor.explain`` says where every
number comes from and explains the top choice. Options left out say why; when no option meets the
budget and deadline, the cheapest ones are shown with how far over they are. No torch on the path of
the dataset's models.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from ddlprof.advisor import egress as egress_module
from ddlprof.advisor.carbon import option_energy
from ddlprof.advisor.catalog import Catalog, Instance, load_catalog
from ddlprof.advisor.explain import advice_warnings, assumptions, explain_top, step_provenance
from ddlprof.advisor.filters import (
    Exclusions,
    batch_per_gpu_type,
    check_filters,
    fit_memory,
    within_limits,
)
from ddlprof.advisor.options import Advice, AdviseRequest, Option, figure_value, sort_used, worst_case_key
from ddlprof.advisor.packing import measured_factors, packed_options
from ddlprof.advisor.pareto import pareto_front
from ddlprof.advisor.spot import interruption_for
from ddlprof.advisor.throughput import (
    StepBasis,
    StepEstimate,
    dataset_basis,
    given_basis,
    measured_model,
    predict_steps,
    run_basis,
)
from ddlprof.advisor.uncertainty import overlaps
from ddlprof.advisor.workloads import resolve_workload
from ddlprof.errors import DdlprofError
from ddlprof.models.gpus import DEFAULT_PRECISION
from ddlprof.models.memory import memory_required_gb

DEFAULT_BATCH_PER_GPU = 32


# -- the arithmetic ---------------------------------------------------------------------------------


def training_hours(total_samples: float, throughput_samples_per_s: float) -> float:
    return total_samples / throughput_samples_per_s / 3600


def total_cost_usd(hours: float, usd_per_instance_hour: float, instances: int) -> float:
    """hours x price per instance-hour x instances (egress is added by :func:`add_egress`)."""
    return hours * usd_per_instance_hour * instances


def usd_per_million_samples(total_usd: float, total_samples: float) -> float:
    return total_usd / total_samples * 1e6


# -- options and ranking ---------------------------------------------------------------------------


def make_basis(request: AdviseRequest) -> StepBasis:
    """The step basis the request asks for: a run, a given single-GPU step, or the dataset's model."""
    batch = request.batch_per_gpu
    if batch is not None and batch < 1:
        raise DdlprofError(f"--batch-per-gpu must be at least 1, got {batch}")
    if request.run_dir is not None:
        if request.single_gpu_step_ms is not None:
            raise DdlprofError("pass --run or --single-gpu-step-ms, not both")
        return run_basis(request.run_dir, request.model, batch, request.precision)
    if request.model is None:
        raise DdlprofError("pass --model NAME (or --run RUN_DIR)")
    batch = batch or DEFAULT_BATCH_PER_GPU
    if request.single_gpu_step_ms is not None:
        if request.step_gpu is None:
            raise DdlprofError("--single-gpu-step-ms needs --step-gpu GPU (the GPU it was measured on)")
        return given_basis(
            request.model, batch, request.single_gpu_step_ms, request.step_gpu, request.precision
        )
    if request.step_gpu is not None:
        raise DdlprofError("--step-gpu only goes with --single-gpu-step-ms")
    return dataset_basis(request.model, batch, request.precision)


def advise(request: AdviseRequest, catalog: Catalog | None = None, fitted: Any = None) -> Advice:
    """Enumerate, predict, price, filter and rank every option of the request."""
    catalog = catalog or load_catalog()
    instances, regions = check_filters(request, catalog)
    data_cloud = check_data_region(request, catalog)
    basis = make_basis(request)
    if fitted is None:
        from ddlprof.models.registry import load_models

        fitted = load_models()
    required_gb = memory_required_gb(basis.memory_bytes) if basis.memory_bytes else None
    excluded = Exclusions()
    counts = range(1, request.max_nodes + 1)
    candidates = []
    for batch_basis, group in _batches(request, basis, instances, excluded):
        group_gb = memory_required_gb(batch_basis.memory_bytes) if batch_basis.memory_bytes else None
        fitting = fit_memory(group, batch_basis, group_gb, excluded)
        steps = predict_steps(batch_basis, [(i, n) for i in fitting for n in counts], fitted)
        candidates += _priced(fitting, steps, catalog, regions, batch_basis, request, group_gb, excluded)
    packing_note = None
    if request.jobs:
        factors = measured_factors(request.model or "")
        candidates += packed_options(candidates, request, factors)
        packing_note = _packing_note(request, factors)
    if data_cloud is not None:
        candidates = add_egress(candidates, request, data_cloud, excluded)
    assign_errors(candidates, basis, fitted)  # before ranking: --sort worst ranks by them
    feasible = within_limits(candidates, request, excluded)
    met = bool(feasible)
    if met:
        if request.sort == "carbon":  # else only the options left after best_region need it
            add_energy(feasible, request)
        ranked = sorted(feasible, key=SORT_KEYS[request.sort])
    else:  # nothing meets the budget and deadline: the cheapest, with how far over they are
        ranked = sorted(candidates, key=lambda o: (o.total_cost_usd, o.hours, o.instance_type, o.region))
    if not request.all_regions:
        ranked = best_region(ranked)
    if not met or request.sort != "carbon":
        add_energy(ranked, request)
    mark_within_error(ranked, sort_used(request.sort, met, ranked))
    front = pareto_front([(o.hours, o.total_cost_usd) for o in ranked])
    for option, on_front in zip(ranked, front, strict=True):
        option.pareto = on_front

    advice = Advice(
        options=ranked,
        excluded=excluded.grouped(),
        assumptions=assumptions(request, basis, request.workload, catalog, fitted, required_gb, met),
        met_constraints=met,
        top_choice="",
        warnings=[
            *advice_warnings(basis, catalog, request.workload, ranked),
            *([packing_note] if packing_note else []),
            *([fitted.fallback] if getattr(fitted, "fallback", None) else []),
        ],
        basis=basis,
        workload=request.workload,
        request=request,
        step_provenance=step_provenance(basis, fitted),
        catalog_date=catalog.snapshot_date.isoformat(),
        candidates=len(candidates),
    )
    advice.top_choice = explain_top(advice)
    return advice


#: ``--sort``: what ranks the options that meet the limits. Hours and kg CO2e are compared as the table
#: shows them (``figure_value``: 3 significant figures), so that options equal there are tied; ties go to
#: the cheaper per sample, then the exact figure, then names.
SORT_KEYS = {
    "cost": lambda o: (o.usd_per_million_samples, o.hours, o.instance_type, o.region),
    "worst": worst_case_key,  # the high end of the cost per sample: what an option costs at most
    "time": lambda o: (
        figure_value(o.hours),
        o.usd_per_million_samples,
        o.hours,
        o.instance_type,
        o.region,
    ),
    "carbon": lambda o: (
        o.kg_co2e is None,  # options without an emissions figure last
        figure_value(o.kg_co2e or 0.0),
        o.usd_per_million_samples,
        o.kg_co2e or 0.0,
        o.instance_type,
        o.region,
    ),
}


def add_energy(options: list[Option], request: AdviseRequest) -> None:
    """Each option's energy and emissions (``ddlprof.advisor.carbon``): measured joules per sample for
    a packed option where ``ddlprof share`` measured them, else the GPUs' maximum power."""
    for option in options:
        packing = option.packing or {}
        option.energy = option_energy(
            option.gpu,
            option.world_size,
            option.hours,
            option.compute_hours,
            request.total_samples,
            option.cloud,
            option.region,
            packing.get("joules_per_sample"),
            packing.get("source"),
        )


def _packing_note(request: AdviseRequest, factors: dict[str, list]) -> str | None:
    """What ``--jobs`` could use: which GPU types have a measured packing factor, or that none has."""
    model = request.model or "the run's model"
    if not factors:
        return (
            f"--jobs {request.jobs}: no packing factor measured for {model} (none in the local store); "
            f"no option packs copies on a GPU. `ddlprof share -n 1,2,4 --model {model} -- CMD` on a GPU "
            "measures one"
        )
    return None


def assign_errors(options: list[Option], basis: StepBasis, fitted: Any) -> None:
    """Each option's step-time error (``ddlprof.models.step_error``). Hours and cost are taken as
    proportional to the step time (the spot overhead is, to first order), so they carry the same
    relative error."""
    from ddlprof.models import predict as predict_module
    from ddlprof.models.published import scaling_error
    from ddlprof.models.step_error import step_error

    cv_pct = float(fitted.cv(fitted.selected)["step_ms_mape_pct"])
    measured = [basis.gpu] if basis.gpu else [predict_module._reference_gpu().gpu]
    scaling = scaling_error()
    for option in options:
        error = step_error(option.step, option.gpu, cv_pct, measured, scaling)
        option.error_pct, option.error_basis = error.pct, error.basis
        option.error_referenced = error.referenced


def mark_within_error(ranked: list[Option], sort: str = "cost") -> None:
    """Whether each option's range on the sort key (``Option.sort_range``: cost per sample, hours or
    kg CO2e) overlaps the top option's; an option (or a top) without the figure is within no one's
    error."""
    if ranked:
        top = ranked[0].sort_range(sort)
        for option in ranked:
            own = option.sort_range(sort)
            option.within_error_of_top = top is not None and own is not None and overlaps(own, top)


def advise_result(
    model: str | None = None,
    *,
    run: Path | None = None,
    single_gpu_step_ms: float | None = None,
    step_gpu: str | None = None,
    precision: str | None = DEFAULT_PRECISION,
    batch_per_gpu: int | None = None,
    samples: str | None = None,
    dataset: str | None = None,
    epochs: float | None = None,
    budget: float | None = None,
    deadline: float | None = None,
    clouds: list[str] | None = None,
    regions: list[str] | None = None,
    instances: list[str] | None = None,
    spot: bool | None = None,
    max_nodes: int = 4,
    checkpoint_interval: float = 30.0,
    restart_time: float = 10.0,
    interruptions_per_day: float | None = None,
    data_region: str | None = None,
    dataset_gb: float | None = None,
    all_regions: bool = False,
    top: int = 10,
    jobs: int | None = None,
    sort: str = "cost",
) -> tuple[Advice, dict[str, Any]]:
    """``ddlprof advise`` with its flags as keywords: the ``Advice`` and its JSON (what ``--json`` prints).

    The CLI and the dashboard's Advisor page both call this; a bad input is a ``DdlprofError``.
    ``precision`` None (the CLI without ``--precision``) is the default, ``amp``.
    """
    precision = precision or DEFAULT_PRECISION
    if model is None and run is None:
        raise DdlprofError("pass --model NAME (or --run RUN_DIR); e.g. ddlprof advise --model resnet50")
    if top < 0:
        raise DdlprofError(f"--top must be 0 (all) or more, got {top}")
    if run is None and single_gpu_step_ms is None:
        measured_model(model)  # an unknown name fails here, before its workload does
    # a run's model may be unnamed: its workload needs --samples or --dataset (or a known --model)
    workload = resolve_workload(model or "the run's model", samples, dataset, epochs)
    request = AdviseRequest(
        model=model,
        workload=workload,
        batch_per_gpu=batch_per_gpu,
        run_dir=run,
        single_gpu_step_ms=single_gpu_step_ms,
        step_gpu=step_gpu,
        precision=precision,
        budget_usd=budget,
        deadline_hours=deadline,
        clouds=clouds,
        regions=regions,
        instances=instances,
        spot=spot,
        max_nodes=max_nodes,
        checkpoint_interval_min=checkpoint_interval,
        restart_min=restart_time,
        interruptions_per_day=interruptions_per_day,
        data_region=data_region,
        dataset_gb=dataset_gb,
        all_regions=all_regions,
        jobs=jobs,
        sort=sort,
    )
    if sort not in SORT_KEYS:
        raise DdlprofError(f"--sort {sort!r}: one of {', '.join(SORT_KEYS)}")
    if jobs is not None and jobs < 1:
        raise DdlprofError(f"--jobs must be at least 1, got {jobs}")
    advice = advise(request)
    return advice, advice.to_dict(top=top or None)


def _batches(
    request: AdviseRequest, basis: StepBasis, instances: list[Instance], excluded: Exclusions
) -> list[tuple[StepBasis, list[Instance]]]:
    """The batch per GPU each instance type is predicted at, with its basis: ``--batch-per-gpu``, or a
    run's own batch, for all; otherwise (a model of the dataset) the largest power of two whose memory
    estimate fits the instance's GPU (``ddlprof.models.batchfit``), as users fill the GPU."""
    if not batch_per_gpu_type(request, basis):
        return [(basis, instances)]
    from ddlprof.models.batchfit import largest_fitting_batch

    groups: dict[int, list[Instance]] = {}
    for instance in instances:
        fits = largest_fitting_batch(
            basis.model, instance.gpu_memory_gb, memory_required_gb, precision=basis.precision
        )
        if fits is None:  # not even batch 1: fit_memory says so at the default batch
            groups.setdefault(basis.batch_per_gpu, []).append(instance)
        else:
            groups.setdefault(fits[0], []).append(instance)
    return [
        (basis if batch == basis.batch_per_gpu else dataset_basis(basis.model, batch, basis.precision), group)
        for batch, group in sorted(groups.items())
    ]


def _priced(
    instances: list[Instance],
    steps: dict[tuple[str, int], StepEstimate | str],
    catalog: Catalog,
    regions: set[str] | None,
    basis: StepBasis,
    request: AdviseRequest,
    required_gb: float | None,
    excluded: Exclusions,
) -> list[Option]:
    """Every option with a step time and a price: throughput, hours and total cost."""
    spot_modes = [False, True] if request.spot is None else [request.spot]
    total_samples = request.total_samples
    options = []
    for instance in instances:
        prices = [
            p for p in catalog.prices_for(instance.instance_type) if regions is None or p.region in regions
        ]
        if not prices:  # none at all, or none in --regions (then it is not listed: the user chose)
            if regions is None:
                reason = "no prices in the catalog snapshot (see 'missing' in catalog.json)"
                excluded.add(instance, "no_prices", reason)
            continue
        for count in range(1, request.max_nodes + 1):
            step = steps[(instance.instance_type, count)]
            if isinstance(step, str):
                excluded.add(instance, "prediction", step, count=count)
                continue
            throughput = instance.gpu_count * count * basis.batch_per_gpu * 1000 / step.step_ms
            compute_hours = training_hours(total_samples, throughput)
            for price in prices:
                for spot in spot_modes:
                    hourly = price.spot_usd_per_hour if spot else price.on_demand_usd_per_hour
                    if hourly is None:
                        kind = "spot" if spot else "on-demand"
                        reason = f"no {kind} price in the catalog snapshot"
                        excluded.add(
                            instance, f"no_{kind}_price", reason, region=price.region, count=count, spot=spot
                        )
                        continue
                    interruption = (
                        interruption_for(
                            price,
                            count,
                            compute_hours,
                            hourly,
                            request.checkpoint_interval_min,
                            request.restart_min,
                            request.interruptions_per_day,
                        )
                        if spot
                        else None
                    )
                    hours = compute_hours + (interruption["overhead_hours"] if interruption else 0.0)
                    cost = total_cost_usd(hours, hourly, count)
                    options.append(
                        Option(
                            cloud=instance.cloud,
                            instance_type=instance.instance_type,
                            region=price.region,
                            count=count,
                            spot=spot,
                            gpu=instance.gpu,
                            gpus_per_node=instance.gpu_count,
                            gpu_memory_gb=instance.gpu_memory_gb,
                            batch_per_gpu=basis.batch_per_gpu,
                            step=step,
                            price=price,
                            usd_per_instance_hour=hourly,
                            throughput_samples_per_s=throughput,
                            compute_hours=compute_hours,
                            interruption=interruption,
                            hours=hours,
                            total_cost_usd=cost,
                            usd_per_million_samples=usd_per_million_samples(cost, total_samples),
                            memory_required_gb=required_gb,
                            instance=instance,
                        )
                    )
    return options


def check_data_region(request: AdviseRequest, catalog: Catalog) -> str | None:
    """The cloud of ``--data-region`` (None without it); an unknown region is an error."""
    egress_module.check_dataset_gb(request.dataset_gb)
    if request.data_region is None:
        if request.dataset_gb:
            raise DdlprofError("--dataset-gb needs --data-region REGION (where the dataset lies)")
        return None
    clouds = {p.cloud for p in catalog.prices if p.region == request.data_region}
    if not clouds:
        known = catalog.regions()
        close = difflib.get_close_matches(request.data_region.lower(), known, n=3, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise DdlprofError(
            f"--data-region {request.data_region!r} is no AWS or GCP region of the catalog{hint}"
        )
    (cloud,) = clouds
    return cloud


def add_egress(
    options: list[Option], request: AdviseRequest, data_cloud: str, excluded: Exclusions
) -> list[Option]:
    """Each option's cost of moving the dataset in, added to its total; options on a route with no
    sourced egress price are left out with that reason (never priced at 0)."""
    rates = egress_module.load_egress()
    samples = request.total_samples
    kept = []
    for option in options:
        source = request.data_region or ""
        moved = egress_module.egress_for(
            rates, request.dataset_gb or 0.0, data_cloud, source, option.cloud, option.region
        )
        if moved["usd"] is None:
            reason = f"no sourced egress price for {moved['route']} (see advisor/data/egress.csv)"
            where = {"region": option.region, "count": option.count, "spot": option.spot}
            excluded.add(option.instance, "egress", reason, **where)
            continue
        option.egress = moved
        option.total_cost_usd += moved["usd"]
        option.usd_per_million_samples = usd_per_million_samples(option.total_cost_usd, samples)
        kept.append(option)
    return kept


def best_region(ranked: list[Option]) -> list[Option]:
    """The first (best-ranked) region of each instance type, count and pricing; the others counted."""
    kept: dict[tuple[str, int, bool, bool], Option] = {}
    for option in ranked:
        key = (option.instance_type, option.count, option.spot, option.packing is not None)
        if key in kept:
            kept[key].other_regions += 1
        else:
            option.other_regions = 0
            kept[key] = option
    return list(kept.values())
