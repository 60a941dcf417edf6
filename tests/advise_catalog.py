"""What the advise tests share: the shipped catalog with rows of their own, the price rows they add,
and ``ddlprof advise`` run as a function or as the command."""

from __future__ import annotations

import csv
import io
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from ddlprof.advisor import workloads
from ddlprof.advisor.catalog import DATA_DIR
from ddlprof.advisor.options import Advice, AdviseRequest
from ddlprof.advisor.ranking import advise
from ddlprof.cli import main

RESNET50 = workloads.resolve_workload("resnet50", None, None, None)


def p4d_price(**changes: str) -> dict[str, str]:
    """A prices.csv row: aws p4d.24xlarge in us-east-1, on demand and spot, dated 2026-08-26."""
    return {
        "cloud": "aws",
        "instance_type": "p4d.24xlarge",
        "region": "us-east-1",
        "on_demand_usd_per_hour": "21.96",
        "spot_usd_per_hour": "9.5",
        "source": "test fixture",
        "source_date": "2026-08-26",
        **changes,
    }


def a2_price(**changes: str) -> dict[str, str]:
    """A prices.csv row: gcp a2-highgpu-1g in us-central1, on demand and spot, no interruption figure."""
    return {
        "cloud": "gcp",
        "instance_type": "a2-highgpu-1g",
        "region": "us-central1",
        "on_demand_usd_per_hour": "3.67",
        "spot_usd_per_hour": "1.1",
        "spot_interruption": "",
        "source": "test fixture",
        **changes,
    }


def catalog_with(tmp_path: Path, instances: list[dict] = (), prices: list[dict] = ()) -> Path:
    """A copy of the shipped catalog with extra (or replaced) instance and price rows."""
    out = tmp_path / "catalog"
    shutil.copytree(DATA_DIR, out)
    for name, extra, key in (
        ("instances.csv", instances, ("instance_type",)),
        ("prices.csv", prices, ("instance_type", "region")),
    ):
        with (out / name).open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header, rows = reader.fieldnames, list(reader)
        replaced = {tuple(r[k] for k in key) for r in extra}
        rows = [r for r in rows if tuple(r[k] for k in key) not in replaced] + [
            {c: r.get(c, "") for c in header} for r in extra
        ]
        with (out / name).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=header, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    return out


def advise_with(fitted, catalog=None, **kwargs) -> Advice:
    """``advise`` for resnet50 unless told otherwise, with the models ``fitted``."""
    kwargs.setdefault("model", "resnet50")
    kwargs.setdefault("workload", RESNET50)
    return advise(AdviseRequest(**kwargs), catalog=catalog, fitted=fitted)


def run_advise(*args: str) -> tuple[int, str, str]:
    """``ddlprof advise ARGS`` in this process: exit status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(["advise", *args])
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
    return code, out.getvalue(), err.getvalue()
