"""`ddlprof catalog refresh aws|gcp`, offline: boto3 against botocore's Stubber, the GCP fetcher against a
loopback HTTP server, both serving the responses in tests/data/refresh (hand-written in the APIs'
documented formats; see the README there).

Checked: a refresh writes a valid snapshot with the served prices, today's date and the API as source,
and keeps the other cloud's rows; a failure (API error midway, an invalid answer, a failed check or
swap) leaves the old snapshot byte-identical and no stray files; --dry-run writes nothing; missing
credentials, no network and a missing or bad API key are one line and exit 2; list/show report the
user snapshot.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import subprocess
import sys
import threading
import urllib.error
from datetime import UTC, date, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import botocore.session
import pytest
from botocore.stub import ANY, Stubber

from ddlprof.advisor.catalog import (
    CATALOG_DIR_ENV,
    DATA_DIR,
    FILES,
    catalog_source,
    load_catalog,
    user_catalog_dir,
)
from ddlprof.advisor.catalog import aws as aws_module
from ddlprof.advisor.catalog import refresh as refresh_module
from ddlprof.advisor.catalog.aws import AwsFetcher, parse_network
from ddlprof.advisor.catalog.fetch import Fetched, fmt, median
from ddlprof.advisor.catalog.gcp import GcpFetcher, canonical
from ddlprof.advisor.catalog.refresh import refresh
from ddlprof.cli import main
from ddlprof.errors import DdlprofError

REPO = Path(__file__).resolve().parent.parent
RECORDED = Path(__file__).resolve().parent / "data" / "refresh"

AWS_TYPES = ("p4d.24xlarge", "g4dn.12xlarge", "g5.xlarge")
GCP_TYPES = ("a2-highgpu-1g", "a2-ultragpu-1g", "g2-standard-4", "n1-standard-4+1xnvidia-tesla-t4")
AWS_REGIONS = ["us-east-1", "eu-west-1"]
GCP_REGIONS = ["us-central1", "europe-west4"]
NOW = datetime(2026, 11, 23, 4, 30, tzinfo=UTC)
API_KEY = "test-key-not-a-secret"
SPOT_ADVISOR = "aws_spot_advisor_data.json"


def _recorded(name: str) -> dict:
    return json.loads((RECORDED / name).read_text())


def _today() -> set[str]:
    """Today's UTC date (and the next one, should the command run across midnight)."""
    now = datetime.now(UTC).date()
    return {now.isoformat(), date.fromordinal(now.toordinal() + 1).isoformat()}


# -- a small old snapshot to refresh -----------------------------------------------------------------


def _write_base(target: Path) -> Path:
    """A copy of the shipped snapshot cut down to the instance types the recorded responses cover."""
    target.mkdir(parents=True, exist_ok=True)
    keep = set(AWS_TYPES) | set(GCP_TYPES)
    for name in ("instances.csv", "prices.csv"):
        with (DATA_DIR / name).open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = [r for r in reader if r["instance_type"] in keep]
            header = reader.fieldnames
        with (target / name).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=header, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    (target / "catalog.json").write_bytes((DATA_DIR / "catalog.json").read_bytes())
    load_catalog(target)  # valid to begin with
    return target


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def _price_rows(directory: Path) -> list[dict[str, str]]:
    with (directory / "prices.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _rows_by_key(directory: Path, cloud: str) -> dict[tuple[str, str], dict[str, str]]:
    return {(r["instance_type"], r["region"]): r for r in _price_rows(directory) if r["cloud"] == cloud}


@pytest.fixture
def old(tmp_path: Path) -> Path:
    return _write_base(tmp_path / "snap" / "catalog")


@pytest.fixture(autouse=True)
def _no_catalog_override(monkeypatch):
    monkeypatch.delenv(CATALOG_DIR_ENV, raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)


@pytest.fixture(autouse=True)
def _recorded_spot_advisor(monkeypatch):
    """The Spot Instance Advisor's file is served from tests/data/refresh, never fetched."""
    monkeypatch.setattr(aws_module, "fetch_spot_advisor", lambda: (RECORDED / SPOT_ADVISOR).read_bytes())


# -- AWS: botocore's Stubber -------------------------------------------------------------------------


def _timestamps(pages: list[dict]) -> list[dict]:
    pages = copy.deepcopy(pages)
    for page in pages:
        for record in page["SpotPriceHistory"]:
            record["Timestamp"] = datetime.fromisoformat(record["Timestamp"])
    return pages


class AwsStubs:
    """boto3 clients whose answers come from tests/data/refresh, in the order the fetcher asks."""

    def __init__(self, regions: list[str] = AWS_REGIONS, types: tuple[str, ...] = AWS_TYPES):
        session = botocore.session.get_session()

        def client(service: str, region: str):
            return session.create_client(
                service, region_name=region, aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="x"
            )

        self.pricing = client("pricing", "us-east-1")
        self.ec2 = {region: client("ec2", region) for region in regions}
        self.stubs = {"pricing": Stubber(self.pricing), **{r: Stubber(c) for r, c in self.ec2.items()}}
        self.regions, self.types = regions, types
        self.calls: list[tuple[str, str]] = []

    def add_products(self, name: str, pages: list[dict] | None = None) -> None:
        pages = pages if pages is not None else _recorded("aws_get_products.json")[name]
        filters = [
            {"Type": "TERM_MATCH", "Field": field, "Value": value}
            for field, value in (
                ("instanceType", name),
                ("operatingSystem", "Linux"),
                ("tenancy", "Shared"),
                ("preInstalledSw", "NA"),
                ("capacitystatus", "Used"),
            )
        ]
        if len(self.regions) == 1:
            filters.append({"Type": "TERM_MATCH", "Field": "regionCode", "Value": self.regions[0]})
        for i, page in enumerate(pages):
            params = {"ServiceCode": "AmazonEC2", "FormatVersion": "aws_v1", "Filters": filters}
            if i:
                params["NextToken"] = pages[i - 1]["NextToken"]
            self.stubs["pricing"].add_response("get_products", page, params)

    def add_spot(self, region: str, recorded: dict | None = None) -> None:
        recorded = recorded or _recorded("aws_describe_spot_price_history.json")
        pages = _timestamps(recorded.get(region, [{"SpotPriceHistory": []}]))
        for i, page in enumerate(pages):
            params = {
                "InstanceTypes": list(self.types),
                "ProductDescriptions": ["Linux/UNIX"],
                "StartTime": ANY,
                "EndTime": ANY,
            }
            if i:
                params["NextToken"] = pages[i - 1]["NextToken"]
            self.stubs[region].add_response("describe_spot_price_history", page, params)

    def add_types(self, region: str, pages: list[dict] | None = None) -> None:
        pages = pages if pages is not None else _recorded("aws_describe_instance_types.json")[region]
        for page in pages:
            params = {"Filters": [{"Name": "instance-type", "Values": list(self.types)}]}
            self.stubs[region].add_response("describe_instance_types", page, params)

    def add_all(self) -> AwsStubs:
        for name in self.types:
            self.add_products(name)
        for region in self.regions:
            self.add_spot(region)
        self.add_types(self.regions[0])
        return self

    def __call__(self, service: str, region: str):
        self.calls.append((service, region))
        return self.pricing if service == "pricing" else self.ec2[region]

    def __enter__(self) -> AwsStubs:
        for stub in self.stubs.values():
            stub.activate()
        return self

    def __exit__(self, *exc) -> None:
        for stub in self.stubs.values():
            stub.deactivate()

    def assert_all_used(self) -> None:
        for stub in self.stubs.values():
            stub.assert_no_pending_responses()


def test_aws_refresh_writes_the_recorded_prices_and_specs(old):
    before = _rows_by_key(old, "gcp")
    kept_regions = {k: r for k, r in _rows_by_key(old, "aws").items() if k[1] not in AWS_REGIONS}
    with AwsStubs().add_all() as stubs:
        summary = refresh(AwsFetcher(stubs), regions=AWS_REGIONS, out=old, now=NOW)
        stubs.assert_all_used()

    catalog = load_catalog(old)
    aws = _rows_by_key(old, "aws")
    # On-demand from the Price List, spot = the lowest AZ's latest price (as the shipped snapshot's).
    p4d = aws[("p4d.24xlarge", "us-east-1")]
    assert p4d["on_demand_usd_per_hour"] == "21.957642"
    assert p4d["spot_usd_per_hour"] == "8.7713"  # lowest of 9.1204, 8.7713, 10.0461
    assert p4d["source_date"] == p4d["spot_source_date"] == "2026-11-23"
    assert p4d["source"].startswith(
        "https://api.pricing.us-east-1.amazonaws.com GetProducts (on-demand: SKU "
    )
    assert "lowest of 3 AZs, in us-east-1b; median 9.1204" in p4d["source"]
    # The Spot Instance Advisor's Linux bucket of the type in the region ("r": 4 -> ">20%").
    assert p4d["spot_interruption"] == ">20%"
    assert "spot-advisor-data.json (interruption: Linux" in p4d["source"]
    # us-east-1a's older g5 record (0.4629) loses to its newer one (0.4177); lowest 0.3979 in 1c
    assert aws[("g5.xlarge", "us-east-1")]["spot_usd_per_hour"] == "0.3979"
    assert "lowest of 4 AZs, in us-east-1c; median 0.42895" in aws[("g5.xlarge", "us-east-1")]["source"]
    assert aws[("g5.xlarge", "eu-west-1")]["spot_usd_per_hour"] == "0.4698"
    assert aws[("g5.xlarge", "eu-west-1")]["spot_interruption"] == "5-10%"
    g4dn = aws[("g4dn.12xlarge", "eu-west-1")]
    assert g4dn["spot_usd_per_hour"] == "1.6923"
    assert g4dn["spot_interruption"] == ""  # the advisor lists it for Windows only there
    assert aws[("g4dn.12xlarge", "us-east-1")]["spot_usd_per_hour"] == ""  # no spot record served
    assert aws[("g4dn.12xlarge", "us-east-1")]["spot_interruption"] == ">20%"
    assert aws[("p4d.24xlarge", "eu-west-1")] | {"source": ""} == {
        "cloud": "aws",
        "instance_type": "p4d.24xlarge",
        "region": "eu-west-1",
        "on_demand_usd_per_hour": "23.71569",
        "spot_usd_per_hour": "",
        "spot_interruption": "<5%",
        "source": "",
        "source_date": "2026-11-23",
        "spot_source_date": "2026-11-23",
    }
    # The Price List's us-west-2 and ap-northeast-1 products were not asked for: those rows are the old ones.
    for key, row in kept_regions.items():
        assert aws[key] == row
    # The other cloud is untouched.
    assert _rows_by_key(old, "gcp") == before

    # Specs from DescribeInstanceTypes.
    p4d_spec = catalog.instance("p4d.24xlarge")
    assert (p4d_spec.vcpus, p4d_spec.ram_gb, p4d_spec.network_gbps, p4d_spec.efa) == (96, 1152, 400, True)
    assert p4d_spec.network_up_to is False and p4d_spec.gpu_link == "NVSwitch NVLink 3"
    assert p4d_spec.source == "https://ec2.us-east-1.amazonaws.com DescribeInstanceTypes"
    g5 = catalog.instance("g5.xlarge")
    assert (g5.network_gbps, g5.network_up_to, g5.efa) == (10, True, False)  # "Up to 10 Gigabit"
    assert "NVLink peer-to-peer" not in g5.notes and "describe_instance_types on 2026-11-23" in g5.notes

    # catalog.json: date, sources, the refresh, and what is still missing.
    meta = catalog.meta
    assert meta["snapshot_date"] == "2026-11-23" and meta["compiled_on"] == "2026-11-23"
    ids = {s["id"] for s in meta["sources"]}
    assert {
        "aws-price-list-api",
        "aws-spot-price-history",
        "aws-describe-instance-types",
        "aws-spot-advisor",
    } <= ids
    assert "gcp-prices" in ids  # the GCP rows still cite it
    assert "aws-prices" in ids  # so do the AWS rows of regions not refreshed (same date)
    assert meta["refreshed"]["aws"]["at"] == "2026-11-23T04:30:00Z"
    assert meta["refreshed"]["aws"]["regions"] == ["eu-west-1", "us-east-1"]
    whats = [m["what"] for m in meta["missing"]]
    assert "AWS p4d.24xlarge spot price in eu-west-1" in whats
    assert "AWS g4dn.12xlarge spot price in us-east-1" in whats
    assert "AWS g4dn.12xlarge spot interruption bucket in eu-west-1" in whats
    assert "AWS spot prices (all instance types, all regions)" not in whats  # superseded
    assert any(
        w.startswith("AWS prices in regions not refreshed on 2026-11-23: ap-northeast-1") for w in whats
    )
    assert any(w.startswith("GCP N1 + T4 prices") for w in whats)  # the other cloud's entries stay
    for source in meta["sources"]:
        assert source["url"] and source["what"]
    price_dates = {p.source_date.isoformat() for p in catalog.prices}
    assert price_dates <= {s["date"] for s in meta["sources"]}

    # p4d in eu-west-1 and g4dn.12xlarge in us-east-1 get no spot price and keep their on-demand price;
    # they change too, as the shipped snapshot has a spot price there
    assert summary["changes"] | {"largest_changes": []} == {
        "added": 0,
        "removed": 0,
        "changed": 6,
        "unchanged": 0,
        "largest_changes": [],
    }
    assert summary["spot_prices"] == 4 and summary["on_demand_prices"] == 6
    assert summary["written_to"] == str(old)
    assert not [p for p in old.parent.iterdir() if p.name != "catalog"]  # no temp or backup dirs left


def test_refreshing_a_snapshot_from_before_spot_source_date_dates_the_kept_spot_prices(old):
    """A user's snapshot written before the column: the refresh writes it, the kept rows' spot prices
    dated as their rows were."""
    with (old / "prices.csv").open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        header = [c for c in reader.fieldnames if c != "spot_source_date"]
    with (old / "prices.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    before = {(r["instance_type"], r["region"]): r for r in rows}
    with AwsStubs().add_all() as stubs:
        refresh(AwsFetcher(stubs), regions=AWS_REGIONS, out=old, now=NOW)
    after = _price_rows(old)
    assert all("spot_source_date" in r for r in after)
    kept = [r for r in after if not (r["cloud"] == "aws" and r["region"] in AWS_REGIONS)]
    assert kept and any(r["spot_usd_per_hour"] for r in kept)
    for row in kept:
        old_row = before[(row["instance_type"], row["region"])]
        has_spot = old_row["spot_usd_per_hour"] or old_row["spot_interruption"]
        assert row["spot_source_date"] == (old_row["source_date"] if has_spot else ""), row
    load_catalog(old)


def test_aws_refresh_of_one_region_filters_by_region_code(old):
    pages = _recorded("aws_get_products.json")
    with AwsStubs(regions=["eu-west-1"]) as stubs:
        for name in AWS_TYPES:
            stubs.add_products(name, pages[name])
        stubs.add_spot("eu-west-1")
        stubs.add_types("eu-west-1", _recorded("aws_describe_instance_types.json")["us-east-1"])
        refresh(AwsFetcher(stubs), regions=["eu-west-1"], out=old, now=NOW)
        stubs.assert_all_used()
    assert _rows_by_key(old, "aws")[("g5.xlarge", "eu-west-1")]["on_demand_usd_per_hour"] == "1.123"


def test_aws_api_error_midway_leaves_the_old_snapshot_byte_identical(old):
    snapshot = _files(old)
    with AwsStubs() as stubs:
        stubs.add_products(AWS_TYPES[0])
        stubs.stubs["pricing"].add_client_error(
            "get_products",
            service_error_code="AccessDeniedException",
            service_message="User: arn:aws:iam::123456789012:user/ci is not authorized to perform: "
            "pricing:GetProducts",
            http_status_code=400,
        )
        with pytest.raises(DdlprofError) as caught:
            refresh(AwsFetcher(stubs), regions=AWS_REGIONS, out=old, now=NOW)
    message = str(caught.value)
    assert message.startswith("AWS GetProducts failed: AccessDeniedException: User: arn:aws:iam::")
    assert "needs pricing:GetProducts" in message and "nothing was written" in message and "\n" not in message
    assert _files(old) == snapshot
    assert sorted(p.name for p in old.parent.iterdir()) == ["catalog"]


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        ("price", r"pricePerUnit\.USD is 'n/a', not a number"),
        ("json", r"a PriceList entry is not a product"),
        ("gpu", r"g5\.xlarge has 1 x A100, the catalog says 1 x A10G"),
        (
            "spot",
            r"spot price of g5\.xlarge in eu-west-1a is '-0\.4812'; a price must be a finite number > 0",
        ),
    ],
)
def test_aws_invalid_response_leaves_the_old_snapshot_byte_identical(old, broken, expected):
    snapshot = _files(old)
    recorded = _recorded("aws_get_products.json")
    with AwsStubs() as stubs:
        for name in AWS_TYPES:
            pages = copy.deepcopy(recorded[name])
            if broken == "price" and name == "g5.xlarge":
                pages[0]["PriceList"][0] = pages[0]["PriceList"][0].replace(
                    '"USD":"1.0060000000"', '"USD":"n/a"'
                )
            if broken == "json" and name == "g4dn.12xlarge":
                pages[0]["PriceList"][1] = pages[0]["PriceList"][1][:200]  # truncated
            stubs.add_products(name, pages)
            if broken in ("price", "json") and name == (
                "g5.xlarge" if broken == "price" else "g4dn.12xlarge"
            ):
                break
        if broken in ("gpu", "spot"):
            spot = _recorded("aws_describe_spot_price_history.json")
            if broken == "spot":
                spot["eu-west-1"][0]["SpotPriceHistory"][0]["SpotPrice"] = "-0.4812"
            for region in AWS_REGIONS:
                stubs.add_spot(region, spot)
        if broken == "gpu":
            pages = copy.deepcopy(_recorded("aws_describe_instance_types.json")["us-east-1"])
            pages[0]["InstanceTypes"][1]["GpuInfo"]["Gpus"][0]["Name"] = "A100"
            stubs.add_types("us-east-1", pages)
        with pytest.raises(DdlprofError, match=expected) as caught:
            refresh(AwsFetcher(stubs), regions=AWS_REGIONS, out=old, now=NOW)
    assert "nothing was written" in str(caught.value)
    assert _files(old) == snapshot
    assert sorted(p.name for p in old.parent.iterdir()) == ["catalog"]


def test_aws_dry_run_writes_nothing(old):
    snapshot = _files(old)
    with AwsStubs().add_all() as stubs:
        summary = refresh(AwsFetcher(stubs), regions=AWS_REGIONS, out=old, dry_run=True, now=NOW)
        stubs.assert_all_used()
    assert summary["dry_run"] is True and summary["written_to"] is None
    assert summary["changes"]["changed"] == 6
    assert _files(old) == snapshot
    assert sorted(p.name for p in old.parent.iterdir()) == ["catalog"]


@pytest.mark.parametrize(
    ("advisor", "why"),
    [
        (urllib.error.URLError("timed out"), "URLError: timed out"),
        (b"<html>AccessDenied</html>", "not the Spot Instance Advisor's format"),
        (
            b'{"ranges": [{"index": 0, "label": "<5%"}], "spot_advisor": {"us-east-1": {"Linux": '
            b'{"g5.xlarge": {"r": 7}}}}}',
            "not the Spot Instance Advisor's format (KeyError: 7)",
        ),
        (b'{"ranges": [{"index": 0, "label": "<3%"}], "spot_advisor": {}}', "unknown bucket label(s) <3%"),
    ],
)
def test_aws_refresh_without_the_spot_advisor_keeps_the_prices_and_warns_once(
    old, monkeypatch, capsys, advisor, why
):
    def fetch() -> bytes:
        if isinstance(advisor, Exception):
            raise advisor
        return advisor

    monkeypatch.setattr(aws_module, "fetch_spot_advisor", fetch)
    gcp_before = _rows_by_key(old, "gcp")
    kept = {k: r for k, r in _rows_by_key(old, "aws").items() if k[1] not in AWS_REGIONS}
    stubs = AwsStubs().add_all()
    monkeypatch.setattr("ddlprof.advisor.catalog.aws.boto3_clients", lambda: stubs)
    with stubs:
        rc = main(["catalog", "refresh", "aws", "--regions", "us-east-1,eu-west-1", "--out", str(old)])
        stubs.assert_all_used()
    out = capsys.readouterr()
    assert rc == 0, out.err
    warnings = out.err.strip().splitlines()
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("ddlprof catalog refresh: warning: the Spot Instance Advisor (")
    assert why in warnings[0] and "without interruption buckets" in warnings[0]
    aws = _rows_by_key(old, "aws")
    refreshed = {k: r for k, r in aws.items() if k[1] in AWS_REGIONS}
    assert len(refreshed) == 6
    assert all(r["spot_interruption"] == "" and "spot-advisor" not in r["source"] for r in refreshed.values())
    assert aws[("p4d.24xlarge", "us-east-1")]["spot_usd_per_hour"] == "8.7713"  # prices are written
    assert {k: aws[k] for k in kept} == kept  # the regions not refreshed keep their buckets
    assert any(r["spot_interruption"] for r in kept.values())
    assert _rows_by_key(old, "gcp") == gcp_before
    meta = load_catalog(old).meta
    assert any(m["what"] == "AWS spot interruption buckets (Spot Instance Advisor)" for m in meta["missing"])
    assert "aws-spot-advisor" not in {s["id"] for s in meta["sources"]}


def test_dry_run_into_a_new_directory_creates_nothing(tmp_path):
    target = tmp_path / "home" / "catalog"  # no snapshot there: the refresh starts from the shipped one
    summary = refresh(_FakeFetcher(), out=target, dry_run=True, now=NOW)
    assert summary["based_on"]["origin"] == "shipped"
    assert not (tmp_path / "home").exists()


class _FakeFetcher:
    """A fetcher without an API: one price per instance type in its first region."""

    cloud = "aws"

    def __init__(self, price: str = "1.5") -> None:
        self.price = price

    @staticmethod
    def resolves(what: str) -> bool:
        return "price" in what.lower()

    def fetch(self, instances, regions, now, progress):
        rows = [
            {
                "cloud": "aws",
                "instance_type": i.instance_type,
                "region": regions[0],
                "on_demand_usd_per_hour": self.price,
                "spot_usd_per_hour": "",
                "spot_interruption": "",
                "source": "https://example.invalid/test",
                "source_date": now.date().isoformat(),
            }
            for i in instances
        ]
        source = {"id": "aws-fake", "cloud": "aws", "url": "https://example.invalid/test", "what": "test"}
        source |= {"date": now.date().isoformat(), "date_kind": "fetched"}
        return Fetched(cloud="aws", regions=regions[:1], prices=rows, sources=[source])


def test_a_failed_check_or_swap_leaves_the_old_snapshot(old, monkeypatch):
    snapshot = _files(old)
    # An answer the catalog loader rejects (here: the CSV of a fetcher's made-up negative price).
    with pytest.raises(
        DdlprofError, match=r"did not pass the catalog checks, nothing was written: .*must be a"
    ):
        refresh(_FakeFetcher(price="-1"), out=old, now=NOW)
    assert _files(old) == snapshot
    assert sorted(p.name for p in old.parent.iterdir()) == ["catalog"]

    # The rename that puts the new directory in place fails: the old one is renamed back.
    real_replace, calls = os.replace, []

    def flaky(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(refresh_module.os, "replace", flaky)
    with pytest.raises(
        DdlprofError, match=r"cannot put the new snapshot in place .*No space left.*unchanged"
    ):
        refresh(_FakeFetcher(), out=old, now=NOW)
    assert calls[0][0] == "catalog" and calls[1][1] == "catalog" and calls[2][1] == "catalog"
    assert _files(old) == snapshot
    assert sorted(p.name for p in old.parent.iterdir()) == ["catalog"]


def test_successive_refreshes_keep_every_cited_source(old, billing):
    later = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    refresh(_FakeFetcher(), regions=["us-east-1"], out=old, now=NOW)
    refresh(_FakeFetcher(price="1.25"), regions=["eu-west-1"], out=old, now=later)
    refresh(_gcp(billing), regions=["us-central1"], out=old, now=later)
    catalog = load_catalog(old)
    sources = {s["id"]: s["date"] for s in catalog.meta["sources"]}
    # the first refresh's source is still cited by the us-east-1 rows, under a dated id
    assert sources["aws-fake"] == "2026-12-02" and sources["aws-fake-2026-11-23"] == "2026-11-23"
    assert sources["gcp-cloud-billing-catalog"] == "2026-12-02" and sources["aws-prices"] == "2026-08-26"
    assert {p.source_date.isoformat() for p in catalog.prices} <= set(sources.values())
    assert set(catalog.meta["refreshed"]) == {"aws", "gcp"}
    assert catalog.meta["refreshed"]["aws"]["regions"] == ["eu-west-1"]
    aws = _rows_by_key(old, "aws")
    assert aws[("g5.xlarge", "us-east-1")]["on_demand_usd_per_hour"] == "1.5"
    assert aws[("g5.xlarge", "eu-west-1")]["on_demand_usd_per_hour"] == "1.25"
    assert _rows_by_key(old, "gcp")[("a2-highgpu-1g", "us-central1")]["source_date"] == "2026-12-02"
    assert catalog.snapshot_date == date(2026, 12, 2)
    whats = [m["what"] for m in catalog.meta["missing"]]
    assert len(whats) == len(set(whats))


def test_refuse_a_target_with_other_files_and_a_partial_snapshot(tmp_path):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "notes.txt").write_text("mine")
    with pytest.raises(
        DdlprofError, match=r"holds files that are not part of a catalog snapshot \(notes\.txt\)"
    ):
        refresh(_FakeFetcher(), out=mixed, now=NOW)
    assert (mixed / "notes.txt").read_text() == "mine"
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "prices.csv").write_text("cloud\n")
    with pytest.raises(DdlprofError, match=r"partial catalog snapshot \(no instances\.csv, catalog\.json\)"):
        refresh(_FakeFetcher(), out=partial, now=NOW)


def test_aws_cli_in_process_and_unknown_region(old, monkeypatch, capsys):
    stubs = AwsStubs().add_all()
    monkeypatch.setattr("ddlprof.advisor.catalog.aws.boto3_clients", lambda: stubs)
    with stubs:
        rc = main(["catalog", "refresh", "aws", "--regions", "us-east-1,eu-west-1", "--out", str(old)])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "aws: 3 instance types x 2 regions (us-east-1, eu-west-1)" in out.out
    assert "lowest of its availability zones'" in out.out
    assert "warning" not in out.err
    assert f"Wrote {old}; set DDLPROF_CATALOG_DIR={old} to use it." in out.out
    assert _rows_by_key(old, "aws")[("g5.xlarge", "us-east-1")]["source_date"] in _today()

    snapshot = _files(old)
    rc = main(["catalog", "refresh", "aws", "--regions", "us-east-9", "--out", str(old)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0].startswith("ddlprof catalog refresh: error: unknown aws region 'us-east-9'; closest: ")
    assert "closest: us-east-" in err[0]
    rc = main(["catalog", "refresh", "azure"])
    assert rc == 2 and "unknown cloud 'azure'" in capsys.readouterr().err
    rc = main(["catalog", "refresh", "aws", "--api-key", "k", "--out", str(old)])
    assert rc == 2 and "--api-key and --endpoint are for gcp" in capsys.readouterr().err
    assert _files(old) == snapshot


# -- the real command in a subprocess: credentials, network, the user snapshot ------------------------


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ddlprof", *args],
        capture_output=True,
        text=True,
        env=env if env is not None else _env(),
        cwd=REPO,
        timeout=120,
    )


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GOOGLE_"))}
    env.pop(CATALOG_DIR_ENV, None)
    env.update(
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_CONFIG_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    env.update(extra)
    return env


def test_missing_aws_credentials_is_one_line_exit_2(old):
    snapshot = _files(old)
    result = _cli("catalog", "refresh", "aws", "--regions", "us-east-1", "--out", str(old))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith(
        "ddlprof catalog refresh: error: no usable AWS credentials (Unable to locate credentials)"
    )
    assert "nothing was written" in lines[0]
    assert result.stdout == ""
    assert _files(old) == snapshot


def test_no_network_is_one_line_exit_2(old):
    snapshot = _files(old)
    import socket

    with socket.socket() as probe:  # a local port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = _env(
        AWS_ACCESS_KEY_ID="AKIDEXAMPLE",
        AWS_SECRET_ACCESS_KEY="x",
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_MAX_ATTEMPTS="1",
    )
    result = _cli("catalog", "refresh", "aws", "--regions", "us-east-1", "--out", str(old), env=env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("ddlprof catalog refresh: error: cannot reach the AWS API (")
    assert _files(old) == snapshot


# -- GCP: a loopback Cloud Billing API ---------------------------------------------------------------


class _Billing(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        server = self.server
        url = urlparse(self.path)
        query = parse_qs(url.query)
        server.requests.append(query)
        if url.path != "/v1/services/6F81-5844-456A/skus":
            return self._send(404, {"error": {"code": 404, "message": "Not Found", "status": "NOT_FOUND"}})
        if query.get("key") != [API_KEY]:
            return self._send(
                400,
                {
                    "error": {
                        "code": 400,
                        "message": "API key not valid. Please pass a valid API key.",
                        "status": "INVALID_ARGUMENT",
                    }
                },
            )
        token = query.get("pageToken", [""])[0]
        page = server.pages.get(token)
        if page is None:
            return self._send(400, {"error": {"code": 400, "message": "Invalid page token", "status": "X"}})
        if server.fail == ("500", token):
            return self._send(500, {"error": {"code": 500, "message": "Internal error encountered."}})
        if server.fail == ("garbage", token):
            return self._send(200, None, b'{"skus": [{"skuId": "0A4B-7E29')
        return self._send(200, page)

    def _send(self, status: int, payload: dict | None, raw: bytes | None = None) -> None:
        body = raw if raw is not None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def billing():
    page1, page2 = _recorded("gcp_skus_page1.json"), _recorded("gcp_skus_page2.json")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Billing)
    server.pages = {"": page1, page1["nextPageToken"]: page2}
    server.requests, server.fail = [], None
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    server.second_token = page1["nextPageToken"]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _gcp(billing, **kwargs) -> GcpFetcher:
    return GcpFetcher(api_key=API_KEY, endpoint=billing.url, retry_delays=(0, 0), **kwargs)


def test_gcp_refresh_sums_the_skus_of_each_machine_shape(old, billing):
    aws_before = _rows_by_key(old, "aws")
    summary = refresh(_gcp(billing), regions=GCP_REGIONS, out=old, now=NOW)
    assert [q.get("pageToken", [""])[0] for q in billing.requests] == ["", billing.second_token]
    assert all(q["currencyCode"] == ["USD"] and q["pageSize"] == ["5000"] for q in billing.requests)

    gcp = _rows_by_key(old, "gcp")
    shipped = {(p.instance_type, p.region): p for p in load_catalog(DATA_DIR).prices}
    a2 = gcp[("a2-highgpu-1g", "us-central1")]
    # 12 x 0.031611 + 85 x 0.004237 + 2.933908 (on-demand), 12 x 0.012644 + 85 x 0.001695 + 0.997552 (spot)
    assert (a2["on_demand_usd_per_hour"], a2["spot_usd_per_hour"]) == ("3.673385", "1.293355")
    assert a2["source"] == (
        f"{billing.url}/v1/services/6F81-5844-456A/skus (on-demand: 12 x F449-33EC-A5EF + 85 x "
        "2E72-D5F1-B4CD + 1 x 039F-D0DA-4055; spot: 12 x 3178-715E-CFB6 + 85 x 65A3-16DB-D57A + 1 x "
        "39D4-516A-0317)"
    )
    assert a2["source_date"] == "2026-11-23"
    # With the bundled 375 GiB local SSD at 0.08 USD per GiB-month / 730 h; equals the shipped figure.
    ultra = gcp[("a2-ultragpu-1g", "us-central1")]
    expected = (
        Decimal("0.379332") + Decimal("0.72029") + Decimal("3.92808") + Decimal(375) * Decimal("0.08") / 730
    )
    assert Decimal(ultra["on_demand_usd_per_hour"]) == expected.quantize(Decimal("1e-9"))
    assert (
        abs(
            float(ultra["on_demand_usd_per_hour"])
            - shipped[("a2-ultragpu-1g", "us-central1")].on_demand_usd_per_hour
        )
        < 1e-8
    )
    # No spot A100 80GB SKU for europe-west4: on-demand only there, and said so.
    nl = gcp[("a2-ultragpu-1g", "europe-west4")]
    assert nl["on_demand_usd_per_hour"] and nl["spot_usd_per_hour"] == ""
    # G2 and N1 + T4 (N1Standard resource group); the decoy SKUs (commitment, DWS, sole tenancy) are unused.
    assert gcp[("g2-standard-4", "us-central1")]["on_demand_usd_per_hour"] == "0.706832255"
    n1 = gcp[("n1-standard-4+1xnvidia-tesla-t4", "us-central1")]
    assert n1["on_demand_usd_per_hour"] == "0.539999"  # 4 x 0.031611 + 15 x 0.004237 + 0.35
    assert n1["spot_usd_per_hour"] == "0.18196"  # 4 x 0.00698 + 15 x 0.000936 + 0.14
    assert ("n1-standard-4+1xnvidia-tesla-t4", "europe-west4") not in gcp  # no N1 or T4 SKU there
    # Untouched: the AWS rows, and the GCP rows of regions not refreshed.
    assert _rows_by_key(old, "aws") == aws_before
    assert gcp[("a2-highgpu-1g", "us-east1")]["source_date"] == "2026-07-30"

    meta = load_catalog(old).meta
    whats = [m["what"] for m in meta["missing"]]
    assert "GCP a2-ultragpu-1g spot price in europe-west4" in whats
    assert "GCP n1-standard-4+1xnvidia-tesla-t4 on-demand price in europe-west4" in whats
    assert not any(w.startswith("GCP N1 + T4 prices") for w in whats)  # superseded
    assert any(w.startswith("GCP network_gbps of N1") for w in whats)  # still true, kept
    assert summary["price_rows"] == 7 and summary["spot_prices"] == 6


@pytest.mark.parametrize(("fail", "expected"), [("500", "HTTP 500"), ("garbage", "not JSON")])
def test_gcp_failure_on_the_second_page_leaves_the_old_snapshot(old, billing, fail, expected):
    snapshot = _files(old)
    billing.fail = (fail, billing.second_token)
    with pytest.raises(DdlprofError, match=expected) as caught:
        refresh(_gcp(billing), regions=GCP_REGIONS, out=old, now=NOW)
    assert "(page 2)" in str(caught.value) and "nothing was written" in str(caught.value)
    if fail == "500":  # retried twice, then given up
        assert [q.get("pageToken", [""])[0] for q in billing.requests] == ["", *[billing.second_token] * 3]
    assert _files(old) == snapshot
    assert sorted(p.name for p in old.parent.iterdir()) == ["catalog"]


def test_gcp_unknown_region_and_unreachable_endpoint(old, billing):
    with pytest.raises(DdlprofError, match=r"unknown gcp region 'europe-west5'; closest: europe-west4"):
        refresh(_gcp(billing), regions=["europe-west5"], out=old, now=NOW)
    billing.shutdown()
    billing.server_close()
    with pytest.raises(
        DdlprofError, match=r"cannot reach the Cloud Billing API at http://127\.0\.0\.1:\d+ .*--endpoint"
    ):
        refresh(_gcp(billing, timeout=5), regions=GCP_REGIONS, out=old, now=NOW)


def test_gcp_cli_refreshes_the_user_snapshot_and_list_show_report_it(billing, tmp_path):
    user = user_catalog_dir()  # $DDLPROF_HOME/catalog: a temporary folder (tests/conftest.py)
    assert catalog_source() == (DATA_DIR, "shipped")
    _write_base(user)
    assert catalog_source() == (user, "user")
    before = _files(user)

    # No key: one line, nothing written.
    result = _cli("catalog", "refresh", "gcp", "--endpoint", billing.url)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "no Google API key: set GOOGLE_API_KEY or pass --api-key" in result.stderr
    # A key the API rejects: its message, never the key.
    result = _cli("catalog", "refresh", "gcp", "--endpoint", billing.url, "--api-key", "wrong-key-123")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "HTTP 400" in result.stderr and "API key not valid" in result.stderr
    assert "wrong-key-123" not in result.stderr
    # --dry-run: fetched and checked, nothing written.
    env = _env(GOOGLE_API_KEY=API_KEY)
    result = _cli(
        "catalog",
        "refresh",
        "gcp",
        "--endpoint",
        billing.url,
        "--regions",
        "us-central1",
        "--dry-run",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "Dry run: the new snapshot passed the catalog checks; nothing was written" in result.stdout
    assert _files(user) == before

    result = _cli(
        "catalog",
        "refresh",
        "gcp",
        "--endpoint",
        billing.url,
        "--regions",
        "us-central1,europe-west4",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert f"Wrote {user}; `ddlprof catalog list` and `ddlprof advise` use it now." in result.stdout
    assert "aws prices are kept as they were (newest 2026-08-26)" in result.stdout
    rows = _rows_by_key(user, "gcp")
    assert rows[("a2-highgpu-1g", "europe-west4")]["on_demand_usd_per_hour"] == "3.747972"
    assert rows[("a2-highgpu-1g", "europe-west4")]["source_date"] in _today()
    assert rows[("a2-highgpu-1g", "europe-west4")]["source"].startswith(
        f"{billing.url}/v1/services/6F81-5844-456A/skus"
    )

    listed = _cli("catalog", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    snapshot = json.loads(listed.stdout)["snapshot"]
    assert snapshot["origin"] == "user" and snapshot["dir"] == str(user)
    assert snapshot["snapshot_date"] in _today() and set(snapshot["refreshed"]) == {"gcp"}
    assert {i["instance_type"] for i in json.loads(listed.stdout)["instances"]} == set(AWS_TYPES) | set(
        GCP_TYPES
    )
    table = _cli("catalog", "list")
    assert f"Catalog: your refreshed snapshot {user}, dated " in table.stdout.replace("\n", " ")
    assert "(refreshed: gcp " in table.stdout
    shown = _cli("catalog", "show", "a2-highgpu-1g", "--region", "europe-west4")
    assert shown.returncode == 0 and shown.stderr == ""  # fresh: no staleness warning
    assert "3.748" in shown.stdout and "your refreshed snapshot" in shown.stdout.replace("\n", " ")
    # The explicit override still wins.
    override = _cli(
        "catalog", "show", "a2-highgpu-1g", "--json", env=_env(**{CATALOG_DIR_ENV: str(DATA_DIR)})
    )
    assert json.loads(override.stdout)["snapshot"]["origin"] == "env"


def test_list_says_when_the_shipped_snapshot_is_newer_than_the_users():
    user = _write_base(user_catalog_dir())
    meta = json.loads((user / "catalog.json").read_text())
    meta["snapshot_date"] = "2026-01-05"
    (user / "catalog.json").write_text(json.dumps(meta))
    result = _cli("catalog", "list")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert f"Catalog: your refreshed snapshot {user}, dated 2026-01-05." in text
    assert "The snapshot shipped with this ddlprof is newer (2026-10-13)" in text
    assert "ddlprof catalog list: warning: " in result.stderr  # and it is stale
    assert "in a catalog snapshot dated 2026-01-05" in result.stderr
    # A broken user snapshot names its file and says how to get back to the shipped one.
    (user / "prices.csv").write_text("cloud,instance_type\n")
    result = _cli("catalog", "list")
    assert result.returncode == 2 and "missing column(s)" in result.stderr
    assert "or delete that directory to use the snapshot shipped with ddlprof" in result.stderr


# -- small parts --------------------------------------------------------------------------------------


def test_aws_network_performance_and_numbers():
    assert parse_network("Up to 25 Gigabit") == ("25", "true")
    assert parse_network("4x 100 Gigabit") == ("400", "false")
    assert parse_network("3200 Gigabit") == ("3200", "false")
    assert parse_network("High") == ("", "")
    assert fmt(Decimal("32.7726000000")) == "32.7726" and fmt(Decimal("3.000")) == "3"
    assert median([Decimal(3), Decimal(1), Decimal(2), Decimal(10)]) == Decimal("2.5")


def test_gcp_sku_descriptions():
    assert canonical("Nvidia Tesla T4 GPU attached to Spot Preemptible VMs running in Americas") == (
        "nvidia tesla t4 gpu",
        True,
    )
    assert canonical("Spot Preemptible A2 Instance Core running in Netherlands") == ("a2 instance core", True)
    assert canonical("SSD backed Local Storage") == ("ssd backed local storage", False)
    assert canonical("SSD backed Local Storage attached to Spot Preemptible VMs in Paris") == (
        "ssd backed local storage",
        True,
    )
    assert canonical("Nvidia Tesla A100 80GB GPU running in Americas")[0] != "nvidia tesla a100 gpu"
    assert canonical("Commitment v1: A2 Cpu in Americas for 1 Year")[0] == "commitment v1: a2 cpu"


def test_files_constant_matches_the_snapshot():
    assert set(FILES) == {p.name for p in DATA_DIR.iterdir() if p.suffix in (".csv", ".json")}
