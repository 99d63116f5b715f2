"""Plotly figures for the redundancy tables: pure functions DataFrame -> ``go.Figure``.

Shared by the dashboard, ``attnlab redundancy`` (``redundancy.html``) and notebooks; they take
the documented long tables (``data.schemas``) and never read files or run a model.

    importance_bars(run.read_table("redundancy"))      # score per layer, attn / mlp / block
    importance_heatmap(run.read_table("redundancy"))   # layer x module
    drop_curve_figure(run.read_table("drop_curve"), "nn_agreement")
    speedup_figure(run.read_table("speedup"))
    head_importance_heatmap(run.read_table("head_importance"), task="ioi", method="zero")
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go

from analyses.figures.checks import require_columns

MODULE_COLORS = {"attn": "#1f77b4", "mlp": "#ff7f0e", "block": "#7f7f7f"}
STRATEGY_COLORS = {"attn": "#1f77b4", "mlp": "#ff7f0e", "block": "#7f7f7f",
                   "joint": "#2ca02c"}


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    require_columns(df, columns, what, hint='re-run `attnlab redundancy`')


def _one_definition(df: pd.DataFrame, definition: str) -> pd.DataFrame:
    if "definition" not in df.columns:
        return df
    sub = df[df["definition"] == definition]
    if sub.empty:
        raise ValueError(f"no scores with definition {definition!r}; "
                         f"have {sorted(df['definition'].unique())}")
    return sub


def importance_bars(scores: pd.DataFrame, definition: str = "unit") -> go.Figure:
    """Grouped bars: He et al. score per layer, one colour per module (low = redundant)."""
    _require(scores, ["layer", "module", "score"], "importance_bars")
    scores = _one_definition(scores, definition)
    fig = go.Figure()
    for module, sub in scores.groupby("module", sort=False):
        sub = sub.sort_values("layer")
        fig.add_bar(x=sub["layer"], y=sub["score"], name=module,
                    marker_color=MODULE_COLORS.get(module))
    fig.update_layout(barmode="group", title=f"Importance 1 - cos(X, Y) ({definition})",
                      xaxis_title="layer", yaxis_title="score (low = redundant)")
    return fig


def importance_heatmap(scores: pd.DataFrame, definition: str = "unit") -> go.Figure:
    """Layer x module heatmap of the scores."""
    _require(scores, ["layer", "module", "score"], "importance_heatmap")
    wide = _one_definition(scores, definition).pivot_table(
        index="module", columns="layer", values="score")
    wide = wide.reindex([m for m in ("attn", "mlp", "block") if m in wide.index])
    fig = go.Figure(go.Heatmap(z=wide.values, x=list(wide.columns), y=list(wide.index),
                               colorscale="Viridis", colorbar_title="score",
                               text=wide.round(4).values, texttemplate="%{text}"))
    fig.update_layout(title=f"Importance per layer and module ({definition})",
                      xaxis_title="layer")
    return fig


def drop_curve_figure(curve: pd.DataFrame, metric: str) -> go.Figure:
    """``metric`` vs number of dropped modules: one line per strategy/mode, random dashed.

    The random baseline is the mean over its seeds, per strategy.
    """
    _require(curve, ["strategy", "mode", "n_dropped", "metric", "value"], "drop_curve_figure")
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
    fig.update_layout(title=f"{metric} vs dropped modules", xaxis_title="modules dropped",
                      yaxis_title=metric)
    return fig


def speedup_figure(speed: pd.DataFrame) -> go.Figure:
    """Measured speedup (full / pruned median wall time) vs number of dropped modules."""
    _require(speed, ["strategy", "mode", "n_dropped", "speedup"], "speedup_figure")
    fig = go.Figure()
    for (strategy, mode), g in speed.groupby(["strategy", "mode"], sort=False):
        g = g.sort_values("n_dropped")
        fig.add_scatter(x=g["n_dropped"], y=g["speedup"], mode="lines+markers",
                        name=f"{strategy} ({mode})",
                        line={"color": STRATEGY_COLORS.get(strategy),
                              "dash": "dot" if mode == "iterative" else "solid"})
    fig.add_hline(y=1.0, line_dash="dash", line_color="grey")
    fig.update_layout(title="Measured wall-time speedup", xaxis_title="modules dropped",
                      yaxis_title="speedup (x)")
    return fig


def head_importance_heatmap(table: pd.DataFrame, task: str | None = None,
                            method: str = "zero") -> go.Figure:
    """Layer x head heatmap of one method's metric drop for one task."""
    _require(table, ["task", "layer", "head", "method", "value"], "head_importance_heatmap")
    task = task if task is not None else str(table["task"].iloc[0])
    sub = table[(table["task"] == task) & (table["method"] == method)]
    if sub.empty:
        raise ValueError(f"no rows for task {task!r}, method {method!r}")
    wide = sub.pivot_table(index="layer", columns="head", values="value")
    fig = go.Figure(go.Heatmap(z=wide.values, x=list(wide.columns), y=list(wide.index),
                               colorscale="RdBu", zmid=0.0, colorbar_title="drop"))
    fig.update_layout(title=f"Head importance: {task}, {method}", xaxis_title="head",
                      yaxis_title="layer")
    return fig


def report_html(result) -> str:
    """One self-contained HTML page (plotly.js inline once) with every figure of a result."""
    figs = [importance_bars(result.redundancy), importance_heatmap(result.redundancy)]
    if "definition" in result.redundancy and (
            result.redundancy["definition"] == "residual_sum").any():
        figs.append(importance_bars(result.redundancy, "residual_sum"))
    figs += [drop_curve_figure(result.drop_curve, m)
             for m in result.drop_curve["metric"].unique()]
    figs.append(speedup_figure(result.speedup))
    if result.head_importance is not None:
        figs += [head_importance_heatmap(result.head_importance, t, m)
                 for t in result.head_importance["task"].unique() for m in ("zero", "mean")]
    parts = [f.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, f in enumerate(figs)]
    verdict = result.comparison.verdict
    return ("<html><head><meta charset='utf-8'><title>attnlab redundancy</title></head><body>"
            f"<h2>Redundancy (He et al. 2024)</h2><p>{verdict}</p>" + "".join(parts)
            + "</body></html>")
