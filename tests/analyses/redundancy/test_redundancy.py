"""He et al. similarity scores: streamed accumulator vs a direct computation from run_with_cache."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from analyses.redundancy.dropping import DropSet, prune
from analyses.redundancy.scores import (
    ComponentIO,
    ComponentRef,
    CosineAccumulator,
    HookRef,
    ScoreConfig,
    similarity_scores,
)
from tests.support.tiny import padded_tokens, tiny_decoder, tiny_encoder


def _direct_cos(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> float:
    """mean over real tokens of x.y / (|x||y|), written out by hand in float64."""
    x, y = x.detach().double(), y.detach().double()
    cos = (x * y).sum(-1) / (x.norm(dim=-1) * y.norm(dim=-1))  # (batch, pos)
    return float(cos[mask.bool()].mean())


def _direct_decoder(loaded, tokens) -> dict:
    _, cache = loaded.model.run_with_cache(tokens.ids, attention_mask=tokens.attention_mask)
    out = {}
    for layer in range(loaded.cfg.n_layers):
        pre, mid, post = (cache[f"blocks.{layer}.hook_resid_{k}"] for k in ("pre", "mid", "post"))
        for component, (x, y) in {"attn": (pre, mid), "mlp": (mid, post),
                               "block": (pre, post)}.items():
            out[(layer, component)] = 1 - _direct_cos(x, y, tokens.attention_mask)
    return out


def _direct_encoder(loaded, tokens) -> dict:
    """BERT units: X -> ln1(X + attn(X)) and h -> ln2(h + mlp(h)); the LayerNorms are
    re-applied here with torch's own layer_norm to the cached pre-LN sums."""
    model = loaded.model
    _, cache = model.run_with_cache(tokens.ids, one_zero_attention_mask=tokens.attention_mask)
    out = {}
    for layer in range(loaded.cfg.n_layers):
        b = model.blocks[layer]
        d = (loaded.cfg.d_model,)
        pre = cache[f"blocks.{layer}.hook_resid_pre"]
        h = torch.nn.functional.layer_norm(cache[f"blocks.{layer}.hook_resid_mid"], d, b.ln1.w,
                                           b.ln1.b, loaded.cfg.eps)
        post = torch.nn.functional.layer_norm(cache[f"blocks.{layer}.hook_resid_post"], d,
                                              b.ln2.w, b.ln2.b, loaded.cfg.eps)
        for component, (x, y) in {"attn": (pre, h), "mlp": (h, post), "block": (pre, post)}.items():
            out[(layer, component)] = 1 - _direct_cos(x, y, tokens.attention_mask)
    return out


def _as_dict(scores: pd.DataFrame) -> dict:
    return {(int(r.layer), r.component): r.score for r in scores.itertuples()}


@pytest.mark.parametrize("make,direct", [(tiny_decoder, _direct_decoder),
                                         (tiny_encoder, _direct_encoder)])
def test_scores_match_run_with_cache(make, direct):
    loaded, tokens = make(), padded_tokens()
    got = _as_dict(similarity_scores(loaded, tokens, config=ScoreConfig(batch_size=2)))
    want = direct(loaded, tokens)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=2e-6), key
    assert max(want.values()) > 1e-3  # the random model does change its hidden states


def test_table_is_tidy_and_counts_only_real_tokens():
    loaded, tokens = tiny_decoder(), padded_tokens()
    scores = similarity_scores(loaded, tokens)
    assert list(scores.columns[:3]) == ["layer", "component", "score"]
    assert len(scores) == 3 * loaded.cfg.n_layers
    assert (scores["n_tokens"] == int(tokens.attention_mask.sum())).all()
    assert (scores["score"] - (1 - scores["mean_cos"])).abs().max() < 1e-12


@pytest.mark.parametrize("make", [tiny_decoder, tiny_encoder])
def test_padding_and_batching_do_not_change_scores(make):
    loaded, tokens = make(), padded_tokens(n=6)
    one = similarity_scores(loaded, tokens, config=ScoreConfig(batch_size=1))
    six = similarity_scores(loaded, tokens, config=ScoreConfig(batch_size=6))
    assert (one["score"] - six["score"]).abs().max() < 1e-5


def test_accumulator_masks_padding():
    acc = CosineAccumulator(ComponentRef(0, "attn"), ComponentIO(HookRef("x"), HookRef("y")))
    x = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [5.0, 5.0]]])  # (batch=1, pos=3, d=2)
    y = torch.tensor([[[0.0, 2.0], [3.0, 0.0], [-5.0, -5.0]]])
    mask = torch.tensor([[True, True, False]])  # the last (anti-parallel) token is padding
    acc.input.update(x, mask)
    acc.output.update(y, mask)
    row = acc.result().iloc[0]
    assert row.mean_cos == pytest.approx(0.5) and row.n_tokens == 2


def test_scores_on_pruned_model_follow_the_unit_chain():
    """With attention 1 dropped, the MLP unit of layer 1 reads the block input directly."""
    loaded, tokens = tiny_encoder(), padded_tokens()
    drops = DropSet(attn={1})
    pruned = prune(loaded, drops)
    got = _as_dict(similarity_scores(pruned, tokens, [ComponentRef(1, "mlp")], drops))
    _, cache = pruned.model.run_with_cache(tokens.ids,
                                           one_zero_attention_mask=tokens.attention_mask)
    x, y = cache["blocks.1.hook_resid_pre"], cache["blocks.1.hook_normalized_resid_post"]
    assert got[(1, "mlp")] == pytest.approx(1 - _direct_cos(x, y, tokens.attention_mask),
                                            abs=2e-6)
    with pytest.raises(ValueError, match="cannot score dropped"):
        similarity_scores(pruned, tokens, [ComponentRef(1, "attn")], drops)


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="batch_size"):
        ScoreConfig(batch_size=0)
    with pytest.raises(ValueError, match="definition"):
        ScoreConfig(definition="cosine")


@pytest.mark.slow
def test_minilm_scores_match_run_with_cache(minilm):
    from data.sentences import builtin_sentences
    from probes.tokens import tokenize

    tokens = tokenize(minilm, builtin_sentences()[:12])
    got = _as_dict(similarity_scores(minilm, tokens))
    want = _direct_encoder(minilm, tokens)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-5), key
