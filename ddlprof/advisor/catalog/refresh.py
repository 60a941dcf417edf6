"""``ddlprof catalog refresh aws|gcp``: fetch current prices into a new catalog snapshot, atomically.

One fetcher per cloud (:mod:`ddlprof.advisor.catalog.aws`, :mod:`ddlprof.advisor.catalog.gcp`) turns the
cloud's own API into :class:`~ddlprof.advisor.catalog.fetch.Fetched` rows; this module merges them into
the snapshot in use and installs the result.

- **Base.** The snapshot already in the target directory (default ``$DDLPROF_HOME/catalog``), else
  the one in use (``$DDLPROF_CATALOG_DIR``, else the shipped one). Instance types and their shapes
  come from the base: a refresh updates prices (and, for AWS, the specs EC2 reports), it never adds
  or drops instance types.
- **Merge.** The refreshed cloud's price rows in the refreshed regions are replaced; its rows in
  other regions and every row of the other cloud are kept as they are, with their own sources and
  dates. ``catalog.json`` gets the new sources, what is covered and what is still missing, and a
  ``refreshed`` entry per cloud (when, which regions, from which base).
- **Install.** The three files are written to a temporary directory next to the target, checked by
  the catalog loader (:func:`~ddlprof.advisor.catalog.load_catalog`), and only then swapped in: the
  old directory is renamed aside, the new one renamed into place, and the old one deleted; if the
  second rename fails the old one is renamed back. A failed fetch or check leaves the old snapshot
  byte-identical. ``--dry-run`` does all of this in the system's temporary directory and writes
  nothing next to the target.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from ddlprof import __version__
from ddlprof.advisor.catalog import (
    CLOUDS,
    FILES,
    PRICE_COLUMNS,
    SPOT_DATE,
    Catalog,
    _closest,
    catalog_source,
    load_catalog,
    user_catalog_dir,
)
from ddlprof.advisor.catalog.aws import AwsFetcher
from ddlprof.advisor.catalog.fetch import Fetched, Fetcher, Progress, RefreshError
from ddlprof.advisor.catalog.gcp import GcpFetcher
from ddlprof.errors import DdlprofError, require

# -- the target and the base snapshot ---------------------------------------------------------------


def _check_target(target: Path) -> None:
    if target.exists() and not target.is_dir():
        raise DdlprofError(f"--out {target} is a file; give a directory for the catalog snapshot")
    if target.is_dir():
        others = sorted(p.name for p in target.iterdir() if p.name not in FILES)
        if others:
            shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
            raise DdlprofError(
                f"{target} holds files that are not part of a catalog snapshot ({shown}); a refresh replaces "
                "the whole directory, so give --out an empty directory or a catalog snapshot directory"
            )


def _base(target: Path) -> Catalog:
    """The snapshot the refresh starts from: the one in ``target``, else the one in use."""
    present = [name for name in FILES if (target / name).exists()]
    if present and len(present) < len(FILES):
        lacking = ", ".join(n for n in FILES if n not in present)
        raise DdlprofError(
            f"{target} holds a partial catalog snapshot (no {lacking}); delete that directory or give "
            "another --out"
        )
    if present:
        try:
            return load_catalog(target)
        except DdlprofError as exc:
            raise DdlprofError(f"cannot refresh the snapshot in {target}: {exc}") from None
    return load_catalog()  # the snapshot in use


def _raw(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), [dict(row) for row in reader]


def _csv(header: list[str], rows: Iterable[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n", extrasaction="raise")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in header})
    return buffer.getvalue()


# -- merging ----------------------------------------------------------------------------------------


_NAME = re.compile(r"[a-z0-9][a-z0-9.+-]*[a-z0-9]", re.IGNORECASE)


def _entry_cloud(entry: dict, base: Catalog) -> str | None:
    """The cloud a catalog.json entry is about: its ``cloud`` key, its 'AWS'/'GCP' prefix, the prefix of
    its id ('aws-prices'), or the cloud of an instance type it names; None when it is about neither."""
    if entry.get("cloud") in CLOUDS:
        return entry["cloud"]
    text = str(entry.get("what", ""))
    head = text.split(" ", 1)[0].lower()
    if head in CLOUDS:
        return head
    prefix = str(entry.get("id", "")).split("-", 1)[0].lower()
    if prefix in CLOUDS:
        return prefix
    for token in _NAME.findall(text):
        instance = base.instances.get(token)
        if instance is not None:
            return instance.cloud
    return None


def merge(
    base: Catalog, fetched: Fetched, now: datetime, resolves: Callable[[str], bool] = lambda _what: False
) -> dict[str, str]:
    """The three files of the new snapshot, as text. ``resolves(what)`` says whether an old 'missing'
    entry of the refreshed cloud is superseded by the refresh (entries a refresh wrote always are)."""
    cloud = fetched.cloud
    today = now.date().isoformat()
    refreshed = set(fetched.regions)

    inst_header, inst_rows = _raw(base.data_dir / "instances.csv")
    for row in inst_rows:
        update = fetched.instance_updates.get(row["instance_type"]) if row["cloud"] == cloud else None
        if update:
            for key in update:
                if key not in inst_header:
                    inst_header.append(key)
            row.update(update)

    price_header, price_rows = _raw(base.data_dir / "prices.csv")
    if SPOT_DATE not in price_header:  # a snapshot from before the column: its spot dates are the rows'
        for row in price_rows:
            has_spot = row.get("spot_usd_per_hour") or row.get("spot_interruption")
            row[SPOT_DATE] = row.get("source_date", "") if has_spot else ""
    kept = [r for r in price_rows if not (r["cloud"] == cloud and r["region"] in refreshed)]
    order = {row["instance_type"]: i for i, row in enumerate(inst_rows)}
    prices = sorted(
        [*kept, *fetched.prices],
        key=lambda r: (
            CLOUDS.index(r["cloud"]) if r["cloud"] in CLOUDS else 99,
            order.get(r["instance_type"], 1e9),
            r["region"],
        ),
    )
    for column in PRICE_COLUMNS:
        if column not in price_header:
            price_header.append(column)

    meta = copy.deepcopy(base.meta)
    dates = sorted(d for r in prices for d in (r.get("source_date"), r.get(SPOT_DATE)) if d)
    if dates:
        meta["snapshot_date"] = dates[-1]
        meta["snapshot_date_meaning"] = (
            "date of the newest price source in this snapshot; every row of prices.csv carries its own "
            f"source and date (oldest: {dates[0]})"
        )
    meta["compiled_on"] = today

    # Sources: keep those of the other cloud, undated reference documents, and those whose date still
    # appears on a row of this cloud that the refresh kept; the new ones replace any with the same id.
    retained_dates = {r[key] for r in kept if r["cloud"] == cloud for key in ("source_date", SPOT_DATE)} | {
        r.get("source_date", "")
        for r in inst_rows
        if r["cloud"] == cloud and r["instance_type"] not in fetched.instance_updates
    }
    new_ids = {s.get("id") for s in fetched.sources}
    sources = []
    for source in meta.get("sources", []):
        if (
            _entry_cloud(source, base) == cloud
            and source.get("date")
            and source.get("date") not in retained_dates
        ):
            continue  # no row cites it any more
        if source.get("id") in new_ids:
            if source.get("date") not in retained_dates or source.get("date") == today:
                continue
            source = {**source, "id": f"{source['id']}-{source['date']}"}  # an earlier refresh, still cited
        sources.append(source)
    meta["sources"] = [*sources, *fetched.sources]

    covered = meta.get("covered") if isinstance(meta.get("covered"), dict) else {}
    covered[cloud] = fetched.covered
    meta["covered"] = covered

    missing = []
    restated = {m.get("what") for m in fetched.missing}
    for entry in meta.get("missing", []):
        if entry.get("what") in restated:
            continue
        if _entry_cloud(entry, base) == cloud and (
            entry.get("from_refresh") or resolves(str(entry.get("what", "")))
        ):
            continue
        missing.append(entry)
    stale = sorted({r["region"] for r in kept if r["cloud"] == cloud})
    if stale:
        missing.append(
            {
                "cloud": cloud,
                "what": f"{cloud.upper()} prices in regions not refreshed on {today}: {', '.join(stale)}",
                "why": "kept from the earlier snapshot, each row with its own source and date; refresh them "
                f"with `ddlprof catalog refresh {cloud} --regions ...`",
                "from_refresh": True,
            }
        )
    meta["missing"] = [*missing, *fetched.missing]

    runs = meta.get("refreshed") if isinstance(meta.get("refreshed"), dict) else {}
    runs[cloud] = {
        "at": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "by": f"ddlprof {__version__}: ddlprof catalog refresh {cloud}",
        "regions": sorted(refreshed),
        "based_on": {
            "dir": str(base.data_dir),
            "origin": base.origin,
            "snapshot_date": base.meta["snapshot_date"],
        },
        "notes": fetched.notes,
    }
    meta["refreshed"] = runs

    return {
        "instances.csv": _csv(inst_header, inst_rows),
        "prices.csv": _csv(price_header, prices),
        "catalog.json": json.dumps(meta, indent=2, ensure_ascii=False) + "\n",
    }


# -- installing -------------------------------------------------------------------------------------


def _write(directory: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        with (directory / name).open("w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())


def _validate(directory: Path, cloud: str) -> Catalog:
    try:
        return load_catalog(directory)
    except DdlprofError as exc:
        text = str(exc).replace(str(directory) + os.sep, "the new snapshot's ").split("; fix that row")[0]
        raise RefreshError(
            f"the refreshed {cloud} data did not pass the catalog checks, nothing was written: {text}"
        ) from None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _swap(staging: Path, target: Path) -> None:
    """Put ``staging`` where ``target`` is; on failure ``target`` is what it was."""
    if not target.exists():
        os.replace(staging, target)
        return
    backup = target.parent / f".{target.name}.old-{os.getpid()}-{time.time_ns()}"
    os.replace(target, backup)
    try:
        os.replace(staging, target)
    except BaseException:
        os.replace(backup, target)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def install(files: dict[str, str], target: Path, cloud: str) -> Catalog:
    """Write ``files`` next to ``target``, check them, and swap them in; the old snapshot survives any
    failure unchanged."""
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=parent))
    except OSError as exc:
        raise DdlprofError(
            f"cannot write a catalog snapshot under {parent} ({exc.strerror or exc})"
        ) from None
    try:
        try:
            _write(staging, files)
        except OSError as exc:
            raise DdlprofError(
                f"cannot write the new snapshot under {parent} ({exc.strerror or exc}); the old one is "
                "unchanged"
            ) from None
        catalog = _validate(staging, cloud)
        try:
            _swap(staging, target)
        except OSError as exc:
            raise DdlprofError(
                f"cannot put the new snapshot in place at {target} ({exc.strerror or exc}); the old one is "
                "unchanged"
            ) from None
        _fsync_dir(parent)
        return catalog
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


# -- the refresh ------------------------------------------------------------------------------------


def _diff(base: Catalog, fetched: Fetched) -> dict:
    regions = set(fetched.regions)
    old = {
        (p.instance_type, p.region): p
        for p in base.prices
        if p.cloud == fetched.cloud and p.region in regions
    }
    new = {(r["instance_type"], r["region"]): r for r in fetched.prices}
    changed, largest = 0, []
    for key in old.keys() & new.keys():
        before, after = old[key], new[key]
        figures = []
        for column in ("on_demand_usd_per_hour", "spot_usd_per_hour"):
            was = getattr(before, column)
            now = float(after[column]) if after[column] else None
            if was != now:
                figures.append((column, was, now))
        if figures:
            changed += 1
        for column, was, now in figures:
            if was and now:
                largest.append((abs(now - was) / was, key, column, was, now))
    largest.sort(reverse=True)
    return {
        "added": len(new.keys() - old.keys()),
        "removed": len(old.keys() - new.keys()),
        "changed": changed,
        "unchanged": len(old.keys() & new.keys()) - changed,
        "largest_changes": [
            {
                "instance_type": key[0],
                "region": key[1],
                "figure": column.removesuffix("_usd_per_hour"),
                "before": was,
                "after": now,
            }
            for _, key, column, was, now in largest[:3]
        ],
    }


def refresh(
    fetcher: Fetcher,
    *,
    regions: list[str] | None = None,
    out: Path | str | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> dict:
    """Fetch ``fetcher.cloud``'s prices and install a new snapshot in ``out`` (default: the user's
    snapshot directory); returns a summary. Raises :class:`DdlprofError` with nothing written on failure."""
    cloud = fetcher.cloud
    now = now or datetime.now(UTC)
    progress = progress or (lambda _message: None)
    target = Path(out).expanduser() if out is not None else user_catalog_dir()
    _check_target(target)
    base = _base(target)

    instances = [i for i in base.instances.values() if i.cloud == cloud]
    if not instances:
        raise DdlprofError(
            f"the catalog snapshot in {base.data_dir} has no {cloud} instance types to refresh"
        )
    regions = list(dict.fromkeys(r.strip() for r in regions or [] if r.strip())) or base.regions(cloud)
    if not regions:
        raise DdlprofError(f"no {cloud} regions to refresh: give --regions R1,R2,...")

    fetched = fetcher.fetch(instances, regions, now, progress)
    files = merge(base, fetched, now, fetcher.resolves)
    diff = _diff(base, fetched)

    if dry_run:
        with tempfile.TemporaryDirectory(prefix="ddlprof-catalog-dry-run-") as scratch:
            _write(Path(scratch), files)
            _validate(Path(scratch), cloud)
        written = None
    else:
        install(files, target, cloud)
        written = str(target)
    in_use, origin = catalog_source()

    on_demand = sum(1 for r in fetched.prices if r["on_demand_usd_per_hour"])
    spot = sum(1 for r in fetched.prices if r["spot_usd_per_hour"])
    others = [c for c in CLOUDS if c != cloud and any(p.cloud == c for p in base.prices)]
    other_dates = {
        c: max(p.source_date for p in base.prices if p.cloud == c and p.source_date).isoformat()
        for c in others
    }
    return {
        "cloud": cloud,
        "dry_run": dry_run,
        "written_to": written,
        "target": str(target),
        "based_on": {
            "dir": str(base.data_dir),
            "origin": base.origin,
            "snapshot_date": base.meta["snapshot_date"],
        },
        "fetched_at": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "regions": regions,
        "instance_types": len(instances),
        "price_rows": len(fetched.prices),
        "on_demand_prices": on_demand,
        "spot_prices": spot,
        "specs_updated": len(fetched.instance_updates),
        "missing": [m["what"] for m in fetched.missing],
        "notes": fetched.notes,
        "warnings": fetched.warnings,
        "changes": diff,
        "other_clouds_newest_price": other_dates,
        "in_use": {"dir": str(in_use), "origin": origin, "is_target": _same(in_use, target)},
    }


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


# -- the command ------------------------------------------------------------------------------------


def progress_printer() -> Progress:
    """Progress lines on stderr when it is a terminal, else nothing."""
    if not sys.stderr.isatty():
        return lambda _message: None

    def show(message: str) -> None:
        print(f"ddlprof catalog refresh: {message}", file=sys.stderr, flush=True)

    return show


def fetcher_for(cloud: str, api_key: str | None = None, endpoint: str | None = None) -> Fetcher:
    """The fetcher of ``cloud`` (``--api-key`` and ``--endpoint`` are GCP's)."""
    name = cloud.strip().lower()
    if name not in CLOUDS:
        raise DdlprofError(f"unknown cloud {cloud!r}{_closest(name, CLOUDS)}; known: {', '.join(CLOUDS)}")
    if name == "aws":
        if api_key or endpoint:
            raise DdlprofError(
                "--api-key and --endpoint are for gcp; AWS uses its usual credentials (AWS_PROFILE, "
                "AWS_ACCESS_KEY_ID, ~/.aws) and AWS_ENDPOINT_URL_PRICING / AWS_ENDPOINT_URL_EC2 for endpoints"
            )
        require("boto3", "cloud", "ddlprof catalog refresh aws", import_it=False)
        return AwsFetcher()
    return GcpFetcher(api_key=api_key, endpoint=endpoint)


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:,.4g}"


def print_summary(summary: dict) -> None:
    cloud = summary["cloud"]
    lines = [
        f"{cloud}: {summary['instance_types']} instance types x {len(summary['regions'])} regions "
        f"({', '.join(summary['regions'])}), fetched {summary['fetched_at']}: {summary['price_rows']} price "
        f"rows, {summary['on_demand_prices']} on-demand and {summary['spot_prices']} spot prices"
        + (f", specs of {summary['specs_updated']} types" if summary["specs_updated"] else "")
        + "."
    ]
    lines += [f"  {note}" for note in summary["notes"]]
    change = summary["changes"]
    based = summary["based_on"]
    what = {"shipped": "the snapshot shipped with ddlprof", "env": f"DDLPROF_CATALOG_DIR={based['dir']}"}.get(
        based["origin"], based["dir"]
    )
    line = (
        f"  vs. {what} (dated {based['snapshot_date']}): {change['changed']} rows changed, "
        f"{change['unchanged']} unchanged, {change['added']} new, {change['removed']} gone"
    )
    if change["largest_changes"]:
        big = change["largest_changes"][0]
        line += (
            f"; largest change: {big['instance_type']} {big['region']} {big['figure']} "
            f"{_money(big['before'])} -> {_money(big['after'])} USD/h"
        )
    lines.append(line + ".")
    if summary["missing"]:
        lines.append(
            f"  {len(summary['missing'])} gaps (no price found, said so in 'missing' of catalog.json), e.g.: "
            + summary["missing"][0]
        )
    for other, newest in summary["other_clouds_newest_price"].items():
        lines.append(
            f"  {other} prices are kept as they were (newest {newest}): ddlprof catalog refresh {other}"
        )
    if summary["dry_run"]:
        lines.append(
            f"Dry run: the new snapshot passed the catalog checks; nothing was written ({summary['target']} "
            "is unchanged)."
        )
    else:
        line = f"Wrote {summary['written_to']}"
        if summary["in_use"]["is_target"]:
            line += "; `ddlprof catalog list` and `ddlprof advise` use it now."
        elif summary["in_use"]["origin"] == "env":
            line += f"; not in use while DDLPROF_CATALOG_DIR={summary['in_use']['dir']} is set."
        else:
            line += f"; set DDLPROF_CATALOG_DIR={summary['written_to']} to use it."
        lines.append(line)
    print("\n".join(lines))
