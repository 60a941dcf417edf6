"""Streamlit dashboard: Runs, Compare, Advisor and Models pages over the same functions as the CLI, with the
plotly figures of ``ddlprof.figures`` (shared with ``ddlprof report --html``)."""
