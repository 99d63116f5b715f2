"""The one heatmap of attnlab's figures: a labelled grid, and the layer x head grid on top of it.

Every layer x head view (entropy, head norms, SAE head summary, head patching, head
importance) and every other grid (layer x position, layer x module, query x key) is drawn
here, so they share what was easy to get wrong by hand: category axes with one tick per row
and column, labelled with the integer itself (0, 1, 2 ..., never -0.5 / 0.5 between two layers
and never skipped when the grid is large), layer 0 on top, a height that grows with the number
of rows (at least ``ROW_PX`` per layer: SmolLM2's 30 layers stay readable), heads named
``L1H2`` in the hover text, and a diverging colour scale centred on 0 where a value is signed.
Importing it registers attnlab's plotly template (:mod:`analyses.figures.template`).

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
from analyses.figures.template import register

register()

DIVERGING = "RdBu"  # signed values (patching effects, importance drops), centred on 0
ROW_PX = 22  # height per grid row (a layer of a layer x head grid)
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
        title=title, xaxis={"title": x_title, **category_ticks(xs)},
        yaxis={"title": y_title, "autorange": "reversed", **category_ticks(ys)},
        height=grid_height(len(ys)),
    )
    return fig


def category_ticks(labels: list[str]) -> dict:
    """Axis settings with one tick per category, labelled with the category itself.

    Plotly thins the ticks of a long category axis on its own (every other layer of a
    30-layer model); listing them keeps every integer layer / head label.
    """
    return {"type": "category", "tickmode": "array", "tickvals": labels, "ticktext": labels}


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


def token_labels(str_tokens) -> list[str]:
    """``"3: Mary"`` for every position: unique category labels that show the token."""
    return [f"{i}:{t}" for i, t in enumerate(str_tokens)]


def head_patterns_figure(pattern: np.ndarray, str_tokens, layer: int, cols: int = 3,
                         panel_px: int = 260) -> go.Figure:
    """Every head's attention pattern of one layer as small multiples, CircuitsVis-style.

    ``pattern`` is ``(head, pos, key_pos)`` for one prompt; each panel is query (rows, first
    token on top) x key, on one shared 0..1 colour scale, and hovering a cell names the head,
    the query token and the key token. Axis ticks carry the tokens when they fit (<= 24).
    """
    from plotly.subplots import make_subplots

    pattern = np.asarray(pattern, dtype=float)
    n_heads, n = pattern.shape[0], len(str_tokens)
    if pattern.shape[1:] != (n, n):
        raise ValueError(f"pattern shape {pattern.shape} does not match {n} tokens")
    labels = token_labels(str_tokens)
    cols = max(1, min(cols, n_heads))
    rows = -(-n_heads // cols)
    fig = make_subplots(rows=rows, cols=cols, horizontal_spacing=0.06,
                        vertical_spacing=min(0.3 / max(rows, 1), 0.08),
                        subplot_titles=[row_label(layer, h) for h in range(n_heads)])
    toks = [repr(str(t)) for t in str_tokens]
    hover = np.array([[f"query {q} {toks[q]}<br>key {k} {toks[k]}" for k in range(n)]
                      for q in range(n)], dtype=object)
    for h in range(n_heads):
        fig.add_trace(go.Heatmap(
            z=pattern[h], x=labels, y=labels, text=hover, coloraxis="coloraxis",
            hovertemplate=f"{row_label(layer, h)}<br>%{{text}}<br>attention %{{z:.3f}}"
                          "<extra></extra>"), row=h // cols + 1, col=h % cols + 1)
    show_ticks = n <= 24
    fig.update_xaxes(type="category", showticklabels=show_ticks, tickangle=-60,
                     tickfont={"size": 9})
    fig.update_yaxes(type="category", autorange="reversed", showticklabels=show_ticks,
                     tickfont={"size": 9})
    fig.update_layout(
        title=f"Attention patterns of every head in layer {layer} (rows: query, columns: key)",
        coloraxis={"colorscale": "Blues", "cmin": 0.0, "cmax": 1.0,
                   "colorbar": {"title": "attention"}},
        height=int(rows * (panel_px + (90 if show_ticks else 30)) + 80),
    )
    return fig


def source_dfa_figure(by_source: np.ndarray, str_tokens, layer: int, query_pos: int,
                      feature: int) -> go.Figure:
    """Head x source-position heatmap of one feature's DFA terms at one query token.

    ``by_source`` is ``(head, key_pos)``: A_h(q, s) v_h(s) . W_enc[h-slice, f] for the query
    ``query_pos`` (:func:`saes.attribution.dfa_by_source`); columns are the prompt's tokens.
    """
    by_source = np.asarray(by_source, dtype=float)
    grid = pd.DataFrame(by_source, index=[row_label(layer, h) for h in range(by_source.shape[0])],
                        columns=token_labels(str_tokens))
    return grid_heatmap(
        grid, title=f"Feature {feature}: DFA by head and source position at query "
                    f"{query_pos} {str(str_tokens[query_pos])!r}",
        x_title="source position (token)", y_title="head", value_title="DFA",
        diverging=True, fmt=".3g")
