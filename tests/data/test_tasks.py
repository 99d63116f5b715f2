"""data.tasks: clean/corrupted datasets and their metrics."""

from __future__ import annotations

import pytest
import torch

from data.tasks import TASKS, TaskDataset, accuracy, list_tasks, load_task, logit_diff


@pytest.mark.parametrize("name", TASKS)
def test_load_task_pairs(name):
    ds = load_task(name, n=40, seed=1)
    assert isinstance(ds, TaskDataset) and len(ds) == 40
    n, pos = ds.clean_tokens.shape
    assert ds.corrupted_tokens.shape == (n, pos) and ds.clean_tokens.dtype == torch.long
    assert bool((ds.clean_tokens[:, 0] == 1).all())  # <bos> at position 0
    assert bool((ds.last_pos == pos - 1).all())
    diff = (ds.clean_tokens != ds.corrupted_tokens).sum(1)
    assert bool((diff == 1).all())  # minimal pairs: one token differs
    assert bool((ds.answer_ids != ds.corrupted_answer_ids).all())
    assert len(ds.clean_prompts) == n and ds.clean_prompts[0].split()[0] != "<bos>"
    again = load_task(name, n=40, seed=1)
    assert torch.equal(again.clean_tokens, ds.clean_tokens)
    assert not torch.equal(load_task(name, n=40, seed=2).clean_tokens, ds.clean_tokens)


def test_metrics_against_direct_indexing():
    ds = load_task("ioi", n=6, seed=0)
    logits = torch.randn(6, ds.n_pos, 500)
    ld = logit_diff(logits, ds)
    for i in range(6):
        row = logits[i, ds.n_pos - 1]
        assert torch.isclose(ld[i], row[ds.answer_ids[i]] - row[ds.corrupted_answer_ids[i]])
    assert torch.equal(logit_diff(logits[:, -1], ds), ld)  # (n, vocab) accepted too
    onehot = torch.zeros(6, ds.n_pos, 500)
    onehot[torch.arange(6), -1, ds.answer_ids] = 5.0
    onehot[:2, -1, ds.answer_ids[:2]] = -5.0
    assert accuracy(onehot, ds) == pytest.approx(4 / 6)


def test_bad_input_errors():
    assert list_tasks() == list(TASKS)
    with pytest.raises(ValueError, match="unknown task"):
        load_task("nope")
    with pytest.raises(ValueError, match="n must be"):
        load_task("ioi", n=0)
    ds = load_task("recall", n=4)
    with pytest.raises(ValueError, match="logits must be"):
        logit_diff(torch.zeros(3, ds.n_pos, 10), ds)


def test_rows_slices_every_per_item_field_together():
    ds = load_task("ioi", n=7, seed=3)
    part = ds.rows(slice(2, 5))
    assert len(part) == 3 and part.name == ds.name and part.seed == ds.seed
    for name in ("clean_tokens", "corrupted_tokens", "answer_ids", "corrupted_answer_ids",
                 "last_pos"):
        assert torch.equal(getattr(part, name), getattr(ds, name)[2:5])
    for name in ("clean_prompts", "corrupted_prompts", "answers", "corrupted_answers",
                 "variants"):
        assert getattr(part, name) == getattr(ds, name)[2:5]
