"""The one heatmap of attnlab's figures: a labelled grid, and the layer x head grid on top of it.

Every layer x head view (entropy, head norms, SAE head summary, head patching, head
importance) and every other grid (layer x position, layer x module, query x key) is drawn
here, so they share what was easy to get wrong by hand: category axes (ticks 0, 1, 2 ... and
never -0.5 / 0.5 between two layers), layer 0 on top, a height that grows with the number of
rows (30-layer models stay readable), heads named ``L1H2`` in the hover text, and a diverging
colour scale centred on 0 where a value is signed.

    layer_head_heatmap(df, "value", title="Per-head output norm (mean)", colorbar_title="norm")
    grid_heatmap(grid, title="...", x_title="position", y_title="layer", value_title="effect")
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analyses.figures.checks import require_columns
from analyses.figures.labels import row_label

DIVERGING = "RdBu"  # signed values (patching effects, importance drops), centred on 0
ROW_PX = 30  # height per grid row
MARGIN_PX = 160  # title, axis titles, colour bar ends
MIN_HEIGHT, MAX_HEIGHT = 320, 2400


def grid_height(n_rows: int) -> int:
    """Figure height in pixels for ``n_rows`` rows: grows with the rows, within bounds."""
    return int(min(MAX_HEIGHT, max(MIN_HEIGHT, ROW_PX * n_rows + MARGIN_PX)))


def _colour(z: np.ndarray, colorscale: str, diverging: bool,
            zrange: tuple[float, float] | None) -> dict:
    if diverging:
        finite = np.abs(z[np.isfinite(z)])
        lim = float(max(finite.max() if finite.size else 0.0, 1e-9))
        return {"colorscale": DIVERGING, "zmid": 0, "zmin": -lim, "zmax": lim}
    out = {"colorscale": colorscale}
    if zrange is not None:
        out["zmin"], out["zmax"] = zrange
    return out


def grid_heatmap(grid: pd.DataFrame, *, title: str, x_title: str, y_title: str,
                 value_title: str, colorscale: str = "Viridis", diverging: bool = False,
                 zrange: tuple[float, float] | None = None,
                 cell_labels: np.ndarray | None = None, hover_extra: np.ndarray | None = None,
                 show_values: bool = False, fmt: str = ".3g") -> go.Figure:
    """Heatmap of ``grid`` (rows = y, columns = x) on category axes, first row on top.

    ``cell_labels`` (same shape as ``grid``) names each cell in the hover text (default
    ``"<y_title> <row>, <x_title> <column>"``); ``hover_extra`` is appended to it (e.g.
    ``"<br>bound: 1.2"``) and kept as the trace's ``customdata``. ``diverging`` uses a red-blue
    scale symmetric about 0; ``zrange`` fixes the colour range otherwise.
    """
    z = grid.to_numpy(dtype=float)
    xs, ys = [str(c) for c in grid.columns], [str(i) for i in grid.index]
    if cell_labels is None:
        cell_labels = np.array([[f"{y_title} {y}, {x_title} {x}" for x in xs] for y in ys],
                               dtype=object)
    extra = "" if hover_extra is None else "%{customdata}"
    fig = go.Figure(go.Heatmap(
        z=z, x=xs, y=ys, text=cell_labels, customdata=hover_extra,
        colorbar={"title": value_title},
        hovertemplate="%{text}<br>" + value_title + ": %{z:" + fmt + "}" + extra
                      + "<extra></extra>",
        texttemplate="%{z:.4~g}" if show_values else None,
        **_colour(z, colorscale, diverging, zrange),
    ))
    fig.update_layout(
        title=title, xaxis={"title": x_title, "type": "category"},
        yaxis={"title": y_title, "type": "category", "autorange": "reversed"},
        height=grid_height(len(ys)),
    )
    return fig


def layer_head_grid(df: pd.DataFrame, value: str = "value") -> pd.DataFrame:
    """Pivot the rows of a (layer, head, value) table with ``head >= 0`` to a layer x head grid
    (the mean where a cell has several rows)."""
    rows = df[df["head"] >= 0]
    if rows.empty:
        raise ValueError("no head rows (head >= 0) to draw as a layer x head grid")
    return rows.pivot_table(index="layer", columns="head", values=value, aggfunc="mean")


def head_labels(grid: pd.DataFrame) -> np.ndarray:
    """``L1H2`` for every cell of a layer x head grid (the hover text of each head)."""
    return np.array([[row_label(la, h) for h in grid.columns] for la in grid.index],
                    dtype=object)


def layer_head_heatmap(df: pd.DataFrame, value: str = "value", *, title: str,
                       colorbar_title: str | None = None, colorscale: str = "Viridis",
                       diverging: bool = False,
                       hover_extra: Callable[[pd.DataFrame], np.ndarray] | None = None,
                       fmt: str = ".3g", what: str = "layer_head_heatmap") -> go.Figure:
    """Layer x head heatmap of ``value`` (rows: layers, layer 0 on top; columns: heads).

    ``df`` is any long table with integer ``layer`` and ``head`` columns; rows with
    ``head < 0`` (whole-layer rows) are left out. ``hover_extra(grid)`` returns text to add to
    each cell's hover (same shape as the layer x head ``grid``). ``what`` names the calling
    figure in the error for a table that lacks a column.
    """
    require_columns(df, ["layer", "head", value], what)
    grid = layer_head_grid(df, value)
    return grid_heatmap(grid, title=title, x_title="head", y_title="layer",
                        value_title=colorbar_title or value, colorscale=colorscale,
                        diverging=diverging, cell_labels=head_labels(grid),
                        hover_extra=None if hover_extra is None else hover_extra(grid), fmt=fmt)
