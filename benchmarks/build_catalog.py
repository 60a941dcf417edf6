"""Rebuild the shipped catalog's new figures (issue 15) from fetched public sources.

Reads the current ``ddlprof/advisor/catalog/data/{instances,prices}.csv`` and writes them back with:

- AWS: p5.4xlarge, p5e.48xlarge, p5en.48xlarge and p6-b200.48xlarge added; spot prices (lowest
  availability-zone price per region, ``spot_min``) and Spot Instance Advisor interruption buckets
  (``pct_interrupt``) for every catalog type from the vantage-sh (instances.vantage.sh) dump committed in
  tsaol/aws-gpu@2d0108c7 (commit date 2025-11-30); regions where that dump has a spot price join the
  type's regions. On-demand prices already in the catalog (2026-08-26) are kept; new types take theirs
  from tsaol/aws-gpu@299375be (2026-08-26).
- GCP: on-demand and spot prices of the A2, A3 and G2 types from Cyclenerd's pricing.yml at commit
  fd66b26 (generated 2026-07-30); a2-megagpu-16g and a3-highgpu-1g/2g/4g added. network_gbps of every
  GCP type: ``gcp_network_figure`` (A2 and G2 per machine type from Cyclenerd's transcription of Google's
  tables, A3 8-GPU types, A3 Ultra and A4 from Google's overview table, A3 High with 1 to 4 GPUs from a
  dated NVIDIA/aicr issue comment) with one note naming the source, else empty with a note saying why;
  older network notes are replaced, not added to. The notes of the new AWS types are rewritten likewise.
- a3-ultragpu-8g (8 x H200) and a4-highgpu-8g (8 x B200) added (vCPUs and memory from SkyPilot's catalog);
  a3-ultragpu-8g priced from ``gcp_a3ultra_tanod_20261013.json`` (the instance price is 8 x the dataset's
  per-GPU share); a4-highgpu-8g unpriced (no dated source found). p5e.48xlarge stays unpriced: AWS
  publishes no on-demand price for it (it sells it through EC2 Capacity Blocks, a reservation, which the
  advisor does not rank as if it were on demand).

A row's ``source`` names every source of its figures with their dates; ``source_date`` is the date of its
on-demand price (of its spot price where it has none), ``spot_source_date`` that of its spot price and
interruption bucket. The script reads its own earlier output (the on-demand part of a row's source is
its first ``" | "`` part), so running it again gives the same files. ``--aws-raw``/``--aws-od`` and
``--gcp-pricing`` are each optional: without them the rows from those sources are kept as they are (the
network notes, the transcribed files below and the new types are applied either way). Usage (after
fetching the sources)::

    git -C /work/.mirror/tsaol+aws-gpu/repo show 2d0108c7:data/gpu_instances_raw.json > aws_raw.json
    git -C <Cyclenerd/google-cloud-pricing-cost-calculator clone> show fd66b26:pricing.yml > gcp.yml
    python benchmarks/build_catalog.py --aws-raw aws_raw.json \\
        --aws-od benchmarks/catalog_sources/aws_od_299375be.json --gcp-pricing gcp.yml

``aws_od_299375be.json`` holds the ``pricing`` maps of tsaol/aws-gpu@299375be
data/{p5,p5en,p6-b200,p5e}_instances.js as ``{type: {"onDemand": {region: usd}}}``; the other files of
benchmarks/catalog_sources/ say in their ``_source`` where and how they were read.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

import yaml

DATA = Path(__file__).resolve().parents[1] / "ddlprof" / "advisor" / "catalog" / "data"

AWS_RAW = "https://github.com/tsaol/aws-gpu/blob/2d0108c7bd261c8e40493fbd35135437bd6c9099/data/gpu_instances_raw.json"
AWS_RAW_DATE = "2025-11-30"
AWS_OD = "https://github.com/tsaol/aws-gpu/blob/299375be7a2b940b53b3d80ec79fd66ee688f4fa/{file}"
AWS_OD_DATE = "2026-08-26"
GCP_PRICING = (
    "https://github.com/Cyclenerd/google-cloud-pricing-cost-calculator/blob/"
    "fd66b26ff84fee5cdd94f341ea89206e76c06b99/pricing.yml"
)
GCP_PRICING_DATE = "2026-07-30"
SKYPILOT_GCP = (
    "https://github.com/skypilot-org/skypilot-catalog/blob/006059e0f18acb1341e22a27751e9f80df6ba92f/"
    "catalogs/v8/gcp/vms.csv"
)
GCP_NET = "https://cloud.google.com/compute/docs/gpus/gpu-network-bandwidth"
CYCLENERD_TYPES = (
    "https://github.com/Cyclenerd/google-cloud-compute-machine-types/blob/"
    "6df0dc708acd757a325024ea0508e1b32850533d/instances/series/{series}.sql"
)
CYCLENERD_TYPES_DATE = "2026-03-22"  # commit date of 6df0dc7, the version read
SOURCES = Path(__file__).resolve().parent / "catalog_sources"
A3_ULTRA_PRICES = SOURCES / "gcp_a3ultra_tanod_20261013.json"
AWS_EFA_DOC = "https://github.com/tsaol/aws-gpu/blob/299375be7a2b940b53b3d80ec79fd66ee688f4fa/{file}"


# Regions excluded from AWS rows: GovCloud (separate partition) and Local Zones (not a region).
def _aws_region_ok(region: str) -> bool:
    return not region.startswith("us-gov-") and region.count("-") == 2


NEW_AWS = [
    # instance_type, gpu, count, memory/GPU, vcpus, ram GiB, link, link GB/s, network, efa, file, notes
    (
        "p5.4xlarge",
        "H100",
        1,
        80,
        16,
        256,
        "none (1 GPU)",
        "",
        "100",
        "true",
        "data/p5_instances.js",
        "network '100 Gigabit' and efa from the vantage dump (" + AWS_RAW + "); ram_gb is GiB",
    ),
    (
        "p5e.48xlarge",
        "H200",
        8,
        141,
        192,
        2048,
        "NVSwitch NVLink 4",
        "900",
        "3200",
        "true",
        "data/p5e_instances.js",
        "'3200 Gbps EFAv2', '900 GB/s NVSwitch' in the source; generation 'preview' there and no price in "
        "either AWS source (AWS sells p5e through EC2 Capacity Blocks, a reservation): listed unpriced, no "
        "on-demand or spot price (catalog.json 'missing' says why)",
    ),
    (
        "p5en.48xlarge",
        "H200",
        8,
        141,
        192,
        2048,
        "NVSwitch NVLink 4",
        "900",
        "3200",
        "true",
        "data/p5en_instances.js",
        "'3200 Gbps EFAv3', '900 GB/s NVSwitch' in the source; 1128 GB = 8 x 141",
    ),
    (
        "p6-b200.48xlarge",
        "B200",
        8,
        179,
        192,
        2048,
        "NVSwitch NVLink 5",
        "1800",
        "3200",
        "true",
        "data/p6-b200_instances.js",
        "'3200 Gbps EFAv4', '1800 GB/s NVLink' in the source; gpu_memory_gb = the source's 1432 GB / 8",
    ),
]

NEW_GCP = [
    # instance_type, gpu, count, memory/GPU, link, link GB/s, regions (where the type is offered)
    (
        "a2-megagpu-16g",
        "A100-40GB",
        16,
        40,
        "NVSwitch NVLink 3",
        "600",
        ["asia-southeast1", "europe-west4", "us-central1"],
    ),
    ("a3-highgpu-1g", "H100", 1, 80, "none (1 GPU)", "", None),
    ("a3-highgpu-2g", "H100", 2, 80, "NVSwitch NVLink 4", "900", None),
    ("a3-highgpu-4g", "H100", 4, 80, "NVSwitch NVLink 4", "900", None),
    ("a3-megagpu-8g", "H100", 8, 80, "NVSwitch NVLink 4", "900", None),
]
# GCP types that no price file lists with vCPUs and memory: (vCPUs, memory GiB) from SkyPilot's catalog
# (SKYPILOT_GCP rows of the type), GPU memory from gpu_specs.csv, the link from the GPU's NVLink generation.
NEW_GCP_SPECS = [
    # instance_type, gpu, count, memory/GPU, vcpus, ram, link, link GB/s
    ("a3-ultragpu-8g", "H200", 8, 141, 224, 2952, "NVSwitch NVLink 4", "900"),
    ("a4-highgpu-8g", "B200", 8, 179, 224, 3968, "NVSwitch NVLink 5", "1800"),
]
# Regions where SkyPilot's GCP catalog lists a3-highgpu-1g (zones with the type): used for 1g/2g/4g.
A3_SMALL_REGIONS = [
    "asia-east1",
    "asia-northeast1",
    "asia-south1",
    "asia-south2",
    "asia-southeast1",
    "australia-southeast1",
    "europe-north1",
    "europe-west1",
    "europe-west3",
    "europe-west4",
    "europe-west8",
    "europe-west9",
    "us-central1",
    "us-east4",
    "us-east5",
    "us-west1",
    "us-west4",
]


# GCP types Google sells only as Spot or Flex-start VMs: their on-demand list price (built from SKUs)
# cannot be bought, so it is not shipped; the spot price is.
SPOT_FLEX_ONLY_GCP = ("a3-highgpu-1g", "a3-highgpu-2g", "a3-highgpu-4g")
SPOT_FLEX_ONLY_NOTE = (
    "no on-demand price: Google sells a3-highgpu-1g/2g/4g as Spot or Flex-start VMs only "
    "(https://github.com/tgarg01/silybench-data/blob/045df3bf56b8d62c58f108fc43cb397306b83331/derived/csv/"
    "gpu_prices.csv, checked 2026-09-26: '1g/2g/4g shapes are Spot/Flex-start only', from Google's "
    "Cloud Billing catalog and https://docs.cloud.google.com/compute/docs/gpus)"
)


def spot_flex_only(rows: list[dict]) -> list[dict]:
    """The rows of SPOT_FLEX_ONLY_GCP without an on-demand price, saying why (idempotent); a row left
    with no price at all is dropped."""
    kept = []
    for row in rows:
        if row["cloud"] == "gcp" and row["instance_type"] in SPOT_FLEX_ONLY_GCP:
            row = {**row, "on_demand_usd_per_hour": ""}
            if SPOT_FLEX_ONLY_NOTE not in row["source"]:
                row["source"] = f"{row['source']} | {SPOT_FLEX_ONLY_NOTE}"
            if not row["spot_usd_per_hour"]:
                continue
        kept.append(row)
    return kept


def _fmt(value: float) -> str:
    return f"{value:.10f}".rstrip("0").rstrip(".")


def read(name: str) -> tuple[list[str], list[dict]]:
    with (DATA / name).open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def write(name: str, header: list[str], rows: list[dict]) -> None:
    with (DATA / name).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


_OD_PART = re.compile(r"^(?P<url>.*) \(on-demand, (?P<date>\d{4}-\d\d-\d\d)\)$")


def on_demand_source(row: dict) -> tuple[str, str]:
    """(source, date) of a row's on-demand price: the first part of a source this script wrote (so a
    rebuild from its own output cites what it cited), else the whole source of an older row."""
    match = _OD_PART.match(row["source"].split(" | ")[0])
    return (match["url"], match["date"]) if match else (row["source"], row["source_date"])


def aws_rows(prices: list[dict], raw: list[dict], od: dict) -> list[dict]:
    by_type = {item["instance_type"]: item["pricing"] for item in raw}
    existing = {(r["instance_type"], r["region"]): r for r in prices if r["cloud"] == "aws"}
    names = list(dict.fromkeys([r["instance_type"] for r in prices if r["cloud"] == "aws"]))
    names += [n[0] for n in NEW_AWS if n[0] not in names]
    rows = []
    for name in names:
        linux = {r: v["linux"] for r, v in by_type.get(name, {}).items() if "linux" in v}
        new_od = {r: p for r, p in od.get(name, {}).get("onDemand", {}).items() if _aws_region_ok(r)}
        regions = {r for (n, r) in existing if n == name} | set(new_od)
        regions |= {r for r, v in linux.items() if v.get("spot_min") and _aws_region_ok(r)}
        for region in sorted(regions):
            old = existing.get((name, region))
            parts, od_date = [], ""
            on_demand = ""
            if old and old["on_demand_usd_per_hour"]:
                on_demand = old["on_demand_usd_per_hour"]
                url, od_date = on_demand_source(old)
                parts.append(f"{url} (on-demand, {od_date})")
            elif region in new_od:
                on_demand = _fmt(new_od[region])
                parts.append(f"{AWS_OD.format(file=od[name]['file'])} (on-demand, {AWS_OD_DATE})")
                od_date = AWS_OD_DATE
            elif linux.get(region, {}).get("ondemand"):
                on_demand = _fmt(float(linux[region]["ondemand"]))
                parts.append(f"{AWS_RAW} (on-demand, {AWS_RAW_DATE})")
                od_date = AWS_RAW_DATE
            cell = linux.get(region, {})
            spot = _fmt(float(cell["spot_min"])) if cell.get("spot_min") else ""
            bucket = cell.get("pct_interrupt", "") or ""
            if spot and not bucket:
                spot = ""  # a spot price without an interruption bucket is not shipped (see catalog.json)
            if spot or bucket:
                said = []
                if spot:
                    said.append(
                        f"spot = lowest availability-zone Linux price (spot_min {cell['spot_min']}, "
                        f"spot_avg {cell.get('spot_avg')}, spot_max {cell.get('spot_max')}; zone count not "
                        "given)"
                    )
                if bucket:
                    said.append(f"interruption = Spot Instance Advisor bucket (pct_interrupt {bucket})")
                parts.append(f"{AWS_RAW} ({'; '.join(said)}; {AWS_RAW_DATE}, vantage-sh data)")
            if not parts:
                continue
            rows.append(
                {
                    "cloud": "aws",
                    "instance_type": name,
                    "region": region,
                    "on_demand_usd_per_hour": on_demand,
                    "spot_usd_per_hour": spot,
                    "spot_interruption": bucket,
                    "source": " | ".join(parts),
                    "source_date": od_date or AWS_RAW_DATE,
                    "spot_source_date": AWS_RAW_DATE if spot or bucket else "",
                }
            )
    return rows


def gcp_rows(prices: list[dict], pricing: dict) -> list[dict]:
    instances = pricing["compute"]["instance"]
    regions: dict[str, list[str]] = {}
    kept = []
    for row in prices:
        if row["cloud"] != "gcp" or row["instance_type"] in {n[0] for n in NEW_GCP_SPECS}:
            continue  # the new types' rows come from a3_ultra_rows
        if row["instance_type"].startswith("n1-"):
            # N1 + GPU: Cyclenerd's file has no attachable-GPU SKUs; keep as it was
            has_spot = row["spot_usd_per_hour"] or row["spot_interruption"]
            kept.append(
                {
                    **row,
                    "spot_source_date": row.get("spot_source_date")
                    or (row["source_date"] if has_spot else ""),
                }
            )
            continue
        regions.setdefault(row["instance_type"], []).append(row["region"])
    for name, _gpu, _n, _mem, _link, _gbps, where in NEW_GCP:
        regions[name] = where or A3_SMALL_REGIONS
    # a3-megagpu-8g: the pricing file itself lists it in its 9 regions only (not in all 40 like the others)
    regions["a3-megagpu-8g"] = sorted(instances["a3-megagpu-8g"]["cost"])
    rows = []
    for name, where in regions.items():
        cost = instances[name]["cost"]
        for region in sorted(where):
            if region not in cost:
                continue
            hour = cost[region].get("hour")
            spot = cost[region].get("hour_spot")
            source = f"{GCP_PRICING} ({GCP_PRICING_DATE}, 'generated: Thu Jul 30 06:13:17 2026')"
            if name in {n[0] for n in NEW_GCP} and name != "a3-megagpu-8g":
                source += f" | {SKYPILOT_GCP} (region list only: zones listing the type)"
            rows.append(
                {
                    "cloud": "gcp",
                    "instance_type": name,
                    "region": region,
                    "on_demand_usd_per_hour": _fmt(hour) if hour else "",
                    "spot_usd_per_hour": _fmt(spot) if spot else "",
                    "spot_interruption": "",
                    "source": source,
                    "source_date": GCP_PRICING_DATE,
                    "spot_source_date": GCP_PRICING_DATE if spot else "",
                }
            )
    return rows + kept


# What the notes of a GCP type say about its network bandwidth: one statement, rewritten on every run
# (the older forms this script wrote are matched too, so they are replaced rather than added to).
_NET_NOTE = re.compile(
    r"network_gbps (\d+: [^;]*? \(source: [^)]*\)"
    r"|\d+: [^;\[]*\[[^\]]*\]"
    r"|\d+: [^;]*; '[^']*' in the overview table of \S+ \(stored copy, undated\)"
    r"|not established[^;]*)(; |$)"
)
# Google's overview table (GCP_NET): one figure per series; per machine type where the series has one type.
_OVERVIEW = f"{GCP_NET} overview table, stored copy, undated"
GCP_NET_8G = {
    name: (gbps, f"{tech}, '{series} ... {gbps[:-3]},{gbps[-3:]} Gbps' in Google's overview table", _OVERVIEW)
    for name, gbps, tech, series in (
        ("a3-highgpu-8g", "1000", "GPUDirect-TCPX", "A3 High"),
        ("a3-megagpu-8g", "1800", "GPUDirect-TCPXO", "A3 Mega"),
        ("a3-ultragpu-8g", "3600", "GPUDirect RDMA", "A3 Ultra"),
        ("a4-highgpu-8g", "3600", "GPUDirect RDMA", "A4"),
    )
}
# The single-NIC A3 High types (1 to 4 GPUs): Google's per-type table is in no stored copy found; the one
# dated public statement of the per-type figures is a comparison table in an NVIDIA/aicr issue comment
# ("A3 High scales NIC bandwidth 25 / 50 / 100 / 1000 Gbps for 1/2/4/8 GPUs"), a secondary source that
# names no page; its 8-GPU figure (1000) is the one of Google's overview table above.
AICR_A3 = "https://github.com/NVIDIA/aicr/issues/1256"
AICR_A3_DATE = "2026-06-09"  # date of the comment (yuanchen8911, 'Reference: H100 SKUs and fabric classes')
A3_SMALL_NET = {"1g": "25", "2g": "50", "4g": "100"}
# Cyclenerd's transcription of Google's A2 and G2 machine-type tables (bandwidth column, Gbps).
A2_NET = {"1g": "24", "2g": "32", "4g": "50", "8g": "100", "16g": "100"}
G2_NET = {"4": "10", "8": "16", "12": "16", "16": "32", "24": "32", "32": "32", "48": "50", "96": "100"}
GCP_NET_MISSING = {
    "n1": (
        "network_gbps not established: Google gives N1 + T4/V100 'up to 100 Gbps, based on the "
        f"combination of GPU and vCPU count' ({GCP_NET}), but the table of that rule is not in any stored "
        f"copy found, and the per-vCPU N1 figures of {CYCLENERD_TYPES.format(series='n1')} are for N1 "
        "without GPUs"
    ),
}


def gcp_network_figure(name: str) -> tuple[str, str, str] | str:
    """(Gbit/s, what the source says, source) of a GCP type's maximum network bandwidth, or why none."""
    if name in GCP_NET_8G:
        return GCP_NET_8G[name]
    series, _, size = name.rpartition("-")
    if name.startswith("a2-") and size in A2_NET:
        where = f"{CYCLENERD_TYPES.format(series='a2')}, {CYCLENERD_TYPES_DATE}, from Google's A2 table"
        return A2_NET[size], f"A2 {size} types (Cyclenerd a2.sql 'a2-%-{size}')", where
    if series == "g2-standard" and size in G2_NET:
        where = f"{CYCLENERD_TYPES.format(series='g2')}, {CYCLENERD_TYPES_DATE}, from Google's G2 table"
        return G2_NET[size], f"Cyclenerd g2.sql '{name}'", where
    if series == "a3-highgpu" and size in A3_SMALL_NET:
        why = (
            f"single-NIC A3 High, 'A3 High scales NIC bandwidth 25 / 50 / 100 / 1000 Gbps for 1/2/4/8 GPUs' "
            "in a comparison table of an NVIDIA/aicr issue comment (a secondary source naming no page, used "
            "as Google's per-type table is in no stored copy found and "
            f"{CYCLENERD_TYPES.format(series='a3')} has only an A3-wide default, 200)"
        )
        return A3_SMALL_NET[size], why, f"{AICR_A3}, comment of {AICR_A3_DATE}"
    if name.startswith("n1-"):
        return GCP_NET_MISSING["n1"]
    return f"network_gbps not established: no source found for {name}"


def gcp_network(row: dict) -> dict:
    """The row with its network_gbps and one note saying where the figure is from, or that it is not."""
    notes = _NET_NOTE.sub("", row["notes"]).strip().removesuffix(";").strip()
    figure = gcp_network_figure(row["instance_type"])
    if isinstance(figure, tuple):
        gbps, why, where = figure
        # no ';' (the notes' separator) and no ')' in the source, or _NET_NOTE could not replace the note
        assert ";" not in why + where and ")" not in where, (row["instance_type"], why, where)
        said = f"network_gbps {gbps}: {why} (source: {where})"
        row = {**row, "network_gbps": gbps, "network_up_to": "false"}
    else:
        said = figure
        row = {**row, "network_gbps": "", "network_up_to": ""}
    return {**row, "notes": "; ".join(part for part in (said, notes) if part)}


def _gcp_instance(name, gpu, n, mem, vcpus, ram, link, gbps, source, date, said) -> dict:
    row = {
        "cloud": "gcp",
        "instance_type": name,
        "gpu": gpu,
        "gpu_count": str(n),
        "gpu_memory_gb": str(mem),
        "vcpus": str(vcpus),
        "ram_gb": str(ram),
        "gpu_link": link,
        "gpu_link_gbps": gbps,
        "network_gbps": "",
        "network_up_to": "",
        "efa": "",
        "source": source,
        "source_date": date,
        "notes": f"{said}; efa not applicable (AWS only)",
    }
    return gcp_network(row)


def _aws_new_notes(notes: str) -> str:
    return notes + (
        "; gpu_link_gbps = per-GPU NVLink of the GPU (gpu_specs.csv); efa true: the source lists EFA / "
        "gpuDirectRDMA"
    )


def instance_rows(header: list[str], rows: list[dict], pricing: dict | None) -> list[dict]:
    names = {r["instance_type"] for r in rows}
    new_aws_notes = {n[0]: _aws_new_notes(n[-1]) for n in NEW_AWS}
    out = []
    for row in rows:
        if row["cloud"] == "gcp":
            row = gcp_network(row)
        if row["instance_type"] in new_aws_notes:  # this script's own notes: rewritten, not kept
            row = {**row, "notes": new_aws_notes[row["instance_type"]]}
        out.append(row)
        if row["instance_type"] == "p5.48xlarge":
            for name, gpu, n, mem, vcpus, ram, link, gbps, net, efa, file, notes in NEW_AWS:
                if name not in names:
                    out.append(
                        {
                            "cloud": "aws",
                            "instance_type": name,
                            "gpu": gpu,
                            "gpu_count": str(n),
                            "gpu_memory_gb": str(mem),
                            "vcpus": str(vcpus),
                            "ram_gb": str(ram),
                            "gpu_link": link,
                            "gpu_link_gbps": gbps,
                            "network_gbps": net,
                            "network_up_to": "false",
                            "efa": efa,
                            "source": AWS_OD.format(file=file),
                            "source_date": AWS_OD_DATE,
                            "notes": _aws_new_notes(notes),
                        }
                    )
        if row["instance_type"] == "a3-highgpu-8g":
            for name, gpu, n, mem, link, gbps, _where in NEW_GCP:
                if name in names:
                    continue
                spec = pricing["compute"]["instance"][name]  # new types need the pricing source
                said = "vcpus, ram_gb (GB) and GPU count from the pricing source"
                out.append(
                    _gcp_instance(
                        name,
                        gpu,
                        n,
                        mem,
                        spec["cpu"],
                        _fmt(spec["ram"]),
                        link,
                        gbps,
                        GCP_PRICING,
                        GCP_PRICING_DATE,
                        said,
                    )
                )
        if row["instance_type"] == "a3-megagpu-8g":
            for name, gpu, n, mem, vcpus, ram, link, gbps in NEW_GCP_SPECS:
                if name in names:
                    continue
                said = (
                    f"vcpus and ram_gb from {SKYPILOT_GCP} (its vCPUs and MemoryGiB of the type); "
                    "gpu_memory_gb and gpu_link_gbps from ddlprof/models/data/gpu_specs.csv"
                )
                out.append(_gcp_instance(name, gpu, n, mem, vcpus, ram, link, gbps, SKYPILOT_GCP, "", said))
    return out


def a3_ultra_rows() -> list[dict]:
    """a3-ultragpu-8g prices: 8 x the per-GPU instance share of the transcribed dataset rows."""
    data = json.loads(A3_ULTRA_PRICES.read_text())
    rows = []
    for region, cell in sorted(data["a3-ultragpu-8g"].items()):
        od, spot = cell["od_per_gpu_h"], cell["spot_per_gpu_h"]
        said = [f"{k} {v}" for k, v in (("od_per_gpu_h", od), ("spot_per_gpu_h", spot)) if v is not None]
        source = (
            f"{data['url']} ({data['date']} snapshot, from the Google Cloud Billing Catalog API; "
            f"{', '.join(said)}, basis instance_share: instance price = 8 x the per-GPU figure, which the "
            "dataset rounds to 4 decimals, so +-0.0004 $/h; transcribed in "
            f"benchmarks/catalog_sources/{A3_ULTRA_PRICES.name})"
        )
        rows.append(
            {
                "cloud": "gcp",
                "instance_type": "a3-ultragpu-8g",
                "region": region,
                "on_demand_usd_per_hour": _fmt(8 * od) if od is not None else "",
                "spot_usd_per_hour": _fmt(8 * spot) if spot is not None else "",
                "spot_interruption": "",
                "source": source,
                "source_date": data["date"],
                "spot_source_date": data["date"] if spot is not None else "",
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--aws-raw", type=Path, help="without it (and --aws-od) AWS rows are kept")
    parser.add_argument("--aws-od", type=Path)
    parser.add_argument("--gcp-pricing", type=Path, help="without it GCP rows are kept")
    args = parser.parse_args()
    if (args.aws_raw is None) != (args.aws_od is None):
        parser.error("--aws-raw and --aws-od go together")
    pricing = yaml.safe_load(args.gcp_pricing.read_text()) if args.gcp_pricing else None

    header, instances = read("instances.csv")
    instances = instance_rows(header, instances, pricing)
    write("instances.csv", header, instances)

    price_header, prices = read("prices.csv")
    if "spot_source_date" not in price_header:
        price_header.append("spot_source_date")
    if args.aws_raw:
        aws = aws_rows(prices, json.loads(args.aws_raw.read_text()), json.loads(args.aws_od.read_text()))
    else:
        aws = [r for r in prices if r["cloud"] == "aws"]
    gcp = spot_flex_only(gcp_rows(prices, pricing) if pricing else [r for r in prices if r["cloud"] == "gcp"])
    added = a3_ultra_rows()
    replaced = {(r["instance_type"], r["region"]) for r in added}
    rows = [r for r in aws + gcp if (r["instance_type"], r["region"]) not in replaced] + added
    order = {r["instance_type"]: i for i, r in enumerate(instances)}
    rows.sort(key=lambda r: (order[r["instance_type"]], r["region"]))
    write("prices.csv", price_header, rows)


if __name__ == "__main__":
    main()
