"""The zero / mean / random massive-activation patches rewrite exactly the intended entries.

The patched residual is read back at the hook itself (``probes.hooks.record`` records after a
replacement) and compared with the unpatched one. The sites are checked against massive entries
found here by a per-sequence loop over real tokens (torch.median of each sequence's real |h|),
independently of ``probes.massive``; the intended entries are every real position holding a
site's token, in that site's dim.
"""

from __future__ import annotations

import pytest
import torch

from analyses.interventions.massive import (
    MassivePatch,
    MassiveSites,
    NoMassiveActivations,
    find_sites,
    patch_residual,
)
from probes.hooks import hook_count, record
from probes.massive import MassiveConfig
from probes.tokens import forward
from tests.support.tiny import padded_tokens, tiny_decoder

LOW = MassiveConfig(abs_threshold=0.5, ratio_threshold=3.0)  # tiny random models have no real ones


@pytest.fixture(scope="module")
def loaded():
    return tiny_decoder()


@pytest.fixture(scope="module")
def tokens():
    return padded_tokens(n=6, width=9, seed=3)


@pytest.fixture(scope="module")
def sites(loaded, tokens):
    return find_sites(loaded, tokens, LOW, batch_size=4)


def expected_massive(resid: torch.Tensor, mask: torch.Tensor, sites: MassiveSites) -> torch.Tensor:
    """Independent per-sequence rule: |x| > max(abs, ratio * lower median of real |x|), site
    dims only."""
    out = torch.zeros_like(resid, dtype=torch.bool)
    for b in range(resid.shape[0]):
        n = int(mask[b].sum())
        mag = resid[b, :n].abs()
        thr = max(sites.config.abs_threshold, sites.config.ratio_threshold * float(mag.median()))
        for d in sites.dims:
            out[b, :n, d] = mag[:, d] > thr
    return out


def intended(tokens, sites: MassiveSites, d_model: int) -> torch.Tensor:
    """(batch, pos, d_model): real positions holding a site's token, in the site's dim."""
    out = torch.zeros(*tokens.ids.shape, d_model, dtype=torch.bool)
    for b in range(len(tokens.ids)):
        for p in range(int(tokens.lengths[b])):
            for token, dim in zip(sites.token_ids, sites.dims):
                if int(tokens.ids[b, p]) == token:
                    out[b, p, dim] = True
    return out


def run_patched(loaded, tokens, sites, condition, seed=0):
    patch = MassivePatch(sites, condition, seed=seed)
    patch.set_batch(tokens.ids, tokens.bool_mask)
    _, acts = record(loaded, [sites.hook_name], lambda: forward(loaded, tokens),
                     hooks=[(sites.hook_name, patch)])
    return acts[sites.hook_name].detach(), patch


@pytest.fixture(scope="module")
def clean(loaded, tokens, sites):
    _, acts = record(loaded, [sites.hook_name], lambda: forward(loaded, tokens))
    return acts[sites.hook_name].detach()


def test_sites_are_the_first_layer_with_massive_values(loaded, tokens, sites, clean):
    assert sites.layer == 0 and sites.hook_name == "blocks.0.hook_resid_post"
    massive = expected_massive(clean, tokens.attention_mask, sites)
    assert massive.any()
    b, p, d = massive.nonzero(as_tuple=True)
    found = set(zip(tokens.ids[b, p].tolist(), d.tolist()))
    assert found == set(zip(sites.token_ids, sites.dims))  # one site per (token, dim)
    for token, dim, mean, count in zip(sites.token_ids, sites.dims, sites.means, sites.counts):
        here = massive[..., dim] & (tokens.ids == token)
        values = clean[..., dim][here]
        assert count == len(values)  # the reference set is these tokens
        assert mean == pytest.approx(float(values.double().mean()), rel=1e-5)


def test_zero_sets_exactly_the_site_entries_to_zero(loaded, tokens, sites, clean):
    patched, patch = run_patched(loaded, tokens, sites, "zero")
    want = intended(tokens, sites, clean.shape[-1])
    assert want.any()
    changed = patched != clean
    assert torch.equal(changed, want & (clean != 0))
    assert (patched[want] == 0).all()
    assert patch.n_patched == int(want.sum()) and hook_count(loaded.model) == 0


def test_mean_sets_exactly_the_site_entries_to_their_means(loaded, tokens, sites, clean):
    patched, _ = run_patched(loaded, tokens, sites, "mean")
    at = intended(tokens, sites, clean.shape[-1])
    assert torch.equal(patched[~at], clean[~at])
    b, p, d = at.nonzero(as_tuple=True)
    means = dict(zip(zip(sites.token_ids, sites.dims), sites.means))
    want = torch.tensor([means[(int(t), int(x))] for t, x in zip(tokens.ids[b, p], d)],
                        dtype=patched.dtype)
    torch.testing.assert_close(patched[b, p, d], want, rtol=0, atol=0)


def test_random_zeroes_as_many_real_non_site_entries_per_sequence(loaded, tokens, sites, clean):
    massive = intended(tokens, sites, clean.shape[-1])
    draws = []
    for seed in (0, 1):
        patched, _ = run_patched(loaded, tokens, sites, "random", seed=seed)
        changed = patched != clean
        assert (patched[changed] == 0).all()
        assert not (changed & massive).any()  # never a site entry
        assert not changed[~tokens.bool_mask].any()  # never a padded position
        assert torch.equal(changed.sum((1, 2)), massive.sum((1, 2)))  # same number per sequence
        draws.append(changed)
    assert not torch.equal(draws[0], draws[1])  # two draws differ
    again, _ = run_patched(loaded, tokens, sites, "random", seed=1)
    assert torch.equal(again != clean, draws[1])  # a draw is its seed


def test_none_changes_nothing_and_bad_input_is_refused(tokens, sites, clean):
    res = patch_residual(clean, tokens.ids, tokens.attention_mask, sites, "none")
    assert torch.equal(res.resid, clean) and not res.entries.any()
    with pytest.raises(ValueError, match="condition"):
        patch_residual(clean, tokens.ids, tokens.attention_mask, sites, "half")
    with pytest.raises(ValueError, match="one seed per sequence"):
        patch_residual(clean, tokens.ids, tokens.attention_mask, sites, "random")
    with pytest.raises(ValueError, match="set_batch"):
        MassivePatch(sites, "zero")(clean)


def test_no_massive_activation_is_a_clear_error(loaded, tokens):
    with pytest.raises(NoMassiveActivations, match="lower --massive-ratio"):
        find_sites(loaded, tokens, MassiveConfig(), batch_size=4)
