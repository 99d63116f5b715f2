"""Ablations equal hand-written TransformerLens hooks; selective impairment's table adds up."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pytest
import torch
from transformer_lens import HookedTransformer

from analyses.causal.ablation import AblationConfig, Component, ablated_forward, heads
from analyses.causal.impairment import (
    ImpairmentConfig,
    random_head_sets,
    selective_impairment,
    top_heads,
)
from tests.support.tiny import tiny_cfg


@pytest.fixture(scope="module")
def model():
    return HookedTransformer(tiny_cfg(n_ctx=16, d_vocab=30, initializer_range=0.2)).eval()


def toks(seed, batch=4, n_pos=6):
    return torch.randint(1, 30, (batch, n_pos), generator=torch.Generator().manual_seed(seed))


def hooked(model, tokens, name, fn):
    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=[(name, fn)])


def test_zero_head_equals_manual_hook(model):
    x = toks(0)

    def zero(z, hook):
        z = z.clone()
        z[:, :, [1, 3]] = 0
        return z

    ours = ablated_forward(model, x, heads([(1, 1), (1, 3)]), AblationConfig("zero"))
    assert torch.allclose(ours, hooked(model, x, "blocks.1.attn.hook_z", zero), atol=1e-6)
    assert not torch.allclose(ours, model(x), atol=1e-3)


def test_mean_and_resample_equal_manual_hooks(model):
    x, ref = toks(0), toks(1, batch=5)
    _, cache = model.run_with_cache(ref)
    mean = cache["blocks.0.hook_mlp_out"].mean(0)  # (pos, d_model), per position
    ours = ablated_forward(model, x, [Component("mlp", 0)], AblationConfig("mean"), ref)
    want = hooked(model, x, "blocks.0.hook_mlp_out", lambda a, hook: mean.expand_as(a))
    assert torch.allclose(ours, want, atol=1e-5)
    # a reference of another length: mean over rows and positions
    short = toks(2, batch=5, n_pos=4)
    _, c2 = model.run_with_cache(short)
    flat = c2["blocks.0.hook_mlp_out"].mean((0, 1))
    ours = ablated_forward(model, x, [Component("mlp", 0)], AblationConfig("mean"), short)
    want = hooked(model, x, "blocks.0.hook_mlp_out", lambda a, hook: flat.expand_as(a))
    assert torch.allclose(ours, want, atol=1e-5)

    perm = torch.randperm(5, generator=torch.Generator().manual_seed(7))[:4]

    def resample(z, hook):
        z = z.clone()
        z[:, :, 2] = cache["blocks.0.attn.hook_z"][perm][:, :, 2]
        return z

    ours = ablated_forward(model, x, heads([(0, 2)]), AblationConfig("resample", seed=7), ref)
    assert torch.allclose(ours, hooked(model, x, "blocks.0.attn.hook_z", resample), atol=1e-5)
    assert not any(len(h._forward_hooks) for h in model.hook_dict.values())


def test_ablation_errors(model):
    with pytest.raises(ValueError, match="reference"):
        ablated_forward(model, toks(0), heads([(0, 0)]), AblationConfig("mean"))
    with pytest.raises(ValueError, match="not in this model"):
        ablated_forward(model, toks(0), heads([(0, 9)]), AblationConfig("zero"))
    with pytest.raises(ValueError, match="evaluated length"):
        ablated_forward(model, toks(0), heads([(0, 0)]), AblationConfig("resample"),
                        toks(1, n_pos=3))
    with pytest.raises(ValueError, match="kind"):
        Component("block", 0)


@dataclass(frozen=True)
class ToyTask:
    """The fields of data.tasks.TaskDataset that patching and accuracy read."""

    name: str
    clean_tokens: torch.Tensor
    corrupted_tokens: torch.Tensor
    answer_ids: torch.Tensor
    corrupted_answer_ids: torch.Tensor


def toy_task(name, seed):
    clean = toks(seed, batch=6, n_pos=5)
    corrupted = clean.clone()
    corrupted[:, 1] = (clean[:, 1] + 7) % 29 + 1
    g = torch.Generator().manual_seed(seed)
    return ToyTask(name, clean, corrupted, torch.randint(1, 15, (6,), generator=g),
                   torch.randint(15, 30, (6,), generator=g))


def ld(logits, ds):
    last = logits[:, -1]
    return last.gather(1, ds.answer_ids[:, None])[:, 0] - last.gather(
        1, ds.corrupted_answer_ids[:, None])[:, 0]


def top1(logits, ds):
    return (logits[:, -1].argmax(-1) == ds.answer_ids).float().mean().item()


def test_selective_impairment_table(model):
    names = ["recall", "reasoning", "ioi"]
    data = {n: toy_task(n, i) for i, n in enumerate(names)}
    refs = {n: toy_task(n, 10 + i) for i, n in enumerate(names)}
    config = ImpairmentConfig(k=2, n_random=3, ablation="zero")
    res = selective_impairment(model, data, refs, config, accuracy=top1, metric=ld)
    assert set(res.head_sets) == {"top_recall", "top_reasoning"}
    assert len(res.table) == 3 * 3  # tasks x (two top sets + the random baseline)
    t = res.table
    assert ((t.accuracy - t.accuracy_ablated - t["drop"]).abs() < 1e-9).all()
    recall = res.patching[res.patching.task == "recall"]
    assert res.head_sets["top_recall"] == top_heads(recall, 2)
    row = t[(t.task == "ioi") & (t.ablated_set == "top_recall")].iloc[0]
    logits = ablated_forward(model, data["ioi"].clean_tokens, heads(res.head_sets["top_recall"]),
                             AblationConfig("zero"))
    assert row.accuracy_ablated == pytest.approx(top1(logits, data["ioi"]))


def test_top_and_random_heads():
    table = pd.DataFrame({"component": "z", "position": -1, "layer": [0, 0, 1, 1],
                          "head": [0, 1, 0, 1], "normalized_effect": [0.1, 0.9, -0.5, 0.3]})
    assert top_heads(table, 2) == [(0, 1), (1, 1)]
    sets = random_head_sets(2, 4, 3, 5, seed=0)
    assert len(sets) == 5 and all(len(set(s)) == 3 for s in sets)
    assert sets == random_head_sets(2, 4, 3, 5, seed=0) != random_head_sets(2, 4, 3, 5, seed=1)


def test_component_labels_use_head_notation():
    assert [c.label() for c in heads([(1, 2)]) + [Component("mlp", 0), Component("attn", 3)]] \
        == ["L1H2", "mlp0", "attn3"]
