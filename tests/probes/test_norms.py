"""Head/layer attention output norms against TransformerLens' own per-head results."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from probes.capture import capture
from probes.norms import head_output_norms, norm_hooks


@pytest.fixture(scope="module")
def tiny():
    cfg = HookedTransformerConfig(n_layers=2, d_model=32, n_heads=4, d_head=8, n_ctx=32,
                                  d_vocab=50, act_fn="gelu", normalization_type="LN", seed=0)
    model = HookedTransformer(cfg).eval()
    with torch.no_grad():
        for b in model.blocks:
            b.attn.b_O.normal_()  # so the layer norm differs from the sum of heads
    return model


def test_norms_match_tl_use_attn_result(tiny):
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(0, 50, (3, 9), generator=g)
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 5:] = 0
    plan = norm_hooks(tiny)
    with capture(tiny, plan.hooks) as cap, torch.no_grad(), cap.batch(mask):
        tiny(ids, attention_mask=mask)
    df = plan.table().set_index(["layer", "head", "stat"])["value"]
    tiny.set_use_attn_result(True)  # TL materialises z_h W_O^h per head: the reference
    try:
        _, cache = tiny.run_with_cache(ids, attention_mask=mask)
    finally:
        tiny.set_use_attn_result(False)
    real = mask.bool()
    for layer in range(2):
        per_head = cache["result", layer][real].norm(dim=-1).double()  # (n, head)
        for h in range(4):
            np.testing.assert_allclose(df[(layer, h, "mean")], per_head[:, h].mean(), rtol=1e-5)
            np.testing.assert_allclose(df[(layer, h, "max")], per_head[:, h].max(), rtol=1e-5)
            np.testing.assert_allclose(df[(layer, h, "std")],
                                       per_head[:, h].std(unbiased=False), rtol=1e-4)
        out = cache["attn_out", layer][real].norm(dim=-1).double()
        np.testing.assert_allclose(df[(layer, -1, "mean")], out.mean(), rtol=1e-5)
        assert df[(layer, -1, "count")] == real.sum()


def test_head_output_norms_formula():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, 3, 4, generator=g)
    w_o = torch.randn(3, 4, 6, generator=g)
    ref = torch.einsum("nhd,hdm->nhm", z, w_o).norm(dim=-1)
    torch.testing.assert_close(head_output_norms(z, w_o), ref, rtol=1e-5, atol=1e-5)
