"""Patching an encoder: batched runs from a layer equal plain hooked runs; MiniLM end to end."""

from __future__ import annotations

import pytest
import torch
from transformer_lens import HookedEncoder, HookedTransformerConfig

from analyses.causal.encoder import embedding_cosine, sentence_pair
from analyses.causal.patching import PatchingConfig, PatchPair, patch
from probes.tokens import pool_embedding


@pytest.fixture(scope="module")
def encoder():
    cfg = HookedTransformerConfig(n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=64,
                                  n_ctx=16, d_vocab=40, act_fn="gelu", normalization_type="LN",
                                  attention_dir="bidirectional", seed=0, device="cpu")
    model = HookedEncoder(cfg, move_to_device=False).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # HookedEncoder leaves its weights uninitialised (torch.empty)
        for name, p in model.named_parameters():
            if ".ln" in name or name.startswith(("ln", "embed.ln")):
                p.fill_(1.0 if name.endswith(".w") else 0.0)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model


def padded_pair(encoder):
    g = torch.Generator().manual_seed(3)
    clean = torch.randint(1, 40, (3, 6), generator=g)
    corrupted = clean.clone()
    corrupted[:, 2] = torch.randint(1, 40, (3,), generator=g)
    mask = torch.ones(3, 6, dtype=torch.long)
    mask[1, 4:] = 0  # a shorter prompt: padding must stay masked in every patched row
    with torch.no_grad():
        target = pool_embedding(encoder.encoder_output(clean, None, mask), mask)
    return PatchPair(clean, corrupted, embedding_cosine(target, mask), attention_mask=mask,
                     metric_name="embedding_cosine")


def reference(encoder, pair, name, setter):
    """Full encoder pass on the corrupted prompts with one TransformerLens hook."""
    clean_acts = {}
    with encoder.hooks(fwd_hooks=[(name, lambda a, hook: clean_acts.setdefault(name, a))]):
        encoder.encoder_output(pair.clean, None, pair.attention_mask)
    with encoder.hooks(fwd_hooks=[(name, lambda a, hook: setter(a.clone(), clean_acts[name]))]):
        out = encoder.encoder_output(pair.corrupted, None, pair.attention_mask)
    return pair.metric(out).mean().item()


@pytest.mark.parametrize(("component", "layer", "index"), [("z", 1, 2), ("resid_pre", 1, 3),
                                                            ("z", 0, 0)])
def test_encoder_batched_equals_hooked_run(encoder, component, layer, index):
    pair = padded_pair(encoder)
    per_pos = component == "resid_pre"
    res = patch(encoder, pair, PatchingConfig(component, per_position=per_pos,
                                              memory_budget_mb=0.01))
    name = f"blocks.{layer}.attn.hook_z" if component == "z" else f"blocks.{layer}.hook_resid_pre"

    def setter(act, clean):
        if component == "z":
            act[:, :, index] = clean[:, :, index]
        else:
            act[:, index] = clean[:, index]
        return act

    with torch.no_grad():
        ref = reference(encoder, pair, name, setter)
    assert res.values[layer, index].item() == pytest.approx(ref, abs=1e-5)
    assert res.clean_metric == pytest.approx(1.0, abs=1e-5)
    assert res.values.std() > 1e-5


@pytest.mark.slow
def test_minilm_residual_and_head_patching(minilm):
    clean = ["The cat sat on the mat.", "She drank a cup of hot tea."]
    corrupted = ["The dog sat on the mat.", "She drank a cup of cold tea."]
    pair = sentence_pair(minilm, clean, corrupted)
    assert pair.metric_name == "embedding_cosine"
    res = patch(minilm, pair, PatchingConfig("resid_pre", per_position=True, layers=(0,)))
    assert res.clean_metric == pytest.approx(1.0, abs=1e-5) and res.corrupted_metric < 0.99
    diff = (pair.clean != pair.corrupted).any(0).nonzero()[:, 0].tolist()
    eff = res.table.set_index("position").normalized_effect
    # The pairs differ in one token (position 2 and 5): restoring its embedding-layer residual
    # restores only that sentence; the other positions restore nothing.
    assert eff.loc[diff].sum() == pytest.approx(1.0, abs=1e-4)
    assert eff.drop(diff).abs().max() < 1e-5
    heads = patch(minilm, pair, PatchingConfig("z", layers=(0, 5)))
    assert heads.values.shape == (2, 12) and heads.values.std() > 1e-4
    with pytest.raises(ValueError, match="different lengths"):
        sentence_pair(minilm, ["The cat sat."], ["The hippopotamus sat."])
