"""The fast patching engine equals transformer_lens.patching, and falls back where it must."""

from __future__ import annotations

import pytest
import torch
from transformer_lens import HookedTransformer

from analyses.causal.fast import (
    FAST_COMPONENTS,
    DecoderMath,
    first_difference,
    unsupported_reason,
)
from analyses.causal.patching import PatchingConfig, PatchPair, patch
from tests.support.patching import CASES, TOL, patch_cfg
from tests.support.tiny import make_pair

FAST_CASES = [case for case in CASES if case[0] in FAST_COMPONENTS]
ARCHS = {  # architectures the fast engine supports, besides tiny_cfg's LN + gelu
    "lnpre_gelu_new": dict(normalization_type="LNPre", act_fn="gelu_new"),
    "attn_only_relu": dict(attn_only=True, act_fn="relu", n_layers=3),
    "rotary": dict(positional_embedding_type="rotary", rotary_dim=8),
    "partial_rotary": dict(positional_embedding_type="rotary", rotary_dim=4),
    "rotary_adjacent_pairs": dict(positional_embedding_type="rotary", rotary_dim=8,
                                  rotary_adjacent_pairs=True),
}


def scored_pair(d_vocab=50, batch=4, n_pos=7, seed=1) -> PatchPair:
    """Prompts differing from position 3 on, scored at a different position per prompt."""
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(1, d_vocab, (batch, n_pos), generator=g)
    corrupted = clean.clone()
    corrupted[:, 3] = torch.randint(1, d_vocab, (batch,), generator=g)
    answers = torch.randint(1, d_vocab, (batch, 2), generator=g)
    score_pos = torch.tensor([6, 5, 6, 4])

    def logit_diff(logits):  # (batch, d_vocab): the output at score_pos
        return (logits.gather(1, answers[:, :1]) - logits.gather(1, answers[:, 1:]))[:, 0]

    return PatchPair(clean, corrupted, logit_diff, task="scored", score_pos=score_pos)


def tl_scalar(pair: PatchPair):
    """pair's metric on full logits, as a scalar, for transformer_lens.patching."""
    return lambda logits: pair.score(logits).mean()


@pytest.mark.parametrize(("component", "per_position", "tl_fn"), FAST_CASES)
@pytest.mark.parametrize("scored", [False, True])
def test_fast_equals_transformer_lens(component, per_position, tl_fn, scored):
    model = HookedTransformer(patch_cfg()).eval()
    pair = scored_pair() if scored else make_pair(per_prompt=False)
    ours = patch(model, pair, PatchingConfig(component, per_position, engine="fast"))
    _, cache = model.run_with_cache(pair.clean)
    ref = tl_fn(model, pair.corrupted, cache, tl_scalar(pair))
    assert ours.engine == "fast"
    assert (ours.values - ref).abs().max().item() <= TOL
    assert ours.values.std() > 1e-4


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("method", ["denoising", "noising"])
def test_fast_equals_hooks_engine_on_other_architectures(arch, method):
    model = HookedTransformer(patch_cfg(**ARCHS[arch])).eval()
    pair = scored_pair()
    for component in ("z", "mlp_out", "resid_pre") if not model.cfg.attn_only else ("z",):
        cfg = dict(component=component, per_position=True, method=method)
        fast = patch(model, pair, PatchingConfig(**cfg, engine="fast"))
        hooks = patch(model, pair, PatchingConfig(**cfg, engine="hooks"))
        assert (fast.engine, hooks.engine) == ("fast", "hooks")
        assert (fast.values - hooks.values).abs().max().item() <= TOL


@pytest.mark.parametrize("arch", ["default", *sorted(ARCHS)])
def test_decoder_math_forward_equals_the_hook_points(arch):
    """The plain forward pass the fast engine reads its baselines from records exactly what
    the model's hook points see, and its scored output is the logits at score_pos."""
    model = HookedTransformer(patch_cfg(**ARCHS.get(arch, {}))).eval()
    tokens = scored_pair().clean
    logits, cache = model.run_with_cache(tokens)
    kinds = ("resid_pre", "k", "v", "z", "attn_out", "resid_post") + \
        (() if model.cfg.attn_only else ("resid_mid", "mlp_out"))
    names = {f"blocks.{layer}.{hp}" for layer in range(model.cfg.n_layers) for hp in
             ("attn.hook_rot_k",) * (model.cfg.positional_embedding_type == "rotary")}
    names |= {cache_name for cache_name in cache.keys()
              if any(cache_name.endswith(f"hook_{kind}") for kind in kinds)}
    math = DecoderMath(model)
    with torch.no_grad():
        ours, acts = math.forward(tokens, names)
        scored, _ = math.forward(tokens, set(), score_pos=torch.tensor([6, 0, 3, 4]))
    assert set(acts) == names and len(names) >= 6 * model.cfg.n_layers
    for name in names:
        assert (acts[name] - cache[name]).abs().max().item() <= 1e-5, name
    assert (ours - logits).abs().max().item() <= 1e-5
    assert (scored - logits[torch.arange(4), torch.tensor([6, 0, 3, 4])]).abs().max() <= 1e-5


def test_fast_engine_chunks_to_one_row():
    model = HookedTransformer(patch_cfg()).eval()
    pair = scored_pair()
    big = patch(model, pair, PatchingConfig("z", True))
    tiny = patch(model, pair, PatchingConfig("z", True, memory_budget_mb=1e-6))
    assert (big.values - tiny.values).abs().max().item() <= 1e-5


def test_auto_falls_back_where_the_fast_engine_does_not_apply():
    model = HookedTransformer(patch_cfg()).eval()
    pair = make_pair(per_prompt=False)
    assert patch(model, pair, PatchingConfig("q")).engine == "fast"
    assert patch(model, pair, PatchingConfig("pattern")).engine == "hooks"
    with pytest.raises(ValueError, match="fast patching engine cannot run"):
        patch(model, pair, PatchingConfig("pattern", engine="fast"))
    handle = model.blocks[0].hook_resid_pre.register_forward_hook(lambda m, i, o: o)
    try:
        assert unsupported_reason(model) == "hooks are attached to the model"
        assert patch(model, pair, PatchingConfig("z")).engine == "hooks"
    finally:
        handle.remove()
    alibi = HookedTransformer(patch_cfg(positional_embedding_type="alibi"))
    assert "alibi" in unsupported_reason(alibi)


def test_first_difference_and_score_pos_validation():
    clean = torch.tensor([[1, 2, 3, 4], [1, 2, 3, 4]])
    corrupted = torch.tensor([[1, 2, 9, 4], [1, 5, 3, 4]])
    assert first_difference(clean, corrupted, None) == 1
    assert first_difference(clean, clean, None) == 3
    assert first_difference(clean, corrupted, torch.tensor([0, 3])) == 0
    with pytest.raises(ValueError, match="score_pos"):
        PatchPair(clean, corrupted, lambda x: x, score_pos=torch.tensor([4, 1]))
