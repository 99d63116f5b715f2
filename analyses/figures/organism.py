"""Plotly figures of the organism's training and evaluation: pure functions DataFrame -> figure.

    training_curves_figure(pd.read_parquet("data/organism/organism_dynamics.parquet"))
    fresh_eval_figure(run.read_table("organism_eval"))   # model vs best shortcut, per family
    recipe_curves_figure(curves)   # step, recipe, metric, value: recipes side by side
"""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from analyses.figures.checks import require_columns

CURVE_PREFIXES = ("accuracy_", "hop_")


def training_curves_figure(dynamics: pd.DataFrame) -> go.Figure:
    """Held-out accuracy of every task family and hop probe at each checkpoint."""
    require_columns(dynamics, ("step", "metric", "value"), "organism_dynamics")
    rows = dynamics[dynamics.metric.str.startswith(CURVE_PREFIXES)]
    if rows.empty:
        raise ValueError("the dynamics table has no accuracy_* or hop_* rows")
    fig = px.line(rows.sort_values("step"), x="step", y="value", color="metric", markers=True)
    fig.update_layout(title="Organism: held-out accuracy during training",
                      yaxis_title="top-1 accuracy", xaxis_title="training step",
                      yaxis_range=[0, 1.02])
    return fig


def fresh_eval_figure(table: pd.DataFrame) -> go.Figure:
    """Per family: the model's mean accuracy over seeds (bars from the lowest to the highest
    seed) next to the best shortcut rule's, and the reasoning hop probes."""
    require_columns(table, ("family", "seed", "measure", "accuracy"), "organism_eval")
    stats = table.groupby(["family", "measure"], sort=False).accuracy.agg(["mean", "min", "max"])
    stats = stats.reset_index()
    rules = stats[(stats.measure != "model") & ~stats.measure.str.startswith("hop_")]
    best = rules.loc[rules.groupby("family")["mean"].idxmax()] if not rules.empty else rules
    shown = pd.concat([stats[stats.measure == "model"].assign(kind="model"),
                       best.assign(kind="best shortcut"),
                       stats[stats.measure.str.startswith("hop_")]
                       .assign(kind="reasoning hop probe", family=lambda d: d.measure)])
    fig = go.Figure()
    for kind, part in shown.groupby("kind", sort=False):
        fig.add_bar(name=kind, x=part.family, y=part["mean"], text=part.measure,
                    error_y=dict(type="data", symmetric=False,
                                 array=part["max"] - part["mean"],
                                 arrayminus=part["mean"] - part["min"]),
                    hovertemplate="%{x}: %{y:.3f} (%{text})<extra></extra>")
    n_seeds = table.seed.nunique()
    fig.update_layout(barmode="group", yaxis_range=[0, 1.05], yaxis_title="top-1 accuracy",
                      title=f"Organism on fresh items: mean over {n_seeds} seeds "
                            "(bars: lowest to highest seed)")
    return fig


def recipe_curves_figure(curves: pd.DataFrame) -> go.Figure:
    """Curves of several training recipes: one panel per metric, one line per recipe."""
    require_columns(curves, ("step", "recipe", "metric", "value"), "recipe curves")
    fig = px.line(curves.sort_values("step"), x="step", y="value", color="recipe",
                  facet_col="metric", facet_col_wrap=2, markers=True)
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
    fig.update_yaxes(range=[0, 1.02], title=None)
    fig.update_layout(title="Two-hop reasoning: training recipes compared (held-out accuracy)")
    return fig
