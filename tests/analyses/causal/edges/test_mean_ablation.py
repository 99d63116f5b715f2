"""Mean ("mean-positional") ablation of edges: end points, an independent empty-circuit
computation, and the mean taken over every chunk of the evaluation set."""

from __future__ import annotations

import pytest
import torch
from transformer_lens import HookedTransformer

from analyses.causal.edges.ablate import circuit_metric, circuit_output
from analyses.causal.edges.faithfulness import circuit_metrics, faithfulness_curve, top_edges
from analyses.causal.edges.graph import build_graph
from analyses.causal.edges.means import add_sources, positional_means
from analyses.causal.edges.sources import run_sources
from analyses.causal.patching import PatchPair
from tests.support.tiny import make_pair, tiny_cfg

ARCHS = {
    "ln_gelu": {},
    "llama_gqa": dict(normalization_type="RMS", act_fn="silu", gated_mlp=True,
                      positional_embedding_type="rotary", n_key_value_heads=2),
}


def _model(arch: str = "ln_gelu") -> HookedTransformer:
    torch.manual_seed(0)
    return HookedTransformer(tiny_cfg(dtype=torch.float64, **ARCHS[arch])).eval()


def _means(model, graph, tokens: torch.Tensor) -> torch.Tensor:
    _, sources = run_sources(model, graph, tokens)
    return positional_means(add_sources(None, sources), len(tokens), sources.dtype)


def _copy_model() -> HookedTransformer:
    """The tiny model with W_U = W_E^T, so the logit of the current token is large on the clean
    run and not under mean ablation: faithfulness denominators of order 1, not 0.02."""
    model = _model()
    with torch.no_grad():
        model.unembed.W_U.copy_(model.embed.W_E.T)
    return model


def _chunks(n: int, size: int, n_pos: int = 6, seed: int = 4) -> list[PatchPair]:
    """``n`` random prompt pairs (the last token swapped) in chunks of ``size``; metric: the
    logit of the clean last token minus that of token 2, at the last position."""
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(3, 50, (n, n_pos), generator=g)
    corrupted = clean.clone()
    corrupted[:, -1] = torch.randint(3, 50, (n,), generator=g)

    def metric(answers: torch.Tensor):
        return lambda logits: logits[:, -1].gather(1, answers[:, None])[:, 0] - logits[:, -1, 2]

    return [PatchPair(clean[i:i + size], corrupted[i:i + size], metric(clean[i:i + size, -1]))
            for i in range(0, n, size)]


@pytest.mark.parametrize("arch", list(ARCHS))
def test_mean_ablation_keeping_every_edge_is_the_clean_run(arch):
    model = _model(arch)
    graph = build_graph(model)
    pair = make_pair(batch=4, seed=1)
    got = circuit_output(model, graph, graph.real, pair.clean, _means(model, graph, pair.clean))
    with torch.no_grad():
        torch.testing.assert_close(got, model(pair.clean), atol=1e-10, rtol=0)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_mean_ablation_keeping_no_edge_unembeds_the_sum_of_mean_outputs_and_biases(arch):
    """With no edge kept the logits' input is, at each position, the sum over sources of their
    mean clean output plus every layer's b_O, whatever the prompt. Reference: TransformerLens'
    own cache (heads summed with one einsum, no per-head sources), ln_final and unembed."""
    model = _model(arch)
    graph = build_graph(model)
    pair = make_pair(batch=4, seed=2)
    with torch.no_grad():
        _, cache = model.run_with_cache(pair.clean)
        resid = cache["blocks.0.hook_resid_pre"].mean(0)  # (pos, d_model)
        for layer, block in enumerate(model.blocks):
            z = cache[f"blocks.{layer}.attn.hook_z"].mean(0)  # (pos, head, d_head)
            resid = resid + torch.einsum("phe,hed->pd", z, block.attn.W_O) + block.attn.b_O
            resid = resid + cache[f"blocks.{layer}.hook_mlp_out"].mean(0)
        ref = model.unembed(model.ln_final(resid[None]))  # (1, pos, d_vocab)
    got = circuit_output(model, graph, torch.zeros_like(graph.real), pair.clean,
                         _means(model, graph, pair.clean))
    torch.testing.assert_close(got, ref.expand_as(got), atol=1e-9, rtol=0)
    assert not torch.allclose(got, model(pair.clean), atol=1e-3)  # the ablation did something


def test_mean_ablation_faithfulness_end_points_and_its_reference():
    model = _model("llama_gqa")
    graph = build_graph(model)
    pairs = _chunks(10, 4)
    scores = torch.randn(graph.real.shape, generator=torch.Generator().manual_seed(0))
    curve = faithfulness_curve(model, graph, scores, pairs, budgets=(0.1, 1.0),
                               ablation="mean")
    for ranking in ("signed", "absolute"):
        part = curve.table[curve.table.ranking == ranking].set_index("budget").faithfulness
        assert part[0.0] == pytest.approx(0.0, abs=1e-9)
        assert part[1.0] == pytest.approx(1.0, abs=1e-9)
    assert set(curve.table.ablation) == set(curve.summary.ablation) == {"mean"}
    empty = curve.summary.empty_metric.iloc[0]
    assert (curve.table[curve.table.budget == 0].metric == empty).all()
    # the mean-ablated empty circuit is not the corrupted run (its reference differs)
    assert abs(empty - curve.summary.corrupted_metric.iloc[0]) > 1e-3
    corrupted = circuit_metrics(model, graph, [graph.real], pairs)
    assert corrupted.ablation == "corrupted"
    assert corrupted.empty_metric == corrupted.corrupted_metric


def test_mean_ablation_is_over_every_chunk_not_per_chunk():
    """Chunks of 2 and of 5 pairs give the same faithfulness (the means are over all 10 clean
    prompts); means taken per chunk would not (checked: they differ here)."""
    model = _copy_model()
    graph = build_graph(model)
    scores = torch.randn(graph.real.shape, generator=torch.Generator().manual_seed(1))
    keeps = [top_edges(graph, scores, n) for n in (5, 20, 60)]
    by2 = circuit_metrics(model, graph, keeps, _chunks(10, 2), ablation="mean")
    by5 = circuit_metrics(model, graph, keeps, _chunks(10, 5), ablation="mean")
    assert by2.faithfulness == pytest.approx(by5.faithfulness, abs=1e-5)
    # each chunk's metric is a float32 mean (reduce_metric): equal up to float32 rounding
    assert by2.empty_metric == pytest.approx(by5.empty_metric, abs=1e-6)
    assert by2.n_pairs == by5.n_pairs == 10
    # per-chunk means (the mistake this guards against) move the metric
    per_chunk = sum(circuit_metric(model, graph, keeps[1], c, _means(model, graph, c.clean)) / 5
                    for c in _chunks(10, 2))
    assert abs(per_chunk - by2.metrics[1]) > 1e-3


def test_mean_ablation_rejects_chunks_of_different_lengths_and_unknown_ablations():
    model = _model()
    graph = build_graph(model)
    chunks = _chunks(2, 2, n_pos=5) + _chunks(2, 2, n_pos=6)
    with pytest.raises(ValueError, match="prompts of one length"):
        circuit_metrics(model, graph, [graph.real], chunks, ablation="mean")
    with pytest.raises(ValueError, match="ablation must be one of"):
        circuit_metrics(model, graph, [graph.real], chunks[:1], ablation="zero")
