"""Chunked attribution patching (``attribute_many(..., chunk_pairs=...)``) equals the unchunked
run: plain, AtP*'s q/k fix and GradDrop, with uneven chunks (so a chunk-count-weighted mean of
chunk means, instead of the prompt-weighted one, would show)."""

from __future__ import annotations

import pytest
import torch

from analyses.causal.attribution import attribute_many, chunk_slices, pairs_per_chunk
from analyses.causal.patching import PatchingConfig, PatchPair
from tests.support.tiny import make_pair, padded_batch, tiny_encoder, tiny_variant

SIZES = (1, 2, 3)  # over 5 pairs: 5 x 1, 2 + 2 + 1, 3 + 2
CONFIGS = [PatchingConfig(c) for c in ("z", "q", "k", "v", "pattern", "attn_out", "mlp_out")]
CONFIGS += [PatchingConfig(c, per_position=True) for c in ("z", "q", "k", "resid_pre")]


@pytest.fixture(scope="module")
def llama():
    """Grouped-query attention, rotary, RMSNorm, gated MLP: every path of the q/k fix."""
    return tiny_variant("llama")


def _check_equal(chunked, whole):
    for c, w in zip(chunked, whole):
        assert torch.allclose(c.values, w.values, atol=1e-5, rtol=0), (c.table.method[0],
                                                                      c.table.component[0])
        assert c.clean_metric == pytest.approx(w.clean_metric, abs=1e-5)
        assert c.corrupted_metric == pytest.approx(w.corrupted_metric, abs=1e-5)
        assert list(c.table.method) == list(w.table.method)
        assert (c.table.effect - w.table.effect).abs().max() < 1e-5


@pytest.mark.parametrize("qk_fix,grad_drop", [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("method", ["denoising", "noising"])
def test_chunked_equals_whole(llama, method, qk_fix, grad_drop):
    pair = make_pair(batch=5, n_pos=6, seed=3)
    configs = [PatchingConfig(c.component, c.per_position, method=method) for c in CONFIGS]
    whole = attribute_many(llama, pair, configs, qk_fix=qk_fix, grad_drop=grad_drop)
    assert max(float(r.values.abs().max()) for r in whole) > 1e-3  # something to compare
    for size in SIZES:
        chunked = attribute_many(llama, pair, configs, qk_fix=qk_fix, grad_drop=grad_drop,
                                 chunk_pairs=size)
        _check_equal(chunked, whole)


def test_chunk_means_are_weighted_by_prompts(llama):
    """The estimate is the mean over prompts: the sum of per-prompt runs, divided by 5; the
    mean of the chunk results (2 + 2 + 1 prompts) is not (its effects differ by > 1e-3)."""
    pair = make_pair(batch=5, n_pos=6, seed=3)
    config = [PatchingConfig("z")]
    whole = attribute_many(llama, pair, config, chunk_pairs=2)[0]
    parts = [attribute_many(llama, _rows(pair, r), config)[0] for r in chunk_slices(5, 2)]
    singles = [attribute_many(llama, _rows(pair, slice(i, i + 1)), config)[0]
               for i in range(5)]
    mean_of_singles = sum(s.values for s in singles) / 5
    assert torch.allclose(whole.values, mean_of_singles, atol=1e-5)
    unweighted = sum(p.values for p in parts) / len(parts)
    assert (unweighted - whole.values).abs().max() > 1e-3


def _rows(pair: PatchPair, rows: slice) -> PatchPair:
    """The pairs at ``rows`` with their own metric (make_pair's reads answers by row)."""
    full = pair.metric

    def metric(logits):  # (chunk, pos, d_vocab) -> (chunk,)
        padded = logits.new_zeros(pair.batch, *logits.shape[1:])
        padded[rows] = logits
        return full(padded)[rows]

    return PatchPair(pair.clean[rows], pair.corrupted[rows], metric, task=pair.task)


def test_score_pos(llama):
    """With ``score_pos`` the metric gets the chunk's scored rows, placed at their batch rows."""
    base = make_pair(batch=5, n_pos=6, seed=4)
    score_pos = torch.tensor([5, 3, 4, 2, 5])
    pair = PatchPair(base.clean, base.corrupted, lambda last: last[:, 7] - last[:, 11] *
                     torch.arange(1, 6, dtype=last.dtype), score_pos=score_pos)
    whole = attribute_many(llama, pair, CONFIGS[:3], qk_fix=True)
    _check_equal(attribute_many(llama, pair, CONFIGS[:3], qk_fix=True, chunk_pairs=2), whole)


def test_encoder_with_padding():
    """Encoders: each chunk's runner gets its rows of the attention mask."""
    model = tiny_encoder().model
    ids, mask = padded_batch(lengths=(10, 6, 3, 8, 5))
    corrupted = ids.clone()
    corrupted[:, 1] = (ids[:, 1] + 7) % 50
    weights = torch.randn(5, 32, generator=torch.Generator().manual_seed(0))
    pair = PatchPair(ids, corrupted, lambda hidden: (hidden[:, 0] * weights).sum(-1),
                     attention_mask=mask)
    configs = [PatchingConfig("z"), PatchingConfig("mlp_out", per_position=True)]
    whole = attribute_many(model, pair, configs)
    _check_equal(attribute_many(model, pair, configs, chunk_pairs=2), whole)


def test_scalar_metric_refused_when_chunked(llama):
    pair = make_pair(batch=5, n_pos=6, seed=3, per_prompt=False)  # the batch mean: a scalar
    with pytest.raises(ValueError, match="one value per prompt or pass chunk_pairs=None"):
        attribute_many(llama, pair, [PatchingConfig("z")], chunk_pairs=2)
    one = attribute_many(llama, pair, [PatchingConfig("z")], chunk_pairs=5)[0]  # one chunk
    per_prompt = make_pair(batch=5, n_pos=6, seed=3)
    assert torch.allclose(one.values, attribute_many(llama, per_prompt, [PatchingConfig("z")],
                                                     chunk_pairs=2)[0].values, atol=1e-5)


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_bad_chunk_size(llama, bad):
    with pytest.raises(ValueError, match="chunk_pairs must be a positive int"):
        attribute_many(llama, make_pair(batch=5, n_pos=6), [PatchingConfig("z")],
                       chunk_pairs=bad)


def test_chunk_slices_and_budget(llama):
    assert chunk_slices(5, 2) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    assert chunk_slices(5, None) == [slice(0, 5)]
    assert chunk_slices(5, 9) == [slice(0, 5)]
    small, large = pairs_per_chunk(llama, 64, 1.0), pairs_per_chunk(llama, 64, 64.0)
    assert 1 <= small < large  # a larger budget, more pairs per chunk
    assert pairs_per_chunk(llama, 64, 1e-6) == 1  # never fewer than one pair
