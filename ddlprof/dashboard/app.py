"""The dashboard's main script: ``ddlprof dashboard`` runs ``streamlit run`` on this file.

One page per module in ``views/``; this script sets the page up, puts the runs directory in the
sidebar (shared by every page: ``shared.runs_root``) and hands over to the page picked. The pages are
named in a bar at the top and the sidebar starts collapsed, so that a table of runs has the whole
width of a laptop's screen.
"""

from __future__ import annotations

import streamlit as st

from ddlprof.dashboard import data, shared

st.set_page_config(page_title="ddlprof", layout="wide", initial_sidebar_state="collapsed")

PAGES = [
    st.Page("views/runs.py", title="Runs", url_path="runs", default=True),
    st.Page("views/compare.py", title="Compare", url_path="compare"),
    st.Page("views/advisor.py", title="Advisor", url_path="advisor"),
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

st.navigation(PAGES, position="top").run()
