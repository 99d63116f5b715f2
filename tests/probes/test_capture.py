"""Scoped capture and generic accumulators: exact against run_with_cache; no leaked hooks."""

from __future__ import annotations

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from probes.accumulators import Reservoir, RunningMoments, real_rows
from probes.capture import capture, stream
from probes.hooks import UnknownHookError, hook_count, hook_layer
from tests.support.tiny import padded_batch


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    cfg = HookedTransformerConfig(n_layers=2, d_model=32, n_heads=4, d_head=8, n_ctx=32,
                                  d_vocab=50, act_fn="gelu", normalization_type="LN", seed=0)
    return HookedTransformer(cfg).eval()


def _padded_batch():
    return padded_batch(seed=1)


def test_running_moments_match_run_with_cache_on_real_tokens(tiny):
    ids, mask = _padded_batch()
    name = "blocks.1.hook_resid_post"
    acc = RunningMoments()
    with capture(tiny, {name: acc}) as cap, torch.no_grad():
        for lo, hi in [(0, 2), (2, 3)]:  # two batches: exercises the merge
            with cap.batch(mask[lo:hi]):
                tiny(ids[lo:hi], attention_mask=mask[lo:hi])
    _, cache = tiny.run_with_cache(ids, attention_mask=mask, names_filter=name)
    rows = cache[name][mask.bool()].double()  # (n_real, d_model)
    m = acc.moments()
    assert m.count == int(mask.sum())
    torch.testing.assert_close(m.mean, rows.mean(0), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(m.std, rows.std(0, unbiased=False), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(m.max, rows.amax(0))
    df = acc.result()
    assert set(df["stat"]) == {"count", "mean", "std", "min", "max"}
    assert len(df) == 5 * 32


def test_unknown_hook_name_fails_before_forward_with_suggestions(tiny):
    before = hook_count(tiny)
    with pytest.raises(UnknownHookError, match=r"blocks\.0\.attn\.hook_pattern"):
        with capture(tiny, {"blocks.0.attn.hook_pattern": RunningMoments(),
                            "blocks.0.attn.hook_patern": RunningMoments()}):
            pytest.fail("the body must not run")
    assert hook_count(tiny) == before


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_no_hook_remains_after_exception_and_foreign_hooks_survive(tiny, exc):
    foreign = tiny.hook_dict["blocks.0.hook_resid_pre"]
    foreign.add_hook(lambda t, hook: None)
    try:
        names = ["blocks.0.hook_resid_pre", "blocks.1.attn.hook_z", "blocks.1.hook_resid_post"]
        with pytest.raises(exc):
            with capture(tiny, {n: RunningMoments() for n in names}):
                assert hook_count(tiny) == 4
                raise exc("boom")
        assert hook_count(tiny) == 1
        assert len(foreign.fwd_hooks) == 1  # the other user's hook is untouched
    finally:
        tiny.reset_hooks(including_permanent=True)
    assert hook_count(tiny) == 0


def test_bad_accumulator_is_rejected(tiny):
    with pytest.raises(TypeError, match="update"):
        with capture(tiny, {"blocks.0.hook_resid_pre": object()}):
            pass
    assert hook_count(tiny) == 0


def test_hook_layer():
    assert hook_layer("blocks.11.attn.hook_z") == 11
    assert hook_layer("hook_embed") is None


def test_real_rows_rejects_mismatched_mask():
    with pytest.raises(ValueError, match="mask shape"):
        real_rows(torch.zeros(2, 3, 4), torch.ones(2, 4, dtype=torch.bool))


def test_reservoir_is_exact_when_small_and_uniform_when_large():
    r = Reservoir(n_groups=2, k=100, seed=0)
    vals = torch.arange(60, dtype=torch.float64).reshape(2, 30)
    r.add(vals[:, :10])
    r.add(vals[:, 10:])
    q = r.quantiles([0.0, 0.5, 1.0])
    torch.testing.assert_close(q, torch.quantile(vals, torch.tensor([0.0, 0.5, 1.0],
                                                 dtype=torch.float64), dim=1).T)
    big = Reservoir(n_groups=1, k=2000, seed=0)
    for chunk in torch.arange(100_000, dtype=torch.float64).split(7_000):
        big.add(chunk[None])
    med = float(big.quantiles([0.5])[0, 0])
    assert abs(med - 50_000) < 3_000  # rank error ~ 1/sqrt(k)


@pytest.fixture(scope="module")
def minilm():
    from probes.models import load_model

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    return load_model("minilm", device="cpu")


@pytest.mark.slow
def test_stream_on_minilm_matches_per_prompt_cache_and_ignores_padding(minilm):
    from probes.tokens import tokenize

    prompts = ["A short one.", "The weather was lovely all week, so we walked along the coast.",
               "Cats sleep a lot."]
    name = "blocks.2.hook_resid_post"
    acc = RunningMoments()
    stream(minilm, prompts, {name: acc}, batch_size=2)
    rows = []
    for p in prompts:  # one prompt at a time: no padding at all
        t = tokenize(minilm, p)
        _, cache = minilm.model.run_with_cache(t.ids, one_zero_attention_mask=t.attention_mask,
                                               names_filter=name)
        rows.append(cache[name][0])
    rows = torch.cat(rows).double()
    m = acc.moments()
    assert m.count == rows.shape[0]
    torch.testing.assert_close(m.mean, rows.mean(0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(m.max, rows.amax(0), rtol=1e-5, atol=1e-5)
    assert hook_count(minilm.model) == 0
