"""The shipped instance/price catalog (every file, every row), its loader's errors, and `ddlprof catalog`."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from ddlprof.advisor.catalog import (
    CATALOG_DIR_ENV,
    DATA_DIR,
    GPU_SPECS,
    INSTANCE_COLUMNS,
    PRICE_COLUMNS,
    SPOT_BUCKETS,
    load_catalog,
)
from ddlprof.errors import DdlprofError

REPO = Path(__file__).resolve().parent.parent

# The coverage issue 5 asks for (the instance types; prices are wherever a dated source was found).
REQUIRED_TYPES = [
    "p3.2xlarge",
    "p3.8xlarge",
    "p3.16xlarge",
    "p3dn.24xlarge",
    "p4d.24xlarge",
    "p4de.24xlarge",
    "p5.48xlarge",
    *(f"g4dn.{s}" for s in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "metal")),
    *(
        f"g5.{s}"
        for s in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge", "48xlarge")
    ),
    "g6.xlarge",
    "g6e.xlarge",
    *(f"a2-highgpu-{n}g" for n in (1, 2, 4, 8)),
    "a2-ultragpu-8g",
    "a3-highgpu-8g",
    "g2-standard-4",
]


def _raw_rows(name: str) -> tuple[list[str], list[dict[str, str]]]:
    with (DATA_DIR / name).open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def _run(*args: str, catalog_dir: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop(CATALOG_DIR_ENV, None)
    if catalog_dir is not None:
        env[CATALOG_DIR_ENV] = str(catalog_dir)
    return subprocess.run(
        [sys.executable, "-m", "ddlprof", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


# -- the shipped files ------------------------------------------------------------------------------


def test_shipped_catalog_loads_and_every_row_is_valid():
    catalog = load_catalog(DATA_DIR)
    gpus = {row["gpu"] for row in csv.DictReader(GPU_SPECS.open(newline=""))}
    compiled = date.fromisoformat(catalog.meta["compiled_on"])

    header, instances = _raw_rows("instances.csv")
    assert set(INSTANCE_COLUMNS) <= set(header)
    assert len(instances) == len(catalog.instances)
    for line, row in enumerate(instances, start=2):
        where = f"instances.csv line {line}"
        assert None not in row.values() and None not in row, where
        assert row["cloud"] in ("aws", "gcp"), where
        assert row["gpu"] in gpus, where
        assert int(row["gpu_count"]) >= 1 and int(row["vcpus"]) >= 1, where
        assert float(row["gpu_memory_gb"]) > 0 and float(row["ram_gb"]) > 0, where
        assert row["source"].startswith("https://"), where
        if row["source_date"]:
            assert date.fromisoformat(row["source_date"]) <= compiled, where
        assert row["efa"] in ("true", "false", ""), where
        if int(row["gpu_count"]) == 1:
            assert row["gpu_link_gbps"] == "", where
        else:
            assert float(row["gpu_link_gbps"]) > 0, where

    header, prices = _raw_rows("prices.csv")
    assert set(PRICE_COLUMNS) <= set(header)
    assert len(prices) == len(catalog.prices)
    names = {row["instance_type"] for row in instances}
    for line, row in enumerate(prices, start=2):
        where = f"prices.csv line {line}"
        assert None not in row.values() and None not in row, where
        assert row["instance_type"] in names, where
        figures = [row["on_demand_usd_per_hour"], row["spot_usd_per_hour"]]
        assert any(figures), f"{where}: a price row without any price"
        for text in figures:
            if text:
                assert 0 < float(text) < 200, where
        if row["on_demand_usd_per_hour"] and row["spot_usd_per_hour"]:
            # AWS caps spot at on-demand: a sourced spot price may equal it (p5.4xlarge in ap-northeast-1),
            # printed to 4 decimals by the spot source
            assert float(row["spot_usd_per_hour"]) <= float(row["on_demand_usd_per_hour"]) + 1e-4, where
        if row["cloud"] == "aws" and row["spot_usd_per_hour"]:
            assert row["spot_interruption"], f"{where}: an AWS spot price without its interruption bucket"
        assert row["spot_interruption"] in (*SPOT_BUCKETS, ""), where
        assert row["source"].startswith("https://"), where
        assert date.fromisoformat(row["source_date"]) <= compiled, where


def test_shipped_catalog_covers_the_current_gpu_generations():
    """Issue 15: the H100/H200/B200 types users can rent are listed and priced, with AWS spot data."""
    catalog = load_catalog(DATA_DIR)
    for name in (
        "p5en.48xlarge",
        "p6-b200.48xlarge",
        "p5.4xlarge",
        "a3-megagpu-8g",
        "a2-megagpu-16g",
    ):
        priced = [p for p in catalog.prices_for(name) if p.on_demand_usd_per_hour and p.source_date]
        assert priced, f"{name} has no dated on-demand price"
    # Google sells the 1-, 2- and 4-GPU A3 High shapes as Spot or Flex-start VMs only: spot prices, no
    # on-demand list price that cannot be bought, and every row says why
    for name in ("a3-highgpu-1g", "a3-highgpu-2g", "a3-highgpu-4g"):
        rows = catalog.prices_for(name)
        assert rows and all(p.on_demand_usd_per_hour is None and p.spot_usd_per_hour for p in rows), name
        assert all("Spot or Flex-start VMs only" in p.source for p in rows), name
    assert {"H200", "B200"} <= {i.gpu for i in catalog.instances.values()}
    aws_spot = [p for p in catalog.prices if p.cloud == "aws" and p.spot_usd_per_hour is not None]
    assert len(aws_spot) >= 100
    assert all(p.spot_interruption and "spot" in p.source for p in aws_spot)
    for name in ("a3-highgpu-8g", "a3-megagpu-8g"):
        assert catalog.instance(name).network_gbps, f"{name} has no network bandwidth"


def test_catalog_json_says_what_is_covered_and_missing():
    meta = json.loads((DATA_DIR / "catalog.json").read_text())
    date.fromisoformat(meta["snapshot_date"])
    assert meta["missing"], "the snapshot must say what it lacks"
    for entry in meta["missing"]:
        assert entry["what"] and entry["why"]
    for source in meta["sources"]:
        assert source["url"] and source["what"] and "date_kind" in source
    # The snapshot date is the newest price date, and every price date is listed as a source date.
    price_dates = {p.source_date for p in load_catalog(DATA_DIR).prices}
    assert max(price_dates).isoformat() == meta["snapshot_date"]
    assert {d.isoformat() for d in price_dates} <= {s["date"] for s in meta["sources"]}


def test_spot_prices_carry_their_own_date(copy_dir):
    """On-demand and spot prices of one row can come from sources of different dates: spot_source_date
    dates the spot price and bucket; a snapshot written before that column reads it as source_date."""
    prices = load_catalog(DATA_DIR).prices
    for p in prices:
        has_spot = p.spot_usd_per_hour is not None or p.spot_interruption is not None
        assert (p.spot_source_date is not None) == has_spot, (p.instance_type, p.region)
    assert any(p.spot_source_date and p.spot_source_date != p.source_date for p in prices)
    meta = json.loads((DATA_DIR / "catalog.json").read_text())
    assert {p.spot_source_date.isoformat() for p in prices if p.spot_source_date} <= {
        s["date"] for s in meta["sources"]
    }

    path = copy_dir / "prices.csv"
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        header = [c for c in reader.fieldnames if c != "spot_source_date"]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    older = load_catalog(copy_dir).prices
    assert len(older) == len(prices)
    for before, after in zip(prices, older, strict=True):
        has_spot = after.spot_usd_per_hour is not None or after.spot_interruption is not None
        assert after.spot_source_date == (after.source_date if has_spot else None)
        assert after.source_date == before.source_date


def test_show_names_the_spot_date():
    shown = json.loads(_run("catalog", "show", "p4d.24xlarge", "--region", "us-east-1", "--json").stdout)
    price = shown["prices"][0]
    assert price["spot_source_date"] and price["spot_source_date"] != price["source_date"]
    result = _run("catalog", "show", "p4d.24xlarge", "--region", "us-east-1")
    assert "spot date" in result.stdout and price["spot_source_date"] in result.stdout


def test_every_gcp_type_says_once_where_its_network_bandwidth_is_from():
    """A figure with the source it was read from, or empty with why; never both, never said twice."""
    meta = json.loads((DATA_DIR / "catalog.json").read_text())
    unset = []
    for instance in load_catalog(DATA_DIR).select(cloud="gcp"):
        said = instance.notes.count("network_gbps ")
        assert said == 1, (instance.instance_type, instance.notes)
        if instance.network_gbps is None:
            assert "network_gbps not established: " in instance.notes, instance.instance_type
            unset.append(instance.instance_type)
        else:
            said = rf"network_gbps {instance.network_gbps:g}: [^;]*\(source: https://"
            figure = re.search(said, instance.notes)
            assert figure, (instance.instance_type, instance.notes)
    assert any(m["what"].startswith("GCP network_gbps") for m in meta["missing"]) == bool(unset)


def test_gcp_network_bandwidth_is_known_wherever_google_gives_it_per_type():
    """Issue 15: every A2, G2, A3 and A4 type has its per-machine-type bandwidth (so multi-instance options
    of these types are ranked); only N1 + GPU, whose per-configuration table no source gives, is empty."""
    catalog = load_catalog(DATA_DIR)
    unset = {i.instance_type for i in catalog.select(cloud="gcp") if i.network_gbps is None}
    n1 = {i.instance_type for i in catalog.select(cloud="gcp") if i.instance_type.startswith("n1-")}
    assert unset == n1
    expected = {"a2-highgpu-1g": 24, "a2-ultragpu-4g": 50, "a2-megagpu-16g": 100, "g2-standard-4": 10}
    expected |= {"g2-standard-48": 50, "a3-highgpu-8g": 1000, "a3-ultragpu-8g": 3600, "a4-highgpu-8g": 3600}
    # A3 High with 1 to 4 GPUs (one NIC): a dated secondary source, named in each type's notes
    expected |= {"a3-highgpu-1g": 25, "a3-highgpu-2g": 50, "a3-highgpu-4g": 100}
    assert {name: catalog.instance(name).network_gbps for name in expected} == expected
    for n in (1, 2, 4):
        assert "https://github.com/NVIDIA/aicr/issues/1256" in catalog.instance(f"a3-highgpu-{n}g").notes


def test_newest_gpu_types_are_listed_with_a_dated_price_or_why_not():
    """Issue 15: the H200 and B200 types of both clouds; a figure no source gives stays empty with why."""
    catalog = load_catalog(DATA_DIR)
    meta = json.loads((DATA_DIR / "catalog.json").read_text())
    ultra = catalog.instance("a3-ultragpu-8g")
    assert (ultra.gpu, ultra.gpu_count, ultra.gpu_memory_gb, ultra.vcpus) == ("H200", 8, 141, 224)
    priced = [p for p in catalog.prices_for("a3-ultragpu-8g") if p.on_demand_usd_per_hour]
    assert len(priced) >= 5 and all(p.source.startswith("https://") and p.source_date for p in priced)
    assert all(p.spot_usd_per_hour and p.spot_usd_per_hour < p.on_demand_usd_per_hour for p in priced)
    a4 = catalog.instance("a4-highgpu-8g")
    assert (a4.gpu, a4.gpu_count, a4.network_gbps) == ("B200", 8, 3600)
    assert not [p for p in catalog.prices if p.instance_type == "a4-highgpu-8g"]
    assert any("a4-highgpu-8g" in m["what"] and "price" in m["what"] for m in meta["missing"])
    # p5e: AWS lists no on-demand price (a Capacity Blocks reservation is not one): unpriced, and says why
    assert not catalog.prices_for("p5e.48xlarge")
    assert any("p5e.48xlarge" in m["what"] and "Capacity Blocks" in m["why"] for m in meta["missing"])


def test_required_instance_types_are_in_the_catalog():
    catalog = load_catalog(DATA_DIR)
    for name in REQUIRED_TYPES:
        assert name in catalog.instances, name
    # GCP N1 with attached T4 and V100 are listed (T4 without prices: see catalog.json 'missing').
    assert {i.gpu for i in catalog.select(cloud="gcp") if i.instance_type.startswith("n1-")} == {
        "T4",
        "V100-16GB",
    }


def test_regions_per_cloud():
    catalog = load_catalog(DATA_DIR)
    assert len(catalog.regions("aws")) >= 6
    assert len(catalog.regions("gcp")) >= 6
    for name in ("p4d.24xlarge", "g5.xlarge", "a2-highgpu-1g", "a3-highgpu-8g", "p4de.24xlarge"):
        assert len(catalog.prices_for(name)) >= 6, name


def test_snapshot_age_and_warning():
    catalog = load_catalog(DATA_DIR)
    assert catalog.snapshot_age_days(date(2026, 10, 13)) == 0
    assert catalog.staleness_warning(date(2026, 11, 12)) is None  # 30 days: not yet stale
    warning = catalog.staleness_warning(date(2027, 1, 10))
    assert warning is not None and "89 days" in warning and "\n" not in warning


def test_lookups_suggest_the_closest_names():
    catalog = load_catalog(DATA_DIR)
    with pytest.raises(DdlprofError, match=r"unknown instance type 'p4d\.24xlage'; closest: p4d\.24xlarge"):
        catalog.instance("p4d.24xlage")
    with pytest.raises(DdlprofError, match=r"unknown aws region 'us-east-3'; closest: us-east-"):
        catalog.prices_for("p4d.24xlarge", "us-east-3")
    with pytest.raises(DdlprofError, match=r"no price for p3dn\.24xlarge in us-east-2"):
        catalog.prices_for("p3dn.24xlarge", "us-east-2")
    with pytest.raises(DdlprofError, match=r"unknown cloud 'azure'"):
        catalog.select(cloud="azure")
    with pytest.raises(DdlprofError, match=r"closest: A100-40GB, A100-80GB"):
        catalog.select(gpu="A100")
    assert [i.instance_type for i in catalog.select(cloud="GCP", gpu="h100")] == [
        "a3-highgpu-8g",
        "a3-highgpu-1g",
        "a3-highgpu-2g",
        "a3-highgpu-4g",
        "a3-megagpu-8g",
    ]


# -- malformed and partial files ---------------------------------------------------------------------


@pytest.fixture
def copy_dir(tmp_path: Path) -> Path:
    target = tmp_path / "catalog"
    shutil.copytree(DATA_DIR, target)
    return target


def _replace_line(path: Path, line: int, new: str) -> None:
    lines = path.read_text().splitlines(keepends=True)
    lines[line - 1] = new + "\n"
    path.write_text("".join(lines))


def _field_line(path: Path, line: int, column: str, value: str) -> str:
    rows = list(csv.reader(path.read_text().splitlines()))
    header, row = rows[0], list(rows[line - 1])
    row[header.index(column)] = value
    return ",".join(f'"{c}"' if "," in c else c for c in row)


@pytest.mark.parametrize(
    ("file", "line", "column", "value", "message"),
    [
        ("prices.csv", 5, "on_demand_usd_per_hour", "abc", "on_demand_usd_per_hour is 'abc', not a number"),
        ("prices.csv", 7, "spot_usd_per_hour", "-1.5", "must be a finite number >= 0"),
        ("prices.csv", 9, "cloud", "azure", "unknown cloud 'azure'"),
        ("prices.csv", 11, "source", "", "a price without a source"),
        ("prices.csv", 13, "source_date", "26/08/2026", "not an ISO date"),
        (
            "prices.csv",
            15,
            "instance_type",
            "p4d.24xlage",
            "'p4d.24xlage' is not in instances.csv; closest: p4d.24x",
        ),
        ("prices.csv", 17, "spot_interruption", "often", "spot_interruption is 'often'"),
        ("instances.csv", 4, "gpu_count", "eight", "gpu_count is 'eight', not an integer"),
        ("instances.csv", 6, "gpu", "A100", "unknown GPU 'A100'"),
        ("instances.csv", 8, "efa", "maybe", "efa is 'maybe'"),
        ("instances.csv", 10, "instance_type", "p3.2xlarge", "instance type p3.2xlarge appears twice"),
    ],
)
def test_bad_row_names_the_file_and_line(copy_dir, file, line, column, value, message):
    path = copy_dir / file
    _replace_line(path, line, _field_line(path, line, column, value))
    with pytest.raises(DdlprofError) as caught:
        load_catalog(copy_dir)
    text = str(caught.value)
    assert f"{path}: line {line}" in text
    assert message in text
    assert "\n" not in text


def test_truncated_row_and_extra_fields(copy_dir):
    path = copy_dir / "prices.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines[:20], lines[20][: len(lines[20]) // 3]]) + "\n")  # cut mid-file
    with pytest.raises(DdlprofError, match=rf"{path}: line 21: .* fields, expected 9 \(truncated\?\)"):
        load_catalog(copy_dir)
    path.write_text("\n".join([*lines[:3], lines[3] + ",surplus", *lines[4:]]) + "\n")
    with pytest.raises(DdlprofError, match=rf"{path}: line 4: 10 fields, expected 9"):
        load_catalog(copy_dir)


def test_missing_column_missing_file_and_bad_json(copy_dir):
    path = copy_dir / "instances.csv"
    text = path.read_text()
    path.write_text(text.replace("network_gbps,", "", 1))
    with pytest.raises(DdlprofError, match=rf"{path}: line 1: missing column\(s\) network_gbps"):
        load_catalog(copy_dir)
    path.write_text("")
    with pytest.raises(DdlprofError, match=rf"{path}: line 1: the file is empty"):
        load_catalog(copy_dir)
    path.write_text(text)
    (copy_dir / "prices.csv").unlink()
    with pytest.raises(DdlprofError, match=r"prices\.csv: the file does not exist"):
        load_catalog(copy_dir)
    (copy_dir / "catalog.json").write_text('{"snapshot_date": "2026-08-26",\n oops}')
    with pytest.raises(DdlprofError, match=r"catalog\.json: line 2: not valid JSON"):
        load_catalog(copy_dir)


# -- the command line --------------------------------------------------------------------------------


def test_unknown_names_are_one_line_exit_2_no_traceback():
    cases = [
        (("catalog", "show", "p4d.24xlage"), "closest: p4d.24xlarge"),
        (("catalog", "show", "a2-highgpu-8g", "--region", "us-centrall"), "closest: us-central1"),
        (("catalog", "list", "--cloud", "azure"), "unknown cloud 'azure'"),
        (("catalog", "list", "--gpu", "H10"), "closest: H100"),
    ]
    for args, expected in cases:
        result = _run(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"ddlprof catalog {args[1]}: error: "), result.stderr
        assert expected in lines[0]
        assert result.stdout == ""


def test_malformed_catalog_via_cli(copy_dir):
    path = copy_dir / "prices.csv"
    _replace_line(path, 3, _field_line(path, 3, "on_demand_usd_per_hour", "free"))
    result = _run("catalog", "list", catalog_dir=copy_dir)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{path}: line 3" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_show_json_keys():
    result = _run("catalog", "show", "p4d.24xlarge", "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert set(shown) == {
        "snapshot_date",
        "snapshot_age_days",
        "snapshot",
        "oldest_prices",
        "instance",
        "prices",
    }
    assert shown["snapshot"]["origin"] == "shipped"  # the others: tests/test_refresh.py
    assert set(INSTANCE_COLUMNS) <= set(shown["instance"])
    assert shown["instance"]["gpu"] == "A100-40GB" and shown["instance"]["gpu_count"] == 8
    assert len(shown["prices"]) >= 6
    for price in shown["prices"]:
        assert set(PRICE_COLUMNS) <= set(price)
        assert price["source"] and date.fromisoformat(price["source_date"])
    one = json.loads(_run("catalog", "show", "a2-highgpu-1g", "--region", "us-central1", "--json").stdout)
    assert [p["region"] for p in one["prices"]] == ["us-central1"]
    assert one["prices"][0]["spot_usd_per_hour"] < one["prices"][0]["on_demand_usd_per_hour"]


def test_list_json_filters_and_price_ranges():
    result = _run("catalog", "list", "--cloud", "aws", "--gpu", "a10g", "--json")
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)["instances"]
    assert {i["instance_type"] for i in listed} == {
        f"g5.{s}"
        for s in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge", "48xlarge")
    }
    for row in listed:
        assert row["regions"] >= 6
        assert row["on_demand_usd_per_hour"]["min"] <= row["on_demand_usd_per_hour"]["max"]
        spot = row["spot_usd_per_hour"]  # dated AWS spot prices (2025-11-30) in this snapshot
        assert spot["min"] <= spot["max"] < row["on_demand_usd_per_hour"]["max"]


def test_table_output_and_staleness_warning(copy_dir):
    result = _run("catalog", "list")
    assert result.returncode == 0, result.stderr
    assert "p5.48xlarge" in result.stdout and "a3-highgpu-8g" in result.stdout
    catalog = load_catalog(DATA_DIR)
    if catalog.snapshot_age_days() > 30:
        assert result.stderr.count("\n") == 1 and "ddlprof catalog list: warning:" in result.stderr
    _date_everything_today(copy_dir)
    fresh = _run("catalog", "show", "g6e.xlarge", catalog_dir=copy_dir)
    assert fresh.returncode == 0 and fresh.stderr == ""
    assert "us-east-1" in fresh.stdout and "1.861" in fresh.stdout


def _date_everything_today(folder: Path, prices_on: str | None = None) -> None:
    """The snapshot in ``folder`` dated today, and every price in it too (or on ``prices_on``)."""
    today = date.today().isoformat()
    meta = json.loads((folder / "catalog.json").read_text())
    meta["snapshot_date"] = today
    (folder / "catalog.json").write_text(json.dumps(meta))
    with (folder / "prices.csv").open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header, rows = list(reader.fieldnames or []), list(reader)
    for row in rows:
        for key in ("source_date", "spot_source_date"):
            if row.get(key):
                row[key] = prices_on or today
    with (folder / "prices.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _shown_dates(prices: list[dict]) -> list[date]:
    """The dates of the figures the rows of ``catalog show --json`` have."""
    out = []
    for price in prices:
        if price["on_demand_usd_per_hour"] is not None:
            out.append(date.fromisoformat(price["source_date"]))
        if price["spot_source_date"]:
            out.append(date.fromisoformat(price["spot_source_date"]))
    return out


def test_the_staleness_warning_gives_the_oldest_price_shown_and_the_snapshot():
    """A snapshot's date is only that of its newest source: the warning states how old the oldest price
    shown is, per cloud, as advise does for the prices it ranks, and the snapshot's date and age."""
    shown = _run("catalog", "show", "p4d.24xlarge", "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    oldest = min(_shown_dates(data["prices"]))
    today = date.today()
    assert data["oldest_prices"] == {"aws": {"date": oldest.isoformat(), "age_days": (today - oldest).days}}
    table = _run("catalog", "show", "p4d.24xlarge")
    (warning,) = table.stderr.splitlines()
    assert warning.startswith("ddlprof catalog show: warning: ")
    assert f"aws {oldest.isoformat()} ({(today - oldest).days} days old)" in warning
    snapshot = load_catalog(DATA_DIR).snapshot_date
    assert f"{snapshot.isoformat()} ({(today - snapshot).days} days old)" in warning
    # Every price's date is in the table: the on-demand date and the spot date of each region.
    lines = table.stdout.splitlines()
    for price in data["prices"]:
        row = next(line for line in lines if f" {price['region']} " in line)
        for key in ("source_date", "spot_source_date"):
            if price[key] and (key == "spot_source_date" or price["on_demand_usd_per_hour"] is not None):
                assert price[key] in row, (price["region"], key)

    listed = _run("catalog", "list", "--cloud", "gcp", "--json")
    (warning,) = listed.stderr.splitlines()
    gcp = json.loads(listed.stdout)["oldest_prices"]["gcp"]
    assert warning.startswith("ddlprof catalog list: warning: ")
    assert f"gcp {gcp['date']} ({gcp['age_days']} days old)" in warning and "aws " not in warning
    # advise, which ranks a subset of these rows, finds no older price than list shows
    advised = _run("advise", "--model", "resnet50", "--clouds", "gcp", "--top", "1")
    ages = re.search(r"the oldest prices in use are: gcp (\S+) \((\d+) days old\)", advised.stderr)
    assert ages and ages.group(1) >= gcp["date"] and int(ages.group(2)) <= gcp["age_days"], advised.stderr


def test_old_prices_in_a_fresh_snapshot_are_still_stale(copy_dir):
    """A snapshot dated today whose prices are a year old warns; one whose prices are today's does not."""
    year_ago = date.fromordinal(date.today().toordinal() - 365)
    _date_everything_today(copy_dir, prices_on=year_ago.isoformat())
    catalog = load_catalog(copy_dir)
    assert catalog.snapshot_age_days() == 0
    shown = _run("catalog", "show", "g6e.xlarge", catalog_dir=copy_dir)
    assert shown.returncode == 0 and f"aws {year_ago.isoformat()} (365 days old)" in shown.stderr
    assert catalog.staleness_warning() is None  # no price named: the snapshot's date alone
    assert "365 days old" in catalog.staleness_warning(prices=catalog.prices)
    _date_everything_today(copy_dir)
    assert load_catalog(copy_dir).staleness_warning(prices=load_catalog(copy_dir).prices) is None


def test_catalog_commands_do_not_import_torch():
    code = (
        "import sys\n"
        "from ddlprof.cli import main\n"
        "rc = main(['catalog', 'list', '--json'])\n"
        "rc = rc or main(['catalog', 'show', 'p5.48xlarge'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'pandas'))\n"
        "print('HEAVY:' + ','.join(heavy[:5]), file=sys.stderr)\n"
        "sys.exit(rc)\n"
    )
    env = dict(os.environ)
    env.pop(CATALOG_DIR_ENV, None)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "HEAVY:\n" in result.stderr, result.stderr
