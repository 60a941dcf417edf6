"""The expected cost of spot interruptions, per option (first order).

The rate is interruptions per instance per day, from one of three places, each named in the option:

- ``--interruptions-per-day`` when given (for every spot option, AWS and GCP alike);
- else AWS's Spot Instance Advisor bucket of the catalog row ("frequency of interruption" over the
  trailing month, e.g. "5-10%"), read as a rate of interruptions per instance per month: the bucket's
  midpoint is the rate, its upper edge the high end of the option's range. ">20%" has no upper edge:
  its lower edge, 20%, is the rate (a floor) and the range has no high end;
- else (GCP publishes no interruption rate; an AWS row without a bucket) :data:`UNPUBLISHED_PCT_PER_MONTH`,
  a named assumption: the lower edge of AWS's worst bucket, so that a missing figure never makes an
  option look safer than the worst AWS capacity pool. It is not a GCP figure.

Any of the job's instances being interrupted stops the job; each interruption loses the work since the
last checkpoint (half an interval on average) plus a restart, with every instance billed meanwhile.
The hours lost are added to the option's hours, and so to its cost.
"""

from __future__ import annotations

import math
from typing import Any

from ddlprof.advisor.catalog import Price
from ddlprof.errors import DdlprofError

CHECKPOINT_INTERVAL_MIN = 30.0
RESTART_MIN = 10.0
HOURS_PER_MONTH = 730.0  # 8760 / 12, as AWS and GCP bill a month
DAYS_PER_MONTH = HOURS_PER_MONTH / 24
#: AWS Spot Instance Advisor buckets: (lower, upper) % of instances interrupted per month; None: no edge.
BUCKETS_PCT: dict[str, tuple[float, float | None]] = {
    "<5%": (0.0, 5.0),
    "5-10%": (5.0, 10.0),
    "10-15%": (10.0, 15.0),
    "15-20%": (15.0, 20.0),
    ">20%": (20.0, None),
}
#: Assumed where no rate is published (GCP; AWS rows without a bucket): % per instance per month.
UNPUBLISHED_PCT_PER_MONTH = 20.0
UNPUBLISHED_REASON = (
    "the lower edge of AWS's worst Spot Instance Advisor bucket ('>20%' a month), so that a missing "
    "figure never ranks an option as safer than the worst published AWS pool; not a GCP figure: set "
    "--interruptions-per-day"
)


def per_day(pct_per_month: float) -> float:
    """Interruptions per instance-day for ``pct_per_month`` interruptions per 100 instance-months."""
    return pct_per_month / 100 / DAYS_PER_MONTH


def bucket_rate(bucket: str) -> tuple[float, float | None]:
    """(rate, high) per instance-day of a Spot Instance Advisor bucket: its midpoint and upper edge
    (for '>20%': its lower edge and None, no upper edge being published)."""
    low, high = BUCKETS_PCT[bucket]
    if high is None:
        return per_day(low), None
    return per_day((low + high) / 2), per_day(high)


def check_rate(interruptions_per_day: float | None) -> None:
    if interruptions_per_day is not None and not (
        math.isfinite(interruptions_per_day) and interruptions_per_day >= 0
    ):
        raise DdlprofError(
            f"--interruptions-per-day must be a finite number >= 0, got {interruptions_per_day:g}"
        )


def interruption_overhead(
    compute_hours: float,
    instances: int,
    rate_per_day: float,
    checkpoint_interval_min: float = CHECKPOINT_INTERVAL_MIN,
    restart_min: float = RESTART_MIN,
) -> dict[str, float]:
    """The expected time a spot job loses to interruptions (first order).

    Any of the ``instances`` being interrupted stops the job: interruptions = instances x rate x
    ``compute_hours`` / 24. Each loses the work since the last checkpoint (half an interval on average)
    and a restart; every instance is billed meanwhile. Writing the checkpoints is not counted, nor
    the time the extra hours are themselves exposed (second order).
    """
    if checkpoint_interval_min < 0 or restart_min < 0 or compute_hours < 0 or instances < 1:
        raise DdlprofError("checkpoint interval, restart time and hours must be >= 0, instances >= 1")
    check_rate(rate_per_day)
    expected = instances * rate_per_day * compute_hours / 24
    lost = (checkpoint_interval_min / 2 + restart_min) / 60
    return {
        "rate_per_day": rate_per_day,
        "expected_interruptions": expected,
        "hours_lost_per_interruption": lost,
        "overhead_hours": expected * lost,
    }


def interruption_for(
    price: Price,
    count: int,
    compute_hours: float,
    usd_per_instance_hour: float,
    checkpoint_interval_min: float,
    restart_min: float,
    interruptions_per_day: float | None,
) -> dict[str, Any]:
    """The interruption overhead of ``count`` spot instances at ``price`` over ``compute_hours``: its
    rate, where the rate comes from, the expected interruptions, hours and USD lost, and the high end
    (None where no upper bound is known)."""
    bucket = price.spot_interruption
    if interruptions_per_day is not None:
        rate, high = interruptions_per_day, interruptions_per_day
        basis = "given"
        source = f"given: --interruptions-per-day {interruptions_per_day:g}"
    elif bucket is not None:
        rate, high = bucket_rate(bucket)
        basis = "aws_bucket"
        low_pct, high_pct = BUCKETS_PCT[bucket]
        edge = (
            f"midpoint {(low_pct + high_pct) / 2:g}% a month, upper edge {high_pct:g}% for the range"
            if high_pct is not None
            else "no upper edge published: its lower edge 20% a month is the rate (a floor), no high end"
        )
        source = (
            f"AWS Spot Instance Advisor bucket {bucket} ({price.spot_source_date}), read as interruptions "
            f"per instance per month: {edge}"
        )
    else:
        rate, high = per_day(UNPUBLISHED_PCT_PER_MONTH), None
        basis = "assumed"
        what = "GCP publishes no interruption rate" if price.cloud == "gcp" else "no bucket in this row"
        source = f"assumed: {UNPUBLISHED_PCT_PER_MONTH:g}% a month ({what}; {UNPUBLISHED_REASON})"
    overhead = interruption_overhead(compute_hours, count, rate, checkpoint_interval_min, restart_min)
    cost = overhead["overhead_hours"] * usd_per_instance_hour * count
    out: dict[str, Any] = {"basis": basis, "bucket": bucket, **overhead, "cost_usd": cost}
    if high is None:
        out.update(rate_per_day_high=None, overhead_hours_high=None, cost_usd_high=None)
    else:
        high_hours = interruption_overhead(compute_hours, count, high, checkpoint_interval_min, restart_min)
        out.update(
            rate_per_day_high=high,
            overhead_hours_high=high_hours["overhead_hours"],
            cost_usd_high=high_hours["overhead_hours"] * usd_per_instance_hour * count,
        )
    out["source"] = source
    return out
