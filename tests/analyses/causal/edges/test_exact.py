"""The exact baselines of ``discover``: exact-edges against per-edge TransformerLens hook
patching, exact-nodes against patching each node's own activation with TransformerLens."""

from __future__ import annotations

import pytest
import torch

from analyses.causal.edges.discover import discover
from analyses.causal.edges.eap import scores_table
from tests.analyses.causal.edges.test_eap import ARCHS, _model, _run_with_edge_delta
from tests.support.tiny import make_pair


def test_exact_edges_equal_per_edge_transformer_lens_patching():
    """score(u -> v) = m(clean) - m(clean with u's corrupted - clean output added at v only),
    the patch done with TransformerLens' run_with_cache / run_with_hooks, for every edge of
    the GQA/rotary/RMSNorm model (per-query-head k/v edges; one pass per edge, so one arch)."""
    model = _model("llama_gqa")
    pair = make_pair(seed=5)
    res = discover(model, [pair], "exact-edges")
    table = scores_table(res)
    assert len(table) == res.graph.n_edges == 110  # 2 layers x 4 heads + MLPs
    with torch.no_grad():
        base = float(pair.score(model(pair.clean)).mean())
    for source, target, score in table[["source", "target", "score"]].itertuples(index=False):
        ref = base - _run_with_edge_delta(model, pair, source, target, 1.0)
        assert score == pytest.approx(ref, abs=1e-6), (source, target)
    assert res.clean_metric == pytest.approx(base, abs=1e-6)
    assert float(table.score.abs().max()) > 1e-3  # the corruption matters somewhere


def _node_patched_metric(model, pair, node: str) -> float:
    """Mean metric on clean tokens with ``node``'s activation taken from the corrupted run."""
    _, cache = model.run_with_cache(pair.corrupted)
    if node == "input":
        name, head = "blocks.0.hook_resid_pre", None
    elif node.startswith("mlp"):
        name, head = f"blocks.{node[3:]}.hook_mlp_out", None
    else:
        layer, h = node[1:].split("H")
        name, head = f"blocks.{layer}.attn.hook_z", int(h)

    def patch(act, hook):
        act = act.clone()
        if head is None:
            return cache[name]
        act[:, :, head] = cache[name][:, :, head]
        return act

    with torch.no_grad():
        return float(pair.score(model.run_with_hooks(pair.clean, fwd_hooks=[(name, patch)]))
                     .mean())


@pytest.mark.parametrize("arch", list(ARCHS))
def test_exact_nodes_give_every_edge_its_source_nodes_exact_effect(arch):
    model = _model(arch)
    pair = make_pair(seed=6)
    table = scores_table(discover(model, [pair], "exact-nodes"))
    with torch.no_grad():
        base = float(pair.score(model(pair.clean)).mean())
    per_source = table.groupby("source").score
    # every edge out of one node carries the same score ...
    assert float((per_source.max() - per_source.min()).max()) < 1e-9
    # ... and it is that node's noising effect, patched at the node by TransformerLens
    for node, score in per_source.first().items():
        assert score == pytest.approx(base - _node_patched_metric(model, pair, node),
                                      abs=1e-6), node
    # the input node's effect is the whole corruption: m(clean) - m(corrupted)
    with torch.no_grad():
        corr = float(pair.score(model(pair.corrupted)).mean())
    assert per_source.first()["input"] == pytest.approx(base - corr, abs=1e-6)
