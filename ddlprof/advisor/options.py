"""What ``ddlprof advise`` is asked (:class:`AdviseRequest`) and what it answers: the priced options
(:class:`Option`) and the :class:`Advice` that ranks them, with their JSON form."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddlprof.advisor.catalog import Instance, Price
from ddlprof.advisor.spot import CHECKPOINT_INTERVAL_MIN, RESTART_MIN
from ddlprof.advisor.throughput import StepBasis, StepEstimate
from ddlprof.advisor.uncertainty import widen
from ddlprof.advisor.workloads import Workload

DEFAULT_MAX_NODES = 4

#: Significant figures of the figure ``--sort time|carbon`` ranks by (hours, kg CO2e): the table shows
#: them so, and options equal at them are tied (the cheaper per sample first).
SIGNIFICANT = 3


def figure_value(value: float) -> float:
    """``value`` to :data:`SIGNIFICANT` significant figures (whole numbers from 100 up): the number
    :func:`figure` shows and ``--sort time|carbon`` compares, so that options the table shows with the
    same figure are tied."""
    if not value or not math.isfinite(value):
        return value
    rounded = round(value, SIGNIFICANT - 1 - math.floor(math.log10(abs(value))))
    return float(round(value)) if abs(rounded) >= 10 ** (SIGNIFICANT - 1) else rounded


def reported(value: float) -> float:
    """Hours or kg CO2e as ``--json`` and ``--csv`` give them: 6 significant figures, unless that moves
    the value across the edge of the figure the table shows (0.17852 h to 4 places is 0.1785, whose
    figure is 0.178 where the value's is 0.179): the table is built from the JSON, the top-choice
    sentence from the option, and the two must agree."""
    if not value or not math.isfinite(value):
        return value
    rounded = float(f"{value:.6g}")
    return rounded if figure_value(rounded) == figure_value(value) else value


def figure(value: float) -> str:
    """:func:`figure_value` as the table shows it: '0.168', '9.57', '75.0', '123', '1,234'."""
    shown = figure_value(value)
    if abs(shown) >= 10 ** (SIGNIFICANT - 1):
        return f"{shown:,.0f}"
    return f"{shown:#.{SIGNIFICANT}g}"


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
    interruptions_per_day: float | None = None  # None: the row's AWS bucket, else the named assumption
    data_region: str | None = None  # where the dataset lies; None: no egress priced
    dataset_gb: float | None = None
    all_regions: bool = False  # False: one option per (instance type, count, pricing), its best region
    jobs: int | None = None  # a sweep of N runs of the workload (``--jobs``); None: one run
    sort: str = "cost"  # cost (USD per 1M samples), time (hours) or carbon (kg CO2e)

    @property
    def total_samples(self) -> float:
        """Samples of the whole request: the workload's, times the jobs of a sweep."""
        return self.workload.total_samples * (self.jobs or 1)


@dataclass(slots=True)  # slots: advise makes a quarter of a million of them (--max-nodes 256)
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
    egress: dict[str, Any] | None = None  # moving the dataset in (``ddlprof.advisor.egress.egress_for``)
    pareto: bool = False
    over_budget_usd: float | None = None
    over_deadline_hours: float | None = None
    other_regions: int = 0  # regions of the same instance, count and pricing left out (not --all-regions)
    error_pct: float = 0.0  # relative error of the step time (``ddlprof.models.step_error``)
    error_basis: str = ""
    error_referenced: bool = True  # False: a GPU no published or measured figure checks (StepError)
    within_error_of_top: bool = False  # its range on the sort key overlaps the top option's
    packing: dict[str, Any] | None = None  # k copies per GPU at a measured factor (``advisor.packing``)
    energy: dict[str, Any] | None = None  # kWh and kg CO2e with their bases (``advisor.carbon``)
    instance: Instance | None = field(default=None, repr=False)

    @property
    def world_size(self) -> int:
        return self.gpus_per_node * self.count

    @property
    def label(self) -> str:
        pricing = "spot" if self.spot else "on-demand"
        gpus = f"{self.world_size} x {self.gpu}"
        return f"{self.count} x {self.instance_type} ({gpus}) in {self.region}, {pricing}"

    @property
    def copies_per_gpu(self) -> int:
        return self.packing["copies_per_gpu"] if self.packing else 1

    @property
    def kg_co2e(self) -> float | None:
        return self.energy["kg_co2e"] if self.energy else None

    @property
    def egress_usd(self) -> float:
        return self.egress["usd"] if self.egress else 0.0

    @property
    def price_date(self) -> str | None:
        """The date of the price this option pays: the row's spot date for spot, else its on-demand date."""
        dated = self.price.spot_source_date if self.spot else self.price.source_date
        return dated.isoformat() if dated else None

    def _interruption_high(self) -> tuple[float, float]:
        """Extra (hours, USD) at the high end of the interruption rate (0 where none is known)."""
        spot = self.interruption
        if not spot or spot["overhead_hours_high"] is None:
            return 0.0, 0.0
        return spot["overhead_hours_high"] - spot["overhead_hours"], spot["cost_usd_high"] - spot["cost_usd"]

    def hours_range(self) -> tuple[float, float]:
        low, high = widen(self.hours, self.error_pct)
        return low, high + self._interruption_high()[0]

    def total_cost_range(self) -> tuple[float, float]:
        """The step-time error's range, its high end raised by the interruption rate's high end; egress
        is a fixed sum, not scaled by the step's error."""
        low, high = widen(self.total_cost_usd - self.egress_usd, self.error_pct)
        return low + self.egress_usd, high + self.egress_usd + self._interruption_high()[1]

    def emissions_range(self) -> tuple[float, float] | None:
        """kg CO2e over the range of the hours: the energy is the GPUs' power x hours, so it carries the
        hours' relative range; a measured J/sample (a packed row) does not change with the step time,
        only with the work spot interruptions redo (their rate's high end). The uncertainty of the power
        and grid figures themselves is not counted. None without an emissions figure."""
        kg = self.kg_co2e
        if kg is None or self.hours <= 0:
            return None
        low, high = self.hours_range()
        if self.packing and self.packing.get("joules_per_sample") is not None:
            low = self.hours
            high = self.hours + self._interruption_high()[0]
        return kg * low / self.hours, kg * high / self.hours

    def sort_range(self, sort: str) -> tuple[float, float] | None:
        """The range of the figure ``--sort`` ranks by: cost per 1M samples, hours or kg CO2e."""
        if sort == "time":
            return self.hours_range()
        if sort == "carbon":
            return self.emissions_range()
        return self.cost_per_million_range()

    def cost_per_million_range(self) -> tuple[float, float]:
        samples_m = self.total_cost_usd / self.usd_per_million_samples if self.usd_per_million_samples else 0
        if not samples_m:
            return widen(self.usd_per_million_samples, self.error_pct)
        low, high = self.total_cost_range()
        return low / samples_m, high / samples_m

    def to_dict(self, provenance: dict[str, str]) -> dict[str, Any]:
        e = self.error_pct
        step_low, step_high = widen(self.step.step_ms, e)
        # a slower step (step_high) gives the lower throughput and the higher hours and cost
        tput_low, tput_high = widen(self.throughput_samples_per_s, e)
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
            "precision": self.step.precision,
            "step_basis": self.step.basis,
            "step_warnings": list(self.step.warnings),
            "single_gpu_step_ms": round(self.step.single_gpu_step_ms, 3),
            "interconnect_stall_ms": round(self.step.interconnect_stall_ms, 3),
            "network_stall_ms": round(self.step.network_stall_ms, 3),
            "inter_busbw_gbps": self.step.inter_busbw_gbps,
            "throughput_samples_per_s": round(self.throughput_samples_per_s, 2),
            "usd_per_instance_hour": self.usd_per_instance_hour,
            "price_date": self.price_date,
            "compute_hours": round(self.compute_hours, 4),
            "interruption": _rounded(self.interruption) if self.interruption else None,
            "hours": reported(self.hours),
            "egress_usd": round(self.egress_usd, 2),
            "egress": _rounded(self.egress) if self.egress else None,
            "total_cost_usd": round(self.total_cost_usd, 2),
            "usd_per_million_samples": round(self.usd_per_million_samples, 4),
            "memory_required_gb": None
            if self.memory_required_gb is None
            else round(self.memory_required_gb, 2),
            "pareto": self.pareto,
            "other_regions": self.other_regions,
            "error_pct": round(e, 1),
            "error_basis": self.error_basis,
            "step_ms_range": [round(step_low, 3), round(step_high, 3)],
            "throughput_range": [round(tput_low, 2), round(tput_high, 2)],
            "hours_range": [reported(v) for v in self.hours_range()],
            "total_cost_usd_range": [round(v, 2) for v in self.total_cost_range()],
            "cost_per_1m_samples_range": [round(v, 4) for v in self.cost_per_million_range()],
            "within_error_of_top": self.within_error_of_top,
            "copies_per_gpu": self.copies_per_gpu,
            "packing": self.packing,
            "energy_kwh": _maybe(self.energy and self.energy["kwh"], 3),
            "emissions_kg_co2e": None if self.kg_co2e is None else reported(self.kg_co2e),
            "emissions_kg_co2e_range": None
            if (emissions := self.emissions_range()) is None
            else [reported(v) for v in emissions],
            "energy": self.energy,
            "provenance": provenance,
        }
        if self.over_budget_usd is not None:
            out["over_budget_usd"] = round(self.over_budget_usd, 2)
        if self.over_deadline_hours is not None:
            out["over_deadline_hours"] = round(self.over_deadline_hours, 3)
        return out


def sort_used(sort: str, met: bool, ranked: list[Option]) -> str:
    """What ranks the options and what ``within_error_of_top`` compares: ``--sort`` where options meet
    the limits, else cost (the cheapest are shown, with how far over they are); cost too for ``carbon``
    where no option has an emissions figure (they sort last, so the top has none: all tie on it)."""
    if not met or (sort == "carbon" and ranked and ranked[0].kg_co2e is None):
        return "cost"
    return sort


#: The JSON range each ``--sort`` key's "within error" (``≈``) marker compares.
RANGE_FIELDS = {
    "cost": "cost_per_1m_samples_range",
    "worst": "cost_per_1m_samples_range",
    "time": "hours_range",
    "carbon": "emissions_kg_co2e_range",
}


def _maybe(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _rounded(values: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in values.items()}


def worst_case_key(option: Option) -> tuple[float, float, str, str]:
    """The high end of an option's cost per sample, then its figure and names: ``--sort worst``'s key."""
    return (option.cost_per_million_range()[1], option.usd_per_million_samples, option.instance_type,
            option.region)  # fmt: skip


def lowest_worst_case(options: list[Option]) -> Option:
    """The option whose cost has the lowest high end: the risk-averse choice, which a figure with no
    reference (a wide error) cannot win by its central value alone (``--sort worst`` ranks it first)."""
    return min(options, key=worst_case_key)


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

    @property
    def sort_key(self) -> str:
        """What ranks the options and what ``within_error_of_top`` compares: :func:`sort_used`."""
        return sort_used(self.request.sort, self.met_constraints, self.options)

    def provenance(self, option: Option) -> dict[str, str]:
        price = option.price
        dated = option.price_date or "undated"
        kind = "spot" if option.spot else "on-demand"
        source = option.step.source
        if source == "predicted" and option.step.scaled:
            source = "scaled"
        elif source == "predicted" and option.step.calibrated:
            source = "calibrated"
        out = {
            "step_ms": f"{self.step_provenance[source]} ({option.step.basis}, {option.step.precision})",
            "price": f"catalog snapshot {self.catalog_date}: {kind} price {price.source} ({dated})",
            "gpu": f"catalog snapshot {self.catalog_date}: instances.csv",
        }
        if option.step.calibrated:
            out["single_gpu_step_ms"] = option.step.calibrated
        if option.interruption is not None:
            out["interruption"] = option.interruption["source"]
        if option.egress is not None:
            out["egress"] = f"{option.egress['route']}: {option.egress['source']}"
        return out

    def _lowest_worst_case(self) -> dict[str, Any] | None:
        """The rank, option and cost's high end of :func:`lowest_worst_case`, when options met the
        constraints."""
        if not (self.options and self.met_constraints):
            return None
        safest = lowest_worst_case(self.options)
        return {
            "rank": self.options.index(safest) + 1,
            "option": safest.label,
            "total_cost_usd": safest.total_cost_usd,
            "total_cost_high_usd": safest.total_cost_range()[1],
        }

    def to_dict(self, top: int | None = None) -> dict[str, Any]:
        shown = self.options if not top else self.options[:top]
        return {
            "options": [{"rank": i + 1, **o.to_dict(self.provenance(o))} for i, o in enumerate(shown)],
            "excluded": self.excluded,
            "assumptions": self.assumptions,
            "met_constraints": self.met_constraints,
            "sort": self.sort_key,
            "within_error_on": RANGE_FIELDS[self.sort_key],
            "top_choice": self.top_choice,
            "lowest_worst_case": self._lowest_worst_case(),
            "warnings": self.warnings,
            "counts": {
                "options": len(self.options) if self.met_constraints else 0,
                "shown": len(shown),
                "candidates_before_budget_and_deadline": self.candidates,
                "excluded_groups": len(self.excluded),
            },
        }
