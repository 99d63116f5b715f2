"""The organism's accuracy on fresh evaluation seeds, beside the shortcut baselines.

Issue 20's acceptance check: held-out items of every task family drawn from seeds that neither
training (``data.organism.train.EVAL_SEED``) nor any tuning used, the accuracy of the model on
them, the accuracy of every shortcut rule of :mod:`data.organism.baselines` on the same items,
and the reasoning task's hop probes (:mod:`data.organism.hops`), as one tidy table:

    family, seed, measure ("model", a baseline rule, or "hop_<probe>"), accuracy, n
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd
import torch

from data.organism.baselines import baseline_accuracies
from data.organism.corpus import FAMILIES, make_items
from data.organism.evaluate import encode_items, item_accuracy
from data.organism.hops import hop_accuracies
from data.organism.world import World

COLUMNS = ["family", "seed", "measure", "accuracy", "n"]


def fresh_evaluation(forward: Callable[[torch.Tensor], torch.Tensor], world: World,
                     seeds: Sequence[int], n: int = 500) -> pd.DataFrame:
    """Model and baseline accuracy of every family on ``n`` items of each of ``seeds``."""
    if n < 1 or not seeds:
        raise ValueError(f"need n >= 1 and at least one seed, got n={n}, seeds={list(seeds)}")
    w2i = world.word_ids
    rows = []
    for seed in seeds:
        for family in FAMILIES:
            items = make_items(family, n, seed, world)
            acc = item_accuracy(forward, encode_items(items, w2i))
            rows.append((family, seed, "model", acc, n))
            rows += [(family, seed, rule, a, n)
                     for rule, a in baseline_accuracies(items, world).items()]
        rows += [("reasoning", seed, f"hop_{h.probe}", h.accuracy, h.n)
                 for h in hop_accuracies(forward, world, n=n, seed=seed)]
    return pd.DataFrame(rows, columns=COLUMNS)


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """family x measure: mean, min and max accuracy over the seeds."""
    return (table.groupby(["family", "measure"], sort=False).accuracy
            .agg(["mean", "min", "max"]).reset_index())
