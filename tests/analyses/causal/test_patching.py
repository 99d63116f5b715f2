"""Batched exact patching equals transformer_lens.patching, at every granularity."""

from __future__ import annotations

import pytest
import torch
from transformer_lens import HookedTransformer

from analyses.causal.patching import PatchingConfig, PatchPair, patch, patch_masks
from tests.support.patching import CASES, TOL, patch_cfg
from tests.support.tiny import make_pair


@pytest.fixture(scope="module")
def model():
    return HookedTransformer(patch_cfg()).eval()




# Noising uses the same code path with the runs swapped: a few granularities suffice.
PARAMS = [(*case, "denoising") for case in CASES] + [
    (*case, "noising") for case in CASES if case[0] in ("resid_pre", "z", "pattern")
    and not case[1]]


@pytest.mark.parametrize(("component", "per_position", "tl_fn", "method"), PARAMS)
def test_equals_transformer_lens(model, component, per_position, tl_fn, method):
    pair = make_pair(per_prompt=False)
    ours = patch(model, pair, PatchingConfig(component, per_position, method=method))
    base, source = (pair.corrupted, pair.clean) if method == "denoising" else (
        pair.clean, pair.corrupted)
    _, source_cache = model.run_with_cache(source)
    ref = tl_fn(model, base, source_cache, pair.metric)
    assert ours.values.shape == ref.shape
    assert (ours.values - ref).abs().max().item() <= TOL
    assert ours.values.std() > 1e-4  # the patches do differ from each other


def test_chunked_equals_unchunked_and_per_prompt_metric(model):
    """A 1-row memory budget and a per-prompt metric give the same sweep as one big pass."""
    scalar = make_pair(per_prompt=False)
    vector = make_pair(per_prompt=True)
    big = patch(model, scalar, PatchingConfig("z", memory_budget_mb=1024))
    small = patch(model, vector, PatchingConfig("z", memory_budget_mb=1e-6))
    assert torch.allclose(big.values, small.values, atol=1e-6)


def test_table_schema_and_normalisation(model):
    from data.schemas import validate

    pair = make_pair()
    res = patch(model, pair, PatchingConfig("resid_pre", per_position=True))
    validate("patching", res.table)
    assert len(res.table) == 2 * pair.n_pos
    gap = res.clean_metric - res.corrupted_metric
    row = res.table.iloc[3]
    assert row.effect == pytest.approx(row.patched_metric - res.corrupted_metric, abs=1e-6)
    assert row.normalized_effect == pytest.approx(row.effect / gap, abs=1e-6)
    # Patching the whole residual stream at a layer's input restores the clean run exactly.
    full = patch(model, pair, PatchingConfig("resid_pre", per_position=False, layers=(1,)))
    assert full.table.normalized_effect.iloc[0] == pytest.approx(1.0, abs=1e-5)
    noise = patch(model, pair, PatchingConfig("resid_pre", method="noising", layers=(0,)))
    assert noise.table.normalized_effect.iloc[0] == pytest.approx(-1.0, abs=1e-5)


def test_hooks_removed_even_when_metric_raises(model):
    pair = make_pair()
    calls = {"n": 0}

    def bad_metric(logits):
        calls["n"] += 1
        if calls["n"] > 2:  # the two baseline runs pass, the first patched pass raises
            raise RuntimeError("boom")
        return logits[:, -1, 0]

    keep = model.hook_dict["blocks.1.attn.hook_z"].register_forward_hook(lambda m, i, o: None)
    bad = PatchPair(pair.clean, pair.corrupted, bad_metric)
    with pytest.raises(RuntimeError, match="boom"):
        patch(model, bad, PatchingConfig("z"))
    remaining = {n: len(h._forward_hooks) for n, h in model.hook_dict.items()}
    assert remaining.pop("blocks.1.attn.hook_z") == 1  # someone else's hook survives
    assert not any(remaining.values())
    keep.remove()


def test_masks_enumerate_in_transformer_lens_order():
    m = patch_masks("z", True, n_pos=3, n_heads=2)  # (pos*head, pos, head, 1)
    assert m.shape == (6, 3, 2, 1)
    assert m[3, 1, 1, 0] and m[3].sum() == 1  # index 3 = (pos 1, head 1)
    p = patch_masks("pattern", True, n_pos=3, n_heads=2)  # order (head, dest)
    assert p[4, 1, 1, 0] and p[4].sum() == 1


def test_bad_input_errors(model):
    with pytest.raises(ValueError, match="component"):
        PatchingConfig("bogus")
    with pytest.raises(ValueError, match="token-aligned"):
        PatchPair(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long),
                  lambda x: x)
    with pytest.raises(ValueError, match="out of range"):
        patch(model, make_pair(), PatchingConfig("z", layers=(5,)))
