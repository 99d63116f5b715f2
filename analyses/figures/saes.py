"""Plotly figures for the attention-SAE tables (``saes.features``, ``saes.heads``).

Pure functions DataFrame -> ``go.Figure`` shared by the dashboard, reports and notebooks;
tables in the long formats of ``data.schemas`` (``sae_feature_hist``, ``sae_feature_heads``,
``sae_logit_effects``, ``sae_head_summary``).

    feature_histogram_figure(hist, feature=12)
    feature_heads_figure(heads, feature=12)        # DFA share vs decoder-weight share per head
    logit_effects_figure(effects, feature=12)      # promoted / suppressed tokens
    head_summary_heatmap(summary, stat="n_families")
    feature_ranking(examples)                      # features ordered by their top activation
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from analyses.figures.checks import require_columns
from analyses.figures.heatmap import layer_head_heatmap
from analyses.figures.labels import row_labels


def _one_feature(df: pd.DataFrame, feature: int, what: str) -> pd.DataFrame:
    part = df[df["feature"] == int(feature)]
    if part.empty:
        raise ValueError(f"{what}: feature {feature} has no rows (features present: "
                         f"{sorted(df['feature'].unique())[:20]} ...)")
    return part


def feature_ranking(examples: pd.DataFrame) -> pd.DataFrame:
    """Features of a ``sae_feature_examples`` table: max activation and #examples, best first."""
    require_columns(examples, ["feature", "activation"], "feature_ranking")
    out = examples.groupby("feature", as_index=False).agg(
        max_activation=("activation", "max"), n_examples=("activation", "size"))
    return out.sort_values("max_activation", ascending=False, ignore_index=True)


def feature_histogram_figure(hist: pd.DataFrame, feature: int) -> go.Figure:
    """Histogram of one feature's non-zero activations (bars at the stored bins)."""
    require_columns(hist, ["feature", "bin_left", "bin_right", "count"], "feature_histogram_figure")
    part = _one_feature(hist, feature, "feature_histogram_figure").sort_values("bin_left")
    fig = go.Figure(go.Bar(
        x=(part["bin_left"] + part["bin_right"]) / 2, y=part["count"],
        width=(part["bin_right"] - part["bin_left"]), marker_color="#4c78a8",
        hovertemplate="[%{customdata[0]:.3g}, %{customdata[1]:.3g}): %{y}<extra></extra>",
        customdata=part[["bin_left", "bin_right"]].to_numpy(),
    ))
    fig.update_layout(title=f"Feature {feature}: activation histogram (non-zero)",
                      xaxis_title="activation", yaxis_title="count", bargap=0.02)
    return fig


def feature_heads_figure(heads: pd.DataFrame, feature: int) -> go.Figure:
    """Per-head DFA share (activation-based) beside the decoder-weight share of one feature."""
    require_columns(heads, ["feature", "layer", "head", "share", "weight_share"],
                    "feature_heads_figure")
    part = _one_feature(heads, feature, "feature_heads_figure").sort_values("head")
    labels = row_labels(part)
    fig = go.Figure([
        go.Bar(x=labels, y=part["share"], name="DFA share (on active tokens)"),
        go.Bar(x=labels, y=part["weight_share"], name="decoder-weight share"),
    ])
    fig.update_layout(title=f"Feature {feature}: direct feature attribution by head",
                      xaxis_title="head", yaxis_title="share", barmode="group",
                      legend={"orientation": "h", "y": -0.2})
    return fig


def logit_effects_figure(effects: pd.DataFrame, feature: int) -> go.Figure:
    """Tokens the feature's decoder direction promotes (right) and suppresses (left)."""
    require_columns(effects, ["feature", "direction", "rank", "token", "value"],
                    "logit_effects_figure")
    part = _one_feature(effects, feature, "logit_effects_figure").sort_values("value")
    colors = ["#d62728" if d == "suppressed" else "#2ca02c" for d in part["direction"]]
    fig = go.Figure(go.Bar(
        x=part["value"], y=[f"{t!s} ({d[0]})" for t, d in zip(part["token"],
                                                               part["direction"])],
        orientation="h", marker_color=colors,
        hovertemplate="%{y}: %{x:.3g}<extra></extra>",
    ))
    fig.update_layout(title=f"Feature {feature}: direct logit effects",
                      xaxis_title="logit effect", yaxis_title="token",
                      height=max(350, 22 * len(part) + 120))
    return fig


def head_summary_heatmap(summary: pd.DataFrame, stat: str = "n_families") -> go.Figure:
    """Layer x head heatmap of a head polysemanticity statistic (``sae_head_summary``)."""
    require_columns(summary, ["layer", "head", "stat", "value"], "head_summary_heatmap")
    rows = summary[summary["stat"] == stat]
    if rows.empty:
        raise ValueError(f"no rows with stat {stat!r}; present: {sorted(summary['stat'].unique())}")
    return layer_head_heatmap(rows, title=f"Heads: {stat}", colorbar_title=stat,
                              colorscale="Purples", what="head_summary_heatmap")
