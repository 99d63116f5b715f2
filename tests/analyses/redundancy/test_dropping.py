"""Layer dropping: the computation is really skipped, nothing-dropped is exact, bad requests."""

from __future__ import annotations

import pytest
import torch

from analyses.redundancy.dropping import DroppedSublayer, DropSet, SkippedBlock, prune
from analyses.redundancy.plans import (
    candidates,
    check_max_drop,
    iterative_plan,
    one_shot_plan,
    random_plan,
)
from analyses.redundancy.scores import ComponentRef, similarity_scores
from probes.capture import capture
from probes.hooks import hook_count
from probes.tokens import forward
from tests.support.tiny import padded_tokens, tiny_decoder, tiny_encoder


class _Counter:
    """An accumulator that only counts how often its hook fired."""

    def __init__(self):
        self.calls = 0

    def update(self, tensor, mask, **ctx):
        self.calls += 1

    def result(self):
        return None


@pytest.mark.parametrize("make", [tiny_decoder, tiny_encoder])
def test_dropping_nothing_reproduces_the_model_exactly(make):
    loaded, tokens = make(), padded_tokens()
    pruned = prune(loaded, DropSet())
    assert all(not isinstance(b, SkippedBlock) for b in pruned.model.blocks)
    with torch.no_grad():
        assert torch.equal(forward(pruned, tokens), forward(loaded, tokens))


@pytest.mark.parametrize("make", [tiny_decoder, tiny_encoder])
def test_dropped_sublayer_never_runs(make):
    loaded, tokens = make(), padded_tokens()
    pruned = prune(loaded, DropSet(attn={1}, mlp={2}))
    names = ["blocks.1.attn.hook_z", "blocks.1.hook_attn_out", "blocks.1.ln1.hook_scale",
             "blocks.2.mlp.hook_post", "blocks.2.hook_mlp_out", "blocks.2.ln2.hook_scale",
             "blocks.0.attn.hook_z", "blocks.2.attn.hook_z", "blocks.1.mlp.hook_post"]
    counters = {n: _Counter() for n in names}
    with capture(pruned, counters) as cap, torch.no_grad():
        cap.forward(tokens)
    fired = {n for n, c in counters.items() if c.calls}
    assert fired == {"blocks.0.attn.hook_z", "blocks.2.attn.hook_z", "blocks.1.mlp.hook_post"}
    assert hook_count(loaded.model) == 0
    # the dropped components' weights are not even part of the pruned model
    kept = {id(p) for p in pruned.model.parameters()}
    assert id(loaded.model.blocks[1].attn.W_Q) not in kept
    assert id(loaded.model.blocks[2].mlp.W_in) not in kept
    assert id(loaded.model.blocks[2].attn.W_Q) in kept


def _zero_hook(tensor, hook):
    return torch.zeros_like(tensor)


def _outputs_zeroed(loaded, tokens, drops: DropSet) -> torch.Tensor:
    """The unpruned model's output with the dropped sublayers' outputs zeroed by hooks."""
    hooks = [(f"blocks.{layer}.hook_{kind}_out", _zero_hook)
             for kind in ("attn", "mlp") for layer in sorted(getattr(drops, kind))]
    with torch.no_grad():
        return loaded.model.run_with_hooks(tokens.ids, attention_mask=tokens.attention_mask,
                                           fwd_hooks=hooks)


def test_decoder_drop_equals_zeroing_the_sublayer_output():
    """Pre-LN: skipping ln1+attn is the same function as adding a zero attention output."""
    loaded, tokens = tiny_decoder(), padded_tokens()
    drops = DropSet(attn={0}, mlp={1, 2})
    pruned = prune(loaded, drops)
    want = _outputs_zeroed(loaded, tokens, drops)
    with torch.no_grad():
        got = forward(pruned, tokens)
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(got, forward(loaded, tokens), atol=1e-3)


@pytest.mark.parametrize("arch", [
    dict(normalization_type="LNPre"), dict(normalization_type="RMS"),
    dict(normalization_type="RMSPre", gated_mlp=True, act_fn="silu"),
    dict(n_key_value_heads=2), dict(positional_embedding_type="rotary", rotary_dim=8),
])
def test_decoder_drop_works_on_other_decoder_layouts(arch):
    """TransformerLens' own block forward runs around the dropped parts for every layout."""
    loaded, tokens = tiny_decoder(**arch), padded_tokens()
    before = forward(loaded, tokens).detach()
    drops = DropSet(attn={0, 2}, mlp={1})
    pruned = prune(loaded, drops)
    want = _outputs_zeroed(loaded, tokens, drops)
    with torch.no_grad():
        got = forward(pruned, tokens)
        assert torch.equal(forward(loaded, tokens), before)  # the original is left alone
    assert torch.allclose(got, want, atol=1e-5)
    kept = {id(p) for p in pruned.model.parameters()}
    assert id(loaded.model.blocks[0].attn.W_Q) not in kept
    assert not any(id(p) in kept for p in loaded.model.blocks[1].mlp.parameters())


def test_attention_only_decoder_drop_skips_the_block():
    loaded, tokens = tiny_decoder(attn_only=True), padded_tokens()
    drops = DropSet(attn={1}, mlp={0})  # attention-only: there is no MLP to drop
    pruned = prune(loaded, drops)
    assert isinstance(pruned.model.blocks[1], SkippedBlock)
    assert pruned.model.blocks[0] is loaded.model.blocks[0]
    want = _outputs_zeroed(loaded, tokens, drops)
    with torch.no_grad():
        assert torch.allclose(forward(pruned, tokens), want, atol=1e-5)


def test_encoder_drop_makes_the_unit_the_identity():
    """BERT: a dropped attention unit hands its input (resid_pre) straight to the MLP unit."""
    loaded, tokens = tiny_encoder(), padded_tokens()
    model, pruned = loaded.model, prune(loaded, DropSet(attn={1}))
    b = model.blocks[1]
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens.ids, one_zero_attention_mask=tokens.attention_mask)
        resid = cache["blocks.1.hook_resid_pre"]  # (batch, pos, d_model)
        h = resid  # the unit is the identity now; the MLP unit and the rest run as before
        post = b.ln2(h + b.mlp(h))
        pad = tokens.attention_mask[:, None, None, :] == 0  # (batch, 1, 1, key_pos)
        want = model.blocks[2](post, torch.where(pad, -torch.inf, 0.0))
        got = forward(pruned, tokens)
    assert torch.allclose(got, want, atol=1e-5)


def test_block_drop_skips_the_block_and_leaves_the_original_alone():
    loaded, tokens = tiny_decoder(), padded_tokens()
    before = forward(loaded, tokens).detach()
    pruned = prune(loaded, DropSet().add(1, "block"))
    assert isinstance(pruned.model.blocks[1], SkippedBlock)
    assert type(loaded.model.blocks[1]).__name__ == "TransformerBlock"
    assert not any(isinstance(m, DroppedSublayer) for m in loaded.model.modules())
    with torch.no_grad():
        _, cache = pruned.model.run_with_cache(tokens.ids, attention_mask=tokens.attention_mask)
        assert torch.equal(cache["blocks.2.hook_resid_pre"], cache["blocks.0.hook_resid_post"])
        assert torch.equal(forward(loaded, tokens), before)
    with pytest.raises(ValueError, match="already pruned"):
        prune(pruned, DropSet())


def test_bad_requests_give_clear_errors():
    cfg = tiny_decoder().cfg  # 3 layers
    with pytest.raises(ValueError, match="at most 3 components.*max_drop=4"):
        check_max_drop(cfg, "attn", 4)
    assert check_max_drop(cfg, "joint", 6) == 6
    with pytest.raises(ValueError, match="at most 6"):
        random_plan(cfg, "joint", 7)
    with pytest.raises(ValueError, match="unknown strategy 'heads'"):
        candidates(cfg, "heads")
    with pytest.raises(ValueError, match="non-negative"):
        check_max_drop(cfg, "mlp", -1)
    with pytest.raises(ValueError, match="model has 3 layers"):
        prune(tiny_decoder(), DropSet(attn={3}))
    with pytest.raises(ValueError, match="unknown component"):
        DropSet().add(0, "ffn")
    with pytest.raises(ValueError, match="sequential pre-LN"):
        prune(tiny_decoder(parallel_attn_mlp=True), DropSet())


def test_one_shot_and_iterative_plans():
    loaded, tokens = tiny_decoder(), padded_tokens()
    scores = similarity_scores(loaded, tokens)
    plan = one_shot_plan(scores, "joint", 4)
    pool = scores[scores.component != "block"].sort_values("score")
    assert [(s.layer, s.component) for s in plan.steps] == list(
        zip(pool.layer[:4], pool.component[:4], strict=True))
    it = iterative_plan(loaded, tokens, "joint", 3)
    assert it.steps[0][1:] == plan.steps[0][1:]
    drops = it.drop_sets()
    for step in it.steps[1:]:  # each later pick is the lowest score of the pruned model
        before = drops[step.step - 1]
        rescored = similarity_scores(prune(loaded, before), tokens,
                                     candidates(loaded.cfg, "joint", before), before)
        assert rescored.score.min() == pytest.approx(step.score)
        earlier = {(s.layer, s.component) for s in it.steps[: step.step - 1]}
        assert (step.layer, step.component) not in earlier
    blocks = one_shot_plan(scores, "block", 2).drop_sets()[-1]
    assert len(blocks.attn) == 2 and blocks.attn == blocks.mlp
    rnd = random_plan(loaded.cfg, "mlp", 3, seed=1)
    assert sorted(s.layer for s in rnd.steps) == [0, 1, 2]
    assert candidates(loaded.cfg, "attn", DropSet(attn={0})) == [ComponentRef(1, "attn"),
                                                                 ComponentRef(2, "attn")]
