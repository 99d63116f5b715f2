"""The q/k/cos decomposition multiplies back to the model's own scores; sink removal renormalises.

Two tiny random decoders from the shared factory (``tiny_variant``, random biases included):
LayerNorm + learned positions (MHA), and RMSNorm + rotary + grouped-query attention + gated MLP
(SmolLM2's "llama" architecture). The reference scores are
what the model computes itself (``hook_attn_scores``); the value contribution is recomputed
from TransformerLens' expanded per-query-head ``W_V`` and ``b_V`` (not from ``expand_kv``).
"""

from __future__ import annotations

import pytest
import torch

from analyses.interventions.sinks import (
    SinkDecomposition,
    SinkRemoval,
    qk_hooks,
    qk_parts,
    remove_sink,
)
from probes.hooks import record
from probes.models import LoadedModel
from probes.tokens import forward
from tests.support.tiny import padded_tokens, tiny_variant

ARCHITECTURES = ("ln_gelu_learned", "llama")  # tests.support.tiny.VARIANTS


@pytest.fixture(scope="module", params=ARCHITECTURES)
def loaded(request):
    return LoadedModel(tiny_variant(request.param), None, "decoder", request.param)


@pytest.fixture(scope="module")
def tokens():
    return padded_tokens(n=4, width=8, seed=5)


def allowed(tokens) -> torch.Tensor:
    """(batch, 1, pos, key_pos) real query, real key, key <= query."""
    m = tokens.bool_mask
    n = m.shape[1]
    return (m[:, :, None] & m[:, None, :] & torch.ones(n, n, dtype=torch.bool).tril())[:, None]


def test_factors_multiply_back_to_the_models_scores(loaded, tokens):
    model = loaded.model
    for layer in range(model.cfg.n_layers):
        q_name, k_name = qk_hooks(model, layer)
        scores_name = f"blocks.{layer}.attn.hook_attn_scores"
        _, acts = record(loaded, [q_name, k_name, scores_name], lambda: forward(loaded, tokens))
        parts = qk_parts(acts[q_name], acts[k_name], model.blocks[layer].attn.attn_scale)
        assert parts.scale == pytest.approx(model.cfg.d_head ** 0.5)
        assert (parts.cos.abs() <= 1 + 1e-9).all()
        keep = allowed(tokens).expand_as(parts.cos)
        got = parts.score()[keep]
        want = acts[scores_name].double()[keep]
        torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
    if model.cfg.positional_embedding_type == "rotary":
        assert q_name.endswith("hook_rot_q") and acts[k_name].shape[2] == 2  # per KV group


def test_decomposition_means_match_a_direct_computation(loaded, tokens):
    model = loaded.model
    dec = SinkDecomposition(loaded)
    dec.update(tokens)
    table = dec.result().pivot_table(index=["layer", "head"], columns="stat", values="value")
    layer = model.cfg.n_layers - 1
    names = [f"blocks.{layer}.attn.hook_attn_scores", f"blocks.{layer}.attn.hook_pattern",
             f"blocks.{layer}.hook_resid_pre"]
    _, acts = record(loaded, names, lambda: forward(loaded, tokens))
    scores, pattern, resid = (acts[n].detach() for n in names)
    x = model.blocks[layer].ln1(resid).detach().double()  # the attention input
    scores, pattern = scores.double(), pattern.double()
    attn = model.blocks[layer].attn
    w_v, b_v, w_o = (t.detach().double() for t in (attn.W_V, attn.b_V, attn.W_O))  # per q head
    for head in range(model.cfg.n_heads):
        s0, a0, vo = [], [], []
        for b in range(len(tokens.lengths)):
            v0 = x[b, 0] @ w_v[head] + b_v[head]  # (d_head,)
            for i in range(1, int(tokens.lengths[b])):
                s0.append(scores[b, head, i, 0])
                a0.append(pattern[b, head, i, 0])
                vo.append((v0 @ w_o[head]).norm())
        row = table.loc[(layer, head)]
        assert row["n_queries"] == len(s0)
        assert row["score0"] == pytest.approx(float(torch.stack(s0).mean()), abs=1e-4)
        assert row["sink_score"] == pytest.approx(float(torch.stack(a0).mean()), abs=1e-6)
        assert row["v0_out_norm"] == pytest.approx(float(torch.stack(vo).mean()), rel=1e-4)
        assert -1 <= row["cos0"] <= 1 and -1 <= row["cos_other"] <= 1


def test_removal_renormalises_to_a_softmax_without_key_0(loaded, tokens):
    layer, n_heads = 1, loaded.model.cfg.n_heads
    scores_name = f"blocks.{layer}.attn.hook_attn_scores"
    removal = SinkRemoval(layer, n_heads, heads=[1, 3])
    _, acts = record(loaded, [scores_name, removal.hook_name], lambda: forward(loaded, tokens),
                     hooks=[(removal.hook_name, removal)])
    patched, scores = acts[removal.hook_name], acts[scores_name]
    direct = scores.clone()
    direct[..., 1:, 0] = -torch.inf  # queries > 0 may not attend to key 0
    direct = direct.softmax(-1)  # query 0 keeps its only key
    keep = tokens.bool_mask[:, None, :, None]  # real queries
    for head in range(n_heads):
        got = patched[:, head:head + 1]
        if head in (1, 3):
            torch.testing.assert_close(got * keep, direct[:, head:head + 1] * keep,
                                       rtol=0, atol=1e-6)
            assert (got[:, :, 1:, 0] == 0).all()
        else:
            torch.testing.assert_close(got * keep, scores[:, head:head + 1].softmax(-1) * keep,
                                       rtol=0, atol=1e-6)
    sums = patched.sum(-1)[tokens.bool_mask[:, None, :].expand(-1, n_heads, -1)]
    torch.testing.assert_close(sums, torch.ones_like(sums), rtol=0, atol=1e-6)


def test_remove_sink_keeps_a_row_with_only_key_0():
    pattern = torch.tensor([[[[1.0, 0.0, 0.0], [0.7, 0.3, 0.0], [0.5, 0.25, 0.25]]]])
    out = remove_sink(pattern)
    want = torch.tensor([[[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.5, 0.5]]]])
    torch.testing.assert_close(out, want)
    with pytest.raises(ValueError, match="heads"):
        SinkRemoval(0, 4, heads=[4])
