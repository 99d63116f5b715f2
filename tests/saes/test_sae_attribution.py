"""DFA (saes.attribution): exact per-head and per-source splits of SAE pre-activations.

The reference pre-activation is SAE-Lens' own (`hook_sae_acts_pre` of the SAE), the
activations come from TransformerLens' `run_with_cache` on a tiny random model.
"""

from __future__ import annotations

import pytest
import torch

from tests.support.tiny import random_sae, tiny_cfg


@pytest.fixture(scope="module")
def cache():
    from transformer_lens import HookedTransformer

    torch.manual_seed(0)
    model = HookedTransformer(tiny_cfg()).eval()
    ids = torch.randint(0, 50, (3, 10))
    names = ["blocks.1.attn.hook_z", "blocks.1.attn.hook_pattern", "blocks.1.attn.hook_v"]
    _, cache = model.run_with_cache(ids, names_filter=lambda n: n in names)
    return {n.split("_")[-1]: cache[n] for n in names}


def sae_lens_pre(sae, z):
    """SAE-Lens' hidden pre-activation for hook_z input z (..., head, d_head)."""
    _, c = sae.run_with_cache(z)  # SAE-Lens flattens (head, d_head) itself (hook_z mode)
    return c["hook_sae_acts_pre"]


@pytest.mark.parametrize("arch", ["standard", "topk"])
def test_head_terms_sum_to_sae_lens_pre_activation(cache, arch):
    from saes.attribution import dfa_by_head

    sae = random_sae(32, arch=arch)
    dfa = dfa_by_head(sae, cache["z"])
    assert dfa.per_head.shape == (3, 10, 4, 24)
    ref = sae_lens_pre(sae, cache["z"])
    assert torch.allclose(dfa.per_head.sum(-2) + dfa.bias, ref, atol=1e-4)
    assert torch.allclose(dfa.pre, ref, atol=1e-4)
    # every head matters somewhere: the split is not trivially one head
    assert (dfa.per_head.abs().amax(dim=(0, 1, 3)) > 1e-3).all()


def test_active_features_equal_their_pre_activation(cache):
    from saes.attribution import dfa_by_head

    sae = random_sae(32, arch="topk")
    acts = sae.encode(cache["z"])  # SAE-Lens' own encode
    dfa = dfa_by_head(sae, cache["z"])
    active = acts > 0
    assert active.any()
    assert torch.allclose(dfa.pre[active], acts[active], atol=1e-4)


def test_source_parts_sum_to_head_parts(cache):
    from saes.attribution import dfa_by_head, dfa_by_source

    sae = random_sae(32)
    feats = [0, 5, 23]
    heads = dfa_by_head(sae, cache["z"], features=feats)
    src = dfa_by_source(sae, cache["pattern"], cache["v"], features=feats)
    assert src.per_source.shape == (3, 10, 10, 4, 3)
    assert torch.allclose(src.per_head, heads.per_head, atol=1e-4)
    ref = sae_lens_pre(sae, cache["z"])[..., feats]
    assert torch.allclose(src.per_head.sum(-2) + src.bias, ref, atol=1e-4)
    # causal model: no contribution from future source positions
    future = torch.triu(torch.ones(10, 10, dtype=torch.bool), diagonal=1)
    assert src.per_source[:, future].abs().max() == 0


def test_source_split_with_selected_queries(cache):
    from saes.attribution import dfa_by_head, dfa_by_source

    sae = random_sae(32)
    src = dfa_by_source(sae, cache["pattern"], cache["v"], features=[2], query_pos=[4, 9])
    heads = dfa_by_head(sae, cache["z"][:, [4, 9]], features=[2])
    assert src.per_source.shape == (3, 2, 10, 4, 1)
    assert torch.allclose(src.per_head, heads.per_head, atol=1e-4)


def test_flat_and_head_shaped_inputs_agree(cache):
    from saes.attribution import dfa_by_head

    sae = random_sae(32)
    a = dfa_by_head(sae, cache["z"])
    b = dfa_by_head(sae, cache["z"].flatten(-2), n_heads=4)
    assert torch.allclose(a.per_head, b.per_head)


def test_mismatched_shapes_raise_clear_errors(cache):
    from saes.attribution import dfa_by_head, encoder_slices

    sae = random_sae(48)
    with pytest.raises(ValueError, match="d_in = 48"):
        dfa_by_head(sae, cache["z"])
    with pytest.raises(ValueError, match="features"):
        encoder_slices(random_sae(32), 4, features=[99])


def test_rescaled_topk_pre_activation_is_split_exactly(cache):
    """SAE-Lens' TopK with rescale_acts_by_decoder_norm scales the whole pre-activation."""
    from saes.attribution import dfa_by_head

    sae = random_sae(32, arch="topk")
    sae.cfg.rescale_acts_by_decoder_norm = True
    dfa = dfa_by_head(sae, cache["z"])
    ref = sae_lens_pre(sae, cache["z"]) * sae.W_dec.norm(dim=-1)
    assert torch.allclose(dfa.pre, ref, atol=1e-4)
