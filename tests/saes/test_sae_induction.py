"""saes.induction on a model with a planted induction circuit (weights set by hand).

A 2-layer attention-only TransformerLens model: in layer 0, head 0 is a previous-token head
(position p attends to p - 1 and writes that token into a "previous token" subspace); in
layer 1, head 0 is an induction head (its query is the current token, its key the previous
token, so it attends to the token after the previous occurrence, else to <bos>). Heads 1
are small and random. SAEs
are trained on each layer's hook_z; DFA on induction-like features must select exactly the
planted induction head, which the SAE-free attention score independently confirms.
"""

from __future__ import annotations

import torch

V, P, C = 20, 24, 10.0  # vocab, context, attention sharpness
TOK, POS, PREV, OUT = 0, V, V + P, 2 * V + P  # residual subspace offsets



def planted_model():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from probes.models import LoadedModel

    cfg = HookedTransformerConfig(n_layers=2, d_model=3 * V + P, n_heads=2, d_head=P, n_ctx=P,
                                  d_vocab=V, attn_only=True, normalization_type=None,
                                  act_fn="relu", seed=0, device="cpu")
    model = HookedTransformer(cfg)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)  # heads 1: small random
        for w in (model.W_E, model.W_pos, model.W_U, model.b_U, *model.b_O):
            w.zero_()
        model.W_E[:, TOK:TOK + V] = torch.eye(V)
        model.W_pos[:, POS:POS + P] = torch.eye(P)
        model.W_U[OUT:OUT + V] = torch.eye(V)
        a0, a1 = model.blocks[0].attn, model.blocks[1].attn
        for a in (a0, a1):
            for w in (a.W_Q, a.W_K, a.W_V, a.W_O, a.b_Q, a.b_K, a.b_V):
                w[0].zero_()
        idx = torch.arange(P - 1)
        a0.W_Q[0, POS + idx + 1, idx + 1] = C  # query: own position p
        a0.W_K[0, POS + idx, idx + 1] = C  # key: position p' scores for query p' + 1
        a0.W_V[0, TOK + torch.arange(V), torch.arange(V)] = 1.0  # value: the token
        a0.W_O[0, torch.arange(V), PREV + torch.arange(V)] = 1.0  # -> previous-token subspace
        a1.W_Q[0, TOK + torch.arange(V), torch.arange(V)] = C  # query: current token
        a1.W_K[0, PREV + torch.arange(V), torch.arange(V)] = C  # key: token before the key
        # no match: attend to <bos> (id 0, a zero value), as real induction heads do
        a1.W_Q[0, TOK + torch.arange(1, V), P - 1] = C
        a1.W_K[0, TOK, P - 1] = C / 2
        a1.W_V[0, TOK + torch.arange(1, V), torch.arange(1, V)] = 1.0
        a1.W_O[0, torch.arange(V), OUT + torch.arange(V)] = 1.0
    return LoadedModel(model.eval(), None, "decoder", "planted")


def train_saes(loaded):
    from probes.tokens import Tokens
    from saes.activations import collect_hook_z
    from saes.config import SAETrainConfig
    from saes.induction import induction_data
    from saes.train import train_attention_sae

    data = induction_data(torch.arange(1, V), n=150, half=8, bos_id=0, seed=1)
    ids = torch.cat([data.repeated, data.control])
    mask = torch.ones_like(ids)
    tokens = Tokens(ids, mask, mask.sum(1), [["t"] * ids.shape[1]] * ids.shape[0])
    cfg = SAETrainConfig(d_sae=96, k=4, batch_tokens=256, total_tokens=256 * 150, lr=4e-3,
                         dead_feature_window=30, n_checkpoints=0)
    return {la: train_attention_sae(loaded, la, cfg, activations=collect_hook_z(
        loaded, tokens, la).z).sae for la in (0, 1)}


def test_dfa_selects_the_planted_induction_head_only():
    from saes.induction import induction_data, induction_table

    loaded = planted_model()
    test = induction_data(torch.arange(1, V), n=24, half=8, bos_id=0, seed=7)
    table = induction_table(loaded, train_saes(loaded), test).set_index(["layer", "head"])
    # the SAE-free score sees the planted head (and only it)
    assert table.loc[(1, 0), "induction_score"] > 0.9, table.to_string()
    others = table.drop(index=(1, 0))
    assert (others.induction_score < 0.3).all(), table.to_string()
    # DFA on induction-like features selects exactly that head ...
    assert table.selected.tolist() == [False, False, True, False], table.to_string()
    # ... and its induction-feature DFA comes from the token after the previous occurrence
    assert table.loc[(1, 0), "source_frac"] > 0.8, table.to_string()
    # the previous-token head writes the same features on both copies: not induction-like
    assert table.loc[(0, 0), "dfa_frac"] < 0.2, table.to_string()
