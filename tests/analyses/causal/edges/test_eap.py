"""EAP / EAP-IG against finite differences and TransformerLens' own hooks (tiny models)."""

from __future__ import annotations

import pytest
import torch
from transformer_lens import HookedTransformer

from analyses.causal.edges.ablate import circuit_metric
from analyses.causal.edges.eap import EAPConfig, edge_attribution, scores_table
from analyses.causal.edges.graph import build_graph, edge_hooks
from analyses.causal.edges.sources import run_sources
from tests.support.tiny import make_pair, tiny_cfg

ARCHS = {
    "ln_gelu": {},
    "llama_gqa": dict(normalization_type="RMS", act_fn="silu", gated_mlp=True,
                      positional_embedding_type="rotary", n_key_value_heads=2),
}


def _model(arch: str) -> HookedTransformer:
    torch.manual_seed(0)
    cfg = tiny_cfg(dtype=torch.float64, **ARCHS[arch])
    return HookedTransformer(cfg).eval()


def _outputs(model, tokens):
    """Every source output by TransformerLens' run_with_cache (independent of sources.py)."""
    _, cache = model.run_with_cache(tokens)
    out = {"input": cache["blocks.0.hook_resid_pre"]}
    for layer in range(model.cfg.n_layers):
        z = cache[f"blocks.{layer}.attn.hook_z"]
        for h in range(model.cfg.n_heads):
            out[f"L{layer}H{h}"] = z[:, :, h] @ model.blocks[layer].attn.W_O[h]
        out[f"mlp{layer}"] = cache[f"blocks.{layer}.hook_mlp_out"]
    return out


def _target_hook(model, target: str):
    """(TransformerLens hook name, head index or None) of a target label."""
    if target == "logits":
        return f"blocks.{model.cfg.n_layers - 1}.hook_resid_post", None
    if target.startswith("mlp"):
        return f"blocks.{target[3:]}.hook_mlp_in", None
    layer, head = target[1:target.index("(")].split("H")
    return f"blocks.{layer}.hook_{target[-2]}_input", int(head)


def _run_with_edge_delta(model, pair, source, target, delta_scale):
    """Mean metric with delta_scale * (corrupted - clean output of source) added at target."""
    clean, corr = _outputs(model, pair.clean), _outputs(model, pair.corrupted)
    delta = delta_scale * (corr[source] - clean[source])
    name, head = _target_hook(model, target)

    def hook(act, hook):
        act = act.clone()
        if head is None:
            return act + delta
        act[:, :, head] += delta
        return act

    with torch.no_grad(), edge_hooks(model):
        out = model.run_with_hooks(pair.clean, fwd_hooks=[(name, hook)])
    return float(pair.score(out).mean())


EDGES = [("input", "L0H1(q)"), ("L0H2", "L1H3(k)"), ("L0H0", "L1H1(v)"), ("mlp0", "L1H2(k)"),
         ("L1H1", "mlp1"), ("input", "logits"), ("L0H3", "mlp0"), ("mlp1", "logits")]


@pytest.mark.parametrize("arch", list(ARCHS))
def test_edge_hooks_keep_the_forward_pass_and_restore_the_config(arch):
    model = _model(arch)
    tokens = make_pair(seed=1).clean
    before = (model.cfg.use_split_qkv_input, model.cfg.use_hook_mlp_in,
              model.cfg.ungroup_grouped_query_attention)
    with torch.no_grad():
        ref = model(tokens)
        with edge_hooks(model):
            got = model(tokens)
    torch.testing.assert_close(got, ref, atol=1e-10, rtol=0)
    assert (model.cfg.use_split_qkv_input, model.cfg.use_hook_mlp_in,
            model.cfg.ungroup_grouped_query_attention) == before


@pytest.mark.parametrize("arch", list(ARCHS))
def test_eap_equals_the_finite_difference_of_the_linearised_edge_patch(arch):
    """score = -(d/de) m(x_v + e (o_u(corr) - o_u(clean))) at e = 0, central difference."""
    model = _model(arch)
    pair = make_pair(seed=2)
    res = edge_attribution(model, pair)
    table = scores_table(res).set_index(["source", "target"]).score
    eps = 1e-5
    for source, target in EDGES:
        fd = (_run_with_edge_delta(model, pair, source, target, eps)
              - _run_with_edge_delta(model, pair, source, target, -eps)) / (2 * eps)
        assert table[(source, target)] == pytest.approx(-fd, rel=1e-5, abs=1e-8), (source, target)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_exact_edge_ablation_equals_transformer_lens_patching(arch):
    """One ablated edge = adding corrupted - clean of its source at its target (TL hooks);
    all edges out of a head = patching that head's z with the corrupted run's (TL hooks)."""
    model = _model(arch)
    pair = make_pair(seed=3)
    graph = build_graph(model)
    _, corr = run_sources(model, graph, pair.corrupted)
    names_s = [n.name for n in graph.sources]
    names_t = [t.name for t in graph.targets]
    for source, target in EDGES:
        keep = graph.real.clone()
        keep[names_s.index(source), names_t.index(target)] = False
        got = circuit_metric(model, graph, keep, pair, corr)
        assert got == pytest.approx(_run_with_edge_delta(model, pair, source, target, 1.0),
                                    abs=1e-6)  # reduce_metric rounds to float32
    keep = graph.real.clone()
    keep[names_s.index("L0H2")] = False
    _, cache = model.run_with_cache(pair.corrupted)
    z_corr = cache["blocks.0.attn.hook_z"]

    def patch_z(z, hook):
        z = z.clone()
        z[:, :, 2] = z_corr[:, :, 2]
        return z

    with torch.no_grad():
        ref = float(pair.score(model.run_with_hooks(
            pair.clean, fwd_hooks=[("blocks.0.attn.hook_z", patch_z)])).mean())
    assert circuit_metric(model, graph, keep, pair, corr) == pytest.approx(ref, abs=1e-6)


def test_eap_ig_with_one_step_is_eap_at_the_corrupted_input():
    """EAP-IG's first interpolation point is the corrupted input: with steps=1 its gradients
    are those of the clean tokens run on corrupted embeddings, not EAP's clean gradients."""
    model = _model("ln_gelu")
    pair = make_pair(seed=4)
    eap = edge_attribution(model, pair, EAPConfig("eap")).scores
    ig1 = edge_attribution(model, pair, EAPConfig("eap-ig", steps=1)).scores
    ig4 = edge_attribution(model, pair, EAPConfig("eap-ig", steps=4)).scores
    assert not torch.allclose(eap, ig1)
    # steps=4 averages k = 0..3; the k = 0 term is steps=1's, so 4 * ig4 - ig1 = sum of k=1..3
    # terms, which must differ from 3 * ig1 (the gradient changes along the path)
    assert not torch.allclose(4 * ig4 - ig1, 3 * ig1)
    # the same edges are real: non-edges are exactly zero
    assert bool((ig4[~build_graph(model).real] == 0).all())
