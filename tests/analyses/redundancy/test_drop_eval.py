"""Evaluation after dropping: metrics vs independent computations, speed, drop curves."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from analyses.redundancy.dropping import DropSet, prune
from analyses.redundancy.evaluation import (
    DropEvalConfig,
    EncoderEval,
    MemoEval,
    OrganismEval,
    curve_points,
    drop_curve,
    lm_loss,
    measure_speed,
    nearest_neighbours,
    weight_macs,
)
from analyses.redundancy.plans import one_shot_plan
from analyses.redundancy.scores import similarity_scores
from probes.tokens import Tokens
from tests.support.tiny import padded_tokens, tiny_decoder, tiny_encoder


def test_lm_loss_matches_transformer_lens():
    loaded = tiny_decoder()
    ids = torch.randint(1, 50, (4, 10), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    tokens = Tokens(ids, mask, mask.sum(1), [["t"] * 10] * 4)
    with torch.no_grad():
        want = float(loaded.model(ids, return_type="loss"))
    assert lm_loss(loaded, tokens, batch_size=3) == pytest.approx(want, rel=1e-5)


def test_lm_loss_ignores_padding():
    loaded, tokens = tiny_decoder(), padded_tokens(n=4)
    per_prompt = []
    for i in range(4):
        n = int(tokens.lengths[i])
        ids = tokens.ids[i : i + 1, :n]
        with torch.no_grad():
            per_prompt.append((float(loaded.model(ids, return_type="loss")), n - 1))
    want = sum(loss * k for loss, k in per_prompt) / sum(k for _, k in per_prompt)
    assert lm_loss(loaded, tokens, batch_size=4) == pytest.approx(want, rel=1e-5)


def test_nearest_neighbours():
    emb = torch.nn.functional.normalize(torch.tensor(
        [[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.95]]), dim=-1)
    assert nearest_neighbours(emb).tolist() == [1, 0, 3, 2]


def _encoder_eval(loaded):
    ev = EncoderEval.__new__(EncoderEval)  # bypass tokenisation: the tiny model has no tokenizer
    ev.config = DropEvalConfig(batch_size=4)
    ev.tokens = padded_tokens(n=6)
    ev.group = torch.tensor([0, 0, 1, 1, -1, -1])
    with torch.no_grad():
        from analyses.redundancy.evaluation import embeddings

        ev.full_emb = embeddings(loaded, ev.tokens, 4)
    ev.full_nn = nearest_neighbours(ev.full_emb)
    return ev


def test_encoder_eval_full_model_is_perfect_and_drops_hurt():
    loaded = tiny_encoder()
    ev = _encoder_eval(loaded)
    full = ev(loaded).set_index("metric").value
    assert full["embedding_cos"] == pytest.approx(1.0, abs=1e-6)
    assert full["nn_agreement"] == 1.0
    dropped = ev(prune(loaded, DropSet(attn={0, 1, 2}, mlp={0, 1}))).set_index("metric").value
    assert dropped["embedding_cos"] < 0.999


def test_organism_eval_on_a_random_model_of_the_organism_vocabulary():
    from data.organism.config import ModelConfig
    from data.tasks import organism_world

    # the held-out LM rows are as long as the shipped organism's context
    vocab = len(organism_world().vocab)
    loaded = tiny_decoder(d_vocab=vocab, n_ctx=ModelConfig().n_ctx, n_layers=2)
    ev = OrganismEval(DropEvalConfig(n_items=4, n_lm_rows=4, batch_size=4))
    got = ev(loaded).set_index("metric").value
    assert set(got.index) == {"lm_loss", "acc_induction", "acc_ioi", "acc_recall",
                              "acc_reasoning", "acc_mean"}
    assert got["lm_loss"] == pytest.approx(float(torch.log(torch.tensor(float(vocab)))), rel=0.3)
    assert 0.0 <= got["acc_mean"] <= 1.0


def test_drop_curve_starts_at_the_full_model():
    loaded, tokens = tiny_encoder(), padded_tokens(n=6)
    ev = _encoder_eval(loaded)
    plan = one_shot_plan(similarity_scores(loaded, tokens), "attn", 2)
    curve = drop_curve(loaded, plan, ev)
    assert sorted(curve.n_dropped.unique()) == [0, 1, 2]
    first = curve[(curve.n_dropped == 0) & (curve.metric == "nn_agreement")].value.item()
    assert first == 1.0
    step2 = curve[curve.n_dropped == 2].dropped.iloc[0].split(",")
    assert step2 == [f"attn{s.layer}" for s in plan.steps]


def test_speed_measures_a_real_saving():
    loaded = tiny_decoder(d_model=128, d_head=32, d_mlp=512, n_layers=4, n_ctx=64)
    ids = torch.randint(1, 50, (8, 48), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    tokens = Tokens(ids, mask, mask.sum(1), [["t"] * 48] * 8)
    everything = DropSet(attn=set(range(4)), mlp=set(range(4)))
    res = measure_speed(loaded, prune(loaded, everything), tokens, repeats=3, batch_size=16)
    assert res.repeats == 3 and res.n_tokens == 8 * 48
    assert res.speedup > 1.5  # embed + unembed only: far less work than 4 blocks
    assert res.speedup_cpu > 1.5 and res.full_cpu_ms > 0
    with pytest.raises(ValueError, match="repeats"):
        measure_speed(loaded, loaded, tokens, repeats=0)


def test_curve_points_and_memoised_evaluation():
    assert curve_points(8, 2) == [0, 2, 4, 6, 8]
    assert curve_points(7, 3) == [0, 3, 6, 7]  # the last drop count is always evaluated
    assert curve_points(3) == [0, 1, 2, 3]
    loaded, tokens = tiny_encoder(), padded_tokens(n=6)
    calls = []

    def evaluate(model):
        calls.append(getattr(model.model, "drop_set", None))
        return _encoder_eval(loaded)(model)

    memo = MemoEval(evaluate)
    plan = one_shot_plan(similarity_scores(loaded, tokens), "attn", 3)
    first = drop_curve(loaded, plan, memo, points=[0, 2, 3])
    again = drop_curve(loaded, plan, memo, points=[0, 3])
    assert sorted(first.n_dropped.unique()) == [0, 2, 3]
    assert len(calls) == 3  # the second curve's drop sets were all evaluated already
    pd.testing.assert_frame_equal(first[first.n_dropped == 3].reset_index(drop=True),
                                  again[again.n_dropped == 3].reset_index(drop=True))


@pytest.mark.parametrize("arch", [{}, dict(gated_mlp=True, act_fn="silu", n_key_value_heads=2)])
def test_weight_macs_count_every_weight_matrix_once(arch):
    loaded = tiny_decoder(**arch)
    mats = ("W_Q", "W_K", "W_V", "W_O", "W_in", "W_gate", "W_out", "W_U")
    numel = {n: p.numel() for n, p in loaded.model.named_parameters()
             if n.split(".")[-1].lstrip("_") in mats}
    assert weight_macs(loaded.cfg, DropSet()) == sum(numel.values())
    attn1 = sum(v for n, v in numel.items() if n.startswith("blocks.1.attn."))
    mlp2 = sum(v for n, v in numel.items() if n.startswith("blocks.2.mlp."))
    dropped = weight_macs(loaded.cfg, DropSet(attn={1}, mlp={2}))
    assert dropped == sum(numel.values()) - attn1 - mlp2
