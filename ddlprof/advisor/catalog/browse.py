"""``ddlprof catalog list|show|refresh``: browse the instance and price catalog (offline, no torch), and
refresh its prices from the clouds' APIs (:mod:`ddlprof.advisor.catalog.refresh`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

CATALOG_HELP = """\
The cloud instance and price catalog that `ddlprof advise` ranks: GPU instance types of AWS and
GCP (GPUs, memory, intra-node GPU link, network, EFA) and their on-demand and spot prices per
region, in USD per hour. It is a dated snapshot of public figures: every price carries its source
and date, and a figure that could not be established is empty (never guessed). A warning goes to
stderr when the snapshot is older than 30 days.

examples:
  ddlprof catalog list
  ddlprof catalog list --cloud gcp --gpu A100-80GB
  ddlprof catalog show p4d.24xlarge
  ddlprof catalog show a2-highgpu-8g --region us-central1 --json | jq .prices
  ddlprof catalog refresh aws          # current prices into ~/.ddlprof/catalog (needs AWS credentials)

The snapshot in use: $DDLPROF_CATALOG_DIR when set (a directory with instances.csv, prices.csv,
catalog.json); else the one `ddlprof catalog refresh` wrote to $DDLPROF_HOME/catalog (default
~/.ddlprof/catalog), when there is one; else the one shipped with ddlprof. list and show say which.
"""

LIST_HELP = """\
One row per instance type: GPUs, GPU memory, vCPUs, host memory, the link between the GPUs of one
instance (NVLink/NVSwitch generation or PCIe, with GB/s per GPU), network Gbit/s ("up to" marks
burst bandwidth), EFA, the on-demand and spot price range over the regions priced in the snapshot,
and how many regions that is.

examples:
  ddlprof catalog list
  ddlprof catalog list --cloud aws --gpu H100
  ddlprof catalog list --json | jq '.instances[] | select(.gpu_count == 8) | .instance_type'
"""

REFRESH_HELP = """\
Fetch current prices from a cloud's own API and write a new catalog snapshot (default:
$DDLPROF_HOME/catalog, i.e. ~/.ddlprof/catalog, which list, show and advise then use). Instance types
and machine shapes stay as the snapshot has them; the other cloud's rows are kept unchanged.

  aws  boto3 with your usual AWS credentials: on-demand prices from the Price List API
       (pricing.get_products), spot prices from ec2.describe_spot_price_history (per region: the
       median over its availability zones), and vCPUs, memory, network and EFA from
       ec2.describe_instance_types. Needs pricing:GetProducts, ec2:DescribeSpotPriceHistory and
       ec2:DescribeInstanceTypes.
  gcp  the Cloud Billing Catalog API (Compute Engine, service 6F81-5844-456A) with an API key
       (GOOGLE_API_KEY or --api-key): on-demand and spot prices as the sum of each machine's vCPU,
       memory, GPU (and bundled local SSD) SKUs.

The new files are checked like any catalog before they replace the old ones in one step; a refresh
that fails (no credentials, no network, an API error or a bad answer) writes nothing. Every price
gets the API call it came from as its source and the refresh day as its date.

examples:
  ddlprof catalog refresh aws
  ddlprof catalog refresh aws --regions us-east-1,us-west-2 --dry-run
  GOOGLE_API_KEY=... ddlprof catalog refresh gcp
  ddlprof catalog refresh gcp --out /shared/ddlprof-catalog   # then DDLPROF_CATALOG_DIR=/shared/...
"""

SHOW_HELP = """\
The specs of one instance type and its prices in every region of the snapshot (or in --region),
each with the source it was taken from and that source's date.

examples:
  ddlprof catalog show g5.12xlarge
  ddlprof catalog show p5.48xlarge --region us-east-1
  ddlprof catalog show a3-highgpu-8g --json
"""


def add_catalog_command(
    commands: argparse._SubParsersAction,
    add_command: Callable[[argparse._SubParsersAction, str, str, str], argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Register ``ddlprof catalog`` (sub-commands list, show and refresh) on ``commands``."""
    catalog = add_command(
        commands, "catalog", "the cloud instance and price catalog (list, show, refresh)", CATALOG_HELP
    )
    sub = catalog.add_subparsers(
        dest="catalog_command", metavar="CATALOG_COMMAND", parser_class=type(catalog), required=True
    )
    listing = add_command(sub, "list", "instance types with GPUs, links, network and price ranges", LIST_HELP)
    listing.add_argument("--cloud", metavar="CLOUD", help="only this cloud: aws or gcp")
    listing.add_argument("--gpu", metavar="GPU", help="only this GPU model, e.g. A100-40GB, H100, T4, L4")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")

    show = add_command(sub, "show", "one instance type: specs and per-region prices with sources", SHOW_HELP)
    show.add_argument(
        "instance", metavar="INSTANCE", help="an instance type, e.g. p4d.24xlarge or a2-highgpu-8g"
    )
    show.add_argument("--region", metavar="REGION", help="only this region, e.g. us-east-1 or us-central1")
    show.add_argument("--json", action="store_true", help="print JSON instead of a table")

    refresh = add_command(
        sub, "refresh", "fetch current prices from the AWS or GCP API into a new snapshot", REFRESH_HELP
    )
    refresh.add_argument("cloud", metavar="CLOUD", help="aws or gcp")
    refresh.add_argument(
        "--regions",
        metavar="R1,R2",
        help="only these regions (default: the cloud's regions in the current snapshot); rows of other "
        "regions are kept as they are",
    )
    refresh.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="snapshot directory to write (default: $DDLPROF_HOME/catalog); its current snapshot, if any, "
        "is the one refreshed",
    )
    refresh.add_argument(
        "--dry-run",
        action="store_true",
        help="fetch and check the new snapshot, show the changes, write nothing",
    )
    refresh.add_argument(
        "--api-key",
        metavar="KEY",
        help="gcp: Google API key (default: $GOOGLE_API_KEY, which keeps it out of ps)",
    )
    refresh.add_argument(
        "--endpoint",
        metavar="URL",
        help="gcp: Cloud Billing API base URL (default: https://cloudbilling.googleapis.com)",
    )
    refresh.add_argument("--json", action="store_true", help="print a JSON summary instead of text")
    return catalog


def run_catalog(args: argparse.Namespace) -> int:
    if args.catalog_command == "refresh":
        from ddlprof.advisor.catalog.refresh import run_refresh

        return run_refresh(args)

    from ddlprof.advisor.catalog import load_catalog

    catalog = load_catalog()
    # Look everything up first: bad input is one error line, without the staleness warning.
    result, render = (_list if args.catalog_command == "list" else _show)(catalog, args)
    warning = catalog.staleness_warning()
    if warning:
        print(f"ddlprof catalog: warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        render()
        _console().print(_snapshot_line(catalog), highlight=False, soft_wrap=True)
    return 0


def _snapshot(catalog) -> dict:
    info = catalog.snapshot_info()
    shipped = _shipped_date() if catalog.origin != "shipped" else None
    info["shipped_snapshot_date"] = shipped
    return info


def _snapshot_line(catalog) -> str:
    line = catalog.snapshot_line()
    shipped = _shipped_date() if catalog.origin == "user" else None
    if shipped and shipped > catalog.snapshot_date.isoformat():
        line += (
            f" The snapshot shipped with this ddlprof is newer ({shipped}): run `ddlprof catalog refresh`, "
            f"or delete {catalog.data_dir} to use it."
        )
    return line


def _shipped_date() -> str | None:
    from ddlprof.advisor.catalog import DATA_DIR

    try:
        return str(json.loads((DATA_DIR / "catalog.json").read_text(encoding="utf-8"))["snapshot_date"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


# -- list -------------------------------------------------------------------------------------------


def _range(values: list[float]) -> dict | None:
    return {"min": min(values), "max": max(values)} if values else None


def _list(catalog, args: argparse.Namespace) -> tuple[dict, Callable[[], None]]:
    rows = []
    for instance in catalog.select(cloud=args.cloud, gpu=args.gpu):
        prices = catalog.prices_for(instance.instance_type)
        rows.append(
            {
                **instance.to_dict(),
                "regions": len(prices),
                "on_demand_usd_per_hour": _range(
                    [p.on_demand_usd_per_hour for p in prices if p.on_demand_usd_per_hour is not None]
                ),
                "spot_usd_per_hour": _range(
                    [p.spot_usd_per_hour for p in prices if p.spot_usd_per_hour is not None]
                ),
            }
        )
    result = {
        "snapshot_date": catalog.snapshot_date.isoformat(),
        "snapshot_age_days": catalog.snapshot_age_days(),
        "snapshot": _snapshot(catalog),
        "instances": rows,
    }
    return result, lambda: _print_list(catalog, result)


def _print_list(catalog, result: dict) -> None:
    from rich.table import Table

    table = Table(title=f"Instance catalog (snapshot {result['snapshot_date']})", title_justify="left")
    table.add_column("cloud", min_width=5)
    table.add_column("instance", no_wrap=True)
    table.add_column("GPUs")
    table.add_column("vCPUs / RAM GB", justify="right")
    table.add_column("GPU link")
    table.add_column("network Gbit/s", justify="right")
    table.add_column("on-demand $/h", justify="right")
    table.add_column("spot $/h", justify="right")
    table.add_column("regions", justify="right")
    rows = result["instances"]
    for row in rows:
        network = _network(row) + {True: ", EFA", False: "", None: ""}[row["efa"]]
        table.add_row(
            row["cloud"],
            row["instance_type"],
            f"{row['gpu_count']} x {row['gpu']}",
            f"{row['vcpus']} / {_num(row['ram_gb'])}",
            _link(row),
            network,
            _money_range(row["on_demand_usd_per_hour"]),
            _money_range(row["spot_usd_per_hour"]),
            str(row["regions"]),
        )
    console = _console()
    console.print(table)
    console.print(
        f"{len(rows)} instance types. '-' = not in this snapshot (see 'missing' in "
        f"{catalog.data_dir / 'catalog.json'}); sources and dates per region: ddlprof catalog show INSTANCE",
        highlight=False,
    )


# -- show -------------------------------------------------------------------------------------------


def _show(catalog, args: argparse.Namespace) -> tuple[dict, Callable[[], None]]:
    instance = catalog.instance(args.instance)
    prices = catalog.prices_for(instance.instance_type, args.region)
    result = {
        "snapshot_date": catalog.snapshot_date.isoformat(),
        "snapshot_age_days": catalog.snapshot_age_days(),
        "snapshot": _snapshot(catalog),
        "instance": instance.to_dict(),
        "prices": [p.to_dict() for p in prices],
    }
    return result, lambda: _print_show(instance, prices, result)


def _print_show(instance, prices, result: dict) -> None:
    from rich.table import Table

    console = _console()
    spec = Table(
        title=f"{instance.instance_type} ({instance.cloud})", title_justify="left", show_header=False
    )
    spec.add_column("field")
    spec.add_column("value", overflow="fold")
    row = result["instance"]
    spec.add_row("GPUs", f"{instance.gpu_count} x {instance.gpu} ({_num(instance.gpu_memory_gb)} GB each)")
    spec.add_row("vCPUs / RAM", f"{instance.vcpus} / {_num(instance.ram_gb)} GB")
    spec.add_row("GPU link", _link(row))
    spec.add_row(
        "network", f"{_network(row)} Gbit/s" if instance.network_gbps is not None else "- (not established)"
    )
    spec.add_row("EFA", _yes_no(instance.efa) + ("" if instance.efa is not None else " (not established)"))
    spec.add_row("source", f"{instance.source} ({row['source_date'] or 'undated'})")
    if instance.notes:
        spec.add_row("notes", instance.notes)
    console.print(spec)

    if not prices:
        console.print(
            "No prices for this instance type in the snapshot (see 'missing' in catalog.json).",
            highlight=False,
        )
        return
    table = Table(title="Prices (USD per hour)", title_justify="left")
    for name, justify in (
        ("region", "left"),
        ("on-demand", "right"),
        ("spot", "right"),
        ("interruption", "center"),
        ("date", "left"),
        ("source", "left"),
    ):
        table.add_column(name, justify=justify, overflow="fold")
    for price in prices:
        table.add_row(
            price.region,
            _money(price.on_demand_usd_per_hour),
            _money(price.spot_usd_per_hour),
            price.spot_interruption or "-",
            price.source_date.isoformat() if price.source_date else "-",
            price.source,
        )
    console.print(table)


# -- formatting -------------------------------------------------------------------------------------


def _console():
    """A rich console; wide when stdout is not a terminal, so piped rows are not squeezed to 80 columns."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=220)


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:g}"


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:,.3f}"


def _money_range(span: dict | None) -> str:
    if span is None:
        return "-"
    if span["min"] == span["max"]:
        return _money(span["min"])
    return f"{_money(span['min'])}-{_money(span['max'])}"


def _link(row: dict) -> str:
    if row["gpu_link_gbps"] is None:
        return row["gpu_link"]
    return f"{row['gpu_link']} ({_num(row['gpu_link_gbps'])} GB/s)"


def _network(row: dict) -> str:
    if row["network_gbps"] is None:
        return "-"
    return ("up to " if row["network_up_to"] else "") + _num(row["network_gbps"])


def _yes_no(flag: bool | None) -> str:
    return "-" if flag is None else ("yes" if flag else "no")
