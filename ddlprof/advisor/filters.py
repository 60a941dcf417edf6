"""Which options ``ddlprof advise`` keeps, and why it leaves the others out.

- **The request**: clouds, regions and instance types must be the catalog's, and the numbers sane
  (:func:`check_filters`).
- **Memory fit**: the training-memory estimate per GPU plus 10% for the caching allocator's
  fragmentation and 1 GB for the CUDA context and library workspaces
  (``ddlprof.models.memory.memory_required_gb``) must fit the GPU's memory (:func:`fit_memory`).
- **Limits**: ``--deadline`` and ``--budget`` (:func:`within_limits`); every option learns how far
  over it is, so that the cheapest can be shown when none is within them.

Every option left out is recorded in :class:`Exclusions`, grouped per instance type and reason.
"""

from __future__ import annotations

import difflib
import math
from typing import Any

from ddlprof.advisor.catalog import Catalog, Instance
from ddlprof.advisor.options import AdviseRequest, Option
from ddlprof.advisor.spot import check_rate
from ddlprof.advisor.throughput import StepBasis
from ddlprof.errors import DdlprofError
from ddlprof.models.memory import MEMORY_CONTEXT_GB, MEMORY_FRAGMENTATION

#: The most instances per option: 256 keeps advise near 1 s on 2 cores (1024 took 8.4 s and 100000
#: ran for minutes past 1.5 GB).
MAX_NODES = 256


def check_filters(request: AdviseRequest, catalog: Catalog) -> tuple[list[Instance], set[str] | None]:
    clouds = [catalog.check_cloud(c) for c in request.clouds] if request.clouds else list(("aws", "gcp"))
    if not 1 <= request.max_nodes <= MAX_NODES:
        raise DdlprofError(f"--max-nodes must be from 1 to {MAX_NODES}, got {request.max_nodes}")
    for what, value in (("--budget", request.budget_usd), ("--deadline", request.deadline_hours)):
        if value is not None and not value > 0:
            raise DdlprofError(f"{what} must be positive, got {value:g}")
    interval = request.checkpoint_interval_min
    if not 0 < interval < math.inf:
        raise DdlprofError(f"--checkpoint-interval must be a positive number of minutes, got {interval:g}")
    if not 0 <= request.restart_min < math.inf:
        raise DdlprofError(f"--restart-time must be 0 or more minutes, got {request.restart_min:g}")
    check_rate(request.interruptions_per_day)
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


def batch_per_gpu_type(request: AdviseRequest, basis: StepBasis) -> bool:
    """Whether each GPU type gets its own batch (the largest that fits): no ``--batch-per-gpu``, no
    run (whose batch is kept), and a model of the dataset with a memory estimate to fit."""
    return request.batch_per_gpu is None and basis.kind == "dataset" and basis.memory_bytes is not None


def fit_memory(
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


def within_limits(options: list[Option], request: AdviseRequest, excluded: Exclusions) -> list[Option]:
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
