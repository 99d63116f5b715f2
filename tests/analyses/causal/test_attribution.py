"""Attribution patching: exact where the metric is linear in the patch, first-order elsewhere."""

from __future__ import annotations

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from analyses.causal.attribution import attribute, attribute_many, correlation
from analyses.causal.patching import PatchingConfig, PatchPair, patch


def make_pair(batch=3, n_pos=5, d_vocab=50, corrupt=(1,)):
    g = torch.Generator().manual_seed(1)
    clean = torch.randint(1, d_vocab, (batch, n_pos), generator=g)
    corrupted = clean.clone()
    for pos in corrupt:  # a query patch matters only where the scored query differs
        corrupted[:, pos] = torch.randint(1, d_vocab, (batch,), generator=g)
    answers = torch.randint(1, d_vocab, (batch, 2), generator=g)

    def logit_diff(logits):
        last = logits[:, -1]
        return (last.gather(1, answers[:, :1]) - last.gather(1, answers[:, 1:]))[:, 0]

    return PatchPair(clean, corrupted, logit_diff, task="toy")


@pytest.fixture(scope="module")
def linear_model():
    """One attention-only layer, no LayerNorm: logits = W_U(embed + sum_h A_h v_h W_O^h + b).

    With the attention pattern and values as separate activations, the logits -- and so the
    logit difference -- are linear in z, in v (A fixed) and in A (v fixed), and in attn_out
    and resid_post: first-order attribution is exact for those patches.
    """
    cfg = HookedTransformerConfig(n_layers=1, d_model=32, n_heads=4, d_head=8, n_ctx=16,
                                  d_vocab=50, attn_only=True, normalization_type=None, seed=0,
                                  device="cpu", initializer_range=0.2)
    return HookedTransformer(cfg).eval()


@pytest.mark.parametrize("method", ["denoising", "noising"])
@pytest.mark.parametrize(("component", "per_position"), [
    ("z", False), ("z", True), ("v", False), ("v", True), ("pattern", False),
    ("pattern", True), ("attn_out", True), ("resid_post", True)])
def test_exact_for_linear_model(linear_model, component, per_position, method):
    pair = make_pair()
    config = PatchingConfig(component, per_position, method=method)
    exact = patch(linear_model, pair, config)
    estimate = attribute(linear_model, pair, config)
    assert exact.values.abs().max() > 0 and exact.values.std() > 1e-3
    assert torch.allclose(estimate.values, exact.values, atol=1e-5)
    assert estimate.clean_metric == pytest.approx(exact.clean_metric, abs=1e-6)
    assert set(estimate.table.method) == {f"attribution_{method}"}
    assert correlation(exact.table, estimate.table) > 0.9999


def test_not_exact_where_nonlinear_but_first_order(linear_model):
    """Keys act through a softmax: the estimate is the derivative, checked numerically."""
    pair = make_pair()
    config = PatchingConfig("k", layers=(0,))
    exact = patch(linear_model, pair, config)
    estimate = attribute(linear_model, pair, config)
    assert (estimate.values - exact.values).abs().max() > 1e-4  # really an approximation
    _, cache_c = linear_model.run_with_cache(pair.clean)
    _, cache_r = linear_model.run_with_cache(pair.corrupted)
    name, head, eps = "blocks.0.attn.hook_k", 2, 1e-2

    def interpolate(q, hook):
        q = q.clone()
        q[:, :, head] += eps * (cache_c[name][:, :, head] - cache_r[name][:, :, head])
        return q

    with torch.no_grad():
        moved = linear_model.run_with_hooks(pair.corrupted, fwd_hooks=[(name, interpolate)])
        base = linear_model(pair.corrupted)
    slope = (pair.metric(moved).mean() - pair.metric(base).mean()) / eps
    est_effect = estimate.values[0, head] - exact.corrupted_metric
    assert est_effect.item() == pytest.approx(slope.item(), rel=0.05, abs=1e-4)


def test_many_sweeps_share_passes_and_frozen_weights(linear_model):
    pair = make_pair()
    linear_model.requires_grad_(False)
    try:
        configs = [PatchingConfig("z"), PatchingConfig("pattern", per_position=True)]
        results = attribute_many(linear_model, pair, configs)
    finally:
        linear_model.requires_grad_(True)
    for config, res in zip(configs, results):
        assert torch.allclose(res.values, patch(linear_model, pair, config).values, atol=1e-5)
    assert not any(len(h._forward_hooks) for h in linear_model.hook_dict.values())
    with pytest.raises(ValueError, match="one method"):
        attribute_many(linear_model, pair, [PatchingConfig("z"),
                                            PatchingConfig("z", method="noising")])


@pytest.mark.parametrize("method", ["denoising", "noising"])
@pytest.mark.parametrize(("component", "per_position"), [
    ("q", False), ("q", True), ("k", False), ("k", True)])
def test_qk_fix_is_exact_where_the_metric_is_linear_in_the_pattern(linear_model, component,
                                                                   per_position, method):
    """AtP*: with the softmax recomputed, q/k patches of a model whose logits are linear in
    the pattern are estimated exactly, where plain attribution is not."""
    pair = make_pair(corrupt=(1, 4))
    config = PatchingConfig(component, per_position, method=method)
    exact = patch(linear_model, pair, config)
    star = attribute(linear_model, pair, config, qk_fix=True)
    plain = attribute(linear_model, pair, config)
    assert exact.values.std() > 1e-3
    star_err = (star.values - exact.values).abs().max().item()
    plain_err = (plain.values - exact.values).abs().max().item()
    assert star_err <= 1e-5
    assert plain_err > max(1e-5, 10 * star_err)  # the linearised softmax is not exact
    assert set(star.table.method) == {f"attribution_qk_{method}"}


def test_qk_fix_on_a_rotary_gqa_model_beats_plain_attribution():
    """On a Llama-style tiny model (rotary, GQA, RMSNorm, gated MLP) the AtP* q/k estimates
    are closer to exact patching than plain attribution (k per key/value head)."""
    from tests.support.tiny import tiny_variant

    model = tiny_variant("llama", initializer_range=0.3)
    pair = make_pair(corrupt=(1, 4))
    for component in ("q", "k"):
        config = PatchingConfig(component, per_position=True)
        exact = patch(model, pair, config).values
        star = attribute(model, pair, config, qk_fix=True).values
        plain = attribute(model, pair, config).values
        assert star.shape == exact.shape == plain.shape
        assert (star - exact).abs().sum() < (plain - exact).abs().sum(), component
