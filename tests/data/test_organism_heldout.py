"""data.organism.heldout: the one held-out corpus of the organism, with its seed schemes pinned
(shipped SAE metrics and the redundancy study were computed on exactly these streams)."""

from __future__ import annotations

import pytest
import torch

from data.organism.heldout import SAE_SEED_OFFSET, SPLITS, heldout_rows, training_setup
from data.organism.model import make_batch


@pytest.fixture(scope="module")
def setup():
    return training_setup()


@pytest.mark.parametrize(("split", "step"), [("calibration", -2), ("eval", -3)])
def test_one_batch_splits_are_negative_steps_of_the_training_seed(setup, split, step):
    for seed in (0, 2):
        got = heldout_rows(split, seed, n_rows=8)
        want = make_batch(step - 10 * seed, setup.train_seed, setup.world, setup.mix, 8,
                          setup.n_ctx, setup.reasoning_rows)
        assert torch.equal(got.tokens, want.tokens) and torch.equal(got.mask, want.mask)


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_sae_splits_are_64_row_batches_of_their_own_run_seed(setup, split):
    got = heldout_rows(split, 1, n_tokens=1500)
    assert int(got.mask.sum()) >= 1500 and got.tokens.shape[0] % 64 == 0
    run_seed = SAE_SEED_OFFSET + 2 + (split == "heldout")
    for i in range(got.tokens.shape[0] // 64):
        want = make_batch(i, run_seed, setup.world, setup.mix, 64, setup.n_ctx,
                          setup.reasoning_rows)
        rows = slice(64 * i, 64 * (i + 1))
        width = want.tokens.shape[1]
        assert torch.equal(got.tokens[rows, :width], want.tokens)
        assert torch.equal(got.mask[rows, :width], want.mask)
        assert not got.mask[rows, width:].any()


def test_splits_are_disjoint_from_each_other_and_from_training(setup):
    rows = {s: heldout_rows(s, 0, n_tokens=600) if s in ("train", "heldout")
            else heldout_rows(s, 0, n_rows=32) for s in SPLITS}
    rows["training batch 0"] = make_batch(0, setup.train_seed, setup.world, setup.mix, 32,
                                          setup.n_ctx, setup.reasoning_rows)
    as_sets = {k: {tuple(r[m].tolist()) for r, m in zip(b.tokens, b.mask)}
               for k, b in rows.items()}
    names = list(as_sets)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not as_sets[a] & as_sets[b], (a, b)


def test_bad_requests():
    with pytest.raises(ValueError, match="split must be one of"):
        heldout_rows("test", 0, n_rows=4)
    with pytest.raises(ValueError, match="give n_rows"):
        heldout_rows("eval", 0, n_tokens=100)
    with pytest.raises(ValueError, match="give n_tokens"):
        heldout_rows("heldout", 0, n_rows=4)
