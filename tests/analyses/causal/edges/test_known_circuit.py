"""The known induction circuit's edge sets (analyses.causal.edges.known), on a tiny graph and
on a hand-built induction model whose heads the pattern scores must find."""

from __future__ import annotations

import pytest
import torch
from transformer_lens import HookedTransformer

from analyses.causal.edges.faithfulness import circuit_metrics
from analyses.causal.edges.graph import build_graph
from analyses.causal.edges.known import (
    VARIANTS,
    InductionHeads,
    circuit_edges,
    edge_ranks,
    find_induction_heads,
)
from tests.support.tiny import make_pair, tiny_cfg


def _graph(n_layers=3, n_heads=2):
    torch.manual_seed(0)
    return build_graph(HookedTransformer(tiny_cfg(n_layers=n_layers, n_heads=n_heads)))


def test_variants_are_nested_and_hold_exactly_the_named_edges():
    g = _graph()
    heads = InductionHeads(previous_token=[(0, 1)], induction=[(1, 0), (2, 1)])
    core, inputs, nodes, mlps = (circuit_edges(g, heads, v)
                                 for v in ("core", "core+inputs", "nodes", "nodes+mlps"))
    names = {(g.sources[s].name, g.targets[t].name) for s, t in core.nonzero().tolist()}
    assert names == {("L0H1", "L1H0(k)"), ("L0H1", "L2H1(k)"),
                     ("L1H0", "logits"), ("L2H1", "logits")}
    assert bool((core <= inputs).all() and (inputs <= nodes).all() and (nodes <= g.real).all())
    extra = {(g.sources[s].name, g.targets[t].name)
             for s, t in (inputs & ~core).nonzero().tolist()}
    assert extra == {("input", f"{h}({x})") for h in ("L0H1", "L1H0", "L2H1") for x in "qkv"}
    # the node-induced subgraph adds e.g. L1H0 -> L2H1's values and L0H1 -> the logits
    assert nodes[g.source_index(1, 0), g.target_index(2, "v", 1)]
    assert nodes[g.source_index(0, 1), g.target_index(0, "logits")]
    assert not nodes[g.source_index(0, 0), g.target_index(2, "k", 1)]  # L0H0 is no member
    # + every MLP as a relay: exactly the edges among the members, the MLPs, input and logits
    assert bool((nodes <= mlps).all())
    extra = {(g.sources[s].name, g.targets[t].name)
             for s, t in (mlps & ~nodes).nonzero().tolist()}
    members = {"input", "L0H1", "L1H0", "L2H1", "mlp0", "mlp1", "mlp2"}
    assert all(s in members and t.split("(")[0] in members | {"logits"} for s, t in extra)
    assert ("L0H1", "mlp0") in extra and ("mlp0", "L1H0(k)") in extra
    assert ("mlp1", "L2H1(q)") in extra and ("mlp2", "logits") in extra
    assert ("L1H0", "mlp1") in extra and ("mlp0", "mlp1") in extra
    assert ("L0H0", "mlp0") not in extra and ("mlp0", "L1H1(k)") not in extra
    assert len(extra) == int((mlps & ~nodes).sum())
    with pytest.raises(ValueError, match="variant"):
        circuit_edges(g, heads, "everything")


def test_necessity_sets_are_the_full_graph_without_the_core_or_the_induction_outputs():
    g = _graph()
    heads = InductionHeads(previous_token=[(0, 1)], induction=[(1, 0), (2, 1)])
    core = circuit_edges(g, heads, "core")
    assert torch.equal(circuit_edges(g, heads, "all-but-core"), g.real & ~core)
    out = circuit_edges(g, heads, "all-but-induction-out")
    dropped = {(g.sources[s].name, g.targets[t].name)
               for s, t in (g.real & ~out).nonzero().tolist()}
    assert {s for s, _ in dropped} == {"L1H0", "L2H1"}
    # every edge out of the two induction heads: L1H0 feeds layer 2's 6 inputs, mlp1, mlp2 and
    # the logits; L2H1 feeds mlp2 and the logits
    assert len(dropped) == 3 * 2 + 2 + 1 + 2
    others = circuit_edges(g, heads, "all-but-other-heads")
    dropped = {(g.sources[s].name, g.targets[t].name)
               for s, t in (g.real & ~others).nonzero().tolist()}
    # the heads of layers 0-2 that are neither L0H1 nor an induction head: L0H0 (feeds layers
    # 1-2's 12 inputs, 3 MLPs, logits), L1H1 (layer 2's 6, 2 MLPs, logits), L2H0 (mlp2, logits)
    assert {s for s, _ in dropped} == {"L0H0", "L1H1", "L2H0"}
    assert len(dropped) == (12 + 3 + 1) + (6 + 2 + 1) + (1 + 1)
    assert set(VARIANTS) >= {"all-but-core", "all-but-induction-out", "all-but-other-heads"}


def test_edge_ranks_order_real_edges_by_signed_score():
    g = _graph(n_layers=1)
    scores = torch.randn(g.real.shape).masked_fill(~g.real, 0)
    ranks = edge_ranks(g, scores)
    real = ranks[g.real]
    assert sorted(real.tolist()) == list(range(1, g.n_edges + 1))
    top = scores.masked_fill(~g.real, float("-inf")).argmax()
    assert ranks.flatten()[top] == 1


def test_full_and_empty_circuits_have_faithfulness_one_and_zero():
    torch.manual_seed(0)
    model = HookedTransformer(tiny_cfg(dtype=torch.float64)).eval()
    g = build_graph(model)
    res = circuit_metrics(model, g, [g.real, torch.zeros_like(g.real)], [make_pair()])
    assert res.faithfulness[0] == pytest.approx(1, abs=1e-9)
    assert res.faithfulness[1] == pytest.approx(0, abs=1e-9)


def _hand_built_induction(d_vocab=30, n_ctx=24):
    """Two attention-only layers: L0H0 attends to the previous token and writes its identity
    into a second subspace; L1H0 matches the current token against it (an induction head);
    L0H1 and L1H1 attend to BOS. Large scores make the patterns nearly one-hot."""
    cfg = tiny_cfg(n_layers=2, n_heads=2, d_model=2 * d_vocab + n_ctx, d_head=d_vocab,
                   d_vocab=d_vocab, n_ctx=n_ctx, attn_only=True, normalization_type=None,
                   positional_embedding_type="standard", dtype=torch.float64)
    m = HookedTransformer(cfg).eval()
    v = d_vocab
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        m.W_E[:, :v] = torch.eye(v)  # token identity in dims [0, v)
        m.W_pos[:, 2 * v:] = torch.eye(n_ctx)  # position in dims [2v, 2v + n_ctx)
        big = 40.0
        a0, a1 = m.blocks[0].attn, m.blocks[1].attn
        a0.W_Q[0, 2 * v + 1:, :n_ctx - 1] = big * torch.eye(n_ctx - 1)  # query at pos p ...
        a0.W_K[0, 2 * v:2 * v + n_ctx - 1, :n_ctx - 1] = torch.eye(n_ctx - 1)  # ... key p - 1
        a0.W_V[0, :v, :v] = torch.eye(v)
        a0.W_O[0, :v, v:2 * v] = torch.eye(v)  # previous token -> dims [v, 2v)
        a1.W_Q[0, :v, :v] = big * torch.eye(v)  # current token ...
        a1.W_K[0, v:2 * v, :v] = torch.eye(v)  # ... matches the previous-token subspace
        a1.W_V[0, :v, :v] = torch.eye(v)
        a1.W_O[0, :v, :v] = torch.eye(v)
        m.W_U[:v, :v] = torch.eye(v)
        for a in (a0, a1):  # head 1: attends to position 0 (BOS) only
            a.W_Q[1, 2 * v:, 0] = 1.0
            a.W_K[1, 2 * v, 0] = big
    return m


def test_pattern_scores_find_the_hand_built_previous_token_and_induction_heads():
    m = _hand_built_induction()
    g = torch.Generator().manual_seed(0)
    seq = torch.stack([torch.randperm(28, generator=g)[:10] + 2 for _ in range(8)])
    tokens = torch.cat([torch.ones(8, 1, dtype=torch.long), seq, seq], 1)  # (batch, 21)
    heads = find_induction_heads(m, tokens)
    assert heads == InductionHeads(previous_token=[(0, 0)], induction=[(1, 0)])
