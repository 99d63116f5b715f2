"""Attention entropy: exact against run_with_cache, padding-invariant, Zhai et al. bound holds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from probes.capture import capture, stream
from probes.entropy import EntropyConfig, entropy_bound, entropy_hooks, head_logit_sigma
from probes.hooks import hook_count
from tests.support.tiny import padded_batch


def _tiny(seed: int, scale: float = 1.0) -> HookedTransformer:
    cfg = HookedTransformerConfig(n_layers=2, d_model=32, n_heads=4, d_head=8, n_ctx=32,
                                  d_vocab=50, act_fn="gelu", normalization_type="LN", seed=seed)
    model = HookedTransformer(cfg).eval()
    if scale != 1.0:  # sharper attention (lower entropy) for the bound tests
        with torch.no_grad():
            for b in model.blocks:
                b.attn.W_Q.mul_(scale)
                b.attn.b_Q.normal_(0, 0.5)
    return model


@pytest.fixture(scope="module")
def tiny():
    return _tiny(0)


def _batch(seed=1):
    return padded_batch(seed=seed)


def _run(model, batches, config=None):
    plan = entropy_hooks(model, config=config or EntropyConfig())
    with capture(model, plan.hooks) as cap, torch.no_grad():
        for ids, mask in batches:
            with cap.batch(mask):
                model(ids, attention_mask=mask)
    return plan.table()


def _wide(df):
    return df.pivot_table(index=["layer", "head"], columns="stat", values="value")


def _reference(patterns, lengths, causal):
    """Per-query entropies from cached patterns, one sequence at a time, in float64 numpy."""
    out = {}  # (layer, head) -> list of (H, n_keys)
    for layer, pat in enumerate(patterns):
        p = pat.double().numpy()
        for b, n in enumerate(lengths):
            for h in range(p.shape[1]):
                for i in range(n):
                    keys = p[b, h, i, : i + 1] if causal else p[b, h, i, :n]
                    ent = -sum(x * math.log(x) for x in keys if x > 0)
                    out.setdefault((layer, h), []).append((ent, len(keys)))
    return out


def test_entropy_matches_run_with_cache_on_tiny_model(tiny):
    ids, mask = _batch()
    df = _wide(_run(tiny, [(ids, mask)]))
    _, cache = tiny.run_with_cache(ids, attention_mask=mask)
    ref = _reference([cache["pattern", lay] for lay in range(2)], mask.sum(1).tolist(), True)
    for (layer, head), vals in ref.items():
        ents = np.array([v[0] for v in vals])
        norm = np.array([e / math.log(n) for e, n in vals if n > 1])
        row = df.loc[(layer, head)]
        assert row["n_queries"] == len(ents)
        np.testing.assert_allclose(row["mean"], ents.mean(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(row["std"], ents.std(), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(row["max"], ents.max(), rtol=1e-5)
        np.testing.assert_allclose(row["q50"], np.quantile(ents, 0.5), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(row["q95"], np.quantile(ents, 0.95), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(row["norm_mean"], norm.mean(), rtol=1e-5)
        assert row["collapsed"] == float(norm.mean() < 0.1)


def test_padding_does_not_change_statistics(tiny):
    ids, mask = _batch()
    padded = _run(tiny, [(ids, mask)])
    alone = _run(tiny, [(ids[b : b + 1, : int(mask[b].sum())],
                         mask[b : b + 1, : int(mask[b].sum())]) for b in range(3)])
    merged = padded.merge(alone, on=["layer", "head", "stat"], suffixes=("_pad", "_alone"))
    assert len(merged) == len(padded) == len(alone)
    np.testing.assert_allclose(merged["value_pad"], merged["value_alone"], rtol=1e-5, atol=1e-6)


def test_bound_formula_is_the_minimum_over_random_logits():
    g = torch.Generator().manual_seed(0)
    for n in (2, 3, 7, 50):
        a = torch.randn(20_000, n, generator=g, dtype=torch.float64) * 3
        a = a - a.mean(1, keepdim=True)
        s = a.norm(dim=1)
        ent = -(a.softmax(1) * a.log_softmax(1)).sum(1)
        assert bool((ent >= entropy_bound(s, torch.tensor(n)) - 1e-12).all())
        # equality at the extremal vector: one logit up, the others equal
        c = 2.0
        ext = torch.full((n,), -c, dtype=torch.float64)
        ext[0] = c * (n - 1)
        ext_ent = -(ext.softmax(0) * ext.log_softmax(0)).sum()
        assert float(entropy_bound(ext.norm(), torch.tensor(n))) == pytest.approx(float(ext_ent))
    assert float(entropy_bound(torch.tensor(0.0), torch.tensor(4))) == pytest.approx(math.log(4))
    assert float(entropy_bound(torch.tensor(5.0), torch.tensor(1))) == 0.0


@pytest.mark.parametrize("seed,scale", [(0, 1.0), (1, 4.0), (2, 12.0)])
def test_both_bounds_hold_on_random_models(seed, scale):
    model = _tiny(seed, scale)
    ids, mask = _batch(seed)
    w = _wide(_run(model, [(ids, mask)]))
    assert (w["bound_violations"] == 0).all() and (w["bound_min_gap"] > -1e-4).all()
    assert (w["weight_bound_violations"] == 0).all()
    assert (w["weight_bound_mean"] <= w["bound_mean"] + 1e-9).all()
    # independent check: the weight-based s upper-bounds every query's centred logit norm
    _, cache = model.run_with_cache(ids, attention_mask=mask)
    for layer in range(2):
        sig = head_logit_sigma(model, layer)
        x = model.blocks[layer].ln1(cache["resid_pre", layer]).double()
        scores = cache["attn_scores", layer].double()
        for b, n in enumerate(mask.sum(1).tolist()):
            xt = torch.cat([x[b, :n], torch.ones(n, 1, dtype=torch.float64)], 1)
            sigma_x = torch.linalg.matrix_norm(xt @ xt.T, 2)
            for i in range(n):
                a = scores[b, :, i, : i + 1]
                s_i = (a - a.mean(-1, keepdim=True)).norm(dim=-1)  # (head,)
                assert bool((s_i <= sig * sigma_x * (1 + 1e-9)).all())
    if scale > 4:
        assert w["norm_mean"].min() < 0.5  # sharp attention: the test covers low entropies


@pytest.mark.slow
def test_minilm_matches_per_prompt_cache_and_bound_holds(minilm):
    from data.sentences import builtin_sentences
    from probes.tokens import tokenize

    prompts = builtin_sentences()[::40][:6]
    plan = entropy_hooks(minilm.model, layers=[0, 3])
    stream(minilm, prompts, plan.hooks, batch_size=4)
    assert hook_count(minilm.model) == 0
    df = _wide(plan.table())
    assert (df["bound_violations"] == 0).all() and (df["weight_bound_violations"] == 0).all()
    ents: dict = {}
    for p in prompts:  # one prompt at a time, no padding: bidirectional over all tokens
        t = tokenize(minilm, p)
        _, cache = minilm.model.run_with_cache(t.ids, one_zero_attention_mask=t.attention_mask)
        for layer in (0, 3):
            pat = cache[f"blocks.{layer}.attn.hook_pattern"][0].double()  # (head, q, k)
            h = -(torch.special.xlogy(pat, pat)).sum(-1)  # (head, q)
            ents.setdefault(layer, []).append(h)
            s = cache[f"blocks.{layer}.attn.hook_attn_scores"][0].double()
            s = (s - s.mean(-1, keepdim=True)).norm(dim=-1)
            n = torch.tensor(pat.shape[-1])
            assert bool((h >= entropy_bound(s, n) - 1e-5).all())  # per-query bound, real text
    for layer, hs in ents.items():
        h = torch.cat(hs, 1)  # (head, n_queries)
        np.testing.assert_allclose(df.loc[layer]["mean"], h.mean(1).numpy(), rtol=1e-4)
        np.testing.assert_allclose(df.loc[layer]["min"], h.min(1).values.numpy(), rtol=1e-4,
                                   atol=1e-6)
        np.testing.assert_allclose(df.loc[layer]["q50"], h.quantile(0.5, dim=1).numpy(),
                                   rtol=1e-4, atol=1e-6)


def test_config_validation():
    with pytest.raises(ValueError, match="collapse_threshold"):
        EntropyConfig(collapse_threshold=1.5)
    with pytest.raises(ValueError, match="reservoir_size"):
        EntropyConfig(reservoir_size=0)
