"""The expected cost of spot interruptions, per option (first order).

AWS's Spot Instance Advisor bucket is read as the chance that one instance is interrupted within a
month (the bucket's upper edge; 30% for ">20%"); GCP publishes no interruption rate, so an explicit
assumption stands in (20%/month unless given). Any of the job's instances being interrupted stops
the job; each interruption loses half a checkpoint interval of work plus a restart, with every
instance billed meanwhile. The hours lost are added to the option's hours, and so to its cost.
"""

from __future__ import annotations

import math
from typing import Any

from ddlprof.advisor.catalog import Price
from ddlprof.errors import DdlprofError

CHECKPOINT_INTERVAL_MIN = 30.0
RESTART_MIN = 10.0
#: Monthly interruption chance assumed where the catalog has no bucket (GCP publishes none).
UNPUBLISHED_INTERRUPTION_PCT = 20.0
HOURS_PER_MONTH = 730.0
#: AWS Spot Instance Advisor buckets -> monthly interruption chance used (%): the upper edge.
BUCKET_PCT = {"<5%": 5.0, "5-10%": 10.0, "10-15%": 15.0, "15-20%": 20.0, ">20%": 30.0}


def hourly_interruption_rate(monthly_pct: float) -> float:
    """Interruptions per instance-hour for a ``monthly_pct`` % chance of one within a month (730 h),
    at a constant rate: -ln(1 - p) / 730."""
    if not 0 <= monthly_pct < 100:
        raise DdlprofError(f"a monthly interruption chance must be in [0, 100) %, got {monthly_pct:g}")
    return -math.log1p(-monthly_pct / 100) / HOURS_PER_MONTH


def interruption_overhead(
    compute_hours: float,
    instances: int,
    monthly_pct: float,
    checkpoint_interval_min: float = CHECKPOINT_INTERVAL_MIN,
    restart_min: float = RESTART_MIN,
) -> dict[str, float]:
    """The expected time a spot job loses to interruptions (first order).

    Any of the ``instances`` being interrupted stops the job: interruptions = instances x rate x
    ``compute_hours``. Each loses the work since the last checkpoint (half an interval on average)
    and a restart; every instance is billed meanwhile. Writing the checkpoints is not counted, nor
    the time the extra hours are themselves exposed (second order).
    """
    if checkpoint_interval_min < 0 or restart_min < 0 or compute_hours < 0 or instances < 1:
        raise DdlprofError("checkpoint interval, restart time and hours must be >= 0, instances >= 1")
    expected = instances * hourly_interruption_rate(monthly_pct) * compute_hours
    lost = (checkpoint_interval_min / 2 + restart_min) / 60
    return {
        "monthly_pct": monthly_pct,
        "expected_interruptions": expected,
        "hours_lost_per_interruption": lost,
        "overhead_hours": expected * lost,
    }


def interruption_for(
    price: Price,
    count: int,
    compute_hours: float,
    checkpoint_interval_min: float,
    restart_min: float,
    unpublished_pct: float,
) -> dict[str, Any]:
    """The interruption overhead of ``count`` spot instances at ``price`` over ``compute_hours``, with
    where its monthly chance comes from: the catalog's bucket, else ``unpublished_pct`` assumed."""
    bucket = price.spot_interruption
    if bucket is not None:
        pct = BUCKET_PCT[bucket]
        source = (
            f"catalog: Spot Instance Advisor bucket {bucket} ({price.source_date}), read as a {pct:g}% "
            "chance per instance per month (the bucket's upper edge"
            + ("; 30% assumed for '>20%')" if bucket == ">20%" else ")")
        )
    else:
        pct = unpublished_pct
        why = (
            "GCP publishes no interruption rate"
            if price.cloud == "gcp"
            else "no bucket in the catalog snapshot"
        )
        source = f"assumed: {pct:g}% chance per instance per month ({why}; --spot-interruption-pct)"
    overhead = interruption_overhead(compute_hours, count, pct, checkpoint_interval_min, restart_min)
    return {"bucket": bucket, "assumed": bucket is None, **overhead, "source": source}
