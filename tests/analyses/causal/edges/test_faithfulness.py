"""Faithfulness end points, the top-k selection and MIB's CPR/CMD integration."""

from __future__ import annotations

import pytest
import torch
from transformer_lens import HookedTransformer

from analyses.causal.edges.eap import edge_attribution
from analyses.causal.edges.faithfulness import MIB_BUDGETS, cpr_cmd, faithfulness_curve, top_edges
from analyses.causal.edges.graph import build_graph
from tests.support.tiny import make_pair, tiny_cfg


def test_cpr_and_cmd_are_mib_trapezoids_on_a_linear_budget_axis():
    budgets = [0.1, 0.5, 1.0]
    faith = [0.2, 0.6, 1.2]
    cpr, cmd = cpr_cmd(budgets, faith)
    assert cpr == pytest.approx(0.4 * 0.4 + 0.5 * 0.9)
    assert cmd == pytest.approx(0.4 * (0.8 + 0.4) / 2 + 0.5 * (0.4 + 0.2) / 2)
    assert MIB_BUDGETS[0] == 0.001 and MIB_BUDGETS[-2:] == (0.5, 1.0)


def test_top_edges_takes_the_highest_signed_or_absolute_scores_of_real_edges():
    model = HookedTransformer(tiny_cfg()).eval()
    graph = build_graph(model)
    scores = torch.zeros(graph.real.shape, dtype=torch.float64)
    scores[0, -1], scores[1, -1], scores[2, -1] = 3.0, -5.0, 1.0
    scores[-1, 0] = 100.0  # not an edge (the last source cannot feed layer 0's inputs)
    assert not graph.real[-1, 0]
    signed = top_edges(graph, scores, 2, "signed")
    absolute = top_edges(graph, scores, 2, "absolute")
    assert signed.sum() == 2 and signed[0, -1] and signed[2, -1]
    assert absolute[0, -1] and absolute[1, -1] and not absolute[-1, 0]


def test_full_graph_is_faithfulness_one_and_empty_graph_zero():
    torch.manual_seed(0)
    model = HookedTransformer(tiny_cfg(normalization_type="RMS", gated_mlp=True, act_fn="silu",
                                       n_key_value_heads=2,
                                       positional_embedding_type="rotary")).eval()
    pair = make_pair(seed=5)
    res = edge_attribution(model, pair)
    curve = faithfulness_curve(model, res.graph, res.scores, [pair]).table
    for ranking in ("signed", "absolute"):
        part = curve[curve.ranking == ranking].set_index("budget").faithfulness
        assert part[0.0] == pytest.approx(0.0, abs=1e-5)
        assert part[1.0] == pytest.approx(1.0, abs=1e-5)
    assert build_graph(model).n_edges == curve.n_edges.max()
