"""Plotly figures for the probes' tables: pure functions DataFrame -> ``go.Figure``.

Shared by the dashboard, the reports and the notebooks, so every view of a table looks the
same. Each function takes a table in its documented long format (``data.schemas``), checks the
columns it needs (clear ``ValueError`` otherwise) and never reads files or runs a model.

    entropy_heatmap(run.read_table("entropy"))          # layer x head, collapse marked
    entropy_bound_figure(run.read_table("entropy"))     # measured entropy vs lower bound
    massive_summary_figure(run.read_table("massive_summary"))
    massive_dims_figure(run.read_table("massive"))      # which (layer, dim) carry them
    massive_top_table(run.read_table("massive"))        # (dim, token) summary DataFrame
    head_norms_heatmap(run.read_table("head_norms"))
    sinks_heatmap(run.read_table("sinks"), epsilon=0.3)  # layer x head, sink heads marked
    sink_rate_figure(run.read_table("sink_rate"))       # share of sink heads per layer
    emergence_figure(observed, fitted)                  # r(t) over training + fitted curve
    attention_pattern_figure(pattern_frame(pattern, tokens))
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analyses.figures.checks import require_columns
from analyses.figures.heatmap import grid_heatmap, layer_head_grid, layer_head_heatmap
from analyses.figures.labels import row_labels

#: Stats of the ``entropy`` table shown in the heatmap's hover text when present.
ENTROPY_HOVER_STATS = ("mean", "norm_mean", "min", "bound_mean", "weight_bound_mean",
                       "bound_violations", "collapsed")
#: Columns of the per-head statistics tables (``entropy``, ``head_norms``).
HEAD_STAT_COLUMNS = ("layer", "head", "stat", "value")
#: Stats of the ``sinks`` table shown in the sink heatmap's hover text when present.
SINK_HOVER_STATS = ("sink_score", "delimiter_score", "n_queries")
#: Columns of the ``sink_rate`` table.
SINK_RATE_COLUMNS = ("layer", "value", "n_heads", "epsilon")
#: Columns of the ``massive`` table the massive-activation views read.
MASSIVE_COLUMNS = ("layer", "position", "token", "dim", "value", "ratio")


def _stat_rows(df: pd.DataFrame, stat: str) -> pd.DataFrame:
    """The head rows (``head >= 0``) of one ``stat`` of a (layer, head, stat, value) table."""
    rows = df[(df["stat"] == stat) & (df["head"] >= 0)]
    if rows.empty:
        present = sorted(df["stat"].unique())
        raise ValueError(f"no rows with stat {stat!r}; stats present: {present}")
    return rows


def _stat_grid(df: pd.DataFrame, stat: str) -> pd.DataFrame:
    """Pivot one ``stat`` of a (layer, head, stat, value) table to a layer x head grid."""
    return layer_head_grid(_stat_rows(df, stat))


def _stat_hover(df: pd.DataFrame, names: Sequence[str]):
    """``hover_extra`` for :func:`layer_head_heatmap`: ``<br>stat: value`` per present stat."""
    present = [n for n in names if n in set(df["stat"])]

    def hover(grid: pd.DataFrame) -> np.ndarray:
        out = np.full(grid.shape, "", dtype=object)
        for name in present:
            part = _stat_grid(df, name).reindex(index=grid.index, columns=grid.columns)
            out = out + np.vectorize(lambda v, n=name: f"<br>{n}: {v:.3g}")(part.to_numpy())
        return out

    return hover


def _mark_heads(fig: go.Figure, rows: pd.DataFrame, name: str, what: str,
                marker: dict) -> go.Figure:
    """Add one marker per (layer, head) row of ``rows`` on a layer x head heatmap."""
    rows = rows.sort_values(["layer", "head"])
    fig.add_trace(go.Scatter(
        x=[str(h) for h in rows["head"]], y=[str(la) for la in rows["layer"]],
        text=row_labels(rows), mode="markers", name=name, marker=marker,
        hovertemplate="%{text}: " + what + "<extra></extra>",
    ))
    fig.update_layout(legend={"orientation": "h", "y": -0.15})
    return fig


def entropy_heatmap(df: pd.DataFrame, stat: str = "norm_mean") -> go.Figure:
    """Layer x head heatmap of one entropy statistic; heads in collapse are marked with x.

    ``df`` is the ``entropy`` table. Hover shows the measured entropy beside the lower bound
    (Zhai et al. 2023, Thm 3.1) when the table carries ``bound_mean``.
    """
    require_columns(df, HEAD_STAT_COLUMNS, "entropy_heatmap")
    fig = layer_head_heatmap(_stat_rows(df, stat), title=f"Attention entropy ({stat}) per head",
                             colorbar_title=stat, hover_extra=_stat_hover(df, ENTROPY_HOVER_STATS),
                             what="entropy_heatmap")
    if "collapsed" in set(df["stat"]):
        flags = _stat_rows(df, "collapsed")
        _mark_heads(fig, flags[flags["value"] > 0], "entropy collapse", "collapsed",
                    {"symbol": "x", "size": 12, "color": "red", "line": {"width": 1}})
    fig.update_layout(legend={"orientation": "h", "y": -0.15})
    return fig


def entropy_bound_figure(df: pd.DataFrame) -> go.Figure:
    """Measured mean entropy vs the mean lower bound, one point per head, with y = x.

    Every point must sit on or above the diagonal: the bound is a theorem (a point below it
    means a bug in the probe, not an interesting head).
    """
    require_columns(df, HEAD_STAT_COLUMNS, "entropy_bound_figure")
    stats = set(df["stat"])
    if not {"mean", "bound_mean"} <= stats:
        raise ValueError(f"entropy_bound_figure needs stats 'mean' and 'bound_mean'; has {stats}")
    wide = (df[df["head"] >= 0].pivot_table(index=["layer", "head"], columns="stat",
                                             values="value", aggfunc="mean").reset_index())
    fig = go.Figure()
    for layer, part in wide.groupby("layer"):
        fig.add_trace(go.Scatter(
            x=part["bound_mean"], y=part["mean"], mode="markers", name=f"layer {layer}",
            text=row_labels(part),
            hovertemplate="%{text}<br>bound %{x:.3g}<br>entropy %{y:.3g}<extra></extra>",
        ))
    hi = float(np.nanmax(wide[["mean", "bound_mean"]].to_numpy())) if len(wide) else 1.0
    fig.add_trace(go.Scatter(x=[0, hi], y=[0, hi], mode="lines", name="entropy = bound",
                             line={"dash": "dash", "color": "grey"}))
    fig.update_layout(title="Measured entropy vs lower bound (per head)",
                      xaxis_title="lower bound (nats)", yaxis_title="mean entropy (nats)")
    return fig


def massive_summary_figure(df: pd.DataFrame) -> go.Figure:
    """Per-layer top-1, top-2 and median magnitudes of the residual stream (log scale).

    ``top1``/``top2``/``median`` are means over sequences; ``top1_max`` (dashed, when present)
    is the largest top-1 over all sequences.
    """
    require_columns(df, ["layer", "stat", "value"], "massive_summary_figure")
    fig = go.Figure()
    for stat in ("top1", "top2", "median", "top1_max"):
        part = df[df["stat"] == stat].groupby("layer", as_index=False)["value"].max()
        if not part.empty:
            dash = "dash" if stat == "top1_max" else "solid"
            fig.add_trace(go.Scatter(x=part["layer"], y=part["value"].abs(), mode="lines+markers",
                                     name=stat, line={"dash": dash}))
    if not fig.data:
        raise ValueError("massive_summary_figure: no top1/top2/median rows in the table")
    fig.update_layout(title="Residual-stream magnitudes per layer", xaxis_title="layer",
                      yaxis_title="|activation|", yaxis_type="log", xaxis={"dtick": 1})
    return fig


def massive_top_table(df: pd.DataFrame, n: int = 50) -> pd.DataFrame:
    """Which (dim, token) pairs carry the massive activations: count, layers, max |value|."""
    require_columns(df, MASSIVE_COLUMNS, "massive_top_table")
    out = (df.assign(abs_value=df["value"].abs())
           .groupby(["dim", "token"], as_index=False)
           .agg(count=("value", "size"), first_layer=("layer", "min"),
                last_layer=("layer", "max"), max_abs_value=("abs_value", "max"),
                max_ratio=("ratio", "max")))
    return out.sort_values(["max_abs_value", "count"], ascending=False).head(n).reset_index(
        drop=True)


def massive_dims_figure(df: pd.DataFrame) -> go.Figure:
    """Scatter of (layer, dim) cells holding massive activations, sized by max |value|."""
    require_columns(df, MASSIVE_COLUMNS, "massive_dims_figure")
    cells = (df.assign(abs_value=df["value"].abs())
             .groupby(["layer", "dim"], as_index=False)
             .agg(max_abs=("abs_value", "max"), count=("value", "size"),
                  tokens=("token", lambda t: ", ".join(sorted(set(map(str, t)))[:5]))))
    size = 8 + 20 * np.log1p(cells["max_abs"]) / max(np.log1p(cells["max_abs"]).max(), 1e-9)
    fig = go.Figure(go.Scatter(
        x=cells["layer"], y=cells["dim"].astype(str), mode="markers",
        marker={"size": size, "color": cells["max_abs"], "colorscale": "Reds",
                "colorbar": {"title": "max |value|"}},
        customdata=np.stack([cells["count"], cells["tokens"]], axis=1),
        hovertemplate="layer %{x} dim %{y}<br>max |value| %{marker.color:.4g}<br>"
                      "%{customdata[0]} activations on: %{customdata[1]}<extra></extra>",
    ))
    fig.update_layout(title="Massive activations: layer x residual dimension",
                      xaxis_title="layer", yaxis_title="dim", yaxis={"type": "category"},
                      xaxis={"dtick": 1})
    return fig


def head_norms_heatmap(df: pd.DataFrame, stat: str = "mean") -> go.Figure:
    """Layer x head heatmap of per-head output norms ||z_h W_O^h|| (rows with head >= 0)."""
    require_columns(df, HEAD_STAT_COLUMNS, "head_norms_heatmap")
    return layer_head_heatmap(_stat_rows(df, stat), title=f"Per-head output norm ({stat})",
                              colorbar_title=f"{stat} norm", colorscale="Blues", fmt=".4g",
                              what="head_norms_heatmap")


def sinks_heatmap(df: pd.DataFrame, stat: str = "sink_score",
                  epsilon: float | None = None) -> go.Figure:
    """Layer x head heatmap of a ``sinks`` statistic on a fixed 0..1 colour scale.

    ``sink_score`` is a head's mean attention from its queries i > 0 to position 0 (BOS or
    [CLS]; Gu et al. 2024). With ``epsilon`` (the run's ``sink_rate`` threshold) the sink
    heads, score > epsilon, are marked with a circle. Hover: score, delimiter score, queries.
    """
    require_columns(df, HEAD_STAT_COLUMNS, "sinks_heatmap")
    fig = layer_head_heatmap(_stat_rows(df, stat), title=f"Attention sinks ({stat}) per head",
                             colorbar_title=stat, colorscale="Purples",
                             hover_extra=_stat_hover(df, SINK_HOVER_STATS), what="sinks_heatmap")
    fig.update_traces(zmin=0.0, zmax=1.0, selector={"type": "heatmap"})
    if epsilon is not None:
        scores = _stat_rows(df, "sink_score")
        _mark_heads(fig, scores[scores["value"] > epsilon], f"sink head (score > {epsilon:g})",
                    "sink head", {"symbol": "circle-open", "size": 12, "color": "orange",
                                  "line": {"width": 2}})
    return fig


def sink_rate_figure(df: pd.DataFrame) -> go.Figure:
    """Bars: share of each layer's heads with sink score > epsilon; dashed: the whole model.

    ``df`` is the ``sink_rate`` table (layer -1 is the model-wide rate).
    """
    require_columns(df, SINK_RATE_COLUMNS, "sink_rate_figure")
    layers = df[df["layer"] >= 0].sort_values("layer")
    if layers.empty:
        raise ValueError("sink_rate_figure: no per-layer rows (layer >= 0) in the table")
    eps = float(df["epsilon"].iloc[0])
    fig = go.Figure(go.Bar(
        x=layers["layer"], y=layers["value"], name="per layer",
        customdata=layers["n_heads"],
        hovertemplate="layer %{x}<br>sink rate %{y:.3f} of %{customdata} heads<extra></extra>",
    ))
    whole = df[df["layer"] == -1]
    if not whole.empty:
        rate = float(whole["value"].iloc[0])
        fig.add_hline(y=rate, line_dash="dash", line_color="grey",
                      annotation_text=f"all heads: {rate:.2f}")
    fig.update_layout(title=f"Sink rate per layer (share of heads with sink score > {eps:g})",
                      xaxis_title="layer", yaxis_title="share of heads",
                      yaxis={"range": [0, 1.05]}, xaxis={"dtick": 1})
    return fig


def emergence_figure(observed: pd.DataFrame, fitted: pd.DataFrame | None = None) -> go.Figure:
    """Massive-activation ratio r(t) per layer over training steps, with fitted curves.

    ``observed`` and ``fitted`` are long tables with columns ``step``, ``layer``, ``value``
    (``fitted`` evaluated on a fine grid of steps). Steps are log-spaced, so x is log.
    """
    require_columns(observed, ["step", "layer", "value"], "emergence_figure")
    fig = go.Figure()
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
               "#7f7f7f", "#bcbd22", "#17becf"]
    for i, (layer, part) in enumerate(observed.sort_values("step").groupby("layer")):
        color = palette[i % len(palette)]
        fig.add_trace(go.Scatter(x=part["step"], y=part["value"], mode="markers",
                                 name=f"layer {layer}", marker={"color": color},
                                 legendgroup=str(layer)))
        if fitted is not None and not fitted.empty:
            curve = fitted[fitted["layer"] == layer].sort_values("step")
            fig.add_trace(go.Scatter(x=curve["step"], y=curve["value"], mode="lines",
                                     name=f"fit layer {layer}", line={"color": color},
                                     legendgroup=str(layer), showlegend=False))
    positive = bool((observed["step"] > 0).all())
    fig.update_layout(title="Emergence of massive activations over training",
                      xaxis_title="training step", yaxis_title="max|h| / median|h|",
                      xaxis_type="log" if positive else "linear")
    return fig


def pattern_frame(pattern: np.ndarray, str_tokens: Sequence[str]) -> pd.DataFrame:
    """Long table (query_pos, key_pos, query_token, key_token, value) of one head's pattern."""
    pattern = np.asarray(pattern)
    n = len(str_tokens)
    if pattern.shape != (n, n):
        raise ValueError(f"pattern shape {pattern.shape} does not match {n} tokens")
    q, k = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    toks = np.asarray([str(t) for t in str_tokens], dtype=object)
    return pd.DataFrame({"query_pos": q.ravel(), "key_pos": k.ravel(),
                         "query_token": toks[q.ravel()], "key_token": toks[k.ravel()],
                         "value": pattern.ravel()})


def attention_pattern_figure(df: pd.DataFrame, title: str = "Attention pattern") -> go.Figure:
    """Query x key heatmap of one head's attention pattern from :func:`pattern_frame`."""
    require_columns(df, ["query_pos", "key_pos", "query_token", "key_token", "value"],
                    "attention_pattern_figure")
    grid = df.pivot(index="query_pos", columns="key_pos", values="value")
    tokens = df.drop_duplicates("query_pos").set_index("query_pos")["query_token"]
    labels = [f"{i}:{tokens[i]}" for i in grid.index]
    grid = grid.set_axis(labels, axis=0).set_axis(labels, axis=1)
    return grid_heatmap(grid, title=title, x_title="key", y_title="query",
                        value_title="attention", colorscale="Blues", zrange=(0.0, 1.0),
                        fmt=".3f")
