"""A hand-built model with a planted circuit: input -> L0H1(v) -> L1H0(v) -> logits.

Attention-only, no normalisation, W_Q = W_K = 0 (uniform causal attention), all W_V/W_O zero
except L0H1 (reads embedding dims 16-31, writes dims 0-7) and L1H0 (reads dims 0-7, writes
dims 8-15); the unembedding reads dims 8-15 only and the embeddings live in dims 16-31. Every
other edge's source difference is zero or meets a zero gradient, so its score is exactly 0.
"""

from __future__ import annotations

import torch
from transformer_lens import HookedTransformer

from analyses.causal.edges.eap import EAPConfig, edge_attribution, scores_table
from analyses.causal.edges.faithfulness import faithfulness_curve, top_edges
from tests.support.tiny import make_pair, tiny_cfg

PLANTED = {("input", "L0H1(v)"), ("L0H1", "L1H0(v)"), ("L1H0", "logits")}


def planted_model() -> HookedTransformer:
    cfg = tiny_cfg(attn_only=True, normalization_type=None, positional_embedding_type="rotary",
                   dtype=torch.float64)
    model = HookedTransformer(cfg).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.embed.W_E[:, 16:] = torch.randn(cfg.d_vocab, 16, generator=g, dtype=torch.float64)
        a0, a1 = model.blocks[0].attn, model.blocks[1].attn
        a0.W_V[1, 16:] = torch.randn(16, 8, generator=g, dtype=torch.float64)
        a0.W_O[1, :, 0:8] = torch.randn(8, 8, generator=g, dtype=torch.float64)
        a1.W_V[0, 0:8] = torch.randn(8, 8, generator=g, dtype=torch.float64)
        a1.W_O[0, :, 8:16] = torch.randn(8, 8, generator=g, dtype=torch.float64)
        model.unembed.W_U[8:16] = torch.randn(8, cfg.d_vocab, generator=g, dtype=torch.float64)
    return model


def test_planted_edges_score_highest_and_impossible_edges_score_zero():
    model = planted_model()
    pair = make_pair(seed=0)
    for config in (EAPConfig("eap"), EAPConfig("eap-ig", steps=3)):
        table = scores_table(edge_attribution(model, pair, config))
        top = set(zip(table.source[:3], table.target[:3]))
        assert top == PLANTED, config
        assert (table.score[:3].abs() > 1e-3).all()
        assert (table.score[3:] == 0).all(), table[table.score != 0]


def test_the_planted_circuit_alone_is_fully_faithful():
    """Linear model: the 3 planted edges reproduce the clean metric exactly (faithfulness 1)."""
    model = planted_model()
    pair = make_pair(seed=0)
    res = edge_attribution(model, pair)
    keep = top_edges(res.graph, res.scores, 3)
    assert keep.sum() == 3
    curve = faithfulness_curve(model, res.graph, res.scores, [pair], budgets=(0.01, 1.0),
                               rankings=("signed",)).table
    # 1% of 33 edges rounds down to 0 edges: the empty circuit
    assert curve.faithfulness.tolist()[:2] == [0.0, 0.0]
    assert abs(curve.faithfulness.iloc[-1] - 1) < 1e-6
