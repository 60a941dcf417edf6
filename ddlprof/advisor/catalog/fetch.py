"""What a cloud's fetcher hands to ``ddlprof catalog refresh``: the rows it found (:class:`Fetched`), the
fetcher's interface, the error that stops a refresh, and the number and text helpers both sides use.

Below both :mod:`~ddlprof.advisor.catalog.refresh` and the fetchers (:mod:`~ddlprof.advisor.catalog.aws`,
:mod:`~ddlprof.advisor.catalog.gcp`), so that the refresh can pick a fetcher without the two importing
each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Protocol

from ddlprof.advisor.catalog import Instance
from ddlprof.errors import DdlprofError

Progress = Callable[[str], None]


class RefreshError(DdlprofError):
    """A refresh that cannot go on (bad response, no credentials, no network); nothing was written."""


@dataclass
class Fetched:
    """What one cloud's fetcher found, as catalog rows.

    ``prices`` are complete prices.csv rows (PRICE_COLUMNS, strings) for the refreshed ``regions``;
    ``instance_updates`` maps an instance type to the instances.csv cells to overwrite (AWS specs).
    ``sources`` and ``missing`` are catalog.json entries, each with a ``cloud`` key.
    """

    cloud: str
    regions: list[str]
    prices: list[dict[str, str]]
    instance_updates: dict[str, dict[str, str]] = field(default_factory=dict)
    sources: list[dict] = field(default_factory=list)
    missing: list[dict] = field(default_factory=list)
    covered: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # lines for the user (how spot prices were summarised)
    warnings: list[str] = field(default_factory=list)  # one line each: a part that failed, the rest written


class Fetcher(Protocol):
    cloud: str

    def fetch(
        self, instances: list[Instance], regions: list[str], now: datetime, progress: Progress
    ) -> Fetched: ...

    def resolves(self, what: str) -> bool:
        """True when an old catalog.json 'missing' entry of this cloud is superseded by a refresh."""
        ...


# -- numbers ----------------------------------------------------------------------------------------


def decimal(text: object, what: str) -> Decimal:
    """A finite, positive price from an API's text; anything else is an invalid response."""
    try:
        value = Decimal(str(text).strip())
    except (InvalidOperation, ValueError):
        raise RefreshError(
            f"invalid response: {what} is {text!r}, not a number; nothing was written"
        ) from None
    if not value.is_finite() or value <= 0:
        raise RefreshError(
            f"invalid response: {what} is {text!r}; a price must be a finite number > 0; nothing was written"
        )
    return value


def fmt(value: Decimal | int | float) -> str:
    """Plain decimal text without trailing zeros: Decimal('32.7726000000') -> '32.7726'."""
    text = format(Decimal(value), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def median(values: list[Decimal]) -> Decimal:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def aggregate_missing(
    cloud: str, gaps: dict[tuple[str, str], list[str]], today: str, label: str = ""
) -> list[dict]:
    """catalog.json 'missing' entries, one per (instance type, reason), listing the regions."""
    out = []
    for (name, why), regions in gaps.items():
        what = f"{cloud.upper()} {name} {label}in {', '.join(sorted(regions))}"
        out.append({"cloud": cloud, "what": what, "why": f"{why} (refresh of {today})", "from_refresh": True})
    return out
