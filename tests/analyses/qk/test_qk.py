"""The exact QK decomposition: its terms add up to hook_attn_scores on every model variant, and
on the organism the induction heads' key side is the layer-0 previous-token heads' output."""

from __future__ import annotations

import pytest
import torch

from analyses.qk import QKConfig, decompose_qk, qk_summary, qk_table, select_pairs, top_terms
from analyses.qk.residual import hook_names, residual_parts
from analyses.qk.table import side_totals
from data.tasks import load_task
from probes.head_scores import head_scores
from probes.hooks import record
from saes.io import load_shipped
from tests.support.tiny import tiny_decoder, tiny_encoder

ROTARY = {"positional_embedding_type": "rotary", "rotary_dim": 8}
VARIANTS = {
    "ln-learned-mha": {},
    "rms-learned-mha": {"normalization_type": "RMS"},
    "ln-rotary-mha": ROTARY,
    "rms-rotary-gqa": {"normalization_type": "RMS", "n_key_value_heads": 2, **ROTARY},
    "ln-rotary-gqa": {"n_key_value_heads": 2, **ROTARY},
    "lnpre-learned": {"normalization_type": "LNPre"},
    "no-norm-attn-only": {"normalization_type": None, "attn_only": True},
}


def _tokens(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    half = torch.randint(1, 50, (3, 6), generator=g)
    return torch.cat([torch.zeros(3, 1, dtype=torch.long), half, half], 1)  # repeats: pairs


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("rule", ["induction", "previous", "argmax"])
def test_terms_sum_to_attention_scores(variant, rule):
    lm = tiny_decoder(**VARIANTS[variant])
    toks = _tokens()
    for layer, head in ((0, 3), (2, 1)):
        res = decompose_qk(lm, toks, QKConfig(layer=layer, head=head, pairs=rule, chunk=5))
        # the scores read independently of the split, at the same pairs
        got = record(lm.model, [f"blocks.{layer}.attn.hook_attn_scores"], lambda: lm.model(toks))
        ref = got.acts[f"blocks.{layer}.attn.hook_attn_scores"][:, head]
        p = res.pairs
        assert torch.allclose(res.score, ref[p.batch, p.query, p.key])
        assert (res.term_sum - res.score).abs().max() < 1e-4
        assert res.score.abs().max() > 1e-2  # not a trivially zero score
        assert len(res.q_labels) == res.mean.shape[0] and len(res.k_labels) == res.mean.shape[1]


def test_residual_parts_sum_to_resid_pre():
    lm = tiny_decoder(**VARIANTS["rms-rotary-gqa"])
    toks = _tokens(1)
    acts = record(lm.model, hook_names(lm, 2), lambda: lm.model(toks)).acts
    b, pos = torch.tensor([0, 1, 2]), torch.tensor([3, 0, 12])
    parts = residual_parts(lm, acts, 2, b, pos)
    # embed, 2 layers x (4 heads + b_O + mlp)
    assert parts.labels[:2] == ("embed", "L0H0") and len(parts.labels) == 1 + 2 * 6
    ref = acts["blocks.2.hook_resid_pre"][b, pos]
    assert torch.allclose(parts.vectors.sum(1), ref, atol=1e-5)


def test_pair_rules():
    toks = torch.tensor([[0, 5, 6, 7, 5, 6, 9]])
    p = select_pairs("induction", toks)
    assert p.query.tolist() == [4, 5] and p.key.tolist() == [2, 3]
    p = select_pairs("previous", toks)
    assert p.query.tolist() == list(range(1, 7)) and (p.query - p.key).eq(1).all()
    pattern = torch.zeros(1, 7, 7)
    pattern[0, 6, 2] = 1
    assert select_pairs("argmax", toks, pattern).key.tolist() == [2]
    with pytest.raises(ValueError, match="repeated token"):
        select_pairs("induction", torch.tensor([[0, 1, 2, 3]]))


def test_unsupported_models_are_refused():
    with pytest.raises(ValueError, match="causal decoder"):
        decompose_qk(tiny_encoder(), _tokens(), QKConfig(layer=1, head=0))
    with pytest.raises(ValueError, match="layer 5 out of range"):
        decompose_qk(tiny_decoder(), _tokens(), QKConfig(layer=5, head=0))
    with pytest.raises(ValueError, match="pairs must be"):
        QKConfig(layer=0, head=0, pairs="nope")


@pytest.fixture(scope="module")
def induction_task():
    return load_task("induction", 24, 0)


def test_organism_induction_heads_compose_with_previous_token_heads(organism, induction_task):
    """Done-when of issue 19: each layer-1 induction head's key side is driven by the layer-0
    previous-token heads (K-composition). Which heads those are comes from their scores."""
    scores = head_scores(organism, {"induction": induction_task.clean_tokens}).scores
    by = scores.pivot_table(index=["layer", "head"], columns="stat", values="value")
    prev = [f"L0H{h}" for (la, h), v in by["prev_token"].items() if la == 0 and v > 0.5]
    induction = [h for (la, h), v in by["induction"].items() if la == 1 and v > 0.5]
    assert prev and induction  # the organism has both kinds (README: 0.0, 0.2; layer 1)
    for head in induction:
        res = decompose_qk(organism, induction_task.clean_tokens, QKConfig(layer=1, head=head))
        assert res.max_error < 1e-4
        table = qk_table(res, model="organism", task="induction")
        keys = side_totals(table, "k")
        assert set(prev) <= set(keys.index[:3]), (head, keys.head(5))
        assert top_terms(table, 5)["k_component"].isin(prev).any(), (head, top_terms(table, 5))


def test_organism_sae_split_is_exact(organism, induction_task):
    saes = {0: load_shipped("organism", 0), 1: load_shipped("organism", 1)}
    res = decompose_qk(organism, induction_task.clean_tokens[:8],
                       QKConfig(layer=2, head=0, pairs="argmax"), saes)
    assert res.max_error < 1e-4
    table = qk_table(res, model="organism", task="induction")
    feats = table[(table["q_kind"] == "sae_feature") & (table["k_kind"] == "sae_feature")]
    assert len(feats) > 0  # query-feature x key-feature pairs
    assert not table["q_component"].str.match(r"L[01]H\d").any()  # heads replaced by features
    s = qk_summary(res, model="organism", task="induction")
    assert s["n_pairs"].item() == 8 and s["max_abs_error"].item() < 1e-4
