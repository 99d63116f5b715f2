"""Figures of the exact QK decomposition (``qk_terms`` tables, :mod:`analyses.qk`).

``qk_heatmap``: query-side components (rows) x key-side components (columns), the mean term
over the task's (query, key) pairs on a diverging scale. With SAE features the table can hold
hundreds of components per side, so only the ``top`` components of each side by total |term|
are drawn (the title says how many were left out).
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from analyses.figures.checks import require_columns
from analyses.figures.heatmap import grid_heatmap
from data.notation import head_label

COLUMNS = ["layer", "head", "q_component", "k_component", "mean"]


def _top(table: pd.DataFrame, side: str, top: int) -> list[str]:
    mass = table.groupby(f"{side}_component")["mean"].apply(lambda s: s.abs().sum())
    return list(mass.sort_values(ascending=False).index[:top])


def qk_grid(table: pd.DataFrame, top: int = 16) -> pd.DataFrame:
    """The (q_component x k_component) grid of mean terms, top ``top`` per side (0 = all)."""
    require_columns(table, COLUMNS, "qk_heatmap")
    if table.empty:
        raise ValueError("no QK terms to draw (the qk_terms table is empty)")
    rows = _top(table, "q", top) if top else list(table["q_component"].unique())
    cols = _top(table, "k", top) if top else list(table["k_component"].unique())
    grid = table.pivot_table(index="q_component", columns="k_component", values="mean",
                             aggfunc="sum")
    return grid.reindex(index=rows, columns=cols).fillna(0.0)


def qk_heatmap(table: pd.DataFrame, top: int = 16, title: str | None = None) -> go.Figure:
    """Heatmap of one head's ``qk_terms`` rows (filter the table to one layer/head first)."""
    heads = table[["layer", "head"]].drop_duplicates()
    if len(heads) != 1:
        raise ValueError(f"qk_heatmap draws one head; the table has {len(heads)}: filter it "
                         "by layer and head first")
    grid = qk_grid(table, top)
    layer, head = (int(v) for v in heads.iloc[0])
    n_q, n_k = table["q_component"].nunique(), table["k_component"].nunique()
    cut = "" if (len(grid.index), len(grid.columns)) == (n_q, n_k) else \
        f" (top {len(grid.index)} of {n_q} x {len(grid.columns)} of {n_k} components)"
    pairs = f", pairs: {table['pairs'].iloc[0]}" if "pairs" in table else ""
    return grid_heatmap(
        grid, title=title or f"{head_label(layer, head)} QK decomposition: mean score term"
                             f"{pairs}{cut}",
        x_title="key-side component", y_title="query-side component",
        value_title="score term", diverging=True, show_values=len(grid) <= 12,
    )
