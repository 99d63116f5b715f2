"""Pure DataFrame -> plotly Figure functions for edge circuits (:mod:`analyses.causal.edges`).

- :func:`circuit_graph`: the top edges of an ``edges`` table as a layered graph: nodes placed
  by layer (input at the bottom, each layer's heads, then its MLP, logits at the top), an
  edge drawn from its source node to the q/k/v input of its target head (offset left /
  centre / right on the head), width and colour by score;
- :func:`faithfulness_figure`: a ``faithfulness`` curve with the run's CPR and CMD
  (``circuit_faithfulness``) in the title;
- :func:`known_circuit_figure`: the faithfulness of the known induction circuit's edge sets
  (``known_circuit``), one bar per edge set and task.

Shared by the circuit report's edge section (:mod:`analyses.reports.edge_section`), the
dashboard (:mod:`dashboard.views.circuit_graph`) and notebooks; none runs a model or reads
files. plotly has no layered-graph layout (networkx's ``multipartite_layout`` would place the
nodes but adds a dependency for ten lines of arithmetic), so the placement is done here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analyses.causal.edges.runs import ablation_of
from analyses.figures.checks import require_columns
from analyses.figures.template import COLORWAY, register
from data.notation import parse_head

register()

POSITIVE, NEGATIVE = COLORWAY[0], COLORWAY[3]  # blue, red
#: What an edge's score, colour and width mean (the ``edges`` table's sign convention).
SIGN = ("score = m(clean) - m(clean with the edge carrying the corrupted output): blue > 0 "
        "(supports the task), red < 0; width ~ |score|")
QKV_OFFSET = {"q": -0.15, "k": 0.0, "v": 0.15}
WIDTH_BINS = 5
#: The most edges one graph draws (a budget above it is refused with a clear error).
MAX_DRAWN = 3000
RANKINGS = ("signed", "absolute")


def _node_of(target: str) -> tuple[str, str | None]:
    """(node, input) of an edge target: ``L1H2(k)`` -> (``L1H2``, ``k``), ``mlp1`` ->
    (``mlp1``, None)."""
    if target.endswith(")") and "(" in target:
        node, kind = target[:-1].split("(")
        return node, kind
    return target, None


def _layer_head(node: str) -> tuple[int, int | None, str]:
    """(layer, head or None, kind) of a node name; the logits' layer is filled in later."""
    if node == "input":
        return -1, None, "input"
    if node == "logits":
        return -2, None, "logits"
    if node.startswith("mlp"):
        return int(node[3:]), None, "mlp"
    h = parse_head(node)
    return h.layer, h.head, "head"


def _size(edges: pd.DataFrame) -> tuple[int, int]:
    """(n_layers, n_heads) of the model the whole table comes from."""
    layers, heads = [0], [0]
    for name in pd.concat([edges.source, edges.target.map(lambda t: _node_of(t)[0])]).unique():
        layer, head, _ = _layer_head(name)
        layers.append(layer)
        if head is not None:
            heads.append(head)
    return max(layers) + 1, max(heads) + 1


def _positions(nodes, n_layers: int, n_heads: int) -> dict[str, tuple[float, float]]:
    """Node -> (x, y): y = 0 input, 2l + 1 heads of layer l, 2l + 2 its MLP, top logits."""
    centre = (n_heads - 1) / 2
    out = {}
    for node in nodes:
        layer, head, kind = _layer_head(node)
        if kind == "input":
            out[node] = (centre, 0.0)
        elif kind == "logits":
            out[node] = (centre, 2.0 * n_layers + 1)
        elif kind == "mlp":
            out[node] = (centre, 2.0 * layer + 2)
        else:
            out[node] = (float(head), 2.0 * layer + 1)
    return out


def select_edges(edges: pd.DataFrame, n: int, ranking: str = "signed") -> pd.DataFrame:
    """The ``n`` top edges: highest score (signed) or highest |score| (absolute), as
    :func:`analyses.causal.edges.faithfulness.top_edges` keeps them (ties: table order)."""
    if ranking not in RANKINGS:
        raise ValueError(f"ranking must be one of {RANKINGS}, got {ranking!r}")
    key = edges.score.abs() if ranking == "absolute" else edges.score
    order = np.argsort(-key.to_numpy(), kind="stable")
    return edges.iloc[order[:max(int(n), 0)]]


def circuit_graph(edges: pd.DataFrame, n: int, ranking: str = "signed",
                  title: str | None = None) -> go.Figure:
    """The top ``n`` edges of an ``edges`` table (all of one model) as a layered graph."""
    require_columns(edges, ["source", "target", "score"], "edges table",
                    "run `attnlab circuit discover`")
    if n > MAX_DRAWN:
        raise ValueError(f"{n} edges is more than one graph draws legibly ({MAX_DRAWN}); "
                         "choose a smaller budget")
    n_layers, n_heads = _size(edges)
    top = select_edges(edges, n, ranking)
    targets = [_node_of(t) for t in top.target]
    nodes = list(dict.fromkeys(["input", *top.source, *(t for t, _ in targets), "logits"]))
    pos = _positions(nodes, n_layers, n_heads)
    fig = go.Figure()
    scale = float(top.score.abs().max()) if len(top) else 1.0
    scale = scale or 1.0
    bins = np.minimum((top.score.abs().to_numpy() / scale * WIDTH_BINS).astype(int),
                      WIDTH_BINS - 1)
    mids_x, mids_y, hover, colours = [], [], [], []
    for sign, colour in ((1, POSITIVE), (-1, NEGATIVE)):
        for b in range(WIDTH_BINS):
            xs, ys = [], []
            for (src, tgt, score), (node, kind), bin_ in zip(
                    top[["source", "target", "score"]].itertuples(index=False), targets, bins):
                if bin_ != b or (score >= 0) != (sign > 0):
                    continue
                (x0, y0), (x1, y1) = pos[src], pos[node]
                x1, y1 = x1 + QKV_OFFSET.get(kind, 0.0), y1 - (0.12 if kind else 0.0)
                xs += [x0, x1, None]
                ys += [y0, y1, None]
                mids_x.append((x0 + x1) / 2)
                mids_y.append((y0 + y1) / 2)
                hover.append(f"{src} → {tgt}: {score:.4g}")
                colours.append(colour)
            if xs:
                fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", hoverinfo="skip",
                                         line={"color": colour, "width": 1 + 2 * b},
                                         opacity=0.75, showlegend=False))
    fig.add_trace(go.Scatter(x=mids_x, y=mids_y, mode="markers", text=hover,
                             hovertemplate="%{text}<extra></extra>", showlegend=False,
                             marker={"size": 6, "color": colours, "opacity": 0.3}))
    symbols = {"input": "diamond", "logits": "diamond", "mlp": "square", "head": "circle"}
    fig.add_trace(go.Scatter(
        x=[pos[v][0] for v in nodes], y=[pos[v][1] for v in nodes], mode="markers+text",
        text=nodes, textposition="middle right", hovertemplate="%{text}<extra></extra>",
        marker={"size": 12, "color": "#f3f3f3", "line": {"color": "#262730", "width": 1.5},
                "symbol": [symbols[_layer_head(v)[2]] for v in nodes]}, showlegend=False))
    ticks = [0.0] + [v for layer in range(n_layers) for v in (2.0 * layer + 1, 2.0 * layer + 2)]
    labels = ["input"] + [t for layer in range(n_layers) for t in (f"L{layer} heads",
                                                                   f"mlp{layer}")]
    which = "top |score|" if ranking == "absolute" else "top-scoring"
    head = title or f"Edge circuit: {len(top)} {which} edges of {len(edges)}"
    fig.update_layout(
        title=f"{head}<br><sup>{SIGN}; q/k/v inputs enter a head left/centre/right</sup>",
        height=max(420, 60 * (n_layers + 2)),
        xaxis={"visible": False, "range": [-0.8, n_heads + 0.2]},
        yaxis={"tickvals": ticks + [2.0 * n_layers + 1], "ticktext": labels + ["logits"],
               "zeroline": False, "showgrid": False})
    return fig


def faithfulness_figure(curve: pd.DataFrame, summary: pd.DataFrame,
                        title: str = "Faithfulness vs edge budget") -> go.Figure:
    """Faithfulness of the top edges at each budget, one line per ranking, CPR/CMD in the
    title (CPR of the signed ranking, CMD of the absolute one, as MIB reports them).

    The budget axis is drawn on a log scale so the small budgets are visible; CPR and CMD
    integrate it linearly (MIB). The empty circuit (budget 0, faithfulness 0 by
    construction) is left off the log axis.
    """
    require_columns(curve, ["ranking", "budget", "n_edges", "faithfulness"],
                    "faithfulness table", "run `attnlab circuit evaluate`")
    require_columns(summary, ["ranking", "cpr", "cmd"], "circuit_faithfulness table",
                    "run `attnlab circuit evaluate`")
    s = summary.set_index("ranking")
    ablation = ablation_of(curve)
    empty = "the corrupted run" if ablation == "corrupted" else "the empty circuit"
    words = []
    if "signed" in s.index:
        words.append(f"CPR {s.at['signed', 'cpr']:.3f} (signed)")
    if "absolute" in s.index:
        words.append(f"CMD {s.at['absolute', 'cmd']:.3f} (|score|)")
    fig = go.Figure()
    for ranking, part in curve[curve.budget > 0].groupby("ranking", sort=False):
        part = part.sort_values("budget")
        fig.add_trace(go.Scatter(
            x=part.budget, y=part.faithfulness, mode="lines+markers",
            name=f"{ranking} ranking", customdata=part.n_edges,
            hovertemplate="budget %{x}: %{customdata} edges, faithfulness %{y:.3f}"
                          "<extra>" + ranking + "</extra>"))
    fig.add_hline(y=1.0, line={"dash": "dot", "color": "#888"})
    fig.add_hline(y=0.0, line={"dash": "dot", "color": "#888"})
    fig.update_layout(
        title=f"{title}: {', '.join(words)}<br><sup>1 = the full model, 0 = {empty}; other "
              f"edges ablated with {ablation} activations; CPR/CMD integrate the linear budget "
              "axis (MIB)</sup>",
        xaxis={"type": "log", "title": "edge budget (fraction of edges kept, log scale)"},
        yaxis={"title": "faithfulness"})
    return fig


def known_circuit_figure(known: pd.DataFrame,
                         title: str = "Known induction circuit: faithfulness of its edge sets"
                         ) -> go.Figure:
    """One horizontal bar per edge set of a ``known_circuit`` table (several tasks or
    ablations may be concatenated: one colour each), labelled with its edge count.

    Sets kept alone (core .. nodes+mlps) are sufficient if near 1; the ``all-but-`` sets
    (the full graph without some edges) show necessity: near 0 if the removed edges are
    needed.
    """
    require_columns(known, ["variant", "n_edges", "faithfulness"], "known_circuit table",
                    "run `attnlab circuit evaluate` on an induction task")
    known = known.copy()
    keys = [c for c in ("task", "ablation") if c in known.columns]
    known["group"] = known[keys].astype(str).agg(", ".join, axis=1) if keys else "circuit"
    order = list(dict.fromkeys(known.variant))
    fig = go.Figure()
    for group, part in known.groupby("group", sort=False):
        part = part.set_index("variant").reindex(order).dropna(subset=["faithfulness"])
        fig.add_trace(go.Bar(
            y=part.index, x=part.faithfulness, orientation="h", name=group,
            text=[f"{f:.3f} ({int(n)} edges)" for f, n in zip(part.faithfulness,
                                                              part.n_edges)],
            textposition="outside", cliponaxis=False,
            hovertemplate="%{y}: faithfulness %{x:.3f}<extra>" + group + "</extra>"))
    for x in (0.0, 1.0):
        fig.add_vline(x=x, line={"dash": "dot", "color": "#888"})
    heads = ""
    if {"previous_token_heads", "induction_heads"} <= set(known.columns):
        heads = (f"previous-token {known.previous_token_heads.iloc[0]}, induction "
                 f"{known.induction_heads.iloc[0]} (from attention patterns); ")
    fig.update_layout(
        title=f"{title}<br><sup>{heads}kept alone: 1 = as faithful as the full model; "
              "all-but-: 0 = the removed edges are necessary</sup>",
        barmode="group",
        xaxis={"title": "faithfulness",  # room for the labels of negative bars
               "range": [min(-0.3, known.faithfulness.min() - 0.3),
                         max(1.2, known.faithfulness.max() + 0.3)]},
        yaxis={"autorange": "reversed", "title": ""},
        height=140 + 45 * len(order) * max(1, known.group.nunique()) // 2)
    return fig
