"""Feature tables (saes.features) and the per-head summary (saes.heads)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from tests.support.tiny import random_sae, random_tokens, tiny_loaded


@pytest.fixture(scope="module")
def tables():
    from saes.features import feature_tables

    loaded, tokens = tiny_loaded(), random_tokens(n=10, pad_from=12)
    sae = random_sae(32, d_sae=24, arch="topk")
    ft = feature_tables(loaded, sae, 1, tokens, n_top=3, n_bins=5, batch_size=4)
    return loaded, tokens, sae, ft


def test_top_examples_are_the_largest_activations_with_their_tokens(tables):
    from saes.activations import collect_hook_z

    loaded, tokens, sae, ft = tables
    z = collect_hook_z(loaded, tokens, 1)
    acts = sae.encode(z.z)  # SAE-Lens' own encode, independent of the tables' path
    ex = ft.top_examples
    assert list(ex.columns) == ["feature", "rank", "activation", "token", "context",
                                "prompt_idx", "pos", "context_tokens", "context_acts",
                                "context_pos"]
    for f, rows in ex.groupby("feature"):
        ref = torch.sort(acts[:, f][acts[:, f] > 0], descending=True).values[:3]
        assert np.allclose(rows.sort_values("rank").activation.to_numpy(), ref.numpy(),
                           atol=1e-5)
    # each example points at a real token whose activation it reports
    row = ex.iloc[0]
    hit = (z.prompt_idx == row.prompt_idx) & (z.pos == row.pos)
    assert hit.sum() == 1 and tokens.attention_mask[row.prompt_idx, row.pos] == 1
    assert float(acts[hit][0, row.feature]) == pytest.approx(row.activation, abs=1e-5)
    assert f"[[{row.token}]]" in row.context


def test_histogram_counts_every_nonzero_activation(tables):
    from saes.activations import collect_hook_z

    loaded, tokens, sae, ft = tables
    acts = sae.encode(collect_hook_z(loaded, tokens, 1).z)
    counts = ft.histogram.groupby("feature")["count"].sum()
    for f, c in counts.items():
        assert c == int((acts[:, f] > 0).sum())
    assert (ft.histogram.bin_right > ft.histogram.bin_left).all()


def test_dfa_head_table_matches_direct_attribution(tables):
    from saes.activations import collect_hook_z
    from saes.attribution import dfa_by_head

    loaded, tokens, sae, ft = tables
    z = collect_hook_z(loaded, tokens, 1).z
    acts = sae.encode(z)
    per_head = dfa_by_head(sae, z).per_head  # (n, head, d_sae)
    d = ft.dfa_heads
    assert np.allclose(d.groupby("feature").share.sum(), 1.0, atol=1e-5)
    assert np.allclose(d.groupby("feature").weight_share.sum(), 1.0, atol=1e-5)
    f = int(d.feature.iloc[0])
    active = acts[:, f] > 0
    ref = per_head[active][:, :, f].mean(0)
    got = d[d.feature == f].sort_values("head").value.to_numpy()
    assert np.allclose(got, ref.numpy(), atol=1e-5)


def test_logit_effects_follow_w_o_and_unembedding(tables):
    loaded, _, sae, ft = tables
    le = ft.logit_effects
    assert set(le.direction) == {"promoted", "suppressed"}
    model = loaded.model
    f = int(le.feature.iloc[0])
    d = sae.W_dec[f].detach().reshape(4, 8)
    resid = torch.einsum("hd,hdm->m", d, model.W_O[1].detach())
    resid = (resid - resid.mean()) * model.ln_final.w.detach()
    logits = resid @ model.W_U.detach()
    promoted = le[(le.feature == f) & (le.direction == "promoted")].sort_values("rank")
    assert promoted.token.tolist() == [str(i) for i in logits.topk(3).indices.tolist()]
    suppressed = le[(le.feature == f) & (le.direction == "suppressed")].sort_values("rank")
    assert np.allclose(suppressed.value, (-logits).topk(3).values.neg().numpy(), atol=1e-4)


def test_head_summary_counts_families_of_driven_features():
    from saes.heads import effective_count, families, head_summary

    # 4 features on 2 heads (d_head 2): head 0 drives features 0, 1 (same direction) and 2
    # (orthogonal); head 1 drives feature 3.
    sae = random_sae(4, d_sae=4)
    with torch.no_grad():
        sae.W_dec.copy_(torch.tensor([[1.0, 0, 0, 0], [0.9, 0.1, 0, 0], [0, 1.0, 0, 0],
                                      [0, 0, 1.0, 0]]))
    share0 = [0.9, 0.8, 0.7, 0.1]
    rows = [dict(feature=f, head=h, layer=0, value=s if h == 0 else 1 - s,
                 share=s if h == 0 else 1 - s, n_active=10)
            for f, s in enumerate(share0) for h in (0, 1)]
    summary, driven = head_summary(pd.DataFrame(rows), sae, 0)
    stat = summary.pivot(index="head", columns="stat", values="value")
    assert stat.loc[0, "n_features"] == 3 and stat.loc[0, "n_families"] == 2
    assert stat.loc[1, "n_features"] == 1 and stat.loc[1, "n_families"] == 1
    assert set(driven[driven["head"] == 0].feature) == {0, 1, 2}
    assert effective_count(np.array([1.0, 1.0, 0.0])) == pytest.approx(2.0)
    assert len(set(families(np.eye(3), 0.3))) == 3


def test_band_examples_fall_inside_distinct_equal_width_bands(tables):
    from saes.activations import collect_hook_z

    loaded, tokens, sae, ft = tables
    z = collect_hook_z(loaded, tokens, 1)
    acts = sae.encode(z.z).detach().double()  # SAE-Lens' encode, independent of the tables
    bands = ft.bands
    assert len(bands) and bands.feature.nunique() == ft.top_examples.feature.nunique()
    assert (bands.band_low < bands.activation).all()
    assert (bands.activation <= bands.band_high + 1e-12).all()
    for f, rows in bands.groupby("feature"):
        a = acts[:, f][acts[:, f] > 0].numpy()
        edges = np.linspace(0, a.max(), 5)  # 4 equal-width bands on (0, max]
        per = rows.drop_duplicates("band").set_index("band").sort_index()
        # distinct, non-overlapping ranges at the independent edges, with the true counts
        assert np.allclose(per.band_low, edges[per.index], atol=1e-5)
        assert np.allclose(per.band_high, edges[per.index + 1], atol=1e-5)
        assert (per.band_low.to_numpy()[1:] >= per.band_high.to_numpy()[:-1]).all()
        for b, r in per.iterrows():
            inside = (a > edges[b] + 1e-6) & (a <= edges[b + 1] + 1e-6)
            assert r.band_count == inside.sum()
        assert per.band_count.sum() == a.size  # every activation is in exactly one band
        assert (rows.groupby("band").size() <= 3).all()
        assert (rows.groupby("band").size() == np.minimum(per.band_count, 3)).all()
    # each example is a real token carrying the activation it reports
    row = bands.iloc[-1]
    hit = (z.prompt_idx == row.prompt_idx) & (z.pos == row.pos)
    assert float(acts[hit][0, row.feature]) == pytest.approx(row.activation, abs=1e-5)
    assert f"[[{row.token}]]" in row.context


def test_context_acts_are_sae_lens_encode_at_every_context_token(tables):
    import json

    from saes.activations import collect_hook_z

    loaded, tokens, sae, ft = tables
    z = collect_hook_z(loaded, tokens, 1)
    acts = sae.encode(z.z).detach()  # SAE-Lens' own encode, independent of the tables' path
    n_checked = n_inactive = 0
    for table in (ft.top_examples, ft.bands):
        for r in table.itertuples():
            got = np.array(json.loads(r.context_acts))
            toks = json.loads(r.context_tokens)
            length = int(tokens.lengths[r.prompt_idx])
            lo, hi = max(0, r.pos - 8), min(length, r.pos + 5)  # window: 8 left, 4 right
            assert len(got) == len(toks) == hi - lo and r.context_pos == r.pos - lo
            assert toks == tokens.str_tokens[r.prompt_idx][lo:hi]
            for i, q in enumerate(range(lo, hi)):
                hit = (z.prompt_idx == r.prompt_idx) & (z.pos == q)
                assert got[i] == pytest.approx(float(acts[hit][0, r.feature]), abs=1e-5)
            assert got[r.context_pos] == pytest.approx(r.activation, abs=1e-5)
            n_checked += len(got)
            n_inactive += int((got == 0).sum())
    # top-k (k=4 of 24) leaves most context tokens inactive: zeros are checked too
    assert n_checked > 100 and 0 < n_inactive < n_checked
