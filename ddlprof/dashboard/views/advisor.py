"""Advisor page: the ``ddlprof advise`` form, its ranked table and charts, and the launch spec.

The page calls ``ddlprof.advisor.ranking.advise_result`` (what ``ddlprof advise`` calls) and
``launch_spec`` (its ``--emit``), so the table holds the options of ``ddlprof advise --json`` for the
same input. The options picked below are kept in ``st.session_state[OPTIONS_KEY]`` as comparables
(``option_comparable``) for the Compare page.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from ddlprof import figures
from ddlprof.advisor.filters import MAX_NODES
from ddlprof.dashboard import shared
from ddlprof.errors import DdlprofError
from ddlprof.models.gpus import DEFAULT_PRECISION, PRECISIONS

#: Where the page keeps its last answer, and the options picked for the Compare page (comparables).
RESULT_KEY = "advisor_result"
OPTIONS_KEY = shared.ADVISOR_OPTIONS_KEY
SPOT = {"both": None, "spot only": True, "on-demand only": False}
CLOUDS = ("aws", "gcp")
#: The columns of the ranked table: fields of ``ddlprof advise --json``'s options, unchanged; the
#: over-budget and over-deadline columns only when an option has one. The rest of each option (GPUs,
#: price per instance-hour and its date, other regions) is in the prices table, so both fit the page.
COLUMNS = (
    "rank",
    "cloud",
    "instance_type",
    "count",
    "region",
    "spot",
    "gpu",
    "precision",
    "batch_per_gpu",
    "step_ms",
    "step_source",
    "throughput_samples_per_s",
    "hours",
    "total_cost_usd",
    "usd_per_million_samples",
    "error_pct",
    "within_error_of_top",
    "pareto",
    "over_budget_usd",
    "over_deadline_hours",
)
PRICE_COLUMNS = (
    "rank",
    "instance_type",
    "count",
    "world_size",
    "usd_per_instance_hour",
    "price_date",
    "other_regions",
)
NUMBER = st.column_config.NumberColumn


@st.cache_data(show_spinner=False)
def _known_models() -> list[str]:
    from ddlprof.models.dataset import known_models

    return known_models()


@st.cache_data(show_spinner=False, ttl=600)
def _regions() -> list[str]:
    from ddlprof.advisor.catalog import load_catalog

    catalog = load_catalog()
    return [region for cloud in CLOUDS for region in catalog.regions(cloud)]


def option_label(option: dict[str, Any]) -> str:
    pricing = "spot" if option["spot"] else "on-demand"
    return f"{option['count']} x {option['instance_type']} {option['region']} {pricing}"


def option_comparable(option: dict[str, Any], assumptions: dict[str, Any]) -> dict[str, Any]:
    """An option of ``ddlprof advise --json`` as an item of the Compare page (``data.comparable``'s shape):
    the predicted (or measured) step split into compute (the single-GPU step), interconnect and network
    stalls, and the price of all its instances per hour."""
    step = assumptions["step_time"]
    if option["step_source"] == "predicted":
        how = (
            f"predicted: {step['stall_model']} stall model (leave-one-model-out step error "
            f"{step['validation']['step_ms_mape_pct']:.1f}%)"
        )
    else:
        how = f"measured: {step['description']}"
    compute = option["single_gpu_step_ms"]
    stalls = option["interconnect_stall_ms"] + option["network_stall_ms"]
    return {
        "label": option_label(option),
        "kind": "option",
        "model": assumptions["model"],
        "source": f"{how}; prices: catalog snapshot {assumptions['catalog']['snapshot_date']} "
        f"(price {option['price_date']})",
        "step_ms": option["step_ms"],
        "compute_ms": compute,
        "data_stall_ms": None,
        "interconnect_stall_ms": option["interconnect_stall_ms"],
        "network_stall_ms": option["network_stall_ms"],
        "wait_for_peers_ms": None,  # the models predict the wire; waiting for a straggler is the job's
        "other_ms": max(option["step_ms"] - compute - stalls, 0.0),
        "throughput_samples_per_s": option["throughput_samples_per_s"],
        "usd_per_hour": round(option["usd_per_instance_hour"] * option["count"], 6),
        "usd_per_million_samples": option["usd_per_million_samples"],
    }


NO_RUN = "none: the model's measured step"


def _runs() -> dict[str, Any]:
    """The runs under the runs directory that summarise, by name, with their paths (``--run``)."""
    found, _ = shared.runs(shared.runs_root())
    return {run.name: run.path for run, result in found if "summary" in result}


def _form() -> dict[str, Any] | None:
    """The form; the keywords of ``advise_result`` when it was submitted."""
    models = _known_models()
    runs = _runs()
    with st.form("advisor_form"):
        run = st.selectbox(
            "Measured run (optional)",
            [NO_RUN, *runs],
            key="advisor_run",
            help="`ddlprof advise --run`: the run's measured step time, GPU, batch and DDP workload, scaled "
            "to each instance (a GPU run; the model below names its workload, or type the run's own)",
        )
        left, middle, right = st.columns(3)
        model = left.selectbox(
            "Model",
            models,
            index=models.index("resnet50") if "resnet50" in models else 0,
            accept_new_options=True,
            key="advisor_model",
            help="one of the measured models, or type another name",
        )
        batch = left.number_input(
            "Batch per GPU",
            min_value=1,
            value=None,
            step=1,
            key="advisor_batch",
            help="empty: the largest power of two that fits each GPU's memory",
        )
        precision = left.selectbox(
            "Precision",
            list(PRECISIONS),
            index=PRECISIONS.index(DEFAULT_PRECISION),
            key="advisor_precision",
            help="amp: autocast to bf16 where the GPU has it, else fp16 (what most training runs at)",
        )
        max_nodes = left.number_input(
            "Max nodes", min_value=1, max_value=MAX_NODES, value=4, step=1, key="advisor_max_nodes"
        )
        samples = middle.text_input(
            "Samples per epoch",
            key="advisor_samples",
            help="empty: the model's default dataset (ImageNet-1k for the ImageNet models); 1.2M, 50k...",
        )
        budget = middle.number_input(
            "Budget USD", min_value=0.0, value=None, step=10.0, key="advisor_budget", help="empty: none"
        )
        deadline = middle.number_input(
            "Deadline hours", min_value=0.0, value=None, step=1.0, key="advisor_deadline", help="empty: none"
        )
        spot = middle.radio("Spot", list(SPOT), horizontal=True, key="advisor_spot")
        clouds = right.multiselect("Clouds", CLOUDS, default=list(CLOUDS), key="advisor_clouds")
        regions = right.multiselect("Regions", _regions(), key="advisor_regions", placeholder="all regions")
        submitted = st.form_submit_button("Advise", type="primary", key="advisor_submit")
    if not submitted:
        return None
    return {
        "run": None if run == NO_RUN else runs[run],
        "samples": samples.strip() or None,
        "model": (model or "").strip() or None,
        "batch_per_gpu": None if batch is None else int(batch),
        "precision": precision,
        "budget": budget,
        "deadline": deadline,
        "clouds": list(clouds) or None,
        "regions": list(regions) or None,
        "spot": SPOT[spot],
        "max_nodes": int(max_nodes),
    }


def _advise(keywords: dict[str, Any]) -> dict[str, Any]:
    from ddlprof.advisor.ranking import advise_result
    from ddlprof.advisor.render import launch_spec

    try:
        advice, result = advise_result(**keywords)
    except DdlprofError as exc:
        return {"error": str(exc), "keywords": keywords}
    specs = {}
    for emit in ("torchrun", "skypilot"):
        try:
            specs[emit] = launch_spec(advice, result, emit)
        except DdlprofError:
            specs[emit] = None
    return {"result": result, "specs": specs, "keywords": keywords}


def _joined(values: Any) -> str:
    """An excluded group's regions, counts or pricing ("all", or the list)."""
    if isinstance(values, str):
        return values
    return ", ".join(("spot" if v else "on-demand") if isinstance(v, bool) else str(v) for v in values)


def _show(answer: dict[str, Any]) -> None:
    result = answer["result"]
    options = result["options"]
    for warning in result["warnings"]:
        st.warning(warning)
    if not options:
        st.session_state[OPTIONS_KEY] = []
        st.warning(result["top_choice"])
    elif not result["met_constraints"]:
        st.warning(result["top_choice"])
    else:
        st.success(f"**Top choice:** {result['top_choice']}")
    if options:
        frame = pd.DataFrame(options)
        shown = [c for c in COLUMNS if not c.startswith("over_") or (c in frame and frame[c].notna().any())]
        shared.table(
            frame.reindex(columns=shown),
            key="advisor_table",
            column_config={
                "instance_type": st.column_config.TextColumn("instance"),
                "count": NUMBER("n", help="instances"),
                "batch_per_gpu": NUMBER("batch/GPU"),
                "step_source": st.column_config.TextColumn("step is"),
                "total_cost_usd": NUMBER("total $", format="%.2f"),
                "usd_per_million_samples": NUMBER("$/1M samples", format="%.3f"),
                "throughput_samples_per_s": NUMBER("samples/s", format="%.0f"),
                "hours": NUMBER(format="%.1f"),
                "step_ms": NUMBER("step ms", format="%.1f"),
                "over_budget_usd": NUMBER("over budget $", format="%.2f"),
                "over_deadline_hours": NUMBER("over deadline h", format="%.1f"),
                "pareto": st.column_config.CheckboxColumn("Pareto"),
                "error_pct": NUMBER("± step %", format="%.1f"),
                "within_error_of_top": st.column_config.CheckboxColumn(
                    "≈ top",
                    help="cost per sample within the error of the top choice: the ranking among "
                    "them is not certain",
                ),
            },
        )
        shared.table(
            frame.reindex(columns=list(PRICE_COLUMNS)),
            key="advisor_prices",
            column_config={
                "instance_type": st.column_config.TextColumn("instance"),
                "count": NUMBER("n", help="instances"),
                "world_size": NUMBER("GPUs"),
                "usd_per_instance_hour": NUMBER("$ per instance-hour", format="%.3f"),
                "price_date": st.column_config.TextColumn("price date"),
                "other_regions": NUMBER(
                    "other regions",
                    help="regions of the same instance, count and pricing left out (as dear or dearer, or "
                    "slower): `ddlprof advise --all-regions` lists them",
                ),
            },
        )
        assumptions = result["assumptions"]
        step = assumptions["step_time"]
        st.caption(
            f"{assumptions['model']}, batch per GPU {assumptions['batch_per_gpu_choice']}, precision "
            f"{step['precision']} ({step['precision_meaning']}), "
            f"{assumptions['workload']['total_samples']:,.0f} samples ({assumptions['workload']['source']}); "
            f"step times: {step['stall_model']} stall model, CV step error "
            f"{step['validation']['step_ms_mape_pct']:.1f}%; prices: catalog snapshot "
            f"{assumptions['catalog']['snapshot_date']}. Pareto (table, as `ddlprof advise` marks it): no "
            "other option takes fewer hours for less total cost. The chart's frontier is per hour "
            "(throughput against cost per hour), so it can hold other options than the table's."
        )
        items = [option_comparable(o, assumptions) for o in options]
        left, right = st.columns(2)
        left.plotly_chart(figures.cost_throughput_scatter(items), key="advisor_scatter")
        right.plotly_chart(figures.cost_per_million_bars(items), key="advisor_cost_bars")
        labels = [item["label"] for item in items]
        picked = st.multiselect(
            "Options to compare (Compare page)", labels, default=labels[:3], key="advisor_picked"
        )
        st.session_state[OPTIONS_KEY] = [item for item in items if item["label"] in picked]
        specs = answer["specs"]
        if specs["torchrun"]:
            st.subheader("Launch spec of the top option")
            left, right = st.columns(2)
            left.download_button(
                "torchrun command", specs["torchrun"], file_name="launch.sh", key="advisor_torchrun"
            )
            right.download_button(
                "SkyPilot task YAML", specs["skypilot"], file_name="task.yaml", key="advisor_skypilot"
            )
            st.code(specs["skypilot"], language="yaml", wrap_lines=True)
    excluded = result["excluded"]
    with st.expander(f"Excluded options ({len(excluded)} groups) and why"):
        rows = [
            {
                "instance_type": item["instance_type"],
                "cloud": item["cloud"],
                "regions": _joined(item["regions"]),
                "counts": _joined(item["counts"]),
                "spot": _joined(item["spot"]),
                "reason": item["reason"],
            }
            for item in excluded
        ]
        shared.table(pd.DataFrame(rows), key="advisor_excluded")


def render() -> None:
    st.title("Advisor")
    st.caption("Where to train a model and what it costs: `ddlprof advise`, ranked by USD per 1M samples.")
    keywords = _form()
    if keywords is not None:
        with st.spinner("Ranking the options..."):
            st.session_state[RESULT_KEY] = _advise(keywords)
    answer = st.session_state.get(RESULT_KEY)
    if answer is None:
        st.info("Fill in the form and press **Advise**.")
        return
    if "error" in answer:
        st.session_state[OPTIONS_KEY] = []
        st.error(answer["error"])
        return
    _show(answer)


render()
