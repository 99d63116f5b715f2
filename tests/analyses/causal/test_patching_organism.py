"""On the shipped organism: the induction-task head sweep puts the induction circuit on top.

Induction and current-token heads are found independently of patching, from attention patterns
alone: on a random token sequence repeated twice, an induction head at the second occurrence of
a token attends to the token that followed its first occurrence (Olsson et al. 2022).
"""

from __future__ import annotations

import pytest
import torch

from analyses.causal.patching import PatchingConfig, pair_from_task, patch


def _patterns(model, bos: int, length: int = 12, batch: int = 16) -> list[torch.Tensor]:
    """Attention patterns (batch, head, q, k) per layer on random sequences repeated twice."""
    g = torch.Generator().manual_seed(0)
    seq = torch.randint(bos + 1, model.cfg.d_vocab, (batch, length), generator=g)
    tokens = torch.cat([torch.full((batch, 1), bos), seq, seq], 1)  # (batch, 2 * length + 1)
    names = [f"blocks.{la}.attn.hook_pattern" for la in range(model.cfg.n_layers)]
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    return [cache[n] for n in names]


def induction_scores(model, bos: int, length: int = 12) -> torch.Tensor:
    """(layer, head) mean attention from each repeated token to its first successor."""
    # query q = length + i (second copy of token i) -> key i + 1: the diagonal q - k = length - 1
    return torch.stack([p.diagonal(offset=-(length - 1), dim1=-2, dim2=-1)[..., 2:].mean((0, -1))
                        for p in _patterns(model, bos, length)])  # (layer, head)


def previous_token_scores(model, bos: int, length: int = 12) -> torch.Tensor:
    """(layer, head) mean attention from each token to the one before it."""
    return torch.stack([p.diagonal(offset=-1, dim1=-2, dim2=-1)[..., 1:].mean((0, -1))
                        for p in _patterns(model, bos, length)])  # (layer, head)


def current_token_scores(model, bos: int, length: int = 12) -> torch.Tensor:
    """(layer, head) mean attention from each token to itself."""
    return torch.stack([p.diagonal(dim1=-2, dim2=-1)[..., 1:].mean((0, -1))
                        for p in _patterns(model, bos, length)])  # (layer, head)


@pytest.mark.slow
def test_induction_circuit_tops_the_induction_head_sweep(organism):
    """The heads at the top of the sweep are the induction circuit, found from patterns alone.

    The corruption changes token s[k] of the first copy; the prompt ends with s[k-1], so the
    induction heads (never in layer 0: they K-compose with a previous-token head) attend to
    position k and copy what is there. Of the activations that differ between the runs,
    two paths carry s[k] to the answer: the induction heads themselves and the layer-0 heads
    that write position k's own token into the residual stream the induction heads read as
    values (current-token heads; the previous-token heads' outputs at position k are the same
    in both runs, so patching cannot see them); in a model with layers above the induction
    heads, heads there can also carry it on (they read the induction heads' output: the
    6-layer organism's L2H3, effect 0.16, outranks its weakest induction head L1H2, 0.12). So
    the top head above layer 0 must be an induction head, and every head ranked above an
    induction head must be an induction head, a layer-0 current-token head or a head above
    the induction heads' layer.
    """
    from data.tasks import accuracy, load_task

    model = organism.model
    ds = load_task("induction", n=32, seed=0)
    with torch.no_grad():
        acc = accuracy(model(ds.clean_tokens), ds)
    if acc < 0.5:  # measured, not assumed: without induction there are no heads to find
        pytest.skip(f"the shipped organism does not do induction (accuracy {acc:.2f} on "
                    "held-out items): retrain it before this test can check anything")
    res = patch(model, pair_from_task(ds), PatchingConfig("z"))
    assert res.clean_metric - res.corrupted_metric > 1.0  # the organism does induction
    effect = ((res.values - res.corrupted_metric)
              / (res.clean_metric - res.corrupted_metric)).flatten()
    bos, n_heads = int(ds.clean_tokens[0, 0]), model.cfg.n_heads
    induction = (induction_scores(model, bos).flatten() > 0.3).tolist()
    current = (current_token_scores(model, bos).flatten() > 0.5).tolist()
    layer0 = [i < n_heads for i in range(effect.numel())]
    assert any(induction) and not any(induction[:n_heads])
    ranked = effect.argsort(descending=True).tolist()
    top = next(i for i in ranked if not layer0[i])
    assert induction[top], f"top head above layer 0 {divmod(top, n_heads)} is not an induction head"
    top_layer = max(i // n_heads for i, ind in enumerate(induction) if ind)
    last = max(ranked.index(i) for i, ind in enumerate(induction) if ind)
    for i in ranked[:last]:
        assert induction[i] or (layer0[i] and current[i]) or i // n_heads > top_layer, (
            f"head {divmod(i, n_heads)} (effect {effect[i]:.2f}) outranks an induction head "
            "but is neither an induction head, a layer-0 current-token head, nor a head above "
            "the induction heads (which can read their output)")
    assert min(effect[i] for i, ind in enumerate(induction) if ind) > 0.05
