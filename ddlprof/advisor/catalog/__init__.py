"""The instance and price catalog: a dated snapshot of public figures shipped with the package.

Three files in one snapshot directory:

- ``instances.csv``: one row per instance type (GPUs, memory, vCPUs, intra-node GPU link, network,
  EFA), each with its source;
- ``prices.csv``: one row per instance type and region (on-demand and spot USD per hour, spot
  interruption bucket), each non-empty price with its source and date: ``source_date`` dates the
  on-demand price (the spot price where there is no on-demand one), ``spot_source_date`` the spot price
  and its interruption bucket (a snapshot without that column, written before it existed, or an empty
  cell reads as the row's ``source_date``);
- ``catalog.json``: the snapshot date, the sources, what is covered and what is missing and why.

An empty cell means "not established", never zero. Loading validates every row and turns a
malformed or partial file into a :class:`~ddlprof.errors.DdlprofError` that names the file
and the line. Plain ``csv`` keeps the import light: offline commands never import torch or pandas.

Which snapshot is used (:func:`catalog_source`): ``$DDLPROF_CATALOG_DIR`` when set; else the user's
snapshot that ``ddlprof catalog refresh`` writes (``$DDLPROF_HOME/catalog``, default
``~/.ddlprof/catalog``) when it exists; else the one shipped in ``ddlprof/advisor/catalog/data``.

The rest of this package fetches new figures: one fetcher per cloud (``aws``, ``gcp``), what they hand
over (``fetch``), and ``refresh``, which merges and installs a new snapshot. Nothing here decides
where to train: that is the advisor's ranking.
"""

from __future__ import annotations

import csv
import difflib
import json
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

from ddlprof.errors import DdlprofError

DATA_DIR = Path(__file__).resolve().parent / "data"
CATALOG_DIR_ENV = "DDLPROF_CATALOG_DIR"
USER_CATALOG = "catalog"  # the refreshed snapshot's directory name in $DDLPROF_HOME
FILES = ("instances.csv", "prices.csv", "catalog.json")
GPU_SPECS = Path(__file__).resolve().parents[2] / "models" / "data" / "gpu_specs.csv"

CLOUDS = ("aws", "gcp")
SPOT_BUCKETS = ("<5%", "5-10%", "10-15%", "15-20%", ">20%")
STALE_AFTER_DAYS = 30

INSTANCE_COLUMNS = (
    "cloud",
    "instance_type",
    "gpu",
    "gpu_count",
    "gpu_memory_gb",
    "vcpus",
    "ram_gb",
    "gpu_link",
    "gpu_link_gbps",
    "network_gbps",
    "efa",
    "source",
    "source_date",
)
PRICE_COLUMNS = (
    "cloud",
    "instance_type",
    "region",
    "on_demand_usd_per_hour",
    "spot_usd_per_hour",
    "spot_interruption",
    "source",
    "source_date",
    "spot_source_date",
)
SPOT_DATE = "spot_source_date"  # optional on reading: a missing column or cell reads as source_date


@dataclass(frozen=True)
class Instance:
    """One instance type. Numbers are None where the catalog could not establish them."""

    cloud: str
    instance_type: str
    gpu: str
    gpu_count: int
    gpu_memory_gb: float  # per GPU
    vcpus: int
    ram_gb: float
    gpu_link: str
    gpu_link_gbps: float | None  # GB/s per GPU, bidirectional; None for one-GPU instances
    network_gbps: float | None  # Gbit/s as the cloud quotes it
    network_up_to: bool | None  # True: "up to" (burst) bandwidth
    efa: bool | None
    source: str
    source_date: date | None
    notes: str = ""

    def to_dict(self) -> dict:
        out = asdict(self)
        out["source_date"] = self.source_date.isoformat() if self.source_date else None
        return out


@dataclass(frozen=True)
class Price:
    """The price of one instance type in one region, with where the figures come from."""

    cloud: str
    instance_type: str
    region: str
    on_demand_usd_per_hour: float | None
    spot_usd_per_hour: float | None
    spot_interruption: str | None
    source: str
    source_date: date | None  # of the on-demand price (of the spot price where there is none)
    spot_source_date: date | None = None  # of the spot price and its interruption bucket

    def to_dict(self) -> dict:
        out = asdict(self)
        for key in ("source_date", "spot_source_date"):
            out[key] = out[key].isoformat() if out[key] else None
        return out


@dataclass
class Catalog:
    """Instance types, prices per region and the snapshot's metadata, validated."""

    instances: dict[str, Instance]
    prices: list[Price]
    meta: dict
    data_dir: Path
    origin: str = "custom"  # "shipped", "user" (refreshed), "env" ($DDLPROF_CATALOG_DIR) or "custom"
    _by_instance: dict[str, list[Price]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for price in self.prices:
            self._by_instance.setdefault(price.instance_type, []).append(price)

    # -- the snapshot -----------------------------------------------------------------------------

    @property
    def snapshot_date(self) -> date:
        return date.fromisoformat(self.meta["snapshot_date"])

    def snapshot_age_days(self, today: date | None = None) -> int:
        """Days between the snapshot date and ``today`` (default: the local date)."""
        return ((today or date.today()) - self.snapshot_date).days

    def snapshot_info(self) -> dict:
        """Which snapshot this is: origin, directory, date, and the clouds refreshed into it (and when)."""
        refreshed = self.meta.get("refreshed") if isinstance(self.meta.get("refreshed"), dict) else {}
        return {
            "origin": self.origin,
            "dir": str(self.data_dir),
            "snapshot_date": self.snapshot_date.isoformat(),
            "refreshed": {
                cloud: entry.get("at")
                for cloud, entry in sorted(refreshed.items())
                if isinstance(entry, dict)
            },
        }

    def snapshot_line(self) -> str:
        """One line for the user: which snapshot is in use and its date."""
        what = {
            "shipped": "the snapshot shipped with ddlprof",
            "user": f"your refreshed snapshot {self.data_dir}",
            "env": f"{CATALOG_DIR_ENV}={self.data_dir}",
        }.get(self.origin, f"the snapshot in {self.data_dir}")
        info = self.snapshot_info()
        line = f"Catalog: {what}, dated {info['snapshot_date']}"
        if info["refreshed"]:
            line += " (refreshed: " + ", ".join(f"{c} {at}" for c, at in info["refreshed"].items()) + ")"
        return line + "."

    def staleness_warning(
        self,
        today: date | None = None,
        prices: Iterable[Price] | None = None,
        check: str = "check each figure's source (ddlprof catalog show INSTANCE)",
    ) -> str | None:
        """One line when the snapshot, or the oldest of ``prices`` (the rows shown), is older than 30
        days, else None. With ``prices``, the line gives each cloud's oldest price date among them and
        its age, as ``advise`` does for the prices it ranks, then the snapshot's date and age: the
        snapshot's date is only that of its newest source. ``check`` ends the line: what to look at."""
        today = today or date.today()
        age = self.snapshot_age_days(today)
        oldest = oldest_price_dates(prices or ())
        if age <= STALE_AFTER_DAYS and all((today - d).days <= STALE_AFTER_DAYS for d in oldest.values()):
            return None
        snapshot = f"{self.snapshot_date.isoformat()} ({age} days old)"
        if not oldest:
            return (
                f"the catalog snapshot is {age} days old ({self.snapshot_date.isoformat()}); prices may have "
                f"changed since, {check}"
            )
        ages = ", ".join(
            f"{cloud} {day.isoformat()} ({(today - day).days} days old)"
            for cloud, day in sorted(oldest.items())
        )
        return (
            f"the oldest prices shown are: {ages}, in a catalog snapshot dated {snapshot}; prices may have "
            f"changed since, {check}"
        )

    # -- look-ups ---------------------------------------------------------------------------------

    def instance(self, name: str) -> Instance:
        """The instance type ``name``; an unknown name is an error listing the closest names."""
        found = self.instances.get(name) or self.instances.get(name.strip().lower())
        if found is None:
            raise DdlprofError(
                f"unknown instance type {name!r}{_closest(name, self.instances)}; "
                "see `ddlprof catalog list` for all of them"
            )
        return found

    def check_cloud(self, cloud: str) -> str:
        if cloud.lower() in CLOUDS:
            return cloud.lower()
        raise DdlprofError(
            f"unknown cloud {cloud!r}{_closest(cloud.lower(), CLOUDS)}; known: {', '.join(CLOUDS)}"
        )

    def check_gpu(self, gpu: str) -> str:
        """The canonical GPU name for ``gpu`` (case-insensitive), among the GPUs in the catalog."""
        names = sorted({i.gpu for i in self.instances.values()})
        for name in names:
            if name.lower() == gpu.lower():
                return name
        raise DdlprofError(
            f"no instance type in the catalog has GPU {gpu!r}{_closest(gpu, names)}; GPUs: {', '.join(names)}"
        )

    def prices_for(self, instance_type: str, region: str | None = None) -> list[Price]:
        """The prices of ``instance_type`` per region (all regions, or only ``region``)."""
        instance = self.instance(instance_type)
        prices = sorted(self._by_instance.get(instance.instance_type, []), key=lambda p: p.region)
        if region is None:
            return prices
        chosen = [p for p in prices if p.region == region]
        if chosen:
            return chosen
        priced = [p.region for p in prices]
        if not priced:
            raise DdlprofError(
                f"{instance.instance_type} has no prices in this catalog snapshot (see the 'missing' list "
                "in catalog.json); drop --region to see its specs"
            )
        if region in self.regions(instance.cloud):
            raise DdlprofError(
                f"no price for {instance.instance_type} in {region} in this snapshot; "
                f"it has prices in: {', '.join(priced)}"
            )
        raise DdlprofError(
            f"unknown {instance.cloud} region {region!r}{_closest(region, self.regions(instance.cloud))}; "
            f"{instance.instance_type} has prices in: {', '.join(priced)}"
        )

    def regions(self, cloud: str | None = None) -> list[str]:
        return sorted({p.region for p in self.prices if cloud is None or p.cloud == cloud})

    def select(self, cloud: str | None = None, gpu: str | None = None) -> list[Instance]:
        """Instance types, optionally of one cloud and one GPU model, in catalog order."""
        cloud = self.check_cloud(cloud) if cloud else None
        gpu = self.check_gpu(gpu) if gpu else None
        return [
            i
            for i in self.instances.values()
            if (cloud is None or i.cloud == cloud) and (gpu is None or i.gpu == gpu)
        ]


def price_dates(price: Price) -> list[date]:
    """The dates of the figures a price row has: its on-demand price's (``source_date``) and its spot
    price's and interruption bucket's (``spot_source_date``)."""
    dates = []
    if price.on_demand_usd_per_hour is not None and price.source_date is not None:
        dates.append(price.source_date)
    if price.spot_source_date is not None:
        dates.append(price.spot_source_date)
    return dates


def oldest_price_dates(prices: Iterable[Price]) -> dict[str, date]:
    """Each cloud's oldest price date among ``prices``, on-demand and spot alike."""
    oldest: dict[str, date] = {}
    for price in prices:
        for day in price_dates(price):
            if price.cloud not in oldest or day < oldest[price.cloud]:
                oldest[price.cloud] = day
    return oldest


def _closest(name: str, candidates: Iterable[str]) -> str:
    candidates = list(candidates)
    lowered = {c.lower(): c for c in candidates}
    prefixed = [c for c in lowered if name and c.startswith(name.lower())]
    close = prefixed[:3] or difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.5)
    if not close:
        return ""
    return "; closest: " + ", ".join(lowered[c] for c in close)


# -- loading and validation -----------------------------------------------------------------------


def user_catalog_dir() -> Path:
    """Where ``ddlprof catalog refresh`` writes by default: ``$DDLPROF_HOME/catalog``."""
    from ddlprof.runs.store import home  # light (sqlite3 only); imported here to keep this module lean

    return home() / USER_CATALOG


def catalog_source() -> tuple[Path, str]:
    """The snapshot directory in use and its origin: ``$DDLPROF_CATALOG_DIR`` ("env") when set, else the
    user's refreshed snapshot ("user") when it holds a ``catalog.json``, else the shipped one ("shipped")."""
    override = os.environ.get(CATALOG_DIR_ENV)
    if override:
        return Path(override).expanduser(), "env"
    user = user_catalog_dir()
    if (user / "catalog.json").is_file():
        return user, "user"
    return DATA_DIR, "shipped"


def catalog_dir() -> Path:
    """The snapshot directory in use (see :func:`catalog_source`)."""
    return catalog_source()[0]


def load_catalog(data_dir: Path | str | None = None) -> Catalog:
    """Load and validate the catalog in ``data_dir`` (default: the one in use, :func:`catalog_source`)."""
    if data_dir is None:
        path, origin = catalog_source()
    else:
        path = Path(data_dir)
        origin = _origin_of(path)
    return _load(path, origin)


def _origin_of(path: Path) -> str:
    try:
        resolved = path.resolve()
        if resolved == DATA_DIR.resolve():
            return "shipped"
        if resolved == user_catalog_dir().resolve():
            return "user"
    except OSError:
        pass
    return "custom"


def _load(data_dir: Path, origin: str = "custom") -> Catalog:
    meta = _read_meta(data_dir / "catalog.json")
    gpus = _known_gpus()
    instances = _read_instances(data_dir / "instances.csv", gpus)
    prices = _read_prices(data_dir / "prices.csv", instances)
    return Catalog(instances=instances, prices=prices, meta=meta, data_dir=data_dir, origin=origin)


_EXTRA = "\0extra"  # DictReader's key for the cells beyond the header


class _RowError(Exception):
    """A problem with one cell; the reader adds the file and line."""


def _fail(path: Path, line: int | None, problem: str) -> DdlprofError:
    where = f"{path}: line {line}" if line is not None else str(path)
    if _origin_of(path.parent) == "user":
        hint = (
            "fix that row, run `ddlprof catalog refresh` again, or delete that directory to use the "
            "snapshot shipped with ddlprof"
        )
    else:
        hint = (
            f"fix that row, or point {CATALOG_DIR_ENV} at a good snapshot (unset it to use the one shipped "
            "with ddlprof)"
        )
    return DdlprofError(f"malformed catalog file {where}: {problem}; {hint}")


def _rows(path: Path, required: tuple[str, ...]) -> Iterable[tuple[int, dict[str, str]]]:
    """(line number, row) for each data row; a missing column or a short or long row is an error."""
    try:
        handle = path.open(newline="", encoding="utf-8")
    except FileNotFoundError:
        raise _fail(path, None, "the file does not exist") from None
    except OSError as exc:
        raise _fail(path, None, f"cannot be read ({exc.strerror})") from None
    with handle:
        reader = csv.DictReader(handle, restkey=_EXTRA)
        try:
            header = reader.fieldnames
        except (csv.Error, UnicodeDecodeError) as exc:
            raise _fail(path, 1, f"unreadable header ({exc})") from None
        if not header:
            raise _fail(path, 1, "the file is empty (no header row)")
        missing = [c for c in required if c not in header]
        if missing:
            raise _fail(path, 1, f"missing column(s) {', '.join(missing)}")
        try:
            for row in reader:
                line = reader.line_num
                if _EXTRA in row:
                    fields = len(header) + len(row[_EXTRA])
                    raise _fail(path, line, f"{fields} fields, expected {len(header)}")
                short = [k for k, v in row.items() if v is None]
                if short:
                    raise _fail(
                        path, line, f"{len(header) - len(short)} fields, expected {len(header)} (truncated?)"
                    )
                if not any(v.strip() for v in row.values()):
                    continue
                yield line, {k: v.strip() for k, v in row.items()}
        except (csv.Error, UnicodeDecodeError) as exc:
            raise _fail(path, reader.line_num, f"not valid CSV ({exc})") from None


def _number(row: dict[str, str], key: str, *, required: bool, integer: bool = False) -> float | int | None:
    text = row[key]
    if text == "":
        if required:
            raise _RowError(f"{key} is empty")
        return None
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise _RowError(f"{key} is {text!r}, not {kind}") from None
    if not math.isfinite(value) or value < 0:
        raise _RowError(f"{key} is {text!r}; it must be a finite number >= 0")
    return value


def _flag(row: dict[str, str], key: str) -> bool | None:
    text = row.get(key, "").lower()
    if text in ("", "unknown"):
        return None
    if text in ("true", "false"):
        return text == "true"
    raise _RowError(f"{key} is {row[key]!r}; use true, false or leave it empty")


def _iso_date(row: dict[str, str], key: str, *, required: bool) -> date | None:
    text = row[key]
    if text == "":
        if required:
            raise _RowError(f"{key} is empty")
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _RowError(f"{key} is {text!r}, not an ISO date (YYYY-MM-DD)") from None


def _cloud(row: dict[str, str]) -> str:
    if row["cloud"] not in CLOUDS:
        raise _RowError(f"unknown cloud {row['cloud']!r}{_closest(row['cloud'], CLOUDS)}")
    return row["cloud"]


def _read_instances(path: Path, gpus: set[str] | None) -> dict[str, Instance]:
    instances: dict[str, Instance] = {}
    for line, row in _rows(path, INSTANCE_COLUMNS):
        try:
            name = row["instance_type"]
            if not name:
                raise _RowError("instance_type is empty")
            if name in instances:
                raise _RowError(f"instance type {name} appears twice")
            if gpus is not None and row["gpu"] not in gpus:
                raise _RowError(
                    f"unknown GPU {row['gpu']!r}{_closest(row['gpu'], gpus)} (names: {GPU_SPECS})"
                )
            if not row["source"]:
                raise _RowError("source is empty")
            instance = Instance(
                cloud=_cloud(row),
                instance_type=name,
                gpu=row["gpu"],
                gpu_count=_number(row, "gpu_count", required=True, integer=True),
                gpu_memory_gb=_number(row, "gpu_memory_gb", required=True),
                vcpus=_number(row, "vcpus", required=True, integer=True),
                ram_gb=_number(row, "ram_gb", required=True),
                gpu_link=row["gpu_link"],
                gpu_link_gbps=_number(row, "gpu_link_gbps", required=False),
                network_gbps=_number(row, "network_gbps", required=False),
                network_up_to=_flag(row, "network_up_to"),
                efa=_flag(row, "efa"),
                source=row["source"],
                source_date=_iso_date(row, "source_date", required=False),
                notes=row.get("notes", ""),
            )
            if instance.gpu_count < 1:
                raise _RowError("gpu_count must be at least 1")
            if not instance.gpu_link:
                raise _RowError("gpu_link is empty")
        except _RowError as exc:
            raise _fail(path, line, str(exc)) from None
        instances[name] = instance
    if not instances:
        raise _fail(path, None, "no instance rows")
    return instances


def _read_prices(path: Path, instances: dict[str, Instance]) -> list[Price]:
    prices: list[Price] = []
    seen: set[tuple[str, str]] = set()
    for line, row in _rows(path, tuple(c for c in PRICE_COLUMNS if c != SPOT_DATE)):
        try:
            cloud = _cloud(row)
            name = row["instance_type"]
            if name not in instances:
                raise _RowError(f"instance type {name!r} is not in instances.csv{_closest(name, instances)}")
            if instances[name].cloud != cloud:
                raise _RowError(f"{name} is a {instances[name].cloud} instance type, not {cloud}")
            region = row["region"]
            if not region:
                raise _RowError("region is empty")
            if (name, region) in seen:
                raise _RowError(f"{name} in {region} appears twice")
            on_demand = _number(row, "on_demand_usd_per_hour", required=False)
            spot = _number(row, "spot_usd_per_hour", required=False)
            bucket = row["spot_interruption"] or None
            if bucket is not None and bucket not in SPOT_BUCKETS:
                raise _RowError(
                    f"spot_interruption is {bucket!r}; use one of {', '.join(SPOT_BUCKETS)} or leave it empty"
                )
            has_figure = on_demand is not None or spot is not None or bucket is not None
            if has_figure and not row["source"]:
                raise _RowError("a price without a source (source is empty)")
            source_date = _iso_date(row, "source_date", required=has_figure)
            spot_date = _spot_date(row, source_date, spot is not None or bucket is not None)
        except _RowError as exc:
            raise _fail(path, line, str(exc)) from None
        seen.add((name, region))
        prices.append(
            Price(cloud, name, region, on_demand, spot, bucket, row["source"], source_date, spot_date)
        )
    return prices


def _spot_date(row: dict[str, str], source_date: date | None, has_spot: bool) -> date | None:
    """The date of the row's spot price and bucket: its own cell, else (a snapshot written before that
    column existed, or a hand-written row) the row's ``source_date``."""
    if not row.get(SPOT_DATE):
        return source_date if has_spot else None
    if not has_spot:
        raise _RowError(f"{SPOT_DATE} is {row[SPOT_DATE]!r} but the row has no spot price or bucket")
    return _iso_date(row, SPOT_DATE, required=True)


def _read_meta(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _fail(path, None, "the file does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(path, None, f"cannot be read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise _fail(path, exc.lineno, f"not valid JSON ({exc.msg})") from None
    if not isinstance(meta, dict) or "snapshot_date" not in meta:
        raise _fail(path, None, "no snapshot_date")
    try:
        date.fromisoformat(str(meta["snapshot_date"]))
    except ValueError:
        raise _fail(path, None, f"snapshot_date {meta['snapshot_date']!r} is not an ISO date") from None
    if not isinstance(meta.get("missing", []), list):
        raise _fail(path, None, "'missing' must be a list")
    return meta


def _known_gpus() -> set[str] | None:
    """Canonical GPU names from the models' GPU table; None (no check) if that table is absent."""
    try:
        with GPU_SPECS.open(newline="", encoding="utf-8") as handle:
            return {row["gpu"] for row in csv.DictReader(handle) if row.get("gpu")}
    except (OSError, KeyError, csv.Error):
        return None
