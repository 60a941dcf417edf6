"""``ddlprof catalog list|show``: browse the instance and price catalog (offline, no torch): the rows
and tables of the snapshot in use, and the line that says which snapshot that is."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date

from ddlprof.advisor.catalog import DATA_DIR, oldest_price_dates
from ddlprof.console import stdout_console

#: What the staleness warning of ``catalog list`` and ``catalog show`` tells the user to look at.
CHECK_LIST = "check each figure's source and date (ddlprof catalog show INSTANCE)"
CHECK_SHOW = "check each price's source and date (the dates in the prices table)"


def _snapshot(catalog) -> dict:
    info = catalog.snapshot_info()
    shipped = _shipped_date() if catalog.origin != "shipped" else None
    info["shipped_snapshot_date"] = shipped
    return info


def print_snapshot_line(catalog) -> None:
    """The line under the tables: which snapshot, from when."""
    stdout_console().print(_snapshot_line(catalog), highlight=False, soft_wrap=True)


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
    try:
        return str(json.loads((DATA_DIR / "catalog.json").read_text(encoding="utf-8"))["snapshot_date"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


# -- list -------------------------------------------------------------------------------------------


def _range(values: list[float]) -> dict | None:
    return {"min": min(values), "max": max(values)} if values else None


def listing(catalog, cloud: str | None, gpu: str | None) -> tuple[dict, Callable[[], None], str | None]:
    """``catalog list``: its JSON, what prints it as a table, and the staleness warning (or None) for
    the prices it shows."""
    rows = []
    shown = []
    for instance in catalog.select(cloud=cloud, gpu=gpu):
        prices = catalog.prices_for(instance.instance_type)
        shown.extend(prices)
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
        "oldest_prices": _oldest(shown),
        "instances": rows,
    }
    warning = catalog.staleness_warning(prices=shown, check=CHECK_LIST)
    return result, lambda: _print_list(catalog, result), warning


def _oldest(prices) -> dict:
    """Each cloud's oldest price date among the prices shown, and its age in days."""
    today = date.today()
    return {
        cloud: {"date": day.isoformat(), "age_days": (today - day).days}
        for cloud, day in sorted(oldest_price_dates(prices).items())
    }


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
    console = stdout_console()
    console.print(table)
    console.print(
        f"{len(rows)} instance types. '-' = not in this snapshot (see 'missing' in "
        f"{catalog.data_dir / 'catalog.json'}); sources and dates per region: ddlprof catalog show INSTANCE",
        highlight=False,
    )


# -- show -------------------------------------------------------------------------------------------


def details(catalog, instance_type: str, region: str | None) -> tuple[dict, Callable[[], None], str | None]:
    """``catalog show``: its JSON, what prints it as tables, and the staleness warning (or None) for
    the prices it shows."""
    instance = catalog.instance(instance_type)
    prices = catalog.prices_for(instance.instance_type, region)
    result = {
        "snapshot_date": catalog.snapshot_date.isoformat(),
        "snapshot_age_days": catalog.snapshot_age_days(),
        "snapshot": _snapshot(catalog),
        "oldest_prices": _oldest(prices),
        "instance": instance.to_dict(),
        "prices": [p.to_dict() for p in prices],
    }
    warning = catalog.staleness_warning(prices=prices, check=CHECK_SHOW if prices else CHECK_LIST)
    return result, lambda: _print_show(instance, prices, result), warning


def _print_show(instance, prices, result: dict) -> None:
    from rich.table import Table

    console = stdout_console()
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
        ("on-demand date", "left"),
        ("spot date", "left"),
        ("source", "left"),
    ):
        table.add_column(name, justify=justify, overflow="fold")
    for price in prices:
        table.add_row(
            price.region,
            _money(price.on_demand_usd_per_hour),
            _money(price.spot_usd_per_hour),
            price.spot_interruption or "-",
            _date(price.source_date if price.on_demand_usd_per_hour is not None else None),
            _date(price.spot_source_date),
            price.source,
        )
    console.print(table)


# -- formatting -------------------------------------------------------------------------------------


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:g}"


def _date(day: date | None) -> str:
    return day.isoformat() if day else "-"


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
