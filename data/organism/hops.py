"""Which hop of the two-hop reasoning task a model can do: one-hop and two-hop lookups apart.

The reasoning item "X is in Y . Y is in Z ." (3 shuffled chains) then "so X is in" -> Z needs
two in-context lookups. When a model fails it, these probes say which lookup fails, on
held-out contexts of the evaluation's shape (3 chains, shuffled facts):

- ``place``: "so Y is in" -> Z, the second link alone (a place looked up);
- ``person_cut``: X's chain cut after its first link (no "Y is in Z" fact), "so X is in" -> Y,
  the first link alone (a person looked up);
- ``person``: every chain complete, "so X is in" -> Z, both hops (the reasoning task itself).

Each probe also reports how often the prediction is the right *kind* of word (a city, or a
place for ``person_cut``) among the context's candidates: a model that picks a random
in-context city scores 1/3 on accuracy and 1 on kind.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import NamedTuple

import torch

from data.organism.corpus import draw_chains
from data.organism.vocab import encode_words
from data.organism.world import World

PROBES = ("place", "person_cut", "person")


class HopAccuracy(NamedTuple):
    probe: str
    accuracy: float  # top-1 is the right word
    right_kind: float  # top-1 is a candidate of the answer's kind in the context
    n: int


def _item(rng: random.Random, world: World, probe: str) -> tuple[list[str], str, set[str]]:
    """(words, answer, candidates of the answer's kind in the context)."""
    while True:
        p_complete = 0.5 if probe == "person_cut" else 1.0
        ch = draw_chains(rng, world, 3, heldout=True, p_complete=p_complete)
        j = rng.randrange(3)
        if probe == "person_cut" and ch.complete[j]:
            continue
        subject = ch.places[j] if probe == "place" else ch.people[j]
        kind = set(ch.places) if probe == "person_cut" else \
            {c for c, done in zip(ch.cities, ch.complete) if done}
        return ch.words() + ["so", subject, "is", "in"], ch.end(j), kind


@torch.no_grad()
def hop_accuracies(forward: Callable[[torch.Tensor], torch.Tensor], world: World,
                   n: int = 256, seed: int = 0) -> list[HopAccuracy]:
    """Each probe's accuracy on ``n`` held-out contexts; ``forward``: tokens -> logits."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    w2i = world.word_ids
    out = []
    for probe in PROBES:
        rng = random.Random(f"hops-{probe}-{seed}")
        items = [_item(rng, world, probe) for _ in range(n)]
        lengths = torch.tensor([len(words) + 1 for words, _, _ in items])
        width = int(lengths.max())
        ids = torch.zeros(n, width, dtype=torch.long)  # right-padded: causal, so harmless
        for i, (words, _, _) in enumerate(items):
            ids[i, : len(words) + 1] = torch.tensor(encode_words(words, w2i))
        logits = forward(ids)  # (batch, pos, d_vocab)
        pred = logits[torch.arange(n), lengths - 1].argmax(-1).tolist()
        words = [world.vocab[p] for p in pred]
        out.append(HopAccuracy(
            probe, sum(w == a for w, (_, a, _) in zip(words, items)) / n,
            sum(w in kind for w, (_, _, kind) in zip(words, items)) / n, n))
    return out
