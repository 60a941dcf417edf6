"""GCP fetcher for ``ddlprof catalog refresh gcp``: the Cloud Billing Catalog API.

``GET https://cloudbilling.googleapis.com/v1/services/6F81-5844-456A/skus?key=API_KEY`` lists the
Compute Engine SKUs, 5000 per page, following ``nextPageToken``. Plain ``urllib`` and an API key
(``GOOGLE_API_KEY`` or ``--api-key``; the key of any project with the Cloud Billing API enabled)
avoid a dependency on google-api-python-client; ``--endpoint`` points it elsewhere (tests serve
recorded pages from a loopback server). Transient HTTP errors (429, 5xx) and connection errors are
retried twice; the key never appears in messages.

GCP sells accelerator-optimized and N1+GPU machines by their parts, so the price of a machine shape
(taken from the catalog's instances.csv, never from the API) is the documented sum of its SKUs:

    hour = vCPUs x "<family> Instance Core" + RAM GiB x "<family> Instance Ram"
           + GPUs x "<GPU> GPU" + bundled local SSD GiB x "SSD backed Local Storage" / 730

with family A2, A3, G2 or "N1 Predefined", and the GPU SKU "Nvidia Tesla A100", "Nvidia Tesla A100
80GB", "Nvidia H100 80GB", "Nvidia L4", "Nvidia Tesla T4", "Nvidia Tesla V100". A SKU matches by its
description with the place ("running in Americas", "in Paris") cut off, compared whole (so "Nvidia
H100 80GB Mega GPU", "Commitment v1: ..." or "... Sole Tenancy ..." never match), its
``category.resourceGroup`` and ``category.usageType`` (OnDemand, or Preemptible for spot: "Spot
Preemptible A2 Instance Core", "Nvidia Tesla T4 GPU attached to Spot Preemptible VMs"), and the
region in its ``serviceRegions``. The unit price is ``pricingInfo[0].pricingExpression``'s single
tiered rate (units + nanos / 1e9, USD) per ``usageUnit`` (h, GiBy.h, GiBy.mo). Two matching SKUs
with different prices, or a part with no SKU in a region, leave that price empty and say why.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from ddlprof import __version__
from ddlprof.advisor.catalog import Instance, _closest
from ddlprof.advisor.catalog.fetch import Fetched, Progress, RefreshError, aggregate_missing, fmt
from ddlprof.errors import DdlprofError

SERVICE_ID = "6F81-5844-456A"  # Compute Engine
ENDPOINT = "https://cloudbilling.googleapis.com"
API_KEY_ENV = "GOOGLE_API_KEY"
PAGE_SIZE = 5000
HOURS_PER_MONTH = Decimal(730)  # Google's month for GiB-month SKUs
GB_PER_GIB = Decimal("1.073741824")
NANO = Decimal("1e-9")
DOCS = "https://cloud.google.com/billing/docs/how-to/get-pricing-information-api"

# Machine family of an instance type (its prefix) -> the family's core and RAM SKU name.
FAMILIES = {"a2": "a2 instance", "a3": "a3 instance", "g2": "g2 instance", "n1": "n1 predefined instance"}
# Catalog GPU name -> the GPU SKU's names (newer SKUs drop the "Nvidia" prefix).
GPU_SKUS = {
    "A100-40GB": ("nvidia tesla a100 gpu", "a100 40gb gpu"),
    "A100-80GB": ("nvidia tesla a100 80gb gpu", "nvidia a100 80gb gpu", "a100 80gb gpu"),
    "H100": ("nvidia h100 80gb gpu", "h100 80gb gpu"),
    "L4": ("nvidia l4 gpu", "l4 gpu"),
    "T4": ("nvidia tesla t4 gpu", "nvidia t4 gpu"),
    "V100-16GB": ("nvidia tesla v100 gpu", "nvidia v100 gpu"),
}
LOCAL_SSD = "ssd backed local storage"
# Local SSD that comes with the machine type (GiB), from Google's accelerator-optimized machine tables
# (https://cloud.google.com/compute/docs/accelerator-optimized-machines): A2 Ultra 375 GiB per GPU,
# a3-highgpu-8g 16 x 375 GiB.
BUNDLED_SSD_GIB = {
    "a2-ultragpu-1g": 375,
    "a2-ultragpu-2g": 750,
    "a2-ultragpu-4g": 1500,
    "a2-ultragpu-8g": 3000,
    "a3-highgpu-8g": 6000,
}
# Part kind -> (resource groups, usage units) a matching SKU may have.
KINDS = {
    "core": ({"CPU", "N1Standard"}, {"h"}),
    "ram": ({"RAM", "N1Standard"}, {"GiBy.h", "GBy.h"}),
    "gpu": ({"GPU"}, {"h"}),
    "ssd": ({"LocalSSD", "SSD"}, {"GiBy.mo"}),
}
USAGE = {"on_demand": "OnDemand", "spot": "Preemptible"}

_PLACE = re.compile(r"\s+(?:running\s+)?in\s+")
_SPOT_PREFIXES = ("spot preemptible ", "preemptible ")
_SPOT_SUFFIXES = (" attached to spot preemptible vms", " attached to preemptible vms")


@dataclass(frozen=True)
class Part:
    kind: str  # core, ram, gpu, ssd
    names: tuple[str, ...]  # SKU names (lower case, place cut off, spot wording removed)
    quantity: Decimal  # vCPUs, GiB of RAM, GPUs, GiB of local SSD
    label: str  # for messages: "a2 instance core"


@dataclass(frozen=True)
class Rate:
    price: Decimal  # USD per usage unit
    unit: str
    sku: str
    description: str


def canonical(description: str) -> tuple[str, bool]:
    """A SKU description without its place and spot wording, lower case, and whether it had spot wording:
    'Nvidia Tesla T4 GPU attached to Spot Preemptible VMs running in Americas' -> ('nvidia tesla t4 gpu',
    True)."""
    text = " ".join(description.lower().split())
    text = _PLACE.split(text, maxsplit=1)[0]
    spot = False
    for prefix in _SPOT_PREFIXES:
        if text.startswith(prefix):
            text, spot = text[len(prefix) :], True
            break
    for suffix in _SPOT_SUFFIXES:
        if text.endswith(suffix):
            text, spot = text[: -len(suffix)], True
            break
    return text, spot


def parts_of(instance: Instance) -> list[Part] | str:
    """The SKU parts of a machine shape, or why it cannot be priced from SKUs."""
    name = instance.instance_type
    family = FAMILIES.get(name.split("-", 1)[0])
    if family is None:
        return f"no SKU family known for {name}"
    gpu = GPU_SKUS.get(instance.gpu)
    if gpu is None:
        return f"no GPU SKU known for {instance.gpu}"
    parts = [
        Part("core", (f"{family} core",), Decimal(instance.vcpus), f"{family} core"),
        Part("ram", (f"{family} ram",), Decimal(str(instance.ram_gb)), f"{family} ram"),
        Part("gpu", gpu, Decimal(instance.gpu_count), gpu[0]),
    ]
    ssd = BUNDLED_SSD_GIB.get(name)
    if ssd:
        parts.append(Part("ssd", (LOCAL_SSD,), Decimal(ssd), LOCAL_SSD))
    return parts


def unit_price(sku: dict) -> tuple[Decimal, str] | str:
    """(USD per usage unit, usage unit) of a SKU, or why it has no single price."""
    sku_id = sku.get("skuId", "?")
    try:
        expression = sku["pricingInfo"][0]["pricingExpression"]
        unit = expression["usageUnit"]
        rates = expression["tieredRates"]
        prices = set()
        for rate in rates:
            money = rate["unitPrice"]
            if money.get("currencyCode", "USD") != "USD":
                raise RefreshError(
                    f"invalid response: SKU {sku_id} is priced in {money.get('currencyCode')}, not USD; "
                    "nothing was written"
                )
            prices.add(Decimal(int(money.get("units") or 0)) + Decimal(int(money.get("nanos") or 0)) * NANO)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise RefreshError(
            f"invalid response: SKU {sku_id} ({sku.get('description')!r}) has no readable "
            f"pricingInfo[0].pricingExpression ({type(exc).__name__}: {exc}); nothing was written"
        ) from None
    if len(prices) != 1:
        return f"SKU {sku_id} has {len(prices)} different tiered rates"
    price = prices.pop()
    if price <= 0:
        return f"SKU {sku_id} is priced at {price}"
    return price, unit


class GcpFetcher:
    """Prices of the catalog's GCP machine shapes from the Cloud Billing Catalog API."""

    cloud = "gcp"

    def __init__(
        self,
        api_key: str | None = None,
        endpoint: str | None = None,
        *,
        retry_delays: tuple[float, ...] = (1.0, 4.0),
        timeout: float = 60.0,
    ) -> None:
        self.api_key = api_key or os.environ.get(API_KEY_ENV) or None
        self.endpoint = (endpoint or ENDPOINT).rstrip("/")
        self.retry_delays = retry_delays
        self.timeout = timeout
        self.pages = 0

    @staticmethod
    def resolves(what: str) -> bool:
        """Old 'missing' entries about GCP prices are superseded by a refresh."""
        return "price" in what.lower()

    @property
    def url(self) -> str:
        return f"{self.endpoint}/v1/services/{SERVICE_ID}/skus"

    # -- HTTP ---------------------------------------------------------------------------------------

    def skus(self, progress: Progress) -> Iterator[dict]:
        """Every SKU of the service, page by page."""
        if not self.api_key:
            raise RefreshError(
                f"no Google API key: set {API_KEY_ENV} or pass --api-key (an API key of a project with the "
                f"Cloud Billing API enabled, see {DOCS}); nothing was written"
            )
        token, seen = "", set()
        while True:
            query = {"key": self.api_key, "currencyCode": "USD", "pageSize": str(PAGE_SIZE)}
            if token:
                query["pageToken"] = token
            self.pages += 1
            progress(f"Cloud Billing Catalog page {self.pages}")
            page = self._get(f"{self.url}?{urllib.parse.urlencode(query)}", self.pages)
            skus = page.get("skus", [])
            if not isinstance(skus, list) or not all(isinstance(s, dict) for s in skus):
                raise RefreshError(
                    f"invalid response from {self.url} (page {self.pages}): 'skus' is not a list of SKUs; "
                    "nothing was written"
                )
            yield from skus
            token = page.get("nextPageToken") or ""
            if not token:
                return
            if token in seen:
                raise RefreshError(
                    f"invalid response from {self.url}: nextPageToken repeats (page {self.pages}); nothing "
                    "was written"
                )
            seen.add(token)

    def _get(self, url: str, page: int) -> dict:
        request = urllib.request.Request(
            url, headers={"Accept": "application/json", "User-Agent": f"ddlprof/{__version__}"}
        )
        where = f"{self.url} (page {page})"
        for attempt in range(len(self.retry_delays) + 1):
            last = attempt == len(self.retry_delays)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    body = response.read()
                break
            except urllib.error.HTTPError as exc:
                if exc.code in (429, 500, 502, 503, 504) and not last:
                    time.sleep(self.retry_delays[attempt])
                    continue
                raise RefreshError(
                    f"the Cloud Billing API answered HTTP {exc.code} for {where}: {self._message(exc)}; "
                    "nothing was written"
                ) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                if not last:
                    time.sleep(self.retry_delays[attempt])
                    continue
                reason = getattr(exc, "reason", exc)
                raise RefreshError(
                    f"cannot reach the Cloud Billing API at {self.endpoint} ({reason}); check the network"
                    + (" or --endpoint" if self.endpoint != ENDPOINT else "")
                    + "; nothing was written"
                ) from None
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RefreshError(
                f"invalid response from {where}: not JSON ({exc}); nothing was written"
            ) from None
        if not isinstance(data, dict):
            raise RefreshError(f"invalid response from {where}: not a JSON object; nothing was written")
        return data

    def _message(self, exc: urllib.error.HTTPError) -> str:
        try:
            detail = json.loads(exc.read() or b"{}").get("error", {}).get("message") or exc.reason
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, OSError):
            detail = exc.reason
        text = " ".join(str(detail).split())
        if self.api_key:
            text = text.replace(self.api_key, "***")
        return text[:300]

    # -- prices -------------------------------------------------------------------------------------

    def fetch(
        self, instances: list[Instance], regions: list[str], now: datetime, progress: Progress
    ) -> Fetched:
        today = now.date().isoformat()
        shapes = {i.instance_type: parts_of(i) for i in instances}
        wanted: dict[str, str] = {}  # SKU name -> part kind
        for parts in shapes.values():
            if isinstance(parts, list):
                for part in parts:
                    for name in part.names:
                        wanted[name] = part.kind

        index: dict[tuple[str, str, str], list[Rate]] = {}
        problems: dict[tuple[str, str, str], str] = {}
        service_regions: set[str] = set()
        count = 0
        for sku in self.skus(progress):
            count += 1
            regions_of = sku.get("serviceRegions") or []
            service_regions.update(r for r in regions_of if isinstance(r, str))
            category = sku.get("category") or {}
            usage = category.get("usageType")
            if usage not in USAGE.values():
                continue
            name, spot_words = canonical(str(sku.get("description", "")))
            kind = wanted.get(name)
            if kind is None or spot_words != (usage == "Preemptible"):
                continue
            groups, units = KINDS[kind]
            if category.get("resourceGroup") not in groups:
                continue
            priced = unit_price(sku)
            for region in regions_of:
                if isinstance(priced, str):
                    problems[(name, usage, region)] = priced
                    continue
                price, unit = priced
                if unit not in units:
                    raise RefreshError(
                        f"invalid response: SKU {sku.get('skuId')} ({sku.get('description')!r}) is priced "
                        f"per {unit!r}, expected {' or '.join(sorted(units))}; nothing was written"
                    )
                index.setdefault((name, usage, region), []).append(
                    Rate(price, unit, str(sku.get("skuId", "?")), str(sku.get("description", "")))
                )
        if count == 0:
            raise RefreshError(f"invalid response from {self.url}: no SKUs at all; nothing was written")
        unknown = [r for r in regions if r not in service_regions]
        if unknown:
            raise DdlprofError(
                f"unknown gcp region {unknown[0]!r}{_closest(unknown[0], sorted(service_regions))}: no "
                "Compute Engine SKU is sold there"
            )

        rows, gaps = [], {"on_demand": {}, "spot": {}}
        for instance in instances:
            parts = shapes[instance.instance_type]
            for region in regions:
                figures, skus = {}, {}
                for figure, usage in USAGE.items():
                    if isinstance(parts, str):
                        gaps[figure].setdefault((instance.instance_type, parts), []).append(region)
                        continue
                    total = self._sum(parts, usage, region, index, problems)
                    if isinstance(total, str):
                        gaps[figure].setdefault((instance.instance_type, total), []).append(region)
                        continue
                    figures[figure], skus[figure] = total
                if not figures:
                    continue
                detail = "; ".join(f"{f.replace('_', '-')}: {' + '.join(s)}" for f, s in skus.items())
                rows.append(
                    {
                        "cloud": "gcp",
                        "instance_type": instance.instance_type,
                        "region": region,
                        "on_demand_usd_per_hour": fmt(figures["on_demand"]) if "on_demand" in figures else "",
                        "spot_usd_per_hour": fmt(figures["spot"]) if "spot" in figures else "",
                        "spot_interruption": "",
                        "source": f"{self.url} ({detail})",
                        "source_date": today,
                        "spot_source_date": today if "spot" in figures else "",
                    }
                )

        stamp = now.isoformat(timespec="seconds").replace("+00:00", "Z")
        names = [i.instance_type for i in instances]
        missing = [
            *aggregate_missing("gcp", gaps["on_demand"], today, "on-demand price "),
            *aggregate_missing("gcp", gaps["spot"], today, "spot price "),
        ]
        return Fetched(
            cloud="gcp",
            regions=list(regions),
            prices=rows,
            sources=[
                {
                    "id": "gcp-cloud-billing-catalog",
                    "cloud": "gcp",
                    "url": f"{self.url}",
                    "date": today,
                    "date_kind": f"fetched by `ddlprof catalog refresh gcp` at {stamp}",
                    "what": f"GCP Compute Engine SKUs ({count} SKUs in {self.pages} pages), on-demand and "
                    "Spot: each machine shape of instances.csv priced as vCPUs x core SKU + RAM GiB x RAM "
                    "SKU + GPUs x GPU SKU (+ bundled local SSD GiB x SSD SKU / 730 h for a2-ultragpu and "
                    "a3-highgpu-8g); each row's source lists the SKU ids",
                }
            ],
            missing=missing,
            covered={
                "instance_types": sorted({r["instance_type"] for r in rows}, key=names.index),
                "regions": ", ".join(regions),
                "prices": "on-demand and spot (Preemptible SKUs), summed from the Cloud Billing Catalog",
                "refreshed": stamp,
            },
            notes=[
                "GCP price = vCPUs x core SKU + RAM GiB x RAM SKU + GPUs x GPU SKU (+ bundled local SSD "
                "/ 730 h), the machine shapes from instances.csv"
            ],
        )

    @staticmethod
    def _sum(
        parts: list[Part],
        usage: str,
        region: str,
        index: dict[tuple[str, str, str], list[Rate]],
        problems: dict[tuple[str, str, str], str],
    ) -> tuple[Decimal, list[str]] | str:
        total, used = Decimal(0), []
        for part in parts:
            rates = [r for name in part.names for r in index.get((name, usage, region), [])]
            if not rates:
                problem = next(
                    (problems[(n, usage, region)] for n in part.names if (n, usage, region) in problems), None
                )
                return problem or f"no {usage} '{part.label}' SKU lists the region"
            if len({(r.price, r.unit) for r in rates}) > 1:
                shown = ", ".join(f"{r.sku} {fmt(r.price)}/{r.unit}" for r in rates)
                return f"several {usage} '{part.label}' SKUs with different prices ({shown})"
            rate = min(rates, key=lambda r: r.sku)
            amount = part.quantity * rate.price
            if rate.unit == "GBy.h":
                amount *= GB_PER_GIB
            elif rate.unit == "GiBy.mo":
                amount /= HOURS_PER_MONTH
            total += amount
            used.append(f"{fmt(part.quantity)} x {rate.sku}")
        return total.quantize(NANO, rounding=ROUND_HALF_EVEN), used
