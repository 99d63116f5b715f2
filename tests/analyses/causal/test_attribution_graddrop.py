"""AtP*'s GradDrop: catches cancelling paths, reduces to |AtP| for the last layer, and equals
its definition (patching with one layer frozen) where the model is linear."""

from __future__ import annotations

import itertools

import pytest
import torch
from transformer_lens import HookedTransformer

from analyses.causal.attribution import attribute, attribute_many
from analyses.causal.patching import PatchingConfig
from probes.hooks import record, scoped_hooks
from tests.analyses.causal.test_attribution import make_pair as linear_pair
from tests.support.tiny import make_pair, tiny_cfg, tiny_variant


@pytest.fixture(scope="module")
def cancelling_model() -> HookedTransformer:
    """Two attention-only layers, no LayerNorm; head L1H0 writes minus what L0H0 wrote.

    L1H0 reads the residual through pinv(W_O[L0H0]) and writes through -W_O[L0H0]: on L0H0's
    output x it adds -x, so L0H0's direct effect and its indirect effect through L1H0 cancel
    exactly. The other layer-1 heads write nothing.
    """
    model = HookedTransformer(tiny_cfg(attn_only=True, normalization_type=None,
                                       initializer_range=0.3)).eval()
    with torch.no_grad():
        w_o = model.blocks[0].attn.W_O[0]  # (d_head, d_model)
        model.blocks[1].attn.W_V[0].copy_(torch.linalg.pinv(w_o))  # (d_model, d_head)
        model.blocks[1].attn.W_O.zero_()
        model.blocks[1].attn.W_O[0].copy_(-w_o)
    return model


def test_graddrop_finds_cancelling_head(cancelling_model):
    pair = linear_pair(batch=4, n_pos=1, corrupt=(0,))  # one token: attention is identity
    config = PatchingConfig("z")
    plain = attribute(cancelling_model, pair, config)
    dropped = attribute(cancelling_model, pair, config, grad_drop=True)
    atp = plain.values - plain.corrupted_metric  # (layer, head)
    gd = dropped.values - dropped.corrupted_metric
    assert abs(plain.clean_metric - plain.corrupted_metric) > 0.1  # the patch matters overall
    assert atp[0, 0].abs() < 1e-4  # plain AtP: the two paths cancel
    assert gd[0, 0] > 0.1  # GradDrop: the direct path, seen with layer 1 cut
    # with layer 1 cut, L0H0's estimate is its direct effect alone: W_U of its output change
    model, name = cancelling_model, "blocks.0.attn.hook_z"
    with torch.no_grad():
        z = {s: record(model, [name], lambda s=s: model(getattr(pair, s)))[1][name][:, -1, 0]
             for s in ("clean", "corrupted")}  # (batch, d_head)
        direct = pair.score(((z["clean"] - z["corrupted"]) @ model.blocks[0].attn.W_O[0]
                             @ model.W_U)[:, None])  # linear metric of the logit change
    assert gd[0, 0] == pytest.approx(float(direct.mean().abs()), rel=1e-4)
    assert set(dropped.table.method) == {"attribution_graddrop_denoising"}
    assert (dropped.table.effect >= 0).all()


@pytest.mark.parametrize("method", ["denoising", "noising"])
def test_last_layer_equals_abs_atp(method):
    """Last-layer nodes: L - 1 passes equal AtP, the pass cutting their own layer gives 0."""
    model = tiny_variant("llama")
    pair = make_pair(per_prompt=True)
    configs = [PatchingConfig(c, per_position=True, method=method)
               for c in ("z", "q", "k", "v", "attn_out", "mlp_out")]
    for qk_fix in (False, True):
        plain = attribute_many(model, pair, configs, qk_fix=qk_fix)
        dropped = attribute_many(model, pair, configs, qk_fix=qk_fix, grad_drop=True)
        for p, d in zip(plain, dropped):
            atp = p.values[-1] - _baseline(p, method)
            gd = d.values[-1] - _baseline(d, method)
            assert atp.abs().max() > 1e-4
            assert torch.allclose(gd, atp.abs(), atol=1e-6)


def _baseline(result, method):
    return result.corrupted_metric if method == "denoising" else result.clean_metric


def test_equals_patching_with_one_layer_frozen():
    """In a linear model (uniform attention, no LayerNorm or MLP), AtP+GD_l is exactly the
    effect of patching a head while holding layer l's output at the patched run's value."""
    model = HookedTransformer(tiny_cfg(n_layers=3, attn_only=True, normalization_type=None,
                                       initializer_range=0.3)).eval()
    with torch.no_grad():
        for block in model.blocks:
            block.attn.W_Q.zero_()  # uniform causal attention: logits linear in every z
    pair = make_pair(per_prompt=True)
    z_names = [f"blocks.{la}.attn.hook_z" for la in range(3)]
    out_names = [f"blocks.{la}.hook_attn_out" for la in range(3)]
    expected = torch.zeros(3, 4)
    with torch.no_grad():
        _, clean = record(model, z_names, lambda: model(pair.clean))
        corr_logits, corr = record(model, out_names, lambda: model(pair.corrupted))
        corr_metric = float(pair.score(corr_logits).mean())
        for layer, head, frozen in itertools.product(range(3), range(4), range(3)):
            expected[layer, head] += abs(
                _frozen_patch(model, pair, layer, head, frozen, clean, corr) - corr_metric)
    expected /= 3 - 1
    got = attribute(model, pair, PatchingConfig("z"), grad_drop=True)
    assert expected.max() > 0.1
    assert torch.allclose(got.values - got.corrupted_metric, expected, atol=1e-4)


def _frozen_patch(model, pair, layer, head, frozen, clean, corr):
    """Metric of the corrupted run with head (layer, head)'s z from the clean run and
    ``frozen``'s attention output held at its corrupted-run value."""

    def put_z(z):
        z = z.clone()
        z[:, :, head] = clean[f"blocks.{layer}.attn.hook_z"][:, :, head]
        return z

    name = f"blocks.{frozen}.hook_attn_out"
    with scoped_hooks(model, [(f"blocks.{layer}.attn.hook_z", put_z),
                              (name, lambda act: corr[name])]):
        return float(pair.score(model(pair.corrupted)).mean())


def test_one_layer_refused():
    model = HookedTransformer(tiny_cfg(n_layers=1)).eval()
    with pytest.raises(ValueError, match="at least 2 layers"):
        attribute(model, make_pair(), PatchingConfig("z"), grad_drop=True)
