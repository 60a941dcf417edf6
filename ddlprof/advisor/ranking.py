"""Rank cloud options for a training job by cost per throughput: the one job of ``ddlprof advise``.

An *option* is an instance type x a count of instances (1 to ``max_nodes``) x a region x on-demand
or spot, from the catalog snapshot (``ddlprof.advisor.catalog``). For each option:

- **GPUs**: every GPU of each instance (``gpus_per_node`` = the instance's ``gpu_count``), so the
  world size is ``gpu_count x count``.
- **Step time**, ms: predicted or measured (``ddlprof.advisor.throughput``, all options in one batch).
- **Throughput** = world size x batch per GPU x 1000 / step_ms, samples/s.
- **Hours** = samples x epochs / throughput / 3600 (+ the spot overhead below).
- **Total cost** = hours x price per instance-hour x instances + data transfer. Data transfer
  between regions or clouds is 0: every option lies in one region of one cloud (moving the dataset
  in, storage and egress of results are not priced).
- **Spot**: the expected interruption overhead (:func:`interruption_overhead`): AWS's Spot Instance
  Advisor bucket read as the chance that one instance is interrupted within a month (the bucket's
  upper edge; 30% for ">20%"), GCP's unpublished rate an explicit assumption (20%/month unless
  given); each interruption loses half a checkpoint interval of work plus a restart.
- **Memory fit**: the training-memory estimate per GPU plus 10% for the caching allocator's
  fragmentation and 1 GB for the CUDA context and library workspaces (:func:`memory_required_gb`)
  must fit the GPU's memory.

Options are filtered (memory, price, predictability, ``--deadline``, ``--budget``), ranked by USD per
1M samples, and the Pareto-optimal ones (time vs. total cost, :func:`pareto_front`) are marked.
Options left out say why; when no option meets the budget and deadline, the cheapest ones are shown
with how far over they are. No torch on the path of the dataset's models.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddlprof.advisor.catalog import Catalog, Instance, Price, load_catalog
from ddlprof.advisor.throughput import (
    StepBasis,
    StepEstimate,
    dataset_basis,
    given_basis,
    predict_steps,
    run_basis,
)
from ddlprof.advisor.workloads import Workload
from ddlprof.errors import DdlprofError

DEFAULT_BATCH_PER_GPU = 32
DEFAULT_MAX_NODES = 4
DEFAULT_TOP = 10
CHECKPOINT_INTERVAL_MIN = 30.0
RESTART_MIN = 10.0
#: Monthly interruption chance assumed where the catalog has no bucket (GCP publishes none).
UNPUBLISHED_INTERRUPTION_PCT = 20.0
HOURS_PER_MONTH = 730.0
#: AWS Spot Instance Advisor buckets -> monthly interruption chance used (%): the upper edge.
BUCKET_PCT = {"<5%": 5.0, "5-10%": 10.0, "10-15%": 15.0, "15-20%": 20.0, ">20%": 30.0}
MEMORY_FRAGMENTATION = 0.10
MEMORY_CONTEXT_GB = 1.0
MEASURED_BATCHES = (32, 64)


# -- the arithmetic ---------------------------------------------------------------------------------


def hourly_interruption_rate(monthly_pct: float) -> float:
    """Interruptions per instance-hour for a ``monthly_pct`` % chance of one within a month (730 h),
    at a constant rate: -ln(1 - p) / 730."""
    if not 0 <= monthly_pct < 100:
        raise DdlprofError(f"a monthly interruption chance must be in [0, 100) %, got {monthly_pct:g}")
    return -math.log1p(-monthly_pct / 100) / HOURS_PER_MONTH


def interruption_overhead(
    compute_hours: float,
    instances: int,
    monthly_pct: float,
    checkpoint_interval_min: float = CHECKPOINT_INTERVAL_MIN,
    restart_min: float = RESTART_MIN,
) -> dict[str, float]:
    """The expected time a spot job loses to interruptions (first order).

    Any of the ``instances`` being interrupted stops the job: interruptions = instances x rate x
    ``compute_hours``. Each loses the work since the last checkpoint (half an interval on average)
    and a restart; every instance is billed meanwhile. Writing the checkpoints is not counted, nor
    the time the extra hours are themselves exposed (second order).
    """
    if checkpoint_interval_min < 0 or restart_min < 0 or compute_hours < 0 or instances < 1:
        raise DdlprofError("checkpoint interval, restart time and hours must be >= 0, instances >= 1")
    expected = instances * hourly_interruption_rate(monthly_pct) * compute_hours
    lost = (checkpoint_interval_min / 2 + restart_min) / 60
    return {
        "monthly_pct": monthly_pct,
        "expected_interruptions": expected,
        "hours_lost_per_interruption": lost,
        "overhead_hours": expected * lost,
    }


def training_hours(total_samples: float, throughput_samples_per_s: float) -> float:
    return total_samples / throughput_samples_per_s / 3600


def total_cost_usd(
    hours: float, usd_per_instance_hour: float, instances: int, transfer_usd: float = 0.0
) -> float:
    """hours x price per instance-hour x instances, plus data transfer."""
    return hours * usd_per_instance_hour * instances + transfer_usd


def usd_per_million_samples(total_usd: float, total_samples: float) -> float:
    return total_usd / total_samples * 1e6


def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For each (time, cost) point, whether no other point is at least as good in both and better in
    one (both minimised). Equal points are all on the front. O(n log n)."""
    order = sorted(range(len(points)), key=lambda i: points[i])
    front = [False] * len(points)
    best_before = math.inf  # lowest cost among strictly faster points
    i = 0
    while i < len(order):
        j = i
        time = points[order[i]][0]
        while j < len(order) and points[order[j]][0] == time:
            j += 1
        group_min = points[order[i]][1]  # sorted by cost within equal times
        for k in order[i:j]:
            cost = points[k][1]
            front[k] = cost == group_min and cost < best_before
        best_before = min(best_before, group_min)
        i = j
    return front


def memory_required_gb(estimate_bytes: float) -> float:
    """GPU memory needed for an estimate: +10% allocator fragmentation, +1 GB CUDA context/workspaces."""
    return estimate_bytes / 1e9 * (1 + MEMORY_FRAGMENTATION) + MEMORY_CONTEXT_GB


# -- options, filters, ranking ----------------------------------------------------------------------


@dataclass
class AdviseRequest:
    """What ``ddlprof advise`` was asked (its flags, checked)."""

    model: str | None
    workload: Workload
    batch_per_gpu: int | None = None  # None: the default (or the run's)
    run_dir: Path | None = None
    single_gpu_step_ms: float | None = None
    step_gpu: str | None = None
    precision: str | None = None
    budget_usd: float | None = None
    deadline_hours: float | None = None
    clouds: Sequence[str] | None = None
    regions: Sequence[str] | None = None
    instances: Sequence[str] | None = None
    spot: bool | None = None  # None: both; True: spot only; False: on-demand only
    max_nodes: int = DEFAULT_MAX_NODES
    checkpoint_interval_min: float = CHECKPOINT_INTERVAL_MIN
    restart_min: float = RESTART_MIN
    unpublished_interruption_pct: float = UNPUBLISHED_INTERRUPTION_PCT
    all_regions: bool = False  # False: one option per (instance type, count, pricing), its best region


@dataclass
class Option:
    """One way to run the job, priced."""

    cloud: str
    instance_type: str
    region: str
    count: int
    spot: bool
    gpu: str
    gpus_per_node: int
    gpu_memory_gb: float
    batch_per_gpu: int
    step: StepEstimate
    price: Price
    usd_per_instance_hour: float
    throughput_samples_per_s: float
    compute_hours: float
    interruption: dict[str, Any] | None
    hours: float
    total_cost_usd: float
    usd_per_million_samples: float
    memory_required_gb: float | None
    data_transfer_usd: float = 0.0
    pareto: bool = False
    over_budget_usd: float | None = None
    over_deadline_hours: float | None = None
    other_regions: int = 0  # regions of the same instance, count and pricing left out (not --all-regions)
    instance: Instance | None = field(default=None, repr=False)

    @property
    def world_size(self) -> int:
        return self.gpus_per_node * self.count

    @property
    def label(self) -> str:
        pricing = "spot" if self.spot else "on-demand"
        gpus = f"{self.world_size} x {self.gpu}"
        return f"{self.count} x {self.instance_type} ({gpus}) in {self.region}, {pricing}"

    def to_dict(self, provenance: dict[str, str]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "cloud": self.cloud,
            "instance_type": self.instance_type,
            "region": self.region,
            "count": self.count,
            "spot": self.spot,
            "gpu": self.gpu,
            "gpus_per_node": self.gpus_per_node,
            "world_size": self.world_size,
            "gpu_memory_gb": self.gpu_memory_gb,
            "batch_per_gpu": self.batch_per_gpu,
            "step_ms": round(self.step.step_ms, 3),
            "step_source": self.step.source,
            "single_gpu_step_ms": round(self.step.single_gpu_step_ms, 3),
            "interconnect_stall_ms": round(self.step.interconnect_stall_ms, 3),
            "network_stall_ms": round(self.step.network_stall_ms, 3),
            "inter_busbw_gbps": self.step.inter_busbw_gbps,
            "throughput_samples_per_s": round(self.throughput_samples_per_s, 2),
            "usd_per_instance_hour": self.usd_per_instance_hour,
            "price_date": self.price.source_date.isoformat() if self.price.source_date else None,
            "compute_hours": round(self.compute_hours, 4),
            "interruption": _rounded(self.interruption) if self.interruption else None,
            "hours": round(self.hours, 4),
            "data_transfer_usd": self.data_transfer_usd,
            "total_cost_usd": round(self.total_cost_usd, 2),
            "usd_per_million_samples": round(self.usd_per_million_samples, 4),
            "memory_required_gb": None
            if self.memory_required_gb is None
            else round(self.memory_required_gb, 2),
            "pareto": self.pareto,
            "other_regions": self.other_regions,
            "provenance": provenance,
        }
        if self.over_budget_usd is not None:
            out["over_budget_usd"] = round(self.over_budget_usd, 2)
        if self.over_deadline_hours is not None:
            out["over_deadline_hours"] = round(self.over_deadline_hours, 3)
        return out


def _rounded(values: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in values.items()}


@dataclass
class Advice:
    """Ranked options, the excluded ones with reasons, and every assumption made."""

    options: list[Option]
    excluded: list[dict[str, Any]]
    assumptions: dict[str, Any]
    met_constraints: bool
    top_choice: str
    warnings: list[str]
    basis: StepBasis
    workload: Workload
    request: AdviseRequest
    step_provenance: dict[str, str]
    catalog_date: str
    candidates: int

    def provenance(self, option: Option) -> dict[str, str]:
        price = option.price
        dated = price.source_date.isoformat() if price.source_date else "undated"
        kind = "spot" if option.spot else "on-demand"
        out = {
            "step_ms": self.step_provenance[option.step.source],
            "price": f"catalog snapshot {self.catalog_date}: {kind} price {price.source} ({dated})",
            "gpu": f"catalog snapshot {self.catalog_date}: instances.csv",
        }
        if option.interruption is not None:
            out["interruption"] = option.interruption["source"]
        return out

    def to_dict(self, top: int | None = None) -> dict[str, Any]:
        shown = self.options if not top else self.options[:top]
        return {
            "options": [{"rank": i + 1, **o.to_dict(self.provenance(o))} for i, o in enumerate(shown)],
            "excluded": self.excluded,
            "assumptions": self.assumptions,
            "met_constraints": self.met_constraints,
            "top_choice": self.top_choice,
            "warnings": self.warnings,
            "counts": {
                "options": len(self.options) if self.met_constraints else 0,
                "shown": len(shown),
                "candidates_before_budget_and_deadline": self.candidates,
                "excluded_groups": len(self.excluded),
            },
        }


def _check_filters(request: AdviseRequest, catalog: Catalog) -> tuple[list[Instance], set[str] | None]:
    clouds = [catalog.check_cloud(c) for c in request.clouds] if request.clouds else list(("aws", "gcp"))
    if request.max_nodes < 1:
        raise DdlprofError(f"--max-nodes must be at least 1, got {request.max_nodes}")
    for what, value in (("--budget", request.budget_usd), ("--deadline", request.deadline_hours)):
        if value is not None and not value > 0:
            raise DdlprofError(f"{what} must be positive, got {value:g}")
    for what, value in (
        ("--checkpoint-interval", request.checkpoint_interval_min),
        ("--restart-time", request.restart_min),
    ):
        if not value >= 0:
            raise DdlprofError(f"{what} must be 0 or more minutes, got {value:g}")
    pct = request.unpublished_interruption_pct
    if not 0 <= pct < 100:
        raise DdlprofError(f"--spot-interruption-pct must be at least 0 and below 100, got {pct:g}")
    regions = None
    if request.regions:
        known = catalog.regions()
        regions = set()
        for region in request.regions:
            if region not in known:
                close = difflib.get_close_matches(region.lower(), known, n=3, cutoff=0.5)
                hint = f"; closest: {', '.join(close)}" if close else ""
                raise DdlprofError(f"unknown region {region!r}{hint}; see `ddlprof catalog show INSTANCE`")
            regions.add(region)
        regions_clouds = {p.cloud for p in catalog.prices if p.region in regions}
        if not regions_clouds & set(clouds):
            raise DdlprofError(
                f"--regions {','.join(sorted(regions))} are not regions of {', '.join(clouds)}"
            )
    if request.instances:
        chosen = [catalog.instance(name) for name in request.instances]
        wrong = [i.instance_type for i in chosen if i.cloud not in clouds]
        if wrong:
            raise DdlprofError(f"{', '.join(wrong)} not on --clouds {', '.join(clouds)}")
    else:
        chosen = [i for i in catalog.instances.values() if i.cloud in clouds]
    return chosen, regions


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


class Exclusions:
    """Options left out, one record each, grouped for the output by :func:`_group_exclusions`."""

    def __init__(self) -> None:
        self.raw: list[dict[str, Any]] = []

    def add(
        self,
        instance: Instance,
        kind: str,
        reason: str,
        *,
        region: str | None = None,
        count: int | None = None,
        spot: bool | None = None,
        amount: float | None = None,
    ) -> None:
        self.raw.append(
            {
                "cloud": instance.cloud,
                "instance_type": instance.instance_type,
                "kind": kind,
                "reason": reason,
                "region": region,
                "count": count,
                "spot": spot,
                "amount": amount,
            }
        )

    def grouped(self) -> list[dict[str, Any]]:
        return _group_exclusions(self.raw)


def advise(request: AdviseRequest, catalog: Catalog | None = None, fitted: Any = None) -> Advice:
    """Enumerate, predict, price, filter and rank every option of the request."""
    catalog = catalog or load_catalog()
    instances, regions = _check_filters(request, catalog)
    basis = make_basis(request)
    if fitted is None:
        from ddlprof.models.registry import load_models

        fitted = load_models()
    required_gb = memory_required_gb(basis.memory_bytes) if basis.memory_bytes else None
    excluded = Exclusions()
    fitting = _fit_memory(instances, basis, required_gb, excluded)
    counts = range(1, request.max_nodes + 1)
    steps = predict_steps(basis, [(i, n) for i in fitting for n in counts], fitted)
    candidates = _priced(fitting, steps, catalog, regions, basis, request, required_gb, excluded)
    feasible = _within_limits(candidates, request, excluded)
    met = bool(feasible)
    if met:
        ranked = sorted(
            feasible, key=lambda o: (o.usd_per_million_samples, o.hours, o.instance_type, o.region)
        )
    else:  # nothing meets the budget and deadline: the cheapest, with how far over they are
        ranked = sorted(candidates, key=lambda o: (o.total_cost_usd, o.hours, o.instance_type, o.region))
    if not request.all_regions:
        ranked = best_region(ranked)
    front = pareto_front([(o.hours, o.total_cost_usd) for o in ranked])
    for option, on_front in zip(ranked, front, strict=True):
        option.pareto = on_front

    advice = Advice(
        options=ranked,
        excluded=excluded.grouped(),
        assumptions=_assumptions(request, basis, request.workload, catalog, fitted, required_gb),
        met_constraints=met,
        top_choice="",
        warnings=_warnings(basis, catalog, request.workload),
        basis=basis,
        workload=request.workload,
        request=request,
        step_provenance=_step_provenance(basis, fitted),
        catalog_date=catalog.snapshot_date.isoformat(),
        candidates=len(candidates),
    )
    advice.top_choice = explain_top(advice)
    return advice


def _fit_memory(
    instances: list[Instance], basis: StepBasis, required_gb: float | None, excluded: Exclusions
) -> list[Instance]:
    """The instance types whose GPUs hold the job (all of them when no estimate is known)."""
    fitting = []
    for instance in instances:
        if required_gb is not None and required_gb > instance.gpu_memory_gb:
            excluded.add(
                instance,
                "memory",
                f"needs about {required_gb:.1f} GB per GPU at batch {basis.batch_per_gpu} "
                f"({basis.memory_source}, +{MEMORY_FRAGMENTATION:.0%} fragmentation, "
                f"+{MEMORY_CONTEXT_GB:g} GB CUDA context); {instance.gpu} has {instance.gpu_memory_gb:g} GB",
            )
        else:
            fitting.append(instance)
    return fitting


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
    total_samples = request.workload.total_samples
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
                    interruption = _interruption(price, count, compute_hours, request) if spot else None
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


def _within_limits(options: list[Option], request: AdviseRequest, excluded: Exclusions) -> list[Option]:
    """The options within ``--deadline`` and ``--budget``; every option learns how far over it is."""
    feasible = []
    for option in options:
        deadline, budget = request.deadline_hours, request.budget_usd
        option.over_deadline_hours = (
            option.hours - deadline if deadline is not None and option.hours > deadline else None
        )
        option.over_budget_usd = (
            option.total_cost_usd - budget if budget is not None and option.total_cost_usd > budget else None
        )
        where = {"region": option.region, "count": option.count, "spot": option.spot}
        if option.over_deadline_hours is not None:
            reason = f"takes longer than the {deadline:g} h deadline"
            excluded.add(option.instance, "deadline", reason, amount=option.over_deadline_hours, **where)
        elif option.over_budget_usd is not None:
            reason = f"costs more than the ${budget:,.2f} budget"
            excluded.add(option.instance, "budget", reason, amount=option.over_budget_usd, **where)
        else:
            feasible.append(option)
    return feasible


def _step_provenance(basis: StepBasis, fitted: Any) -> dict[str, str]:
    cv = fitted.cv(fitted.selected)
    single = (
        "the single-GPU step measured on one H200"
        if basis.kind == "dataset"
        else f"the single-GPU step of {basis.description}"
    )
    return {
        "predicted": f"predicted: {fitted.selected} stall model (leave-one-model-out step MAPE "
        f"{cv['step_ms_mape_pct']:.1f}%, {cv['models']} models, world size 2 on one node only) on {single}, "
        "scaled to the GPU by roofline ratios",
        "measured": f"measured: {basis.description}",
    }


def best_region(ranked: list[Option]) -> list[Option]:
    """The first (best-ranked) region of each instance type, count and pricing; the others counted."""
    kept: dict[tuple[str, int, bool], Option] = {}
    for option in ranked:
        key = (option.instance_type, option.count, option.spot)
        if key in kept:
            kept[key].other_regions += 1
        else:
            option.other_regions = 0
            kept[key] = option
    return list(kept.values())


def _interruption(price: Price, count: int, compute_hours: float, request: AdviseRequest) -> dict[str, Any]:
    bucket = price.spot_interruption
    if bucket is not None:
        pct = BUCKET_PCT[bucket]
        source = (
            f"catalog: Spot Instance Advisor bucket {bucket} ({price.source_date}), read as a {pct:g}% "
            "chance per instance per month (the bucket's upper edge"
            + ("; 30% assumed for '>20%')" if bucket == ">20%" else ")")
        )
    else:
        pct = request.unpublished_interruption_pct
        why = (
            "GCP publishes no interruption rate"
            if price.cloud == "gcp"
            else "no bucket in the catalog snapshot"
        )
        source = f"assumed: {pct:g}% chance per instance per month ({why}; --spot-interruption-pct)"
    overhead = interruption_overhead(
        compute_hours, count, pct, request.checkpoint_interval_min, request.restart_min
    )
    return {"bucket": bucket, "assumed": bucket is None, **overhead, "source": source}


def _group_exclusions(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (instance type, reason): the regions, counts and pricing it covers."""
    groups: dict[tuple, dict[str, Any]] = {}
    for item in raw:
        key = (item["cloud"], item["instance_type"], item["kind"], item["reason"])
        group = groups.setdefault(
            key,
            {
                "cloud": item["cloud"],
                "instance_type": item["instance_type"],
                "kind": item["kind"],
                "reason": item["reason"],
                "regions": set(),
                "counts": set(),
                "spot": set(),
                "amounts": [],
            },
        )
        if item["region"] is not None:
            group["regions"].add(item["region"])
        if item["count"] is not None:
            group["counts"].add(item["count"])
        if item["spot"] is not None:
            group["spot"].add(item["spot"])
        if item["amount"] is not None:
            group["amounts"].append(item["amount"])
    out = []
    for group in groups.values():
        amounts = group.pop("amounts")
        reason = group["reason"]
        if amounts:
            low, high = min(amounts), max(amounts)
            unit = (lambda v: f"${v:,.2f}") if group["kind"] == "budget" else (lambda v: f"{v:,.1f} h")
            reason += f" by {unit(low)}" + (f" to {unit(high)}" if high > low else "")
            group["over_min"], group["over_max"] = round(low, 3), round(high, 3)
        group["reason"] = reason
        group["regions"] = sorted(group["regions"]) or "all"
        group["counts"] = sorted(group["counts"]) or "all"
        group["spot"] = sorted(group["spot"]) or "all"
        out.append(group)
    return out


def _assumptions(
    request: AdviseRequest,
    basis: StepBasis,
    workload: Workload,
    catalog: Catalog,
    fitted: Any,
    required_gb: float | None,
) -> dict[str, Any]:
    cv = fitted.cv(fitted.selected)
    return {
        "model": basis.model,
        "workload": workload.to_dict(),
        "batch_per_gpu": basis.batch_per_gpu,
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
            "precision": basis.precision or "the dataset's per-model choice (tf32 CNNs, fp32 transformers)",
        },
        "throughput": "world size x batch per GPU x 1000 / step_ms",
        "hours": "samples x epochs / throughput / 3600, plus the expected interruption overhead for spot",
        "total_cost": "hours x USD per instance-hour x instances + data transfer",
        "data_transfer_usd": 0,
        "data_transfer": "0: every option runs in one region of one cloud; moving the dataset into the "
        "region, storage and egress are not priced",
        "spot": {
            "checkpoint_interval_min": request.checkpoint_interval_min,
            "restart_min": request.restart_min,
            "lost_per_interruption": "half a checkpoint interval of work + the restart, all instances billed",
            "expected_interruptions": "instances x (-ln(1 - monthly chance) / 730 h) x compute hours "
            "(first order)",
            "aws_buckets_pct": BUCKET_PCT,
            "aws_buckets_meaning": "Spot Instance Advisor 'frequency of interruption' (trailing month), "
            "read as the chance that one instance is interrupted within a month; the bucket's upper edge, "
            "30% for '>20%'",
            "unpublished_interruption_pct": request.unpublished_interruption_pct,
            "unpublished_meaning": "assumed for options without a bucket (GCP publishes no interruption "
            "rate)",
        },
        "memory": {
            "estimate_gb": None if basis.memory_bytes is None else round(basis.memory_bytes / 1e9, 3),
            "source": basis.memory_source or "none: memory fit not checked",
            "required_gb": None if required_gb is None else round(required_gb, 3),
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
        "ranking": "USD per 1M samples, lowest first; Pareto: not beaten in both hours and total cost"
        + (
            ""
            if request.all_regions
            else "; one row per instance type, count and pricing: its best region (the others cost more "
            "for the same time; other_regions counts them, --all-regions lists them)"
        ),
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


def _warnings(basis: StepBasis, catalog: Catalog, workload: Workload) -> list[str]:
    out = [*basis.notes]
    if workload.note:
        out.append(workload.note)
    stale = catalog.staleness_warning()
    if stale:
        out.append(stale)
    low, high = MEASURED_BATCHES
    if not low <= basis.batch_per_gpu <= high:
        out.append(
            f"batch per GPU {basis.batch_per_gpu} outside the measured {low}-{high}: step times are "
            "extrapolated"
        )
    if basis.memory_bytes is None:
        out.append("no memory estimate for this model: GPU memory fit not checked")
    return out


def format_hours(hours: float) -> str:
    """'3.2 h', or minutes under an hour."""
    return f"{hours * 60:.0f} min" if hours < 1 else f"{hours:,.1f} h"


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
    fastest = min(advice.options, key=lambda o: o.hours)
    tail = (
        "; it is also the fastest"
        if fastest is top
        else f"; the fastest, {fastest.count} x {fastest.instance_type}, takes "
        f"{format_hours(fastest.hours)} for ${fastest.total_cost_usd:,.2f}"
    )
    return (
        f"{top.label} has the lowest cost per sample (${top.usd_per_million_samples:,.2f} per 1M "
        f"samples) of the {len(advice.options)} options{' within ' + within if within else ''}: "
        f"${top.total_cost_usd:,.2f} for the {samples} in {format_hours(top.hours)}{tail}."
    )
