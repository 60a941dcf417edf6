"""AWS fetcher for ``ddlprof catalog refresh aws``, with boto3.

- On-demand prices: the Price List Query API, ``pricing.get_products`` (endpoint in us-east-1),
  service AmazonEC2, one paginated query per instance type with the filters instanceType,
  operatingSystem=Linux, tenancy=Shared, preInstalledSw=NA, capacitystatus=Used (and regionCode when
  a single region is refreshed); each PriceList entry is a JSON string whose
  ``terms.OnDemand.*.priceDimensions.*.pricePerUnit.USD`` (unit ``Hrs``) is the hourly price. Products
  are matched to regions by their ``regionCode`` attribute. One query per type (not per type and
  region) keeps it to about 40 calls.
- Spot prices: ``ec2.describe_spot_price_history`` in each region, ProductDescriptions Linux/UNIX,
  StartTime = EndTime = now, which returns the price in effect now in every availability zone. The
  catalog has one spot price per region: the **lowest** of the region's AZs' latest prices, the same
  statistic as the shipped snapshot's (its source's ``spot_min``), so a refresh changes prices, not
  what they mean. The row's source says in which AZ, over how many AZs, their median and when the
  newest of those prices was set; the row's ``source_date`` and ``spot_source_date`` are the day of the
  refresh (the day the prices were observed in effect).
- Specs: ``ec2.describe_instance_types`` (filter instance-type, in the refreshed regions until every
  type is found): vCPUs, memory (GiB), ``NetworkInfo.NetworkPerformance`` ("Up to 25 Gigabit",
  "4x 100 Gigabit", "3200 Gigabit") and ``EfaSupported``. The GPU model and count are checked
  against the catalog (a mismatch is an invalid response); GPU memory and the intra-node link stay
  as the catalog has them (EC2 reports usable MiB, not the GPU's nominal size, and nothing about
  NVLink).

- Interruption buckets: the Spot Instance Advisor's public file (``SPOT_ADVISOR_URL``, plain HTTPS, no
  credentials; there is no boto3 API for it): ``spot_advisor[region]["Linux"][type]["r"]`` is an index
  into ``ranges``, whose ``label`` ("<5%" ... ">20%") is the row's ``spot_interruption``. The file
  carries no date; the bucket is dated the day of the refresh. If it cannot be fetched or read, the
  refresh goes on with empty buckets and says so in one warning line (and in catalog.json 'missing').

Credentials come from boto3's usual chain; missing credentials, no network, or a denied call end the
refresh with one line and nothing written.
"""

from __future__ import annotations

import contextlib
import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

from ddlprof.advisor.catalog import SPOT_BUCKETS, Instance, _closest
from ddlprof.advisor.catalog.fetch import (
    Fetched,
    Progress,
    RefreshError,
    aggregate_missing,
    decimal,
    fmt,
    median,
)
from ddlprof.errors import DdlprofError

PRICING_REGION = "us-east-1"  # the Price List Query API answers in us-east-1 (also eu-central-1, ap-south-1)
SPOT_PRODUCT = "Linux/UNIX"
PRICE_FILTERS = {
    "operatingSystem": "Linux",
    "tenancy": "Shared",
    "preInstalledSw": "NA",
    "capacitystatus": "Used",
}
DOCS = {
    "pricing": "https://docs.aws.amazon.com/aws-cost-management/latest/APIReference/API_pricing_GetProducts.html",
    "spot": "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeSpotPriceHistory.html",
    "types": "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeInstanceTypes.html",
}
PERMISSIONS = "pricing:GetProducts, ec2:DescribeSpotPriceHistory and ec2:DescribeInstanceTypes"
SPOT_ADVISOR_URL = "https://spot-bid-advisor.s3.amazonaws.com/spot-advisor-data.json"
SPOT_ADVISOR_OS = "Linux"

ClientFactory = Callable[[str, str], Any]  # (service, region) -> a boto3 client


def known_regions() -> list[str]:
    """EC2's regions as botocore's bundled endpoint data lists them (no network)."""
    import botocore.session

    return botocore.session.get_session().get_available_regions("ec2")


def boto3_clients() -> ClientFactory:
    """A (service, region) -> client factory on one boto3 session, with bounded retries and timeouts."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session()
    config = Config(
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
        user_agent_extra="ddlprof-catalog-refresh",
    )
    cache: dict[tuple[str, str], Any] = {}

    def client(service: str, region: str) -> Any:
        if (service, region) not in cache:
            cache[(service, region)] = session.client(service, region_name=region, config=config)
        return cache[(service, region)]

    return client


@contextlib.contextmanager
def aws_errors() -> Iterator[None]:
    """botocore's exceptions as one line each (DdlprofError, exit 2)."""
    from botocore import exceptions as bx

    try:
        yield
    except (bx.NoCredentialsError, bx.PartialCredentialsError, bx.ProfileNotFound) as exc:
        raise RefreshError(
            f"no usable AWS credentials ({exc}); set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
            f"AWS_SECRET_ACCESS_KEY, or run `aws configure` (the refresh needs {PERMISSIONS}); "
            "nothing was written"
        ) from None
    except (
        bx.EndpointConnectionError,
        bx.ConnectTimeoutError,
        bx.ReadTimeoutError,
        bx.ConnectionClosedError,
    ) as exc:
        raise RefreshError(
            f"cannot reach the AWS API ({exc}); check the network; nothing was written"
        ) from None
    except bx.ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "error"), " ".join(str(error.get("Message", "")).split())
        hint = ""
        if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthFailure"):
            hint = f" (the refresh needs {PERMISSIONS})"
        raise RefreshError(
            f"AWS {exc.operation_name} failed: {code}: {message}{hint}; nothing was written"
        ) from None
    except bx.BotoCoreError as exc:
        raise RefreshError(f"AWS request failed: {exc}; nothing was written") from None


# -- parsing ----------------------------------------------------------------------------------------

_NETWORK = re.compile(r"^\s*(up to\s+)?(?:(\d+)\s*x\s+)?(\d+(?:\.\d+)?)\s+gigabit\s*$", re.IGNORECASE)


def parse_network(text: str | None) -> tuple[str, str]:
    """(network_gbps, network_up_to) cells from EC2's NetworkPerformance; ('', '') when it is a word
    ("High", "Moderate") rather than a bandwidth."""
    match = _NETWORK.match(text or "")
    if not match:
        return "", ""
    up_to, cards, gbps = match.groups()
    total = Decimal(gbps) * (int(cards) if cards else 1)
    return fmt(total), "true" if up_to else "false"


def _timestamp(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise RefreshError(f"invalid response: spot price Timestamp {value!r}; nothing was written") from None


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_price_item(text: str, what: str) -> dict | None:
    """One PriceList entry -> {instance_type, region, price, sku, operation}, or None when it is not a
    plain on-demand Linux instance-hour product."""
    try:
        item = json.loads(text)
        product = item["product"]
        attributes = product["attributes"]
        terms = item.get("terms", {}).get("OnDemand", {})
    except (json.JSONDecodeError, TypeError, KeyError) as exc:
        raise RefreshError(
            f"invalid response from pricing.get_products ({what}): a PriceList entry is not a product "
            f"({type(exc).__name__}: {exc}); nothing was written"
        ) from None
    if attributes.get("marketoption", "OnDemand") != "OnDemand":
        return None
    operation = attributes.get("operation", "")
    if not operation.startswith("RunInstances"):
        return None
    hourly = set()
    for term in terms.values():
        for dimension in term.get("priceDimensions", {}).values():
            if dimension.get("unit") == "Hrs":
                usd = dimension.get("pricePerUnit", {}).get("USD")
                hourly.add(decimal(usd, f"{what} SKU {product.get('sku')} pricePerUnit.USD"))
    if not hourly:
        return None
    if len(hourly) > 1:
        raise RefreshError(
            f"invalid response from pricing.get_products ({what}): SKU {product.get('sku')} has several "
            f"on-demand hourly prices {sorted(map(str, hourly))}; nothing was written"
        )
    return {
        "instance_type": attributes.get("instanceType"),
        "region": attributes.get("regionCode"),
        "price": hourly.pop(),
        "sku": product.get("sku", "?"),
        "operation": operation,
    }


def fetch_spot_advisor(timeout: float = 30) -> bytes:
    """The Spot Instance Advisor's public file, as bytes (urllib: no credentials, no extra package)."""
    request = urllib.request.Request(SPOT_ADVISOR_URL, headers={"User-Agent": "ddlprof-catalog-refresh"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


class SpotAdvisorError(Exception):
    """The Spot Instance Advisor file could not be fetched or read (the refresh goes on without it)."""


def parse_spot_advisor(body: bytes) -> dict[tuple[str, str], str]:
    """{(instance type, region): bucket label} of Linux instances from the Spot Instance Advisor file."""
    try:
        doc = json.loads(body)
        labels = {int(r["index"]): str(r["label"]) for r in doc["ranges"]}
        regions = doc["spot_advisor"]
        if not isinstance(regions, dict):
            raise TypeError("spot_advisor is not an object")
        out = {}
        for region, systems in regions.items():
            for name, cell in ((systems or {}).get(SPOT_ADVISOR_OS) or {}).items():
                out[(name, region)] = labels[int(cell["r"])]
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise SpotAdvisorError(
            f"not the Spot Instance Advisor's format ({type(exc).__name__}: {exc})"
        ) from None
    unknown = sorted(set(labels.values()) - set(SPOT_BUCKETS))
    if unknown:
        raise SpotAdvisorError(
            f"unknown bucket label(s) {', '.join(unknown)} (known: {', '.join(SPOT_BUCKETS)})"
        )
    return out


# -- the fetcher ------------------------------------------------------------------------------------


class AwsFetcher:
    """Prices and specs of the catalog's AWS instance types from the AWS APIs."""

    cloud = "aws"

    def __init__(
        self, clients: ClientFactory | None = None, advisor: Callable[[], bytes] | None = None
    ) -> None:
        self._clients = clients
        self._advisor = advisor  # None: fetch_spot_advisor (looked up at call time)

    @staticmethod
    def resolves(what: str) -> bool:
        """Old 'missing' entries about AWS prices and EFA are superseded by a refresh."""
        text = what.lower()
        return "price" in text or text.startswith("efa")

    def fetch(
        self, instances: list[Instance], regions: list[str], now: datetime, progress: Progress
    ) -> Fetched:
        known = known_regions()
        for region in regions:
            if region not in known:
                raise DdlprofError(
                    f"unknown aws region {region!r}{_closest(region, known)}; see `ddlprof catalog list` or "
                    "the regions EC2 lists"
                )
        with aws_errors():
            clients = self._clients or boto3_clients()
            return self._fetch(clients, instances, regions, now, progress)

    # The three parts run in this order: prices, spot, specs; each is one or more paginated calls.

    def _fetch(
        self,
        clients: ClientFactory,
        instances: list[Instance],
        regions: list[str],
        now: datetime,
        progress: Progress,
    ) -> Fetched:
        today = now.date().isoformat()
        names = [i.instance_type for i in instances]
        pricing = clients("pricing", PRICING_REGION)
        on_demand = self._on_demand(pricing, names, regions, progress)
        spot: dict[tuple[str, str], dict] = {}
        ec2_urls: dict[str, str] = {}
        for region in regions:
            ec2 = clients("ec2", region)
            ec2_urls[region] = ec2.meta.endpoint_url
            progress(f"spot prices in {region}")
            spot.update(self._spot(ec2, names, region, now))
        updates, spec_gaps = self._specs(clients, instances, regions, today, progress)
        progress("spot interruption buckets (Spot Instance Advisor)")
        buckets, advisor_failure = self._buckets()

        rows, od_gaps, spot_gaps = [], {}, {}
        for name in names:
            for region in regions:
                od, sp = on_demand.get((name, region)), spot.get((name, region))
                if od is None:
                    od_gaps.setdefault(
                        (name, "no on-demand Linux shared-tenancy product in the AWS Price List"), []
                    ).append(region)
                if sp is None and od is not None:
                    spot_gaps.setdefault(
                        (name, "no Linux/UNIX spot price in any availability zone"), []
                    ).append(region)
                if od is None and sp is None:
                    continue
                parts = []
                if od is not None:
                    parts.append(f"{pricing.meta.endpoint_url} GetProducts (on-demand: SKU {od['sku']})")
                if sp is not None:
                    parts.append(
                        f"{ec2_urls[region]} DescribeSpotPriceHistory (spot: {SPOT_PRODUCT}, lowest of "
                        f"{sp['zones']} AZs, in {sp['lowest_zone']}; median {fmt(sp['median'])}; newest "
                        f"price set {_iso(sp['newest'])})"
                    )
                bucket = buckets.get((name, region), "")
                if bucket:
                    parts.append(f"{SPOT_ADVISOR_URL} (interruption: {SPOT_ADVISOR_OS}, fetched {today})")
                rows.append(
                    {
                        "cloud": "aws",
                        "instance_type": name,
                        "region": region,
                        "on_demand_usd_per_hour": fmt(od["price"]) if od else "",
                        "spot_usd_per_hour": fmt(sp["lowest"]) if sp else "",
                        "spot_interruption": bucket,
                        "source": "; ".join(parts),
                        "source_date": today,
                        "spot_source_date": today if sp or bucket else "",
                    }
                )

        stamp = _iso(now)
        sources = [
            {
                "id": "aws-price-list-api",
                "cloud": "aws",
                "url": DOCS["pricing"],
                "date": today,
                "date_kind": f"fetched by `ddlprof catalog refresh aws` at {stamp}",
                "what": "AWS on-demand prices: Price List Query API GetProducts (AmazonEC2; Linux, shared "
                "tenancy, no pre-installed software, capacitystatus Used), the OnDemand hourly USD price of "
                f"each instance type in each region ({pricing.meta.endpoint_url})",
            },
            {
                "id": "aws-spot-price-history",
                "cloud": "aws",
                "url": DOCS["spot"],
                "date": today,
                "date_kind": f"fetched by `ddlprof catalog refresh aws` at {stamp}",
                "what": "AWS spot prices: EC2 DescribeSpotPriceHistory (Linux/UNIX) at the time of the "
                "refresh; per region the lowest of its availability zones' prices in effect",
            },
            {
                "id": "aws-describe-instance-types",
                "cloud": "aws",
                "url": DOCS["types"],
                "date": today,
                "date_kind": f"fetched by `ddlprof catalog refresh aws` at {stamp}",
                "what": "AWS instance specs: EC2 DescribeInstanceTypes (vCPUs, memory GiB, "
                "NetworkPerformance, EfaSupported; GPU model and count checked against the catalog)",
            },
        ]
        if advisor_failure is None:
            sources.append(
                {
                    "id": "aws-spot-advisor",
                    "cloud": "aws",
                    "url": SPOT_ADVISOR_URL,
                    "date": today,
                    "date_kind": f"fetched by `ddlprof catalog refresh aws` at {stamp} (the file is undated)",
                    "what": "AWS spot interruption buckets: the Spot Instance Advisor's frequency of "
                    f"interruption ({SPOT_ADVISOR_OS}) per instance type and region, its 'ranges' labels",
                }
            )
        bucket_gaps: dict[tuple[str, str], list[str]] = {}
        for row in rows if advisor_failure is None else []:
            if row["spot_usd_per_hour"] and not row["spot_interruption"]:
                why = f"no {SPOT_ADVISOR_OS} entry in the Spot Instance Advisor for that region"
                bucket_gaps.setdefault((row["instance_type"], why), []).append(row["region"])
        missing = [
            *aggregate_missing("aws", od_gaps, today, "on-demand price "),
            *aggregate_missing("aws", spot_gaps, today, "spot price "),
            *aggregate_missing("aws", bucket_gaps, today, "spot interruption bucket "),
            *spec_gaps,
        ]
        warnings = []
        if advisor_failure is not None:
            warnings.append(
                f"the Spot Instance Advisor ({SPOT_ADVISOR_URL}) could not be read ({advisor_failure}); "
                "AWS spot rows are written without interruption buckets (advise then assumes a rate)"
            )
            missing.append(
                {
                    "cloud": "aws",
                    "what": "AWS spot interruption buckets (Spot Instance Advisor)",
                    "why": f"{SPOT_ADVISOR_URL} could not be read on {today} ({advisor_failure}); "
                    "spot_interruption stays empty",
                    "from_refresh": True,
                }
            )
        priced = sorted({r["instance_type"] for r in rows}, key=names.index)
        return Fetched(
            cloud="aws",
            regions=list(regions),
            prices=rows,
            instance_updates=updates,
            sources=sources,
            missing=missing,
            covered={
                "instance_types": priced,
                "regions": ", ".join(regions),
                "prices": "on-demand (Price List API) and spot (lowest of each region's availability "
                "zones, DescribeSpotPriceHistory), interruption buckets (Spot Instance Advisor)",
                "refreshed": stamp,
            },
            notes=[
                "spot price per region = the lowest of its availability zones' Linux/UNIX prices in effect "
                "at the refresh, as in the shipped snapshot (the row's source gives the zone, the AZ count "
                "and their median)",
            ],
            warnings=warnings,
        )

    def _buckets(self) -> tuple[dict[tuple[str, str], str], str | None]:
        """({(type, region): bucket}, None), or ({}, why) when the Spot Instance Advisor cannot be read."""
        try:
            body = (self._advisor or fetch_spot_advisor)()
            return parse_spot_advisor(body), None
        except SpotAdvisorError as exc:
            return {}, str(exc)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return {}, f"{type(exc).__name__}: {getattr(exc, 'reason', None) or exc}"

    def _on_demand(
        self, pricing: Any, names: list[str], regions: list[str], progress: Progress
    ) -> dict[tuple[str, str], dict]:
        wanted = set(regions)
        found: dict[tuple[str, str], list[dict]] = {}
        paginator = pricing.get_paginator("get_products")
        for n, name in enumerate(names, start=1):
            progress(f"on-demand prices {n}/{len(names)}: {name}")
            filters = {"instanceType": name, **PRICE_FILTERS}
            if len(regions) == 1:
                filters["regionCode"] = regions[0]
            pages = paginator.paginate(
                ServiceCode="AmazonEC2",
                FormatVersion="aws_v1",
                Filters=[{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in filters.items()],
            )
            for page in pages:
                entries = page.get("PriceList")
                if not isinstance(entries, list):
                    raise RefreshError(
                        f"invalid response from pricing.get_products ({name}): no PriceList; nothing was "
                        "written"
                    )
                for text in entries:
                    product = parse_price_item(text, name)
                    if product is None or product["region"] not in wanted:
                        continue
                    if product["instance_type"] != name:
                        raise RefreshError(
                            f"invalid response from pricing.get_products: asked for {name}, got "
                            f"{product['instance_type']!r}; nothing was written"
                        )
                    found.setdefault((name, product["region"]), []).append(product)
        chosen = {}
        for key, products in found.items():
            plain = [p for p in products if p["operation"] == "RunInstances"] or products
            if len({p["price"] for p in plain}) > 1:
                raise RefreshError(
                    f"invalid response from pricing.get_products: {key[0]} in {key[1]} has several Linux "
                    f"on-demand prices ({', '.join(sorted(fmt(p['price']) for p in plain))}); nothing was "
                    "written"
                )
            chosen[key] = min(plain, key=lambda p: p["sku"])
        return chosen

    def _spot(self, ec2: Any, names: list[str], region: str, now: datetime) -> dict[tuple[str, str], dict]:
        latest: dict[tuple[str, str], tuple[datetime, Decimal]] = {}
        paginator = ec2.get_paginator("describe_spot_price_history")
        pages = paginator.paginate(
            InstanceTypes=names, ProductDescriptions=[SPOT_PRODUCT], StartTime=now, EndTime=now
        )
        for page in pages:
            history = page.get("SpotPriceHistory")
            if not isinstance(history, list):
                raise RefreshError(
                    f"invalid response from ec2.describe_spot_price_history ({region}): no SpotPriceHistory; "
                    "nothing was written"
                )
            for record in history:
                name, zone = record.get("InstanceType"), record.get("AvailabilityZone")
                if name not in names or record.get("ProductDescription") != SPOT_PRODUCT or not zone:
                    continue
                moment = _timestamp(record.get("Timestamp"))
                price = decimal(record.get("SpotPrice"), f"spot price of {name} in {zone}")
                if (name, zone) not in latest or moment > latest[(name, zone)][0]:
                    latest[(name, zone)] = (moment, price)
        per_type: dict[str, dict[str, tuple[datetime, Decimal]]] = {}
        for (name, zone), value in latest.items():
            per_type.setdefault(name, {})[zone] = value
        out = {}
        for name, zones in per_type.items():
            lowest_zone = min(zones, key=lambda z: (zones[z][1], z))
            out[(name, region)] = {
                "median": median([price for _, price in zones.values()]),
                "zones": len(zones),
                "lowest": zones[lowest_zone][1],
                "lowest_zone": lowest_zone,
                "newest": max(moment for moment, _ in zones.values()),
            }
        return out

    def _specs(
        self,
        clients: ClientFactory,
        instances: list[Instance],
        regions: list[str],
        today: str,
        progress: Progress,
    ) -> tuple[dict[str, dict[str, str]], list[dict]]:
        by_name = {i.instance_type: i for i in instances}
        remaining = list(by_name)
        updates: dict[str, dict[str, str]] = {}
        for region in regions:
            if not remaining:
                break
            progress(f"instance specs in {region}")
            ec2 = clients("ec2", region)
            paginator = ec2.get_paginator("describe_instance_types")
            pages = paginator.paginate(Filters=[{"Name": "instance-type", "Values": remaining}])
            for page in pages:
                for info in page.get("InstanceTypes", []):
                    name = info.get("InstanceType")
                    if name in remaining:
                        updates[name] = self._spec_update(by_name[name], info, ec2.meta.endpoint_url, today)
                        remaining.remove(name)
        gaps = []
        if remaining:
            gaps.append(
                {
                    "cloud": "aws",
                    "what": f"AWS specs (vcpus, ram, network, efa) of {', '.join(remaining)} not refreshed",
                    "why": f"DescribeInstanceTypes did not list them in {', '.join(regions)} on {today}; the "
                    "earlier figures are kept",
                    "from_refresh": True,
                }
            )
        unknown_efa = [n for n, u in updates.items() if u.get("efa") == ""]
        if unknown_efa:
            gaps.append(
                {
                    "cloud": "aws",
                    "what": f"efa for {', '.join(unknown_efa)}",
                    "why": "DescribeInstanceTypes did not say (no EfaSupported)",
                    "from_refresh": True,
                }
            )
        return updates, gaps

    @staticmethod
    def _spec_update(instance: Instance, info: dict, endpoint: str, today: str) -> dict[str, str]:
        name = instance.instance_type
        gpus = (info.get("GpuInfo") or {}).get("Gpus") or []
        reported = {str(g.get("Name", "")).upper() for g in gpus}
        count = sum(int(g.get("Count") or 0) for g in gpus)
        expected = instance.gpu.split("-")[0].upper()
        if reported != {expected} or count != instance.gpu_count:
            shown = " + ".join(f"{g.get('Count')} x {g.get('Name')}" for g in gpus) or "no GPU"
            raise RefreshError(
                f"invalid response from ec2.describe_instance_types: {name} has {shown}, the catalog says "
                f"{instance.gpu_count} x {instance.gpu}; nothing was written"
            )
        try:
            vcpus = int(info["VCpuInfo"]["DefaultVCpus"])
            mib = int(info["MemoryInfo"]["SizeInMiB"])
        except (KeyError, TypeError, ValueError):
            raise RefreshError(
                f"invalid response from ec2.describe_instance_types: {name} has no VCpuInfo.DefaultVCpus or "
                "MemoryInfo.SizeInMiB; nothing was written"
            ) from None
        if vcpus < 1 or mib < 1:
            raise RefreshError(
                f"invalid response from ec2.describe_instance_types: {name} has {vcpus} vCPUs and {mib} MiB; "
                "nothing was written"
            )
        network = info.get("NetworkInfo") or {}
        gbps, up_to = parse_network(network.get("NetworkPerformance"))
        efa = network.get("EfaSupported")
        update = {
            "vcpus": str(vcpus),
            "ram_gb": fmt(Decimal(mib) / 1024),
            "network_gbps": gbps,
            "network_up_to": up_to,
            "efa": "" if efa is None else ("true" if efa else "false"),
            "source": f"{endpoint} DescribeInstanceTypes",
            "source_date": today,
        }
        kept = [
            part
            for part in instance.notes.split("; ")
            if part and not part.startswith(("efa ", "ram_gb is", "vcpus, ram_gb"))
        ]
        said = f"NetworkPerformance '{network.get('NetworkPerformance', '')}'"
        update["notes"] = "; ".join(
            [
                f"vcpus, ram_gb (GiB), network ({said}) and efa from ec2.describe_instance_types on {today}",
                *kept,
            ]
        )
        return update
