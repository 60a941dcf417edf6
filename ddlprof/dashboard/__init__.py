"""Streamlit dashboard; the plotly figures here are shared with ``ddlprof report --html``."""
