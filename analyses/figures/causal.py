"""Pure DataFrame -> plotly Figure functions for patching, attribution and ablation results.

Shared by the circuit report (:mod:`analyses.reports.circuit`), the dashboard and notebooks:
each takes a result table (schemas in :mod:`data.schemas`) and returns a
``plotly.graph_objects.Figure``; none runs a model or reads files. Grids are drawn by
:mod:`analyses.figures.heatmap`.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go

from analyses.figures.heatmap import grid_heatmap, layer_head_heatmap
from analyses.figures.labels import head_set_label, row_labels

#: What a patching effect's sign and size mean, per method (the table's ``method`` column).
#: ``normalized_effect`` = effect / (metric(clean) - metric(corrupted)) in every case.
SIGN = {
    "denoising": "denoising (clean into corrupted run): 1 = restores the clean metric, "
                 "0 = no effect, < 0 = moves it away from clean",
    "noising": "noising (corrupted into clean run): -1 = removes the whole clean - corrupted "
               "gap, 0 = no effect, > 0 = pushes past clean",
    "attribution_denoising": "attribution (gradient estimate of denoising): 1 = restores the "
                             "clean metric, 0 = no effect",
    "attribution_noising": "attribution (gradient estimate of noising): -1 = removes the whole "
                           "gap, 0 = no effect",
}
VALUE_WORDS = {"normalized_effect": "normalized effect", "effect": "effect (metric units)"}
ABLATION_SIGN = ("drop = clean accuracy - accuracy with the set ablated: > 0 = the set matters; "
                 "random sets: mean +- 1 std")


def sign_note(methods) -> str:
    """The sign convention of ``methods`` (patching table ``method`` values), in words."""
    return "; ".join(SIGN.get(m, m) for m in sorted(set(methods)))


def with_note(title: str, note: str) -> str:
    """A figure title with a second, smaller line (plotly's ``<sup>`` subtitle)."""
    return f"{title}<br><sup>{note}</sup>"


def _pick(df: pd.DataFrame, component: str | None, method: str | None) -> pd.DataFrame:
    out = df
    if component is not None:
        out = out[out.component == component]
    if method is not None:
        out = out[out.method == method]
    if out.empty:
        raise ValueError(f"no rows for component={component!r}, method={method!r}; the table "
                         f"has components {sorted(df.component.unique())} and methods "
                         f"{sorted(df.method.unique())}")
    return out


def position_labels(positions, tokens: Sequence[str] | None,
                    varying: Sequence[int] = ()) -> tuple[list[str], str]:
    """Tick labels and axis title for a position axis: ``"3: Mary"`` from ``tokens``.

    ``tokens`` are one prompt's tokens (the patching table keeps positions only); positions in
    ``varying`` hold different tokens in other prompts, so they get a ``*`` and the title says
    the tokens are prompt 0's. Position -1 is "all"; a position past ``tokens`` stays a number.
    """
    if tokens is None:
        return [str(p) for p in positions], "position"
    varying = set(varying)
    labels = []
    for p in positions:
        p = int(p)
        if p < 0 or p >= len(tokens):
            labels.append("all" if p < 0 else str(p))
        else:
            labels.append(f"{p}: {tokens[p]}" + ("*" if p in varying else ""))
    title = "position: token of clean prompt 0"
    if varying:
        title += " (* = the token differs between prompts)"
    return labels, title


def patching_heatmap(df: pd.DataFrame, component: str | None = None, method: str | None = None,
                     value: str = "normalized_effect", title: str | None = None,
                     tokens: Sequence[str] | None = None,
                     varying: Sequence[int] = ()) -> go.Figure:
    """Layer x head (head sweeps) or layer x position (residual/sublayer sweeps) heatmap.

    Per-position head sweeps become head (``L1H2``) x position. The colour scale is centred
    on 0; the title's second line states the sign convention of the method(s) drawn.
    ``tokens`` (e.g. ``data.task_tokens.clean_prompt_tokens(...).tokens``) label the position
    axis, ``varying`` marks the positions whose token differs across prompts
    (:func:`position_labels`).
    """
    d = _pick(df, component, method)
    comp = ", ".join(sorted(d.component.unique()))
    meth = ", ".join(sorted(d.method.unique()))
    title = with_note(title or f"{comp} patching ({meth})", sign_note(d.method))
    words = VALUE_WORDS.get(value, value)
    by_head, by_pos = (d["head"] >= 0).any(), (d["position"] >= 0).any()
    if by_head and not by_pos:
        return layer_head_heatmap(d, value, title=title, colorbar_title=words, diverging=True,
                                  fmt=".3f", what="patching_heatmap")
    if by_head:
        d = d.assign(row=row_labels(d))
        grid = d.pivot_table(index="row", columns="position", values=value, sort=False)
        ylabel = "head"
    else:
        grid = d.pivot_table(index="layer", columns="position", values=value)
        ylabel = "layer"
    if by_pos:
        grid.columns, xlabel = position_labels(grid.columns, tokens, varying)
    else:
        xlabel = "(all positions)"
    return grid_heatmap(grid, title=title, x_title=xlabel, y_title=ylabel, value_title=words,
                        diverging=True, fmt=".3f")


def attribution_scatter(df: pd.DataFrame, component: str = "z", direction: str = "denoising",
                        value: str = "normalized_effect") -> go.Figure:
    """Attribution estimate vs exact patching effect, one point per patch, with Pearson r.

    ``df`` holds both sweeps (methods ``<direction>`` and ``attribution_<direction>``).
    """
    keys = ["layer", "head", "position"]
    exact = _pick(df, component, direction)[keys + [value]]
    attr = _pick(df, component, f"attribution_{direction}")[keys + [value]]
    m = exact.merge(attr, on=keys, suffixes=("_exact", "_attr"))
    r = m[f"{value}_exact"].corr(m[f"{value}_attr"])
    labels = row_labels(m)
    fig = go.Figure(go.Scatter(x=m[f"{value}_exact"], y=m[f"{value}_attr"], mode="markers",
                               text=labels, hovertemplate="%{text}: exact %{x:.3f}, "
                               "attribution %{y:.3f}<extra></extra>"))
    lo = float(min(m[f"{value}_exact"].min(), m[f"{value}_attr"].min()))
    hi = float(max(m[f"{value}_exact"].max(), m[f"{value}_attr"].max()))
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x",
                             line={"dash": "dot", "color": "grey"}))
    words = VALUE_WORDS.get(value, value)
    fig.update_layout(title=with_note(f"attribution vs exact ({component}, {direction}): "
                                      f"r = {r:.3f}", SIGN[direction]),
                      xaxis_title=f"exact {words}", yaxis_title=f"attribution {words}",
                      showlegend=False, height=450)
    return fig


def ablation_table_figure(df: pd.DataFrame) -> go.Figure:
    """Accuracy drop per task for each ablated head set (random sets with +-1 std bars)."""
    if df.empty:
        raise ValueError("empty ablation table")
    fig = go.Figure()
    for name, g in df.groupby("ablated_set", sort=False):
        heads = head_set_label(g["heads"].iloc[0])
        fig.add_trace(go.Bar(x=g["task"], y=g["drop"], name=f"{name} ({heads})",
                             error_y={"type": "data", "array": g["drop_std"]}))
    fig.update_layout(barmode="group",
                      title=with_note("accuracy drop when a head set is ablated", ABLATION_SIGN),
                      xaxis_title="task", yaxis_title="accuracy drop (clean - ablated)",
                      height=420)
    return fig
