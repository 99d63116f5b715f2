"""The fast engine on every decoder variant (RMS/LN, gated/plain MLP, GQA/MHA, rotary/learned)
equals transformer_lens.patching, and refuses prompts past the rotary tables clearly."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import transformer_lens.patching as tlp

from analyses.causal.fast import DecoderMath, kv_heads, unsupported_reason
from analyses.causal.patching import PatchingConfig, PatchPair, patch
from tests.analyses.causal.test_patching_fast import scored_pair, tl_scalar
from tests.support.patching import TOL
from tests.support.tiny import VARIANTS, make_pair, tiny_variant

SWEEPS = [  # (component, per_position, TransformerLens' patcher)
    ("z", False, tlp.get_act_patch_attn_head_out_all_pos),
    ("z", True, tlp.get_act_patch_attn_head_out_by_pos),
    ("q", False, tlp.get_act_patch_attn_head_q_all_pos),
    ("resid_pre", True, tlp.get_act_patch_resid_pre),
    ("mlp_out", True, tlp.get_act_patch_mlp_out),
]


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request):
    return tiny_variant(request.param)


@pytest.mark.parametrize("scored", [False, True])
def test_fast_equals_transformer_lens_on_every_variant(variant, scored):
    assert unsupported_reason(variant) is None
    pair = scored_pair() if scored else make_pair(per_prompt=False)
    _, cache = variant.run_with_cache(pair.clean)
    for component, per_position, tl_fn in SWEEPS if scored else (SWEEPS[0], SWEEPS[3]):
        ours = patch(variant, pair, PatchingConfig(component, per_position, engine="fast"))
        ref = tl_fn(variant, pair.corrupted, cache, tl_scalar(pair))
        assert ours.engine == "fast"
        assert (ours.values - ref).abs().max().item() <= TOL, component
        assert ours.values.std() > 1e-4, component


def kv_reference(model, pair: PatchPair, component: str):
    """TransformerLens' generic patcher over key/value heads (its k/v head patchers index
    query heads, which do not exist in hook_k/hook_v under GQA): (layer, kv_head)."""
    g = kv_heads(model.cfg)
    index = pd.DataFrame([(la, h) for la in range(model.cfg.n_layers) for h in range(g)],
                         columns=["layer", "head"])
    _, cache = model.run_with_cache(pair.clean)
    out = tlp.generic_activation_patch(model, pair.corrupted, cache, tl_scalar(pair),
                                       tlp.layer_head_vector_patch_setter, component,
                                       index_df=index)
    return out.view(model.cfg.n_layers, g)


@pytest.mark.parametrize("component", ["k", "v"])
def test_key_value_patches_are_per_key_value_head(component):
    model = tiny_variant("llama")
    pair = scored_pair()
    ours = patch(model, pair, PatchingConfig(component, engine="fast"))
    hooks = patch(model, pair, PatchingConfig(component, engine="hooks"))
    assert ours.values.shape == (3, 2)  # 2 key/value heads, shared by 4 query heads
    ref = kv_reference(model, pair, component)
    assert (ours.values - ref).abs().max().item() <= TOL
    assert (hooks.values - ref).abs().max().item() <= TOL
    assert ours.values.std() > 1e-4
    by_pos = patch(model, pair, PatchingConfig(component, True, engine="fast"))
    assert by_pos.values.shape == (3, pair.n_pos, 2)
    assert set(by_pos.table["head"]) == {0, 1}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_decoder_math_records_what_the_hook_points_see(name):
    model = tiny_variant(name)
    tokens = scored_pair().clean
    logits, cache = model.run_with_cache(tokens)
    kinds = ("resid_pre", "q", "k", "v", "rot_q", "rot_k", "z", "attn_out", "resid_mid",
             "mlp_out", "resid_post")
    names = {n for n in cache.keys() if any(n.endswith(f"hook_{kind}") for kind in kinds)}
    with torch.no_grad():
        ours, acts = DecoderMath(model).forward(tokens, names)
    assert set(acts) == names and len(names) >= 9 * model.cfg.n_layers
    for n in names:
        assert acts[n].shape == cache[n].shape, n
        assert (acts[n] - cache[n]).abs().max().item() <= 1e-5, n
    assert (ours - logits).abs().max().item() <= 1e-5


def test_rotary_tables_extend_like_transformer_lens_and_stop_at_n_ctx():
    model = tiny_variant("llama")
    for block in model.blocks:  # as TL 3.9 leaves models with n_ctx > 2048: a shorter table
        block.attn.rotary_cos = block.attn.rotary_cos[:4].clone()
        block.attn.rotary_sin = block.attn.rotary_sin[:4].clone()
    pair = scored_pair()  # 7 tokens: past the 4-row tables, within n_ctx = 32
    with torch.no_grad():
        ours, _ = DecoderMath(model).forward(pair.clean, set())
    assert (ours - model(pair.clean)).abs().max().item() <= 1e-5
    long = torch.randint(1, 50, (1, model.cfg.n_ctx + 1))
    with pytest.raises(ValueError, match=r"n_ctx"):
        DecoderMath(model).forward(long, set())
    with pytest.raises(ValueError, match=r"33 tokens.*n_ctx"):
        patch(model, PatchPair(long, long, lambda x: x[:, -1, 0]), PatchingConfig("z"))
