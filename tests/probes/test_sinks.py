"""Attention sinks: exact against run_with_cache, padding-blind, the epsilon edge, the delimiter."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from probes.capture import capture
from probes.hooks import hook_count
from probes.pipeline import ProbeConfig, parse_what, run_probes
from probes.sinks import (
    SinkAccumulator,
    SinkConfig,
    first_delimiter,
    is_delimiter,
    sink_hooks,
    sink_rate,
)
from probes.tokens import Tokens, tokenize
from tests.support.tiny import padded_tokens, tiny_decoder, tiny_encoder

#: per tiny prompt (lengths 9, 7, 5, 3, 8): where its first delimiter is put, None for none
DELIMS = [3, 1, None, 2, 5]


def _tiny_tokens() -> Tokens:
    """padded_tokens() with delimiters at DELIMS, a later one and a "." at position 0."""
    t = padded_tokens()
    rows = []
    for n, d in zip(t.lengths.tolist(), DELIMS):
        row = ["." if i == 0 else "w" for i in range(n)]  # position 0 never counts
        if d is not None:
            row[d] = ","
            row[-1] = "\n" if d < n - 1 else row[-1]  # a later delimiter is not the first
        rows.append(row)
    return t._replace(str_tokens=rows)


def _stream(loaded, batches):
    plan = sink_hooks(loaded.cfg.n_layers, SinkConfig(), causal=not loaded.is_encoder)
    with capture(loaded, plan.hooks) as cap, torch.inference_mode():
        for tokens in batches:
            cap.forward(tokens)
    assert hook_count(loaded.model) == 0
    return plan.table()


def _wide(df):
    return df.pivot_table(index=["layer", "head"], columns="stat", values="value", dropna=False)


def _cached_patterns(loaded, tokens):
    """Every layer's (batch, head, pos, key_pos) pattern from run_with_cache."""
    model = loaded.model
    if loaded.is_encoder:
        _, cache = model.run_with_cache(tokens.ids, one_zero_attention_mask=tokens.attention_mask)
    else:
        _, cache = model.run_with_cache(tokens.ids, attention_mask=tokens.attention_mask)
    return [cache["pattern", layer].double().numpy() for layer in range(model.cfg.n_layers)]


def _reference(patterns, lengths, delims, causal):
    """(layer, head) -> (mean A(i, 0) over i > 0, mean A(i, d) over the allowed i != d)."""
    out = {}
    for layer, pat in enumerate(patterns):
        for h in range(pat.shape[1]):
            sink, delim = [], []
            for b, (n, d) in enumerate(zip(lengths, delims)):
                sink += [pat[b, h, i, 0] for i in range(1, n)]
                if d is not None:
                    delim += [pat[b, h, i, d] for i in range(n) if i > d or (i != d and not causal)]
            out[layer, h] = (np.mean(sink), np.mean(delim), len(sink), len(delim))
    return out


def _check(df, ref, rtol=1e-9, atol=1e-12):
    w = _wide(df)
    assert len(w) == len(ref)
    for key, (sink, delim, n_sink, n_delim) in ref.items():
        row = w.loc[key]
        np.testing.assert_allclose(row["sink_score"], sink, rtol=rtol, atol=atol)
        np.testing.assert_allclose(row["delimiter_score"], delim, rtol=rtol, atol=atol)
        assert (row["n_queries"], row["n_delimiter_queries"]) == (n_sink, n_delim)


@pytest.mark.parametrize("make", [tiny_decoder, tiny_encoder], ids=["decoder", "encoder"])
def test_scores_match_run_with_cache_on_a_padded_tiny_model(make):
    loaded = make()
    tokens = _tiny_tokens()
    df = _stream(loaded, [tokens])
    assert set(df.columns) == {"layer", "head", "stat", "value"}
    ref = _reference(_cached_patterns(loaded, tokens), tokens.lengths.tolist(), DELIMS,
                     causal=not loaded.is_encoder)
    _check(df, ref)


@pytest.mark.parametrize("make", [tiny_decoder, tiny_encoder], ids=["decoder", "encoder"])
def test_padding_is_ignored(make):
    loaded = make()
    tokens = _tiny_tokens()
    one = lambda b, width=None: Tokens(  # noqa: E731 - prompt b alone, trimmed or padded
        tokens.ids[b : b + 1, :width or int(tokens.lengths[b])],
        tokens.attention_mask[b : b + 1, :width or int(tokens.lengths[b])],
        tokens.lengths[b : b + 1], tokens.str_tokens[b : b + 1])
    alone = _stream(loaded, [one(2)])
    padded = _stream(loaded, [one(2, width=9)])  # the same prompt with 4 pad positions
    pd.testing.assert_frame_equal(alone, padded, rtol=1e-6, atol=1e-7)
    batched = _stream(loaded, [tokens])  # padded among longer and shorter prompts
    one_by_one = _stream(loaded, [one(b) for b in range(len(DELIMS))])
    pd.testing.assert_frame_equal(batched, one_by_one, rtol=1e-6, atol=1e-7)


def test_sink_rate_counts_heads_strictly_above_epsilon():
    eps = 0.3
    above = math.nextafter(eps, 1.0)
    scores = {(0, 0): eps, (0, 1): above, (0, 2): 0.9, (0, 3): 0.1,
              (1, 0): above, (1, 1): eps, (1, 2): float("nan")}  # L1H2: no query, no score
    df = pd.DataFrame([{"layer": la, "head": h, "stat": "sink_score", "value": v}
                       for (la, h), v in scores.items()]
                      + [{"layer": 0, "head": 0, "stat": "delimiter_score", "value": 1.0}])
    rate = sink_rate(df, SinkConfig(epsilon=eps)).set_index("layer")
    assert list(rate.index) == [0, 1, -1]
    assert rate.loc[0, "value"] == 0.5 and rate.loc[0, "n_heads"] == 4
    assert rate.loc[1, "value"] == 0.5 and rate.loc[1, "n_heads"] == 2
    assert rate.loc[-1, "value"] == 3 / 6 and rate.loc[-1, "n_heads"] == 6
    assert (rate["epsilon"] == eps).all()
    lower = sink_rate(df, SinkConfig(epsilon=math.nextafter(eps, 0.0))).set_index("layer")
    assert lower.loc[-1, "value"] == 5 / 6  # heads at exactly eps now count
    empty = sink_rate(df.iloc[:0], SinkConfig())  # no head has a score: only the model row
    assert list(empty["layer"]) == [-1] and np.isnan(empty["value"].iloc[0])


def test_sink_rate_edge_on_measured_scores():
    df = _stream(tiny_decoder(), [_tiny_tokens()])
    scores = df[df["stat"] == "sink_score"]["value"]
    s = scores.iloc[0]
    n_above = int((scores > s).sum())
    at = sink_rate(df, SinkConfig(epsilon=s)).set_index("layer")
    below = sink_rate(df, SinkConfig(epsilon=math.nextafter(s, -1.0))).set_index("layer")
    assert at.loc[-1, "value"] * len(scores) == n_above
    assert below.loc[-1, "value"] * len(scores) == n_above + int((scores == s).sum())


def test_config_and_pipeline_registration():
    with pytest.raises(ValueError, match="epsilon"):
        SinkConfig(epsilon=1.0)
    with pytest.raises(ValueError, match="epsilon"):
        SinkConfig(epsilon=-0.1)
    with pytest.raises(TypeError, match="sinks=SinkConfig"):
        ProbeConfig(sinks=0.3)
    assert parse_what("entropy,sinks") == ("entropy", "sinks")
    with pytest.raises(TypeError, match="SinkConfig"):
        sink_hooks(2, 0.3)


@pytest.mark.parametrize("tokens,expected", [
    (["<bos>", "once", "Fobo", ",", "Fobo", "."], 3),  # the first punctuation token
    ([".", "a", "b", "!"], 3),  # position 0 (BOS) never counts
    (["<|endoftext|>", "ĠHello", "Ġ.", "Ċ"], 2),  # GPT-2 byte-level space marker
    (["<s>", "▁Hi", "<0x0A>", "."], 2),  # SentencePiece newline byte
    (["<bos>", "a", "...", ","], 2),
    (["<bos>", "a", "'s", "),", "b"], None),  # mixed with non-delimiters: not one
    (["[CLS]", "hello", ",", "world", ".", "[SEP]"], 5),  # a separator beats punctuation
    (["<bos>", "no", "delimiter"], None),
    (["<bos>"], None),
])
def test_first_delimiter_rule(tokens, expected):
    assert first_delimiter(tokens) == expected


def test_is_delimiter():
    assert all(map(is_delimiter, [".", ",", "\n", "Ġ,", "▁.", "ĊĊ", "?!", ";", ":"]))
    assert not any(map(is_delimiter, ["", "Ġ", "a.", "'", "-", "[SEP]", "<bos>"]))


def test_accumulator_without_str_tokens_and_with_left_padding():
    acc = SinkAccumulator(0)
    with pytest.raises(ValueError, match="no batch"):
        acc.result()
    pattern = torch.rand(2, 3, 4, 4).softmax(-1)  # (batch, head, pos, key_pos)
    acc.update(pattern, None)
    w = _wide(acc.result()).loc[0]
    np.testing.assert_allclose(w["sink_score"], pattern[:, :, 1:, 0].double().mean((0, 2)))
    assert w["delimiter_score"].isna().all() and (w["n_delimiter_queries"] == 0).all()
    left = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    with pytest.raises(ValueError, match="right-padded"):
        acc.update(pattern, left)
    with pytest.raises(ValueError, match="str_tokens"):
        acc.update(pattern, None, str_tokens=[["<bos>", "a"], ["<bos>", "a", "b", "c"]])


def _real_reference(loaded, prompts):
    """Per-prompt run_with_cache (no padding) and the delimiter each prompt documents."""
    patterns, lengths, delims = [], [], []
    for p in prompts:
        t = tokenize(loaded, p)
        toks = t.str_tokens[0]
        d = toks.index("[SEP]") if loaded.is_encoder else toks.index(",")
        assert first_delimiter(toks) == d
        patterns.append(_cached_patterns(loaded, t))
        lengths.append(len(toks))
        delims.append(d)
    return patterns, lengths, delims


def _check_real(loaded, prompts, batch_size):
    tables = run_probes(loaded, prompts, what="sinks", batch_size=batch_size)
    assert set(tables) == {"sinks", "sink_rate"} and hook_count(loaded.model) == 0
    patterns, lengths, delims = _real_reference(loaded, prompts)
    n_layers = loaded.cfg.n_layers
    sums: dict = {}
    for pat, n, d in zip(patterns, lengths, delims):  # pool the per-prompt references
        for key, (s, dl, ns, nd) in _reference(pat, [n], [d], not loaded.is_encoder).items():
            acc = sums.setdefault(key, [0.0, 0.0, 0, 0])
            acc[0] += s * ns
            acc[1] += dl * nd
            acc[2] += ns
            acc[3] += nd
    ref = {k: (a / ns, b / nd, ns, nd) for k, (a, b, ns, nd) in sums.items()}
    _check(tables["sinks"], ref, rtol=1e-5, atol=1e-6)
    rate = tables["sink_rate"].set_index("layer")
    scores = np.array([ref[k][0] for k in sorted(ref)])
    assert rate.loc[-1, "value"] == pytest.approx(float((scores > 0.3).mean()))
    assert len(rate) == n_layers + 1 and (tables["sinks"]["model"] == loaded.name).all()
    return tables


def test_organism_matches_run_with_cache_and_picks_the_comma(organism):
    from data.tasks import load_task

    prompts = list(load_task("ioi", 16).clean_prompts[:6])
    prompts += [prompts[0].rsplit(" ", 1)[0], prompts[1].rsplit(" ", 3)[0]]  # shorter: padding
    _check_real(organism, prompts, batch_size=3)


@pytest.mark.slow
def test_minilm_matches_run_with_cache_and_picks_sep(minilm):
    from data.sentences import builtin_sentences

    prompts = builtin_sentences()[::45][:7]
    _check_real(minilm, prompts, batch_size=3)
