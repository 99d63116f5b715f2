"""Head importance: ablation drops vs weight surgery, Taylor estimate vs finite differences."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch

from analyses.causal.head_importance import (
    HeadTask,
    head_importance,
    paraphrase_head_task,
    rank_correlations,
)
from probes.hooks import hook_count
from tests.support.tiny import padded_tokens, tiny_decoder, tiny_encoder


def _logit_diff_task(model, tokens: torch.Tensor) -> HeadTask:
    def run():
        logits = model(tokens)  # (batch, pos, d_vocab)
        return (logits[:, -1, 3] - logits[:, -1, 7]).mean()

    return HeadTask("toy", "logit_diff", run, torch.ones_like(tokens, dtype=torch.bool))


@pytest.fixture(scope="module")
def setup():
    loaded = tiny_decoder(dtype=torch.float64)
    tokens = torch.randint(1, 50, (8, 7), generator=torch.Generator().manual_seed(3))
    table = head_importance(loaded, _logit_diff_task(loaded.model, tokens))
    return loaded, tokens, table


def _value(table, layer, head, method):
    sel = table[(table.layer == layer) & (table["head"] == head) & (table.method == method)]
    return float(sel.value.iloc[0])


def _with_scaled_head(model, layer, head, scale):
    """An independent copy of the model whose head's output is scaled through W_O."""
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.blocks[layer].attn.W_O[head] *= scale
    return other


@pytest.mark.parametrize("layer,head", [(0, 1), (2, 3)])
def test_zero_ablation_equals_weight_surgery(setup, layer, head):
    loaded, tokens, table = setup
    with torch.no_grad():
        clean = float(_logit_diff_task(loaded.model, tokens).run())
        ablated = float(_logit_diff_task(_with_scaled_head(loaded.model, layer, head, 0.0),
                                         tokens).run())
    assert _value(table, layer, head, "zero") == pytest.approx(clean - ablated, abs=1e-9)
    assert table.clean_metric.iloc[0] == pytest.approx(clean, abs=1e-9)


@pytest.mark.parametrize("layer,head", [(0, 2), (1, 0), (2, 3)])
def test_taylor_matches_finite_difference(setup, layer, head):
    loaded, tokens, table = setup
    eps = 1e-5
    with torch.no_grad():
        clean = float(_logit_diff_task(loaded.model, tokens).run())
        scaled = float(_logit_diff_task(_with_scaled_head(loaded.model, layer, head, 1 - eps),
                                        tokens).run())
    # scaling z_h by (1 - eps) moves it eps of the way to zero: drop ~ eps * taylor_zero
    assert _value(table, layer, head, "taylor_zero") == pytest.approx((clean - scaled) / eps,
                                                                      rel=1e-3, abs=1e-6)


def test_mean_ablation_uses_the_per_position_mean(setup):
    loaded, tokens, table = setup
    model = loaded.model
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter="blocks.1.attn.hook_z")
        mean = cache["blocks.1.attn.hook_z"].mean(0)  # (pos, head, d_head)

        def hook(z, hook):
            z = z.clone()
            z[:, :, 2] = mean[:, 2]
            return z

        logits = model.run_with_hooks(tokens, fwd_hooks=[("blocks.1.attn.hook_z", hook)])
        ablated = float((logits[:, -1, 3] - logits[:, -1, 7]).mean())
    clean = table.clean_metric.iloc[0]
    assert _value(table, 1, 2, "mean") == pytest.approx(clean - ablated, abs=1e-9)


def test_table_shape_and_no_side_effects(setup):
    loaded, _, table = setup
    n = loaded.cfg.n_layers * loaded.cfg.n_heads
    assert len(table) == 4 * n
    assert set(table.method) == {"zero", "mean", "taylor_zero", "taylor_mean"}
    assert hook_count(loaded.model) == 0
    assert all(p.grad is None for p in loaded.model.parameters())
    corr = rank_correlations(table)
    assert set(corr.method_b) == {"taylor_zero", "taylor_mean", "mean"}
    assert corr.spearman.between(-1, 1).all() and (corr.n_heads == n).all()


def test_rank_correlation_is_spearman():
    heads = pd.DataFrame({"layer": 0, "head": range(5)})
    vals = [0.1, 0.5, 0.2, 0.9, 0.3]
    rows = []
    for m, v in {"zero": vals, "taylor_zero": [x ** 3 for x in vals],
                 "mean": [-x for x in vals], "taylor_mean": vals}.items():
        rows.append(heads.assign(method=m, value=v, task="t"))
    corr = rank_correlations(pd.concat(rows)).set_index("method_b").spearman
    assert corr["taylor_zero"] == pytest.approx(1.0)  # monotone transform: same ranks
    assert corr["mean"] == pytest.approx(-1.0)


def test_paraphrase_task_on_an_encoder():
    loaded, tokens = tiny_encoder(n_layers=2, n_heads=2, d_head=16), padded_tokens(n=6)
    group = torch.tensor([0, 0, 1, 1, 2, 2])
    task = paraphrase_head_task(loaded, tokens, group)
    table = head_importance(loaded, task)
    assert len(table) == 4 * loaded.cfg.n_layers * loaded.cfg.n_heads
    assert table.value.abs().max() > 0
    assert hook_count(loaded.model) == 0
