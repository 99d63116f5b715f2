"""Plotly figures of the intervention studies: pure functions DataFrame -> ``go.Figure``.

    massive_ablation_figure(run.read_table("massive_ablation"))   # metric per condition
    ablation_sink_rate_figure(run.read_table("massive_ablation")) # sink rate per layer
    sink_decomposition_figure(run.read_table("sink_decomposition"))
    sink_removal_figure(run.read_table("sink_removal"))
    ablation_summary(run.read_table("massive_ablation"))          # condition x metric table
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analyses.figures.checks import require_columns
from analyses.figures.labels import row_label, row_labels

ABLATION_COLUMNS = ("condition", "draw", "metric", "layer", "value")
DECOMP_COLUMNS = ("layer", "head", "stat", "value")
REMOVAL_COLUMNS = ("scope", "layer", "head", "metric", "value", "baseline", "delta")
CONDITION_ORDER = ("none", "zero", "mean", "random")
CONDITION_COLOURS = {"none": "#4c78a8", "zero": "#e45756", "mean": "#54a24b",
                     "random": "#9d755d"}
#: metrics drawn as panels, in this order when present (accuracies follow)
PANEL_METRICS = ("lm_loss", "embedding_cos", "nn_agreement")


def ablation_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Condition x model-wide metric: the value (random: mean over draws), and for random the
    spread as ``<metric>_std`` (standard deviation over draws) and ``draws``."""
    require_columns(df, ABLATION_COLUMNS, "ablation_summary")
    rows = df[(df["layer"] == -1) & (df["metric"] != "sink_rate")]
    g = rows.groupby(["condition", "metric"])["value"]
    mean = g.mean().unstack()
    std = g.std().unstack().add_suffix("_std")
    std.loc[std.index != "random"] = np.nan  # the spread of the random draws only
    out = mean.join(std)
    out = out.dropna(axis=1, how="all")
    out["draws"] = df.groupby("condition")["draw"].nunique()
    order = [c for c in CONDITION_ORDER if c in out.index]
    return out.loc[order + [c for c in out.index if c not in order]].reset_index()


def _panels(metrics: list[str]) -> list[str]:
    first = [m for m in PANEL_METRICS if m in metrics]
    return first + sorted(m for m in metrics if m.startswith("acc_"))


def massive_ablation_figure(df: pd.DataFrame) -> go.Figure:
    """One panel per metric (LM loss or embedding fidelity, then task accuracies): a bar per
    condition; the random control shows its mean with the min-max over draws as error bar."""
    require_columns(df, ABLATION_COLUMNS, "massive_ablation_figure")
    rows = df[(df["layer"] == -1)]
    panels = _panels(sorted(rows["metric"].unique()))
    if not panels:
        raise ValueError("massive_ablation_figure: no lm_loss, embedding or accuracy metric")
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=panels)
    for col, metric in enumerate(panels, 1):
        g = rows[rows["metric"] == metric].groupby("condition")["value"]
        stats = pd.DataFrame({"mean": g.mean(), "lo": g.min(), "hi": g.max()})
        order = [c for c in CONDITION_ORDER if c in stats.index]
        stats = stats.loc[order]
        fig.add_trace(go.Bar(
            x=order, y=stats["mean"], marker_color=[CONDITION_COLOURS[c] for c in order],
            error_y=dict(type="data", symmetric=False, array=stats["hi"] - stats["mean"],
                         arrayminus=stats["mean"] - stats["lo"]),
            hovertemplate="%{x}: %{y:.4g}<extra>" + metric + "</extra>", showlegend=False),
            row=1, col=col)
        if metric == "lm_loss":
            fig.update_yaxes(type="log", row=1, col=col)
    fig.update_layout(title="Massive activations patched at their emergence layer "
                      "(random: mean, bars = min-max over draws)",
                      height=380, width=max(420, 230 * len(panels)), bargap=0.25)
    return fig


def ablation_sink_rate_figure(df: pd.DataFrame) -> go.Figure:
    """Sink rate (share of heads attending > epsilon to position 0) per layer, per condition."""
    require_columns(df, ABLATION_COLUMNS, "ablation_sink_rate_figure")
    rows = df[(df["metric"] == "sink_rate") & (df["layer"] >= 0)]
    if rows.empty:
        raise ValueError("ablation_sink_rate_figure: the table has no per-layer sink_rate rows")
    fig = go.Figure()
    mean = rows.groupby(["condition", "layer"])["value"].mean()
    for cond in [c for c in CONDITION_ORDER if c in mean.index.get_level_values(0)]:
        s = mean.loc[cond]
        fig.add_trace(go.Scatter(x=s.index, y=s.values, mode="lines+markers", name=cond,
                                 line=dict(color=CONDITION_COLOURS[cond],
                                           dash="dot" if cond == "random" else "solid")))
    fig.update_layout(title="Sink rate per layer on held-out text", xaxis_title="layer",
                      yaxis_title="share of sink heads", yaxis_range=[-0.03, 1.03], height=380)
    return fig


def _decomp_grid(df: pd.DataFrame) -> pd.DataFrame:
    require_columns(df, DECOMP_COLUMNS, "sink_decomposition_figure")
    grid = df.pivot_table(index=["layer", "head"], columns="stat", values="value")
    need = ["sink_score", "cos0", "cos_other", "k0_norm", "k_other_norm"]
    missing = [c for c in need if c not in grid.columns]
    if missing:
        raise ValueError(f"sink_decomposition_figure: stats {missing} missing")
    return grid.reset_index()


def sink_decomposition_figure(df: pd.DataFrame) -> go.Figure:
    """One point per head: how much more aligned q is with k0 than with the other keys
    (cos0 - cos_other) against how much longer k0 is (log10 |k0| / |k_other|), coloured by the
    head's sink score."""
    grid = _decomp_grid(df)
    x = grid["cos0"] - grid["cos_other"]
    y = np.log10(grid["k0_norm"] / grid["k_other_norm"])
    labels = [row_label(la, h) for la, h in zip(grid["layer"], grid["head"])]
    fig = go.Figure(go.Scatter(
        x=x, y=y, mode="markers", text=labels,
        marker=dict(color=grid["sink_score"], colorscale="Viridis", cmin=0, cmax=1, size=8,
                    colorbar=dict(title="sink score")),
        customdata=np.stack([grid["sink_score"], grid["cos0"], grid["cos_other"]], -1),
        hovertemplate="%{text}<br>sink score %{customdata[0]:.3f}<br>cos0 %{customdata[1]:.3f}"
                      "<br>cos other %{customdata[2]:.3f}<br>log10 |k0|/|k| %{y:.3f}"
                      "<extra></extra>"))
    fig.update_layout(title="Why heads attend to position 0: direction vs key length",
                      xaxis_title="cos(q, k0) - mean cos(q, k_other)",
                      yaxis_title="log10 |k0| / mean |k_other|", height=420)
    return fig


def sink_removal_figure(df: pd.DataFrame) -> go.Figure:
    """Metric change when the attention to position 0 is removed: per layer (bars) and per head
    (labelled bars beside them)."""
    require_columns(df, REMOVAL_COLUMNS, "sink_removal_figure")
    metric = str(df["metric"].iloc[0])
    labels = row_labels(df)
    colours = ["#4c78a8" if s == "layer" else "#f58518" for s in df["scope"]]
    fig = go.Figure(go.Bar(x=labels, y=df["delta"], marker_color=colours,
                           customdata=df["value"],
                           hovertemplate="%{x}: %{customdata:.4f} (change %{y:+.4f})"
                                         "<extra></extra>"))
    fig.update_layout(title=f"Removing the attention to position 0: change in {metric} "
                      f"(unpatched {df['baseline'].iloc[0]:.4f})",
                      yaxis_title=f"Δ {metric}", height=380,
                      width=max(500, 22 * len(labels) + 160))
    return fig
