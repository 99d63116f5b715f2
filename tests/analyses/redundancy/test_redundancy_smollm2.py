"""Redundancy on the real SmolLM2-135M (RMSNorm, gated MLP, GQA, rotary): pruning is exact,
scores match run_with_cache, and the study's data split keeps calibration out of the LM loss."""

from __future__ import annotations

import pytest
import torch

from analyses.redundancy.dropping import DropSet, prune
from analyses.redundancy.evaluation import scored_logits, text_split
from analyses.redundancy.scores import ComponentRef, similarity_scores
from probes.tokens import forward, tokenize

SENTENCES = 4  # built-in sentences per check: short prompts keep each forward well under 1 s


@pytest.fixture(scope="module")
def tokens(smollm2):
    return tokenize(smollm2, text_split()[0][:SENTENCES])  # right-padded: lengths differ


def _zeroed(loaded, tokens, drops: DropSet) -> torch.Tensor:
    """The full model's logits with the dropped sublayers' outputs zeroed by hooks."""
    def zero(tensor, hook):
        return torch.zeros_like(tensor)

    hooks = [(f"blocks.{layer}.hook_{kind}_out", zero)
             for kind in ("attn", "mlp") for layer in sorted(getattr(drops, kind))]
    with torch.no_grad():
        return loaded.model.run_with_hooks(tokens.ids, attention_mask=tokens.attention_mask,
                                           fwd_hooks=hooks)


@pytest.mark.slow
def test_pruning_nothing_gives_identical_logits(smollm2, tokens):
    with torch.no_grad():
        assert torch.equal(forward(prune(smollm2, DropSet()), tokens), forward(smollm2, tokens))


@pytest.mark.slow
@pytest.mark.parametrize("drops", [DropSet(attn={20}), DropSet(attn={3, 27}, mlp={11})],
                         ids=["attn20", "attn3+27_mlp11"])
def test_dropped_sublayers_equal_the_hook_zeroed_model(smollm2, tokens, drops):
    pruned = prune(smollm2, drops)
    with torch.no_grad():
        got, full = forward(pruned, tokens), forward(smollm2, tokens)
    want = _zeroed(smollm2, tokens, drops)
    real = tokens.bool_mask  # padded positions are not compared (their logits are unused)
    assert (got - want)[real].abs().max() < 1e-3  # logits of scale ~30
    assert (got - full)[real].abs().max() > 0.1  # the drop does change the model
    kept = {id(p) for p in pruned.model.parameters()}
    assert not any(id(p) in kept for layer in drops.attn
                   for p in smollm2.model.blocks[layer].attn.parameters())


def _direct_score(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> float:
    """1 - mean over real tokens of x.y / (|x||y|), written out in float64."""
    x, y = x.double(), y.double()
    cos = (x * y).sum(-1) / (x.norm(dim=-1) * y.norm(dim=-1))  # (batch, pos)
    return 1.0 - float(cos[mask].mean())


@pytest.mark.slow
def test_scores_equal_a_direct_computation_from_run_with_cache(smollm2, tokens):
    refs = [ComponentRef(17, "attn"), ComponentRef(5, "mlp")]
    got = similarity_scores(smollm2, tokens, refs).set_index(["layer", "component"])["score"]
    with torch.no_grad():
        _, cache = smollm2.model.run_with_cache(tokens.ids, attention_mask=tokens.attention_mask)
    io = {"attn": ("pre", "mid"), "mlp": ("mid", "post")}
    for layer, component in refs:
        x, y = (cache[f"blocks.{layer}.hook_resid_{k}"] for k in io[component])
        want = _direct_score(x, y, tokens.bool_mask)
        assert got[(layer, component)] == pytest.approx(want, abs=1e-5), (layer, component)
        assert want > 1e-4  # a real change of the hidden state, not a trivial zero


@pytest.mark.slow
def test_task_logits_at_the_scored_position_equal_the_full_forward(smollm2):
    from data.tasks import load_task

    ds = load_task("recall", 6, 0, model="smollm2")
    pruned = prune(smollm2, DropSet(mlp={4}))
    for loaded in (smollm2, pruned):
        with torch.no_grad():
            full = loaded.model(ds.clean_tokens)[torch.arange(len(ds)), ds.last_pos]
        assert torch.allclose(scored_logits(loaded, ds), full, atol=1e-4)


def test_calibration_and_held_out_text_are_disjoint_and_fixed():
    calibration, held_out = text_split()
    assert len(calibration) >= 100 and len(held_out) >= 64
    assert not set(calibration) & set(held_out)
    assert text_split() == (calibration, held_out)
