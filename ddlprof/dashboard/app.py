"""The dashboard's main script: ``ddlprof dashboard`` runs ``streamlit run`` on this file.

One page per module in ``views/``; this script sets the page up, puts the runs directory in the
sidebar (shared by every page: ``shared.runs_root``) and hands over to the page picked.
"""

from __future__ import annotations

import streamlit as st

from ddlprof.dashboard import data, shared

st.set_page_config(page_title="ddlprof", layout="wide")

PAGES = [
    st.Page("views/runs.py", title="Runs", url_path="runs", default=True),
    st.Page("views/compare.py", title="Compare", url_path="compare"),
    # ---- Advisor page: NOT BUILT YET (issue 6) ------------------------------------------------------
    # Plug-in point. Add  st.Page("views/advisor.py", title="Advisor", url_path="advisor")  here: a
    # views/advisor.py with the `ddlprof advise` form (model, budget, deadline, clouds, regions, spot)
    # calling the advisor's ranking function (the one advise_cli.py calls, never a copy), showing its
    # ranked table and charts and a st.download_button for the launch spec; it may keep the picked
    # options in st.session_state for the Compare page (views/compare.py: _instance_options).
    st.Page("views/models.py", title="Models", url_path="models"),
]

with st.sidebar:
    st.text_input(
        "Runs directory",
        value=str(data.runs_dir()),
        key=shared.RUNS_KEY,
        help="Where `ddlprof wrap` wrote its runs (ddlprof dashboard --runs DIR; default ./ddlprof-runs).",
    )
    st.caption("ddlprof: where the step time goes, and what the models predict.")

st.navigation(PAGES).run()
