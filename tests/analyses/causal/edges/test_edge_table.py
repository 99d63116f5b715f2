"""The ``edges`` table's rank is the circuits' order (faithfulness.edge_order), ties included."""

from __future__ import annotations

import torch
from transformer_lens import HookedTransformer

from analyses.causal.edges.eap import EdgeScores, scores_table
from analyses.causal.edges.faithfulness import top_edges
from analyses.causal.edges.graph import build_graph
from analyses.causal.edges.known import edge_ranks
from tests.support.tiny import tiny_cfg


def _tied_scores():
    """A tiny model's graph with scores in {-1, 0, 1, 2}: nearly every score is tied."""
    graph = build_graph(HookedTransformer(tiny_cfg()).eval())
    g = torch.Generator().manual_seed(3)
    scores = torch.randint(-1, 3, graph.real.shape, generator=g).double()
    return graph, scores.masked_fill(~graph.real, 0.0)


def test_edges_table_breaks_exact_ties_in_source_target_order_like_the_circuits():
    graph, scores = _tied_scores()
    table = scores_table(EdgeScores(graph, scores, "eap", 0.0, 0.0))
    names_s = [n.name for n in graph.sources]
    names_t = [t.name for t in graph.targets]
    # independent order: score descending, then source index, then target index
    expected = sorted(((-float(scores[s, t]), s, t) for s, t in zip(*torch.nonzero(graph.real,
                                                                                  as_tuple=True))))
    got = [(names_s.index(s), names_t.index(t)) for s, t in zip(table.source, table.target)]
    assert got == [(int(s), int(t)) for _, s, t in expected]
    assert table["rank"].tolist() == list(range(1, graph.n_edges + 1))
    # the table's rank is known.edge_ranks' rank, and its top n rows are top_edges(n)
    ranks = edge_ranks(graph, scores)
    assert [int(ranks[s, t]) for s, t in got] == table["rank"].tolist()
    keep = top_edges(graph, scores, 17)
    assert {(s, t) for s, t in got[:17]} == {tuple(x) for x in torch.nonzero(keep).tolist()}
    assert len(set(scores[graph.real].tolist())) == 4  # ties everywhere: the test has power
