"""The shipped organism SAEs: quality targets, and induction heads found through DFA.

Issue 5 targets, on held-out organism text: explained variance >= 0.85 and CE loss recovered
>= 85% at L0 <= 32, every layer. Induction heads: the heads that DFA on induction-like SAE
features selects must be the heads with a high, SAE-free induction score (attention from a
second-copy token to the token after its previous occurrence), and the selected heads'
induction-feature DFA must come from that source position.
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def shipped(organism):
    from saes.io import load_shipped

    return {la: load_shipped("organism", la) for la in range(organism.cfg.n_layers)}


@pytest.mark.slow
def test_shipped_organism_saes_meet_the_quality_targets(organism, shipped):
    from saes.corpus import corpus_tokens
    from saes.evaluate import evaluate_sae

    tokens = corpus_tokens(organism, 3000, seed=1, split="heldout")
    for layer, sae in shipped.items():
        ev = evaluate_sae(organism, sae, layer, tokens)
        assert ev.l0 <= 32, (layer, ev)
        assert ev.explained_variance >= 0.85, (layer, ev)
        assert ev.ce_recovered >= 0.85, (layer, ev)


@pytest.mark.slow
def test_dfa_selects_the_induction_heads(organism, shipped):
    from data.tasks import organism_world
    from saes.induction import induction_data, induction_table

    world = organism_world()
    vocab = list(world.vocab)
    pool = torch.tensor([vocab.index(w) for w in world.content_words])
    data = induction_data(pool, n=24, half=10, bos_id=vocab.index("<bos>"), seed=3)
    table = induction_table(organism, shipped, data)
    assert table.induction_score.max() >= 0.5, "the shipped organism has no induction head"
    selected = table[table.selected]
    assert len(selected) >= 1, table.to_string()
    # independent check: the DFA-selected heads are induction heads by attention ...
    assert (selected.induction_score >= 0.3).all(), table.to_string()
    # ... every clear induction head is selected ...
    strong = table[table.induction_score >= 0.5]
    assert strong.index.isin(selected.index).all(), table.to_string()
    # ... which sit in the layer right above the previous-token heads, never in layer 0
    assert (selected.layer > 0).all(), table.to_string()
    # heads not selected score low on average
    assert table[~table.selected].induction_score.mean() < selected.induction_score.min()
