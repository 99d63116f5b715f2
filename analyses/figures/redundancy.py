"""Plotly figures for the redundancy tables: pure functions DataFrame -> ``go.Figure``.

Shared by the dashboard, the redundancy report (:mod:`analyses.reports.redundancy`, the
``redundancy.html`` of ``attnlab redundancy``) and notebooks; they take the documented long
tables (``data.schemas``) and never read files or run a model.

    importance_bars(run.read_table("redundancy"))      # score per layer, attn / mlp / block
    importance_heatmap(run.read_table("redundancy"))   # layer x component
    drop_curve_figure(run.read_table("drop_curve"), "nn_agreement")
    speedup_figure(run.read_table("speedup"))
    head_importance_heatmap(run.read_table("head_importance"), task="ioi", method="zero")
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analyses.figures.checks import require_columns
from analyses.figures.heatmap import grid_heatmap, layer_head_heatmap

COMPONENT_COLORS = {"attn": "#1f77b4", "mlp": "#ff7f0e", "block": "#7f7f7f"}
#: Drop-curve and speedup lines: plan mode -> colour and dash, strategy -> marker symbol.
MODE_COLORS = {"one_shot": "#4c78a8", "iterative": "#e45756", "random": "#7f7f7f"}
MODE_DASHES = {"one_shot": "solid", "iterative": "dot", "random": "dash"}
STRATEGY_SYMBOLS = {"attn": "circle", "mlp": "square", "block": "diamond", "joint": "x"}
#: Sequential colour scale (light = 0) for tables whose values are all >= 0.
SEQUENTIAL = "Blues"
#: What to do about an empty redundancy table (in the error message).
HINT = "re-run `attnlab redundancy`"


def _one_definition(df: pd.DataFrame, definition: str) -> pd.DataFrame:
    if "definition" not in df.columns:
        return df
    sub = df[df["definition"] == definition]
    if sub.empty:
        raise ValueError(f"no scores with definition {definition!r}; "
                         f"have {sorted(df['definition'].unique())}")
    return sub


def importance_bars(scores: pd.DataFrame, definition: str = "unit") -> go.Figure:
    """Grouped bars: He et al. score per layer, one colour per component (low = redundant)."""
    require_columns(scores, ["layer", "component", "score"], "importance_bars", HINT)
    scores = _one_definition(scores, definition)
    fig = go.Figure()
    for component, sub in scores.groupby("component", sort=False):
        sub = sub.sort_values("layer")
        fig.add_bar(x=sub["layer"], y=sub["score"], name=component,
                    marker_color=COMPONENT_COLORS.get(component))
    fig.update_layout(barmode="group", title=f"Importance 1 - cos(X, Y) ({definition})",
                      xaxis_title="layer", yaxis_title="score (low = redundant)")
    return fig


def importance_heatmap(scores: pd.DataFrame, definition: str = "unit") -> go.Figure:
    """Component x layer heatmap of the scores, each cell labelled with its score."""
    require_columns(scores, ["layer", "component", "score"], "importance_heatmap", HINT)
    wide = _one_definition(scores, definition).pivot_table(
        index="component", columns="layer", values="score")
    wide = wide.reindex([m for m in ("attn", "mlp", "block") if m in wide.index])
    return grid_heatmap(wide, title=f"Importance per layer and component ({definition})",
                        x_title="layer", y_title="component", value_title="score",
                        show_values=True, fmt=".4f")


def _trace_style(strategy: str, mode: str) -> dict:
    """Colour and dash by plan mode, marker by strategy, so every (strategy, mode) line differs."""
    return {"line": {"color": MODE_COLORS.get(mode), "dash": MODE_DASHES.get(mode, "solid")},
            "marker": {"symbol": STRATEGY_SYMBOLS.get(strategy, "circle")}}


def drop_curve_figure(curve: pd.DataFrame, metric: str) -> go.Figure:
    """``metric`` vs number of dropped components: one line per strategy/mode.

    One-shot, iterative and random plans differ in colour and dash (``MODE_COLORS``,
    ``MODE_DASHES``), strategies in marker symbol; the legend names each line. The random
    baseline is the mean over its seeds, per strategy.
    """
    require_columns(curve, ["strategy", "mode", "n_dropped", "metric", "value"],
                    "drop_curve_figure", HINT)
    sub = curve[curve["metric"] == metric]
    if sub.empty:
        raise ValueError(f"no metric {metric!r} in drop_curve; have "
                         f"{sorted(curve['metric'].unique())}")
    fig = go.Figure()
    for (strategy, mode), g in sub.groupby(["strategy", "mode"], sort=False):
        g = g.groupby("n_dropped", as_index=False)["value"].mean()
        hover = None if mode == "random" else (
            sub[(sub.strategy == strategy) & (sub["mode"] == mode)]
            .sort_values("n_dropped")["last_dropped"] if "last_dropped" in sub else None)
        fig.add_scatter(x=g["n_dropped"], y=g["value"], mode="lines+markers",
                        name=f"{strategy} ({mode})", text=hover, showlegend=True,
                        **_trace_style(strategy, mode))
    fig.update_layout(title=f"{metric} vs dropped components", xaxis_title="components dropped",
                      yaxis_title=metric, showlegend=True)
    return fig


def _speedup_spread(g: pd.DataFrame) -> dict:
    """Asymmetric error bars around the median-based speedup from the repeated timings.

    The table keeps, per point, the ratio of median times (``speedup``) and of the fastest
    repeats (``speedup_min``), not every repeat, so the bar spans the two: how much the ratio
    moves with the choice of summary over the same repeats. Empty when ``speedup_min`` is absent.
    """
    if "speedup_min" not in g:
        return {}
    lo = np.minimum(g["speedup"], g["speedup_min"])
    hi = np.maximum(g["speedup"], g["speedup_min"])
    return {"error_y": {"type": "data", "symmetric": False,
                        "array": (hi - g["speedup"]).to_numpy(float),
                        "arrayminus": (g["speedup"] - lo).to_numpy(float), "visible": True}}


def speedup_figure(speed: pd.DataFrame) -> go.Figure:
    """Measured speedup (full / pruned median wall time) vs number of dropped components.

    Log y axis, so a point where every block is dropped (a model that computes nothing,
    ~100-200x) does not flatten the few-percent speedups of the others; error bars span the
    median- and best-of-repeats ratios (:func:`_speedup_spread`).
    """
    require_columns(speed, ["strategy", "mode", "n_dropped", "speedup"], "speedup_figure", HINT)
    fig = go.Figure()
    for (strategy, mode), g in speed.groupby(["strategy", "mode"], sort=False):
        g = g.sort_values("n_dropped")
        fig.add_scatter(x=g["n_dropped"], y=g["speedup"], mode="lines+markers",
                        name=f"{strategy} ({mode})", showlegend=True,
                        **_trace_style(strategy, mode), **_speedup_spread(g))
    fig.add_hline(y=1.0, line_dash="dash", line_color="grey")
    fig.update_layout(title="Measured wall-time speedup", xaxis_title="components dropped",
                      yaxis={"title": "speedup (x, log scale; bars: median vs best-of repeats)",
                             "type": "log"}, showlegend=True)
    return fig


def head_importance_heatmap(table: pd.DataFrame, task: str | None = None,
                            method: str = "zero") -> go.Figure:
    """Layer x head heatmap of one method's metric drop for one task.

    Drops are ``>= 0`` for heads the task needs, so where every value is ``>= 0`` the colour
    bar is sequential from 0 to the largest drop (a symmetric red-blue bar would spend half
    its range on values that do not occur); only a table with negative drops (a head whose
    ablation helps, or a Taylor estimate below 0) gets the diverging bar centred on 0.
    """
    require_columns(table, ["task", "layer", "head", "method", "value"],
                    "head_importance_heatmap", HINT)
    task = task if task is not None else str(table["task"].iloc[0])
    sub = table[(table["task"] == task) & (table["method"] == method)]
    if sub.empty:
        raise ValueError(f"no rows for task {task!r}, method {method!r}")
    values = sub["value"].to_numpy(float)
    values = values[np.isfinite(values)]
    nonneg = values.size == 0 or values.min() >= 0
    fig = layer_head_heatmap(sub, title=f"Head importance: {task}, {method}",
                             colorbar_title="drop", diverging=not nonneg,
                             colorscale=SEQUENTIAL, what="head_importance_heatmap")
    if nonneg:
        fig.update_traces(zmin=0.0, zmax=float(max(values.max(initial=0.0), 1e-9)))
    return fig
