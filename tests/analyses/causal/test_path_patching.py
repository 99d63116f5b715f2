"""Path patching: batched senders equal an unbatched TransformerLens-hooks reference."""

from __future__ import annotations

import pytest
import torch
from transformer_lens import HookedTransformer

from analyses.causal.patching import PatchPair
from analyses.causal.path_patching import PathPatchingConfig, Receiver, path_patch
from tests.support.tiny import tiny_cfg


@pytest.fixture(scope="module")
def model():
    cfg = tiny_cfg(n_layers=3, n_heads=3, n_ctx=16, d_vocab=40, initializer_range=0.15)
    return HookedTransformer(cfg).eval()


def make_pair():
    g = torch.Generator().manual_seed(2)
    clean = torch.randint(1, 40, (3, 5), generator=g)
    corrupted = clean.clone()
    corrupted[:, 1] = torch.randint(1, 40, (3,), generator=g)
    answers = torch.randint(1, 40, (3, 2), generator=g)

    def logit_diff(logits):
        last = logits[:, -1]
        return (last.gather(1, answers[:, :1]) - last.gather(1, answers[:, 1:]))[:, 0]

    return PatchPair(clean, corrupted, logit_diff, task="toy")


def reference(model, pair, sender, receivers, freeze_mlps, method):
    """One sender, TransformerLens' run_with_hooks, the two passes of Wang et al. written out."""
    base, source = (pair.corrupted, pair.clean) if method == "denoising" else (
        pair.clean, pair.corrupted)
    _, bc = model.run_with_cache(base)
    _, sc = model.run_with_cache(source)
    s_layer, s_head = sender

    def freeze(z, hook):
        z = bc[hook.name].clone()
        if hook.layer() == s_layer:
            z[:, :, s_head] = sc[hook.name][:, :, s_head]
        return z

    hooks = [(f"blocks.{la}.attn.hook_z", freeze) for la in range(model.cfg.n_layers)]
    if freeze_mlps:
        hooks += [(f"blocks.{la}.hook_mlp_out", lambda a, hook: bc[hook.name])
                  for la in range(model.cfg.n_layers)]
    rec = {}
    for r in receivers:
        for x in r.inputs:
            hooks.append((f"blocks.{r.layer}.attn.hook_{x}",
                          lambda a, hook: rec.__setitem__(hook.name, a.clone())))
    with torch.no_grad():
        out = model.run_with_hooks(base, fwd_hooks=hooks)
        if receivers:
            def splice(a, hook):
                a = a.clone()
                for r in receivers:
                    if hook.name in {f"blocks.{r.layer}.attn.hook_{x}" for x in r.inputs}:
                        a[:, :, r.head] = rec[hook.name][:, :, r.head]
                return a

            names = {f"blocks.{r.layer}.attn.hook_{x}" for r in receivers for x in r.inputs}
            out = model.run_with_hooks(base, fwd_hooks=[(n, splice) for n in names])
    return pair.metric(out).mean().item()


@pytest.mark.parametrize(("receivers", "freeze_mlps", "method"), [
    ((), True, "noising"),
    ((), False, "denoising"),
    ((Receiver(2, 1, ("q",)), Receiver(2, 0, ("k", "v"))), False, "noising"),
    ((Receiver(1, 2),), True, "denoising"),
])
def test_matches_unbatched_reference(model, receivers, freeze_mlps, method):
    pair = make_pair()
    config = PathPatchingConfig(receivers, method=method, freeze_mlps=freeze_mlps,
                                memory_budget_mb=0.02)  # several chunks
    table = path_patch(model, pair, config)
    top = max((r.layer for r in receivers), default=model.cfg.n_layers)
    assert len(table) == top * model.cfg.n_heads
    assert table.patched_metric.std() > 1e-5
    for row in table.itertuples():
        ref = reference(model, pair, (row.layer, row.head), receivers, freeze_mlps, method)
        assert row.patched_metric == pytest.approx(ref, abs=1e-4)
    assert not any(len(h._forward_hooks) for h in model.hook_dict.values())


def test_direct_path_to_logits_is_linear_algebra(model):
    """With MLPs frozen, the sender's direct effect is its output change added at the end."""
    pair = make_pair()
    table = path_patch(model, pair, PathPatchingConfig(freeze_mlps=True, method="denoising"))
    _, cc = model.run_with_cache(pair.clean)
    _, rc = model.run_with_cache(pair.corrupted)
    last = f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"
    for row in table.itertuples():
        name = f"blocks.{row.layer}.attn.hook_z"
        dz = cc[name][:, :, row.head] - rc[name][:, :, row.head]  # (batch, pos, d_head)
        resid = rc[last] + dz @ model.W_O[row.layer, row.head]
        logits = model.unembed(model.ln_final(resid))
        assert row.patched_metric == pytest.approx(pair.metric(logits).mean().item(), abs=1e-4)


def test_bad_receivers(model):
    with pytest.raises(ValueError, match="subset of q, k, v"):
        Receiver(1, 0, ("z",))
    with pytest.raises(ValueError, match="not a head"):
        path_patch(model, make_pair(), PathPatchingConfig((Receiver(5, 0),)))
    with pytest.raises(ValueError, match="no sender"):
        path_patch(model, make_pair(), PathPatchingConfig((Receiver(0, 0),)))


def test_receiver_labels_use_head_notation(model):
    config = PathPatchingConfig((Receiver(2, 0, ("q",)), Receiver(2, 1, ("k", "v"))))
    assert config.label() == "L2H0(q) L2H1(kv)"
    assert PathPatchingConfig().label() == "logits"
    table = path_patch(model, make_pair(), PathPatchingConfig((Receiver(1, 2, ("q",)),)))
    assert set(table.receivers) == {"L1H2(q)"}
