"""The edge-circuit figures, on real EAP scores and a real faithfulness curve of a tiny model."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from transformer_lens import HookedTransformer

from analyses.causal.edges.faithfulness import top_edges
from analyses.causal.edges.graph import build_graph
from analyses.causal.edges.known import VARIANTS, InductionHeads, known_circuit_table
from analyses.causal.edges.table import scores_matrix
from analyses.figures.edges import (
    MAX_DRAWN,
    NEGATIVE,
    POSITIVE,
    circuit_graph,
    faithfulness_figure,
    known_circuit_figure,
    select_edges,
)
from tests.support.edges import edge_tables
from tests.support.tiny import make_pair, tiny_cfg


@pytest.fixture(scope="module")
def tables():
    return edge_tables()


def _segments(fig):
    """(colour, width, (x0, y0, x1, y1)) of every drawn edge."""
    out = []
    for tr in fig.data:
        if tr.mode != "lines":
            continue
        xs, ys = list(tr.x), list(tr.y)
        for i in range(0, len(xs), 3):
            out.append((tr.line.color, tr.line.width, (xs[i], ys[i], xs[i + 1], ys[i + 1])))
    return out


@pytest.mark.parametrize("ranking", ["signed", "absolute"])
def test_select_edges_keeps_what_the_faithfulness_curve_keeps(tables, ranking):
    torch.manual_seed(0)
    graph, scores = scores_matrix(HookedTransformer(tiny_cfg()).eval(), tables["edges"])
    names_s = [s.name for s in graph.sources]
    names_t = [t.name for t in graph.targets]
    for n in (1, 7, 30):
        keep = top_edges(graph, scores, n, ranking)
        want = {(names_s[s], names_t[t]) for s, t in torch.nonzero(keep).tolist()}
        got = set(zip(*select_edges(tables["edges"], n, ranking)[["source", "target"]].T.values))
        assert got == want


def test_circuit_graph_draws_the_top_edges_by_layer_with_sign_colours(tables):
    edges = tables["edges"]
    fig = circuit_graph(edges, 12)
    segs = _segments(fig)
    top = edges.head(12)  # the table is sorted by score: the signed top 12
    assert len(segs) == 12
    nodes = fig.data[-1]
    pos = dict(zip(nodes.text, zip(nodes.x, nodes.y)))
    assert set(pos) == {"input", "logits", *top.source,
                        *(t.split("(")[0] for t in top.target)}
    # layered placement: input at 0, heads of layer l at 2l + 1 (x = head), mlp l at 2l + 2
    assert pos["input"][1] == 0 and pos["logits"][1] == 5  # 2 layers
    for name, (x, y) in pos.items():
        if name.startswith("L"):
            assert (x, y) == (int(name[3:]), 2 * int(name[1]) + 1)
        elif name.startswith("mlp"):
            assert y == 2 * int(name[3:]) + 2
    n_pos, n_neg = int((top.score > 0).sum()), int((top.score < 0).sum())
    assert sum(c == POSITIVE for c, _, _ in segs) == n_pos
    assert sum(c == NEGATIVE for c, _, _ in segs) == n_neg
    # the strongest edge is drawn widest, and starts at its source node
    best = top.iloc[top.score.abs().argmax()]
    widest = max(segs, key=lambda s: s[1])
    assert widest[1] == max(s[1] for s in segs) > min(s[1] for s in segs)
    assert widest[2][:2] == pos[best.source]
    assert "blue > 0" in fig.layout.title.text


def test_circuit_graph_absolute_ranking_can_draw_negative_edges(tables):
    edges = tables["edges"]
    n = 20
    top = select_edges(edges, n, "absolute")
    segs = _segments(circuit_graph(edges, n, ranking="absolute"))
    assert sum(c == NEGATIVE for c, _, _ in segs) == int((top.score < 0).sum()) > 0


def test_circuit_graph_refuses_bad_input(tables):
    with pytest.raises(ValueError, match="smaller budget"):
        circuit_graph(tables["edges"], MAX_DRAWN + 1)
    with pytest.raises(ValueError, match="lacks columns"):
        circuit_graph(tables["edges"].drop(columns="score"), 5)
    with pytest.raises(ValueError, match="ranking"):
        select_edges(tables["edges"], 5, "magnitude")


def test_faithfulness_figure_has_cpr_cmd_in_the_title_and_one_line_per_ranking(tables):
    curve, summary = tables["faithfulness"], tables["circuit_faithfulness"]
    fig = faithfulness_figure(curve, summary)
    s = summary.set_index("ranking")
    assert f"CPR {s.at['signed', 'cpr']:.3f} (signed)" in fig.layout.title.text
    assert f"CMD {s.at['absolute', 'cmd']:.3f} (|score|)" in fig.layout.title.text
    lines = [tr for tr in fig.data if tr.mode == "lines+markers"]
    assert [tr.name for tr in lines] == ["signed ranking", "absolute ranking"]
    signed = curve[(curve.ranking == "signed") & (curve.budget > 0)].sort_values("budget")
    assert list(lines[0].x) == signed.budget.tolist()  # the empty circuit is off the log axis
    assert list(lines[0].y) == pytest.approx(signed.faithfulness.tolist())
    assert lines[0].y[-1] == pytest.approx(1.0)  # the full graph
    assert fig.layout.xaxis.type == "log"


def test_known_circuit_figure_has_one_bar_per_edge_set_and_task():
    torch.manual_seed(0)
    model = HookedTransformer(tiny_cfg(n_layers=2, n_heads=2, dtype=torch.float64)).eval()
    graph = build_graph(model)
    heads = InductionHeads(previous_token=[(0, 1)], induction=[(1, 0)])
    scores = torch.randn(graph.real.shape, dtype=torch.float64)
    table = known_circuit_table(model, graph, heads, [make_pair()], scores)
    both = pd.concat([table.assign(task="a"), table.assign(task="b", faithfulness=-0.5)])
    fig = known_circuit_figure(both)
    assert [tr.name for tr in fig.data] == ["a, corrupted", "b, corrupted"]
    bars = fig.data[0]
    assert list(bars.y) == list(VARIANTS)
    assert list(bars.x) == pytest.approx(table.faithfulness.tolist())
    n = table.set_index("variant").n_edges
    assert bars.text[0].endswith(f"({n['core']} edges)")
    assert fig.layout.xaxis.range[0] <= -0.8  # room for the negative bars' labels
    assert "L0H1" in fig.layout.title.text and "L1H0" in fig.layout.title.text
    with pytest.raises(ValueError, match="known_circuit"):
        known_circuit_figure(table.drop(columns="faithfulness"))
