"""The fast engine on the real SmolLM2-135M (Q4_1; GQA, RMSNorm, SwiGLU, rotary) equals
transformer_lens.patching on IOI pairs: a whole z sweep, checked head by head where TL's
one-forward-per-patch reference is affordable (a few heads), and per-key/value-head k."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import transformer_lens.patching as tlp

from analyses.causal.patching import PatchingConfig, pair_from_task, patch
from analyses.causal.task_sets import load_model_task
from tests.support.patching import TOL


@pytest.fixture(scope="module")
def ioi_pair():
    return pair_from_task(load_model_task("smollm2", "ioi", n=2, seed=0))


def tl_reference(model, pair, component: str, index: list[tuple[int, int]]) -> torch.Tensor:
    index_df = pd.DataFrame(index, columns=["layer", "head"])
    with torch.no_grad():
        _, cache = model.run_with_cache(pair.clean, names_filter=lambda n: n.endswith(
            f"hook_{component}"))
        out = tlp.generic_activation_patch(
            model, pair.corrupted, cache, lambda lg: pair.score(lg).mean(),
            tlp.layer_head_vector_patch_setter, component, index_df=index_df)
    return out.flatten()


def test_fast_z_sweep_of_smollm2_equals_transformer_lens(smollm2, ioi_pair):
    model = smollm2.model
    ours = patch(model, ioi_pair, PatchingConfig("z"))
    assert ours.engine == "fast" and ours.values.shape == (30, 9)
    assert ours.clean_metric > ours.corrupted_metric + 1  # IOI works on these pairs
    flat = ours.values.flatten()
    picks = [int(flat.argmax()), int(flat.argmin()), 0, 9 * 29 + 8]  # strongest, weakest, ends
    ref = tl_reference(model, ioi_pair, "z", [(i // 9, i % 9) for i in picks])
    assert (flat[picks] - ref).abs().max().item() <= TOL
    assert flat[picks[0]] - flat[picks[1]] > 0.5  # a sweep with real effects


def test_fast_k_patches_of_smollm2_are_per_key_value_head(smollm2, ioi_pair):
    model = smollm2.model
    ours = patch(model, ioi_pair, PatchingConfig("k", layers=(20,), engine="fast"))
    assert ours.values.shape == (1, 3)  # 3 key/value heads shared by 9 query heads
    ref = tl_reference(model, ioi_pair, "k", [(20, h) for h in range(3)])
    assert (ours.values.flatten() - ref).abs().max().item() <= TOL
