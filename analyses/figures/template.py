"""The one plotly template of attnlab's figures, for the dashboard, the reports and notebooks.

Importing any figure module (they all draw through :mod:`analyses.figures.heatmap`, which
calls :func:`register`) registers the template as ``"attnlab"`` and makes ``plotly_white+attnlab``
plotly's default, so a figure looks the same in a report, a notebook and the dashboard (the
dashboard passes ``theme=None`` to ``st.plotly_chart`` so Streamlit's own theme does not
replace it). It only sets what plotly's templates are for (fonts, colours, margins, hover
labels); it does not re-implement any of them.
"""

from __future__ import annotations

import plotly.graph_objects as go
import plotly.io as pio

NAME = "attnlab"
#: The default plotly template every attnlab figure gets (plotly's white base + ours).
DEFAULT = f"plotly_white+{NAME}"
#: Qualitative colours (Tableau 10): lines, bars and markers, in trace order.
COLORWAY = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#eeca3b",
            "#ff9da6", "#9d755d", "#bab0ac"]

TEMPLATE = go.layout.Template(layout=go.Layout(
    font={"family": "Inter, Helvetica, Arial, sans-serif", "size": 13, "color": "#262730"},
    title={"font": {"size": 16}, "x": 0.0, "xanchor": "left"},
    colorway=COLORWAY,
    margin={"l": 70, "r": 30, "t": 60, "b": 60},
    hoverlabel={"font": {"family": "Menlo, Consolas, monospace", "size": 12}},
    legend={"orientation": "h", "y": -0.18},
))


def register() -> str:
    """Register the template and make it plotly's default; returns the default's name."""
    pio.templates[NAME] = TEMPLATE
    pio.templates.default = DEFAULT
    return DEFAULT
