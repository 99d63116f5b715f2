"""attnlab dashboard entry point: routes between the pages, nothing else.

    attnlab dashboard [--port 8501] [--host 127.0.0.1] [--runs-dir runs]
    # or: ATTNLAB_RUNS=runs streamlit run dashboard/app.py

A page that fails unexpectedly shows a one-line error (and logs the traceback) instead of a
Python traceback in the browser.
"""

from __future__ import annotations

import logging
from pathlib import Path

import streamlit as st

from dashboard import readers

PAGES = Path(__file__).parent / "views"
logger = logging.getLogger("attnlab.dashboard")

st.set_page_config(page_title="attnlab", page_icon=":material/visibility:", layout="wide")
page = st.navigation([
    st.Page(PAGES / "runs.py", title="Runs", icon=":material/folder_open:", default=True),
    st.Page(PAGES / "attention.py", title="Attention", icon=":material/grid_on:"),
    st.Page(PAGES / "massive.py", title="Massive activations", icon=":material/bar_chart:"),
    st.Page(PAGES / "sae_features.py", title="SAE features", icon=":material/scatter_plot:"),
    st.Page(PAGES / "redundancy.py", title="Redundancy", icon=":material/content_cut:"),
    st.Page(PAGES / "circuits.py", title="Circuits", icon=":material/hub:"),
    st.Page(PAGES / "heads.py", title="Heads", icon=":material/view_module:"),
])
st.sidebar.caption(f"Run store: `{readers.store().root}`")
try:
    page.run()
except Exception as exc:  # a page bug must not print a traceback at the user
    logger.exception("dashboard page %s failed", page.title)
    st.error(f"attnlab dashboard error on page '{page.title}': {type(exc).__name__}: {exc}. "
             "This is a bug: please report it with the run id.")
