"""The hop probes of the reasoning task: an oracle scores 1, a city-guesser 1/3 with the right
kind, and the probes ask what their docstring says."""

from __future__ import annotations

import torch

from data.organism.hops import PROBES, hop_accuracies
from data.organism.world import make_world

WORLD = make_world(0, 300)
W2I = {w: i for i, w in enumerate(WORLD.vocab)}


def _forward(rule):
    """tokens -> logits putting all mass on rule(words) at every position."""
    def forward(ids):
        logits = torch.zeros(*ids.shape, len(WORLD.vocab))
        for b, row in enumerate(ids.tolist()):
            words = [WORLD.vocab[i] for i in row]
            for p in range(2, len(words)):
                logits[b, p, W2I[rule(words[1 : p + 1])]] = 1.0
        return logits
    return forward


def _facts(words):
    facts = {}
    for i in range(len(words) - 3):
        if words[i + 1 : i + 3] == ["is", "in"] and words[i] != "so" and \
                (i == 0 or words[i - 1] == "."):
            facts[words[i]] = words[i + 3]
    return facts


def _oracle(words):
    if len(words) < 4 or words[-4] != "so":
        return "."
    facts, end = _facts(words[:-4]), words[-3]
    while end in facts:
        end = facts[end]
    return end


def _last_city(words):
    cities = [w for w in words if w in WORLD.cities]
    return cities[-1] if cities else "."


def test_an_oracle_scores_one_on_every_probe():
    res = hop_accuracies(_forward(_oracle), WORLD, n=40)
    assert [r.probe for r in res] == list(PROBES)
    assert all(r.accuracy == 1.0 and r.right_kind == 1.0 and r.n == 40 for r in res)


def test_guessing_an_in_context_city_has_the_right_kind_at_chance_accuracy():
    res = {r.probe: r for r in hop_accuracies(_forward(_last_city), WORLD, n=150)}
    for probe in ("place", "person"):
        assert res[probe].right_kind == 1.0 and 0.15 < res[probe].accuracy < 0.5
    # the cut chain's answer is a place: a city is never right, nor of the right kind
    assert res["person_cut"].accuracy == 0.0 and res["person_cut"].right_kind == 0.0
