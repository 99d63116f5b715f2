"""The shipped organism checkpoint: it loads with its tokenizer and reaches its held-out
accuracies on a fresh sample of evaluation items (seed never used in training or shipping)."""

from __future__ import annotations

import json

import pytest
import torch

from data.organism.baselines import baseline_accuracies
from data.organism.corpus import make_items
from data.organism.load import CONFIG_FILE, PACKAGE_DIR, SHIPPED, load_organism
from data.tasks import TASKS, accuracy, load_task, logit_diff, organism_world

# Issue #4 / #20 targets (held-out top-1); see organism.json "heldout_accuracy" for reached values.
TARGETS = {"induction": 0.95, "ioi": 0.90, "recall": 0.90, "reasoning": 0.80}
FRESH_SEED = 2024


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(max(1, torch.get_num_threads()))
    return load_organism()


def test_shipped_files_are_small_and_self_describing():
    total = sum((PACKAGE_DIR / name).stat().st_size for name in SHIPPED)
    assert total <= 15 * 2**20
    config = json.loads((PACKAGE_DIR / CONFIG_FILE).read_text())
    assert config["architecture"].startswith("attnlab-organism")
    assert set(config["heldout_accuracy"]) == set(TASKS)


# Reached by the shipped checkpoint (issue 20's recipe, 10000 steps, 6 layers; see the organism
# README): every family, two-hop reasoning included.
@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_shipped_checkpoint_reaches_targets(model, task):
    ds = load_task(task, n=200, seed=FRESH_SEED)
    with torch.no_grad():
        clean = model(ds.clean_tokens)
        corrupted = model(ds.corrupted_tokens)
    assert accuracy(clean, ds) >= TARGETS[task]
    # the corruption flips the preference: clean prefers the answer, corrupted the other
    assert logit_diff(clean, ds).mean() > 0 > logit_diff(corrupted, ds).mean()


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_shipped_checkpoint_matches_its_recorded_accuracy(model, task):
    """A fresh sample reproduces organism.json's held-out accuracy (binomial noise margin)."""
    recorded = json.loads((PACKAGE_DIR / CONFIG_FILE).read_text())["heldout_accuracy"][task]
    ds = load_task(task, n=200, seed=FRESH_SEED)
    with torch.no_grad():
        acc = accuracy(model(ds.clean_tokens), ds)
    assert abs(acc - recorded) <= 0.12


@pytest.mark.slow
def test_shipped_reasoning_beats_every_shortcut(model):
    world = organism_world()
    items = make_items("reasoning", 200, FRESH_SEED, world)
    ds = load_task("reasoning", n=200, seed=FRESH_SEED)
    with torch.no_grad():
        acc = accuracy(model(ds.clean_tokens), ds)
    assert acc > max(baseline_accuracies(items, world).values()) + 0.2


def test_shipped_tokenizer_is_transformerlens_compatible(model):
    text = "when Balo and Bame went to the park , Bame gave a key to"
    tokens = model.to_tokens(text)
    assert tokens[0, 0].item() == model.tokenizer.bos_token_id
    assert model.to_string(tokens[0, 1:]) == text
    assert model.to_str_tokens(text)[1:] == text.split()


@pytest.mark.slow
def test_shipped_checkpoint_does_each_hop_of_the_reasoning_task(model):
    """The hop probes: each lookup alone and both together, far above guessing (1/3)."""
    from data.organism.hops import hop_accuracies

    with torch.no_grad():
        hops = {h.probe: h.accuracy for h in hop_accuracies(model, organism_world(), n=200,
                                                             seed=FRESH_SEED)}
    assert min(hops.values()) >= 0.8, hops
