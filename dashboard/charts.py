"""How the pages draw a plotly figure: in attnlab's own template, not Streamlit's theme.

``st.plotly_chart`` re-themes figures by default (``theme="streamlit"``); the pages pass
``theme=None`` here so the dashboard, the reports and the notebooks look the same
(:mod:`analyses.figures.template`).
"""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st


def show(fig: go.Figure, key: str, where=st) -> None:
    """Draw ``fig`` full-width in ``where`` (the page, a column, an expander)."""
    where.plotly_chart(fig, key=key, theme=None, width="stretch")
