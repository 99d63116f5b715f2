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

import pandas as pd
import plotly.graph_objects as go

from analyses.figures.checks import require_columns
from analyses.figures.heatmap import grid_heatmap, layer_head_heatmap

COMPONENT_COLORS = {"attn": "#1f77b4", "mlp": "#ff7f0e", "block": "#7f7f7f"}
STRATEGY_COLORS = {"attn": "#1f77b4", "mlp": "#ff7f0e", "block": "#7f7f7f",
                   "joint": "#2ca02c"}
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


def drop_curve_figure(curve: pd.DataFrame, metric: str) -> go.Figure:
    """``metric`` vs number of dropped components: one line per strategy/mode, random dashed.

    The random baseline is the mean over its seeds, per strategy.
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
        random = mode == "random"
        hover = None if random else (sub[(sub.strategy == strategy) & (sub["mode"] == mode)]
                                     .sort_values("n_dropped")["last_dropped"]
                                     if "last_dropped" in sub else None)
        fig.add_scatter(x=g["n_dropped"], y=g["value"], mode="lines+markers",
                        name=f"{strategy} ({mode})", text=hover,
                        line={"color": STRATEGY_COLORS.get(strategy),
                              "dash": "dash" if random else
                              ("dot" if mode == "iterative" else "solid")})
    fig.update_layout(title=f"{metric} vs dropped components", xaxis_title="components dropped",
                      yaxis_title=metric)
    return fig


def speedup_figure(speed: pd.DataFrame) -> go.Figure:
    """Measured speedup (full / pruned median wall time) vs number of dropped components."""
    require_columns(speed, ["strategy", "mode", "n_dropped", "speedup"], "speedup_figure", HINT)
    fig = go.Figure()
    for (strategy, mode), g in speed.groupby(["strategy", "mode"], sort=False):
        g = g.sort_values("n_dropped")
        fig.add_scatter(x=g["n_dropped"], y=g["speedup"], mode="lines+markers",
                        name=f"{strategy} ({mode})",
                        line={"color": STRATEGY_COLORS.get(strategy),
                              "dash": "dot" if mode == "iterative" else "solid"})
    fig.add_hline(y=1.0, line_dash="dash", line_color="grey")
    fig.update_layout(title="Measured wall-time speedup", xaxis_title="components dropped",
                      yaxis_title="speedup (x)")
    return fig


def head_importance_heatmap(table: pd.DataFrame, task: str | None = None,
                            method: str = "zero") -> go.Figure:
    """Layer x head heatmap of one method's metric drop for one task."""
    require_columns(table, ["task", "layer", "head", "method", "value"],
                    "head_importance_heatmap", HINT)
    task = task if task is not None else str(table["task"].iloc[0])
    sub = table[(table["task"] == task) & (table["method"] == method)]
    if sub.empty:
        raise ValueError(f"no rows for task {task!r}, method {method!r}")
    return layer_head_heatmap(sub, title=f"Head importance: {task}, {method}",
                              colorbar_title="drop", diverging=True,
                              what="head_importance_heatmap")
