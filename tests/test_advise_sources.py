"""``ddlprof advise``'s sourced figures: each cloud's oldest price date in use, the spot rate's source
(AWS bucket, --interruptions-per-day, the named assumption), and the dataset's egress."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
from advise_catalog import a2_price, advise_with, catalog_with, p4d_price, run_advise

from ddlprof.advisor import egress
from ddlprof.advisor.catalog import load_catalog
from ddlprof.advisor.explain import price_age_warning
from ddlprof.advisor.spot import interruption_overhead


def _key(option):
    return (option.instance_type, option.count, option.spot, option.region)


# -- price dates ----------------------------------------------------------------------------------


def test_warning_names_each_clouds_oldest_price_date_in_use(fitted, tmp_path):
    """An older GCP row in use shows up in the warning with its age; the newest date alone does not."""
    row = a2_price(source_date="2023-01-02")
    catalog = load_catalog(catalog_with(tmp_path, prices=[row]))
    advice = advise_with(fitted, catalog, all_regions=True)
    assert any(o.price_date == "2023-01-02" for o in advice.options)
    today = date(2026, 12, 6)
    warning = price_age_warning(advice.options, today)
    oldest_aws = min(date.fromisoformat(o.price_date) for o in advice.options if o.cloud == "aws")
    assert f"gcp 2023-01-02 ({(today - date(2023, 1, 2)).days} days old)" in warning
    assert f"aws {oldest_aws} ({(today - oldest_aws).days} days old)" in warning
    assert any("gcp 2023-01-02" in w for w in advice.warnings)
    # the same row left out of the ranking (--regions): only the clouds and dates in use are named
    aws_only = advise_with(fitted, catalog, regions=["us-east-1"], all_regions=True)
    oldest_aws = min(date.fromisoformat(o.price_date) for o in aws_only.options)
    warning = price_age_warning(aws_only.options, today)
    assert f"aws {oldest_aws}" in warning and "gcp" not in warning
    assert price_age_warning(aws_only.options, oldest_aws + timedelta(days=6)) is None  # 6 days: fresh


def test_a_spot_option_is_dated_by_its_spot_price(fitted, tmp_path):
    """A row whose spot price is older than its on-demand price: the spot option carries the spot date,
    in price_date, its provenance and the staleness warning."""
    row = a2_price(source_date="2026-12-01", spot_source_date="2023-01-02")
    catalog = load_catalog(catalog_with(tmp_path, prices=[row]))
    advice = advise_with(fitted, catalog, clouds=["gcp"], regions=["us-central1"], all_regions=True)
    mine = [o for o in advice.options if o.instance_type == "a2-highgpu-1g"]
    assert {o.spot: o.price_date for o in mine} == {False: "2026-12-01", True: "2023-01-02"}
    spot = next(o for o in mine if o.spot)
    assert "(2023-01-02)" in advice.provenance(spot)["price"]
    warning = price_age_warning([o for o in mine if o.spot], date(2026, 12, 6))
    assert "gcp 2023-01-02" in warning
    assert price_age_warning([o for o in mine if not o.spot], date(2026, 12, 6)) is None


def test_json_and_explain_show_each_options_price_date():
    code, out, _ = run_advise("--model", "resnet50", "--json", "--top", "0")
    options = json.loads(out)["options"]
    assert code == 0 and {o["cloud"] for o in options} == {"aws", "gcp"}
    for option in options:
        assert option["price_date"] and option["price_date"] in option["provenance"]["price"]
    code, out, _ = run_advise("--model", "resnet50", "--spot", "--explain")
    dates = {o["price_date"] for o in options}
    assert code == 0 and any(f"price of {d}" in out for d in dates)


# -- spot interruptions ---------------------------------------------------------------------------


def test_interruptions_per_day_overrides_aws_bucket_and_gcp(fitted, tmp_path):
    row = p4d_price(spot_interruption=">20%")
    catalog = load_catalog(catalog_with(tmp_path, prices=[row]))
    default = {_key(o): o for o in advise_with(fitted, catalog, spot=True, all_regions=True).options}
    aws = default[("p4d.24xlarge", 2, True, "us-east-1")]
    assert aws.interruption["basis"] == "aws_bucket" and aws.interruption["rate_per_day_high"] is None
    given = advise_with(fitted, catalog, spot=True, all_regions=True, interruptions_per_day=0.5).options
    assert given and all(o.interruption["basis"] == "given" for o in given)
    for option in given:
        expected = interruption_overhead(option.compute_hours, option.count, 0.5)["overhead_hours"]
        assert option.hours == pytest.approx(option.compute_hours + expected)
        assert option.interruption["cost_usd"] == pytest.approx(
            expected * option.usd_per_instance_hour * option.count
        )
        assert option.total_cost_usd > default[_key(option)].total_cost_usd  # 0.5/day > any default rate


# -- egress ---------------------------------------------------------------------------------------


def test_an_option_elsewhere_costs_exactly_the_egress_more(fitted):
    plain = {_key(o): o for o in advise_with(fitted, all_regions=True).options}
    moved = advise_with(fitted, all_regions=True, data_region="us-east-1", dataset_gb=150.0).options
    assert {_key(o) for o in moved} == set(plain)  # every route from us-east-1 has a sourced price
    clouds_seen = set()
    for option in moved:
        extra = option.total_cost_usd - plain[_key(option)].total_cost_usd
        if option.region == "us-east-1":
            expected = 0.0
        elif option.cloud == "aws":
            expected = 150 * 0.02  # inter-region from us-east-1 (egress.csv)
        else:
            expected = 150 * 0.09  # us-east-1 to the internet (egress.csv)
        assert extra == pytest.approx(expected) and option.egress_usd == pytest.approx(expected)
        assert option.hours == plain[_key(option)].hours
        clouds_seen.add((option.cloud, option.region == "us-east-1"))
    assert clouds_seen == {("aws", True), ("aws", False), ("gcp", False)}


def test_cli_json_egress_in_total():
    code, out, _ = run_advise(
        "--model",
        "resnet50",
        "--budget",
        "100",
        "--data-region",
        "us-east-1",
        "--dataset-gb",
        "150",
        "--json",
        "--top",
        "0",
    )
    assert code == 0
    result = json.loads(out)
    assert result["assumptions"]["egress"]["data_region"] == "us-east-1"
    assert result["assumptions"]["egress"]["dataset_gb"] == 150
    assert result["options"]
    for option in result["options"]:
        compute = option["hours"] * option["usd_per_instance_hour"] * option["count"]
        assert option["total_cost_usd"] == pytest.approx(compute + option["egress_usd"], abs=0.02)
        if option["region"] == "us-east-1":
            assert option["egress_usd"] == 0
        else:
            assert option["egress_usd"] > 0 and "https://" in option["provenance"]["egress"]
            assert option["egress"]["route"].startswith("aws us-east-1 -> ")
    assert {o["region"] == "us-east-1" for o in result["options"]} == {True, False}


def test_a_route_without_a_sourced_price_is_excluded_not_free(fitted):
    advice = advise_with(fitted, all_regions=True, data_region="eu-west-1", dataset_gb=10.0)
    assert advice.options and all(o.region == "eu-west-1" and o.egress_usd == 0 for o in advice.options)
    reasons = [e["reason"] for e in advice.excluded if e["kind"] == "egress"]
    assert reasons and all("no sourced egress price for aws eu-west-1 -> " in r for r in reasons)
    nothing_moved = advise_with(fitted, all_regions=True, data_region="eu-west-1", dataset_gb=0.0)
    assert {o.region for o in nothing_moved.options} > {"eu-west-1"}
    assert all(o.egress_usd == 0 for o in nothing_moved.options)


def test_gcp_routes():
    rates = egress.load_egress()
    same = egress.route_rate(rates, "gcp", "us-central1", "gcp", "us-east4")
    far = egress.route_rate(rates, "gcp", "us-central1", "gcp", "europe-west4")
    out = egress.route_rate(rates, "gcp", "us-central1", "aws", "us-east-1")
    sydney = egress.route_rate(rates, "gcp", "us-central1", "aws", "ap-southeast-2")
    assert same.usd_per_gb < far.usd_per_gb
    assert out.usd_per_gb == pytest.approx(0.12 * 1e9 / 2**30)  # priced per GiB
    assert sydney.usd_per_gb > out.usd_per_gb  # the named destination beats '*'
    assert egress.route_rate(rates, "aws", "eu-west-1", "aws", "us-east-1") is None


def test_every_egress_row_has_a_source():
    for rate in egress.load_egress():
        assert rate.source.startswith("https://") and rate.notes
        assert rate.source_date == "" or rate.source_date[:4].isdigit()
