"""Chunked attribution patching (``attribute_many(..., chunk_pairs=...)``) equals the unchunked
run: plain, AtP*'s q/k fix and GradDrop, with uneven chunks (so a chunk-count-weighted mean of
chunk means, instead of the prompt-weighted one, would show), through both ways of scoring a
chunk: the pair's own ``metric_rows`` (task pairs; no full-batch tensor) and the zero-padded
full-batch fallback (custom metrics)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from analyses.causal.attribution import attribute_many, chunk_slices, pairs_per_chunk
from analyses.causal.patching import PatchingConfig, PatchPair, pair_from_task
from data.tasks import TaskDataset, logit_diff
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


def task_dataset(batch: int = 5, n_pos: int = 6, d_vocab: int = 50, seed: int = 5):
    """A hand-made task: random prompts, one swapped token, a different answer pair and
    scored position per row (so scoring a chunk with another chunk's rows shows)."""
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(1, d_vocab, (batch, n_pos), generator=g)
    corrupted = clean.clone()
    corrupted[:, 1] = (clean[:, 1] + 1 + torch.randint(0, d_vocab - 2, (batch,), generator=g)) \
        % (d_vocab - 1) + 1
    answers = torch.randperm(d_vocab - 1, generator=g)[:2 * batch].view(2, batch) + 1
    words = tuple(f"w{i}" for i in range(batch))
    return TaskDataset("hand", seed, clean, corrupted, answers[0], answers[1],
                       torch.tensor([5, 3, 4, 2, 5][:batch]), words, words, words, words, words)


def test_task_pair_scores_rows_alone():
    """metric_rows(rows) on those rows' logits is the full metric's values at rows, and not
    another chunk's (the rows' answers and scored positions differ)."""
    ds = task_dataset()
    pair = pair_from_task(ds)
    logits = torch.randn(5, 6, 50, generator=torch.Generator().manual_seed(0))
    full = logit_diff(logits, ds)
    for rows in (slice(1, 4), slice(4, 5), slice(0, 2)):
        assert torch.allclose(pair.metric_rows(rows)(logits[rows]), full[rows])
        last = logits[torch.arange(5), ds.last_pos][rows]  # (rows, d_vocab): score_pos applied
        assert torch.allclose(pair.metric_rows(rows)(last), full[rows])
    assert not torch.allclose(pair.metric_rows(slice(0, 3))(logits[1:4]), full[1:4])
    custom = pair_from_task(ds, metric=lambda out: out[:, -1, 0])
    assert custom.metric_rows is None and custom.score_pos is None  # unchanged: padded path


@pytest.mark.parametrize("scored", [True, False])
@pytest.mark.parametrize("qk_fix,grad_drop", [(False, False), (True, False), (True, True)])
def test_task_pair_chunked_equals_whole(llama, qk_fix, grad_drop, scored):
    """Through metric_rows, chunked == unchunked; the full-batch metric is never called."""
    pair = pair_from_task(task_dataset())
    if not scored:  # the metric gets (chunk, pos, d_vocab), reading each row's last_pos
        pair = dataclasses.replace(pair, score_pos=None)
    configs = [PatchingConfig(c.component, c.per_position) for c in CONFIGS]
    whole = attribute_many(llama, pair, configs, qk_fix=qk_fix, grad_drop=grad_drop)
    assert max(float(r.values.abs().max()) for r in whole) > 1e-3  # something to compare

    def no_full_batch(out):
        raise AssertionError(f"full-batch metric called on {tuple(out.shape)}")

    seen = []

    def metric_rows(rows):  # the task's, checking it gets the chunk's rows only
        own = pair.metric_rows(rows)

        def metric(out):
            assert out.shape[0] == rows.stop - rows.start
            assert out.ndim == (2 if scored else 3)
            seen.append((rows.start, rows.stop))
            return own(out)
        return metric

    guarded = dataclasses.replace(pair, metric=no_full_batch, metric_rows=metric_rows)
    for size in SIZES:
        seen.clear()
        _check_equal(attribute_many(llama, guarded, configs, qk_fix=qk_fix,
                                    grad_drop=grad_drop, chunk_pairs=size), whole)
        chunks = [(r.start, r.stop) for r in chunk_slices(5, size)]
        assert sorted(set(seen)) == chunks and len(seen) == 2 * len(chunks)  # base + source


def test_metric_rows_must_give_one_value_per_row(llama):
    pair = pair_from_task(task_dataset())
    bad = dataclasses.replace(pair, metric_rows=lambda rows: lambda out: out[:, 0].mean())
    with pytest.raises(ValueError, match=r"not one value per prompt \(2,\)"):
        attribute_many(llama, bad, [PatchingConfig("z")], chunk_pairs=2)
    with pytest.raises(ValueError, match="metric_rows must be a function"):
        dataclasses.replace(pair, metric_rows=3)


def test_the_chunk_size_estimate_is_conservative_within_4x(llama):
    """pairs_per_chunk's per-pair estimate against the measured growth of peak memory with
    the pairs of one pass (every head and sublayer, the q/k fix: the widest sweep)."""
    from benchmarks.patching import peak_mb

    configs = [PatchingConfig(c) for c in ("z", "q", "k", "v", "attn_out", "mlp_out")]
    n_pos = 12
    peaks = {b: peak_mb(lambda b=b: attribute_many(llama, make_pair(batch=b, n_pos=n_pos),
                                                    configs, qk_fix=True))
             for b in (2, 10)}
    per_pair = (peaks[10] - peaks[2]) / 8  # MiB each pair adds
    assert per_pair > 0
    budget = 20 * per_pair  # measured: 20 pairs fit
    fits = pairs_per_chunk(llama, n_pos, budget)
    assert 20 / 4 <= fits <= 20, (per_pair, fits)
