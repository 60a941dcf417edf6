"""What moving the dataset to an option costs: the clouds' published egress prices (``egress.csv``).

The dataset lies in ``--data-region``; an option in another region pays, once, for the dataset to leave
that region: to another region of the same cloud at the inter-region rate, to the other cloud at the
internet rate, both charged by the source cloud (ingress is free on both). Every figure in
``advisor/data/egress.csv`` has its source and date; a route with no row there has no established
price, and the option says so rather than pricing it at 0. Only the first volume tier is used (the
whole dataset at the first tier's rate; free allowances are not deducted). Inter-region gradient
traffic is never priced: every option runs in one region.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from ddlprof.errors import DdlprofError

EGRESS_CSV = Path(__file__).resolve().parent / "data" / "egress.csv"
GIB_PER_GB = 1e9 / 2**30
#: GCP region name prefix -> continent (for the same-continent / other-continent inter-region rows).
GCP_CONTINENTS = {
    "us": "north-america",
    "northamerica": "north-america",
    "southamerica": "south-america",
    "europe": "europe",
    "asia": "asia",
    "australia": "oceania",
    "me": "middle-east",
    "africa": "africa",
}


@dataclass(frozen=True)
class EgressRate:
    """One row of egress.csv: USD per GB (converted from GiB where the cloud prices GiB)."""

    cloud: str
    from_regions: tuple[str, ...]  # ("*",): any
    kind: str  # "internet" or "inter_region"
    to_regions: tuple[str, ...]  # ("*",), ("same-continent",), ("other-continent",) or region names
    usd_per_gb: float
    source: str
    source_date: str  # as the source states it ("" where undated)
    notes: str

    def matches(self, source: str, destination: str) -> bool:
        if "*" not in self.from_regions and source not in self.from_regions:
            return False
        (first,) = self.to_regions[:1]
        if first == "*":
            return True
        if first in ("same-continent", "other-continent"):
            same = continent(source) == continent(destination)
            return same if first == "same-continent" else not same
        return destination in self.to_regions

    @property
    def specificity(self) -> int:
        """Named regions beat a continent rule, which beats '*'."""
        first = self.to_regions[0]
        return 0 if first == "*" else 1 if first.endswith("-continent") else 2


def continent(gcp_region: str) -> str | None:
    return GCP_CONTINENTS.get(gcp_region.split("-")[0])


def load_egress(path: Path = EGRESS_CSV) -> list[EgressRate]:
    """The rows of egress.csv; a malformed row is a DdlprofError naming the file and line."""
    rates = []
    with path.open(newline="", encoding="utf-8") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            try:
                value = float(row["usd_per_unit"])
                unit = row["unit"]
                if not math.isfinite(value) or value < 0 or unit not in ("GB", "GiB"):
                    raise ValueError
            except (KeyError, TypeError, ValueError):
                raise DdlprofError(f"malformed egress price in {path}: line {line}") from None
            rates.append(
                EgressRate(
                    cloud=row["cloud"],
                    from_regions=tuple(row["from_regions"].split(";")),
                    kind=row["kind"],
                    to_regions=tuple(row["to_regions"].split(";")),
                    usd_per_gb=value * GIB_PER_GB if unit == "GiB" else value,
                    source=row["source"],
                    source_date=row["source_date"],
                    notes=row["notes"],
                )
            )
    return rates


def route_rate(
    rates: list[EgressRate], data_cloud: str, data_region: str, cloud: str, region: str
) -> EgressRate | None:
    """The egress price of data leaving ``data_region`` (of ``data_cloud``) for ``region`` (of ``cloud``):
    None where the table has none (the route has no established price)."""
    kind = "inter_region" if cloud == data_cloud else "internet"
    found = [r for r in rates if r.cloud == data_cloud and r.kind == kind and r.matches(data_region, region)]
    return max(found, key=lambda r: r.specificity) if found else None


def egress_for(
    rates: list[EgressRate],
    dataset_gb: float,
    data_cloud: str,
    data_region: str,
    cloud: str,
    region: str,
) -> dict[str, object]:
    """The cost of moving ``dataset_gb`` from ``data_region`` to an option in ``region``: ``usd`` 0 in the
    same region, None where no price is established, with the rate and its source."""
    if region == data_region:
        return {"usd": 0.0, "usd_per_gb": 0.0, "route": "same region", "source": "no transfer"}
    rate = route_rate(rates, data_cloud, data_region, cloud, region)
    how = "inter-region" if cloud == data_cloud else "internet"
    route = f"{data_cloud} {data_region} -> {cloud} {region} ({how})"
    if dataset_gb == 0:  # nothing moved costs nothing, whether or not the route's price is known
        return {"usd": 0.0, "usd_per_gb": None, "route": route, "source": "--dataset-gb 0"}
    if rate is None:
        return {"usd": None, "usd_per_gb": None, "route": route, "source": "no sourced egress price"}
    dated = rate.source_date or "undated"
    return {
        "usd": dataset_gb * rate.usd_per_gb,
        "usd_per_gb": rate.usd_per_gb,
        "route": route,
        "source": f"{rate.source} ({dated}): {rate.notes}",
    }


def check_dataset_gb(dataset_gb: float | None) -> None:
    if dataset_gb is not None and not (math.isfinite(dataset_gb) and dataset_gb >= 0):
        raise DdlprofError(f"--dataset-gb must be a finite number >= 0, got {dataset_gb:g}")
