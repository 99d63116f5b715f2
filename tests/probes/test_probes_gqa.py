"""Every probe on a GQA + RMSNorm + rotary + gated-MLP model (SmolLM2's architecture, tiny).

Each statistic is checked against a direct computation from ``run_with_cache`` on each prompt
alone (no padding), with the probes streamed together over padded, length-sorted batches as
``run_probes`` does. The weight-based entropy bound gets an independent SVD of TransformerLens'
own per-query-head ``W_K`` (its ``repeat_interleave`` of the KV heads), and a 3-token
counterexample shows why rotary positions need the Frobenius form of the bound.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformer_lens import HookedTransformer
from transformer_lens.components import GroupedQueryAttention, RMSNorm

from probes.capture import capture, length_sorted_batches
from probes.entropy import (
    EntropyConfig,
    entropy_bound,
    entropy_hooks,
    head_logit_sigma,
    input_gram_norm,
    input_rotary_norm,
)
from probes.hooks import hook_count
from probes.massive import MassiveConfig, massive_hooks, massive_summary
from probes.norms import norm_hooks
from probes.sinks import SinkConfig, sink_hooks, sink_rate
from tests.support.tiny import padded_tokens, tiny_cfg, tiny_decoder

GQA = dict(n_key_value_heads=2, normalization_type="RMS", positional_embedding_type="rotary",
           rotary_dim=8, gated_mlp=True, act_fn="silu")
LOW = MassiveConfig(abs_threshold=0.5, ratio_threshold=3.0)  # the tiny model has no real ones
DELIMS = [3, None, 2, 1, 4]  # per prompt (lengths 9, 7, 5, 3, 8): its first "," (None: none)


@pytest.fixture(scope="module")
def gqa():
    """3 layers, 4 query heads sharing 2 KV heads, random RMS weights, sharpened queries."""
    loaded = tiny_decoder(**GQA)
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for block in loaded.model.blocks:
            attn = block.attn
            attn.W_Q.mul_(4.0)  # lower entropies, so the bounds are tested where they bite
            attn.b_Q.copy_(0.5 * torch.randn(attn.b_Q.shape, generator=gen))
            # a key bias: rotated, it is no longer a constant shift of a query's logits
            attn._b_K.copy_(0.5 * torch.randn(attn._b_K.shape, generator=gen))
    return loaded


@pytest.fixture(scope="module")
def tokens():
    t = padded_tokens()
    rows = [["w"] * int(n) for n in t.lengths]
    for row, d in zip(rows, DELIMS):
        if d is not None:
            row[d] = ","
    return t._replace(str_tokens=rows)


@pytest.fixture(scope="module")
def tables(gqa, tokens):
    """All four probes in one capture, over two padded batches (as run_probes streams)."""
    model = gqa.model
    plans = {"entropy": entropy_hooks(model, config=EntropyConfig()),
             "massive": massive_hooks(model, LOW), "norms": norm_hooks(model),
             "sinks": sink_hooks(model.cfg.n_layers, SinkConfig(), causal=True)}
    hooks: dict = {}
    for plan in plans.values():
        for name, acc in plan.hooks.items():
            hooks.setdefault(name, []).append(acc)
    with capture(gqa, hooks) as cap, torch.inference_mode():
        for batch, idx in length_sorted_batches(tokens, 3):
            cap.forward(batch, prompt_index=idx)
    assert hook_count(model) == 0
    out = {name: plan.table() for name, plan in plans.items()}
    out["massive_summary"] = massive_summary(plans["massive"].accumulators)
    out["sink_rate"] = sink_rate(out["sinks"])
    return out


@pytest.fixture(scope="module")
def caches(gqa, tokens):
    """One run_with_cache per prompt, unpadded."""
    out = []
    for b, n in enumerate(tokens.lengths.tolist()):
        _, cache = gqa.model.run_with_cache(tokens.ids[b : b + 1, :n])
        out.append(cache)
    return out


def _wide(df):
    return df.pivot_table(index=["layer", "head"], columns="stat", values="value", dropna=False)


def test_the_model_has_smollm2s_architecture(gqa):
    model = gqa.model
    attn = model.blocks[0].attn
    assert isinstance(attn, GroupedQueryAttention) and isinstance(model.blocks[0].ln1, RMSNorm)
    assert attn._W_K.shape[0] == 2 and attn.W_K.shape[0] == model.cfg.n_heads == 4
    assert not torch.equal(attn._W_K[0], attn._W_K[1])  # the two KV groups differ
    assert not torch.allclose(model.blocks[0].ln1.w, torch.ones(model.cfg.d_model))


def _rms_in(model, cache, layer):
    """ln1(resid_pre) by hand: x / sqrt(mean(x^2) + eps) * w, float64, (pos, d_model)."""
    x = cache["resid_pre", layer][0].double()
    w = model.blocks[layer].ln1.w.detach().double()
    return x / (x.square().mean(-1, keepdim=True) + model.cfg.eps).sqrt() * w


def _direct_sigma(model, layer):
    """(head,) ||[W_Q; b_Q]||_2 ||[W_K; b_K]||_2 / scale from TL's per-query-head W_K (SVD)."""
    attn = model.blocks[layer].attn
    wq = torch.cat([attn.W_Q.detach(), attn.b_Q.detach()[:, None]], 1).double()
    wk = torch.cat([attn.W_K.detach(), attn.b_K.detach()[:, None]], 1).double()  # repeated
    return (torch.linalg.matrix_norm(wq, 2) * torch.linalg.matrix_norm(wk, 2)
            / float(attn.attn_scale))


def test_entropy_matches_run_with_cache_and_both_bounds_hold(gqa, caches, tables):
    model = gqa.model
    w = _wide(tables["entropy"])
    for layer in range(model.cfg.n_layers):
        sig = _direct_sigma(model, layer)
        torch.testing.assert_close(head_logit_sigma(model, layer), sig, rtol=1e-9, atol=0)
        ents, norms, s_all, ws_all = [], [], [], []
        for cache in caches:
            pat = cache["pattern", layer][0].double()  # (head, pos, key_pos)
            scores = cache["attn_scores", layer][0].double()
            n = pat.shape[-1]
            x = torch.cat([_rms_in(model, cache, layer), torch.ones(n, 1, dtype=torch.float64)], 1)
            sigma_x = x.norm(dim=1).max() * x.norm()  # max_i ||x~_i|| * ||X~||_F
            for i in range(n):
                p, a = pat[:, i, : i + 1], scores[:, i, : i + 1]  # (head, i + 1)
                h = -torch.special.xlogy(p, p).sum(-1)  # (head,)
                s = (a - a.mean(-1, keepdim=True)).norm(dim=-1)
                assert bool((h >= entropy_bound(s, torch.tensor(i + 1)) - 1e-5).all())
                assert bool((s <= sig * sigma_x).all())  # the weight bound's s is an upper bound
                ents.append(h)
                s_all.append(s)
                ws_all.append(sig * sigma_x)
                if i > 0:
                    norms.append(h / math.log(i + 1))
        ent, nrm = torch.stack(ents, 1), torch.stack(norms, 1)  # (head, n_queries)
        row = w.loc[layer]
        np.testing.assert_allclose(row["mean"], ent.mean(1), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(row["min"], ent.min(1).values, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(row["max"], ent.max(1).values, rtol=1e-5)
        np.testing.assert_allclose(row["std"], ent.std(1, unbiased=False), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(row["norm_mean"], nrm.mean(1), rtol=1e-5)
        np.testing.assert_allclose(row["logit_norm_mean"], torch.stack(s_all, 1).mean(1),
                                   rtol=1e-5)
        np.testing.assert_allclose(row["weight_sigma"], sig, rtol=1e-9)
        np.testing.assert_allclose(row["weight_s_mean"], torch.stack(ws_all, 1).mean(1),
                                   rtol=1e-5)
        assert (row["n_queries"] == ent.shape[1]).all()
        assert (row["bound_violations"] == 0).all() and (row["weight_bound_violations"] == 0).all()
        assert (row["bound_min_gap"] > -1e-4).all() and (row["weight_bound_min_gap"] >= 0).all()
    assert w["norm_mean"].min() < 0.6  # sharp heads: the bounds are tested at low entropies


def test_heads_of_a_kv_group_share_keys_in_the_weight_sigma(gqa):
    """GQA without rotary: sigma_h = ||W~_Q^h W_K^{h // group}^T||_2 / scale, h by h."""
    std = HookedTransformer(tiny_cfg(**{**GQA, "positional_embedding_type": "standard"})).eval()
    attn = std.blocks[1].attn
    sig = head_logit_sigma(std, 1)
    for h in range(std.cfg.n_heads):
        wq = torch.cat([attn.W_Q[h], attn.b_Q[h][None]], 0).detach().double()
        wk = attn._W_K[h // 2].detach().double()  # query heads 0, 1 -> KV 0; 2, 3 -> KV 1
        ref = torch.linalg.matrix_norm(wq @ wk.T, 2) / float(attn.attn_scale)
        assert float(sig[h]) == pytest.approx(float(ref), rel=1e-9)


def test_rotary_needs_the_frobenius_form_of_the_weight_bound():
    """3 tokens whose rotated keys alternate in sign: the Gram form is exceeded, ours is not."""
    cfg = tiny_cfg(n_layers=1, d_model=4, n_heads=2, n_key_value_heads=1, d_head=2,
                   normalization_type=None, positional_embedding_type="rotary", rotary_dim=2,
                   attn_only=True)
    model = HookedTransformer(cfg).eval()
    n, c = 3, 10.0
    with torch.no_grad():
        attn = model.blocks[0].attn
        for p in (attn.W_Q, attn._W_K, attn.b_Q, attn._b_K):
            p.zero_()
        attn.W_Q[:, :2] = torch.eye(2)
        attn._W_K[0, :2] = torch.eye(2)
        model.embed.W_E.zero_()
        for j in range(n):  # x_j = +-c R(i - j) e_1: every logit of query i = n - 1 is +-c^2
            ang = j - (n - 1)  # rotary angle 1 rad per position at rotary_dim 2
            model.embed.W_E[j, :2] = c * (-1) ** j * torch.tensor([math.cos(ang), -math.sin(ang)])
    _, cache = model.run_with_cache(torch.arange(n)[None])
    a = cache["attn_scores", 0][0, :, n - 1].double()  # (head, key_pos)
    s = (a - a.mean(-1, keepdim=True)).norm(dim=-1)
    sig = head_logit_sigma(model, 0)
    x = cache["resid_pre", 0]
    assert bool((s > sig * input_gram_norm(x, None)[0]).all())  # the Gram form fails here
    assert bool((s <= sig * input_rotary_norm(x, None)[0]).all())


def test_massive_matches_run_with_cache(gqa, caches, tables):
    found = tables["massive"]
    assert len(found) > 0
    expected, summ = set(), {}
    for prompt, cache in enumerate(caches):
        for layer in range(gqa.cfg.n_layers):
            h = cache["resid_post", layer][0].double()  # (pos, d_model)
            mag = h.abs()
            med = float(mag.flatten().float().median())  # torch.median: the lower median
            thr = max(LOW.abs_threshold, LOW.ratio_threshold * med)
            for pos, dim in (mag > thr).nonzero().tolist():
                expected.add((layer, prompt, pos, dim, round(float(h[pos, dim]), 4)))
            summ.setdefault(layer, []).append((float(mag.max()), med))
    got = {(r.layer, r.prompt, r.position, r.dim, round(r.value, 4)) for r in found.itertuples()}
    assert got == expected
    s = tables["massive_summary"].set_index(["layer", "stat"])["value"]
    for layer, rows in summ.items():
        top1, med = np.array(rows).T
        np.testing.assert_allclose(s[(layer, "top1")], top1.mean(), rtol=1e-5)
        np.testing.assert_allclose(s[(layer, "median")], med.mean(), rtol=1e-5)
        np.testing.assert_allclose(s[(layer, "ratio")], (top1 / med).mean(), rtol=1e-5)


def test_head_norms_use_each_query_heads_z_and_w_o(gqa, caches, tables):
    model = gqa.model
    df = tables["norms"].set_index(["layer", "head", "stat"])["value"]
    for layer in range(model.cfg.n_layers):
        w_o = model.blocks[layer].attn.W_O.detach().double()  # (head, d_head, d_model)
        per_head = torch.cat([torch.einsum("phd,hdm->phm", c["z", layer][0].double(), w_o)
                              .norm(dim=-1) for c in caches])  # (n_tokens, head)
        out = torch.cat([c["attn_out", layer][0].double().norm(dim=-1) for c in caches])
        for h in range(model.cfg.n_heads):
            np.testing.assert_allclose(df[(layer, h, "mean")], per_head[:, h].mean(), rtol=1e-5)
            np.testing.assert_allclose(df[(layer, h, "max")], per_head[:, h].max(), rtol=1e-5)
            np.testing.assert_allclose(df[(layer, h, "min")], per_head[:, h].min(), rtol=1e-4)
            np.testing.assert_allclose(df[(layer, h, "std")],
                                       per_head[:, h].std(unbiased=False), rtol=1e-4)
        np.testing.assert_allclose(df[(layer, -1, "mean")], out.mean(), rtol=1e-5)
        assert df[(layer, -1, "count")] == len(out)
    # the two heads of a KV group read the same values but are different heads
    assert df[(0, 0, "mean")] != pytest.approx(df[(0, 1, "mean")])


def test_sinks_match_run_with_cache(gqa, caches, tables):
    w = _wide(tables["sinks"])
    for layer in range(gqa.cfg.n_layers):
        sink, delim = [], []
        for cache, d in zip(caches, DELIMS):
            pat = cache["pattern", layer][0].double()  # (head, pos, key_pos)
            sink.append(pat[:, 1:, 0])
            if d is not None:
                delim.append(pat[:, d + 1 :, d])
        sink, delim = torch.cat(sink, 1), torch.cat(delim, 1)  # (head, n_queries)
        row = w.loc[layer]
        np.testing.assert_allclose(row["sink_score"], sink.mean(1), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(row["delimiter_score"], delim.mean(1), rtol=1e-5, atol=1e-7)
        assert (row["n_queries"] == sink.shape[1]).all()
        assert (row["n_delimiter_queries"] == delim.shape[1]).all()
    rate = tables["sink_rate"].set_index("layer")["value"]
    scores = w["sink_score"]
    assert rate[-1] == pytest.approx(float((scores > 0.3).mean()))
    for layer in range(gqa.cfg.n_layers):
        assert rate[layer] == pytest.approx(float((scores.loc[layer] > 0.3).mean()))



@pytest.mark.slow
def test_smollm2_probes_match_run_with_cache(smollm2):
    """The real GQA model through run_probes: sinks, entropy and head norms of two layers."""
    from probes.pipeline import run_probes
    from probes.tokens import tokenize

    prompts = ["The cat sat on the mat, and then it slept.", "Hello, world!", "Paris is big."]
    tables = run_probes(smollm2, prompts, batch_size=2)
    assert hook_count(smollm2.model) == 0
    ent, sinks = _wide(tables["entropy"]), _wide(tables["sinks"])
    assert (ent["bound_violations"] == 0).all() and (ent["weight_bound_violations"] == 0).all()
    norms = tables["head_norms"].set_index(["layer", "head", "stat"])["value"]
    caches = [smollm2.model.run_with_cache(tokenize(smollm2, p).ids)[1] for p in prompts]
    for layer in (0, 11, 29):
        pat = [c["pattern", layer][0].double() for c in caches]  # (head, pos, key_pos) each
        h = torch.cat([-torch.special.xlogy(p, p).sum(-1) for p in pat], 1)  # (head, n_queries)
        np.testing.assert_allclose(ent.loc[layer]["mean"], h.mean(1), rtol=1e-4, atol=1e-6)
        sink = torch.cat([p[:, 1:, 0] for p in pat], 1)
        np.testing.assert_allclose(sinks.loc[layer]["sink_score"], sink.mean(1), rtol=1e-4,
                                   atol=1e-6)
        w_o = smollm2.model.blocks[layer].attn.W_O.detach().double()
        z = torch.cat([c["z", layer][0].double() for c in caches])  # (n_tokens, head, d_head)
        ref = torch.einsum("phd,hdm->phm", z, w_o).norm(dim=-1).mean(0)
        got = [norms[(layer, h_, "mean")] for h_ in range(smollm2.cfg.n_heads)]
        np.testing.assert_allclose(got, ref, rtol=1e-4)
