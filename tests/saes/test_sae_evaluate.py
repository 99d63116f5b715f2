"""SAE evaluation (saes.evaluate): EV against the mean, CE recovered, splicing, MiniLM cosine.

Reference SAEs with known answers: an exact SAE (ReLU with W_enc = [I, -I], so
relu(x) - relu(-x) = x) must give EV 1 and 100% CE recovered; a zero-decoder SAE must give
the zero-ablation loss (0% recovered). Clean and ablated losses are checked against
TransformerLens' own loss and `run_with_hooks`.
"""

from __future__ import annotations

import pytest
import torch

from tests.support.tiny import random_tokens, tiny_loaded


def exact_sae(d_in: int, hook: str = "blocks.1.attn.hook_z", zero_decoder: bool = False):
    import sae_lens

    cfg = sae_lens.StandardSAEConfig(d_in=d_in, d_sae=2 * d_in, reshape_activations="hook_z")
    sae = sae_lens.StandardSAE(cfg)
    sae.cfg.metadata.hook_name = hook
    eye = torch.eye(d_in)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], 1))
        sae.W_dec.copy_(torch.cat([eye, -eye], 0) * (0 if zero_decoder else 1))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae.requires_grad_(False).eval()


def test_recon_stats_measure_variance_against_the_mean():
    from saes.evaluate import ReconStats

    torch.manual_seed(0)
    x = torch.randn(200, 6) + 5.0  # a large mean: EV against zero would look excellent
    x_hat = x.mean(0).expand_as(x)  # predicts only the mean
    acts = torch.zeros(200, 10)
    acts[:30, 2] = 1.0  # feature 2 fires on 15% of tokens: dense
    acts[:5, 3] = 1.0
    st = ReconStats(10)
    st.update(x[:120], x_hat[:120], acts[:120], torch.ones(120))
    st.update(x[120:], x_hat[120:], acts[120:], torch.ones(80))
    r = st.result()
    assert abs(r["explained_variance"]) < 1e-9
    noisy = x + 0.1 * torch.randn_like(x)
    st2 = ReconStats(10)
    st2.update(x, noisy, acts, torch.ones(200))
    ref = 1 - ((x - noisy) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    assert st2.result()["explained_variance"] == pytest.approx(float(ref), abs=1e-6)
    assert r["l0"] == pytest.approx(35 / 200)
    assert r["dead_frac"] == pytest.approx(0.8) and r["dense_frac"] == pytest.approx(0.1)


def test_padding_positions_are_not_counted():
    from saes.evaluate import ReconStats

    x = torch.randn(2, 5, 4)
    x_hat = x.clone()
    x_hat[1, 3:] += 100.0  # garbage only at padded positions
    mask = torch.ones(2, 5)
    mask[1, 3:] = 0
    st = ReconStats(3)
    st.update(x, x_hat, torch.zeros(2, 5, 3), mask)
    assert st.result()["explained_variance"] == pytest.approx(1.0) and st.n == 8


def test_exact_and_zero_saes_bracket_ce_recovered():
    from saes.evaluate import evaluate_sae

    loaded, tokens = tiny_loaded(), random_tokens(n=6, pad_from=11)
    good = evaluate_sae(loaded, exact_sae(32), 1, tokens, batch_size=4)
    assert good.explained_variance == pytest.approx(1.0, abs=1e-6)
    assert good.ce_sae == pytest.approx(good.ce_clean, abs=1e-5)
    assert good.ce_recovered == pytest.approx(1.0, abs=1e-4)
    assert good.ce_zero_abl != pytest.approx(good.ce_clean, abs=1e-3)
    bad = evaluate_sae(loaded, exact_sae(32, zero_decoder=True), 1, tokens, batch_size=4)
    assert bad.ce_sae == pytest.approx(bad.ce_zero_abl, abs=1e-5)
    assert bad.ce_recovered == pytest.approx(0.0, abs=1e-4)
    frame = good.to_frame(model="tiny", layer=1)
    assert {"model", "layer", "metric", "value"} <= set(frame.columns)
    assert set(frame.metric) >= {"l0", "explained_variance", "ce_recovered", "dead_frac"}


def test_clean_and_zero_ablated_losses_match_transformer_lens():
    from saes.evaluate import evaluate_sae

    loaded, tokens = tiny_loaded(), random_tokens(n=4)  # unpadded: TL's mean loss applies
    ev = evaluate_sae(loaded, exact_sae(32), 1, tokens)
    model = loaded.model
    with torch.no_grad():
        clean = model(tokens.ids, return_type="loss")
        zero = model.run_with_hooks(
            tokens.ids, return_type="loss",
            fwd_hooks=[("blocks.1.attn.hook_z", lambda z, hook: torch.zeros_like(z))])
    assert ev.ce_clean == pytest.approx(float(clean), abs=1e-5)
    assert ev.ce_zero_abl == pytest.approx(float(zero), abs=1e-5)
    assert not any(hp.fwd_hooks for hp in model.hook_dict.values())
    assert not any(hp._forward_hooks for hp in model.hook_dict.values())


def test_splice_removes_its_hook_after_an_exception():
    from saes.evaluate import splice

    model = tiny_loaded().model
    with pytest.raises(RuntimeError), splice(model, 1, exact_sae(32)):
        assert len(model.hook_dict["blocks.1.attn.hook_z"]._forward_hooks) == 1
        raise RuntimeError("boom")
    assert not model.hook_dict["blocks.1.attn.hook_z"]._forward_hooks


@pytest.mark.slow
def test_minilm_exact_sae_keeps_the_embedding(minilm):
    from saes.corpus import corpus_tokens
    from saes.evaluate import evaluate_sae

    tokens = corpus_tokens(minilm, 150, seed=0, split="heldout")
    ev = evaluate_sae(minilm, exact_sae(384, "blocks.2.attn.hook_z"), 2, tokens)
    assert ev.cos_sae == pytest.approx(1.0, abs=1e-5)
    assert ev.explained_variance == pytest.approx(1.0, abs=1e-5)
    assert ev.cos_zero_abl < 0.999
    zero = evaluate_sae(minilm, exact_sae(384, "blocks.2.attn.hook_z", True), 2, tokens)
    assert zero.cos_sae == pytest.approx(zero.cos_zero_abl, abs=1e-5)
