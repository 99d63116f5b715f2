"""Selective impairment: ablate the heads one task needs and see which tasks break.

In the spirit of "Disentangling Recall and Reasoning in Transformer Models through Layer-wise
Attention and Activation Analysis" (2025): find the heads most important for ``recall`` and
for ``reasoning`` by activation patching (each head's output z, denoising, normalised logit
difference), ablate each head set, and report the accuracy drop on every task family, next to
random head sets of the same size (the baseline a selective effect must beat).

    >>> res = selective_impairment(model, datasets, references, ImpairmentConfig(k=3))
    >>> res.table   # task x ablated_set: accuracy, ablated accuracy, drop (and random std)

The two families are configurable (``source_tasks``): a model that does not do ``reasoning``
(SmolLM2, :mod:`analyses.causal.task_sets`) contrasts recall with another in-context family.
On a large model the exact z sweeps cost ``n_layers * n_heads`` passes over the pairs, so
``n_patch`` chooses the heads on the first ``n_patch`` pairs only (accuracies still use all
items), and a sweep already run on the same pairs can be passed in (``sweeps``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import pandas as pd

from analyses.causal.ablation import AblationConfig, ablated_forward, heads, replacement_values
from analyses.causal.patching import PatchingConfig, pair_from_task, patch
from probes.models import unwrap


@dataclass(frozen=True)
class ImpairmentConfig:
    source_tasks: tuple[str, ...] = ("recall", "reasoning")  # tasks whose top heads are ablated
    k: int = 3  # heads per ablated set
    n_random: int = 5  # random head sets of size k for the baseline
    ablation: str = "mean"  # zero | mean | resample
    seed: int = 0  # random head sets
    n_patch: int | None = None  # pairs of each source task the z sweep runs on (None = all)

    def __post_init__(self) -> None:
        if self.k < 1 or self.n_random < 0:
            raise ValueError(f"k must be >= 1 and n_random >= 0, got {self.k}, {self.n_random}")
        if self.n_patch is not None and self.n_patch < 1:
            raise ValueError(f"n_patch must be >= 1 or None, got {self.n_patch}")
        AblationConfig(self.ablation)  # validates the method name


class ImpairmentResult(NamedTuple):
    table: pd.DataFrame  # task, ablated_set, k, accuracy, accuracy_ablated, drop, drop_std, heads
    head_sets: dict[str, list[tuple[int, int]]]  # ablated set name -> (layer, head) list
    patching: pd.DataFrame  # the z sweeps that chose the sets (schema `patching`)


def top_heads(table: pd.DataFrame, k: int) -> list[tuple[int, int]]:
    """The k heads with the largest normalised effect in a z `patching` table."""
    z = table[(table.component == "z") & (table.position == -1)]
    best = z.sort_values("normalized_effect", ascending=False).head(k)
    return [(int(r.layer), int(r.head)) for r in best.itertuples()]


def random_head_sets(n_layers: int, n_heads: int, k: int, n: int, seed: int):
    rng = random.Random(seed)
    every = [(la, h) for la in range(n_layers) for h in range(n_heads)]
    return [sorted(rng.sample(every, k)) for _ in range(n)]


def selective_impairment(model, datasets: Mapping, references: Mapping,
                         config: ImpairmentConfig, accuracy: Callable | None = None,
                         metric: Callable | None = None, sweeps: Mapping | None = None):
    """Patching-chosen head sets of ``config.source_tasks``, ablated on every dataset.

    ``datasets``/``references``: task name -> TaskDataset (evaluation items / the reference
    prompts of mean and resample ablation). ``accuracy(logits, dataset)`` and the patching
    metric ``metric(logits, dataset)`` default to ``data.tasks.accuracy`` / ``logit_diff``.
    ``sweeps``: task name -> a z denoising `patching` table already run on that task's first
    ``config.n_patch`` pairs (all pairs when None), used instead of running it again.
    """
    if accuracy is None:
        from data.tasks import accuracy
    model = unwrap(model)
    missing = [t for t in config.source_tasks if t not in datasets]
    if missing:
        raise ValueError(f"no dataset for source tasks {missing}: pass them in datasets")
    given = dict(sweeps or {})
    sweeps = [given[t] if t in given else
              patch(model, _pair(first_items(datasets[t], config.n_patch), metric),
                    PatchingConfig("z")).table
              for t in config.source_tasks]
    head_sets = {f"top_{t}": top_heads(s, config.k) for t, s in zip(config.source_tasks, sweeps)}
    randoms = random_head_sets(model.cfg.n_layers, model.cfg.n_heads, config.k,
                               config.n_random, config.seed)
    ablation = AblationConfig(config.ablation, seed=config.seed)
    every = heads(sorted({h for s in [*head_sets.values(), *randoms] for h in s}))
    rows = []
    for task, ds in datasets.items():
        base = accuracy(model(ds.clean_tokens.to(model.cfg.device)), ds)
        # the reference prompts run once per task: every set's values are read from them
        values = replacement_values(model, every, ablation, *ds.clean_tokens.shape,
                                    references[task].clean_tokens)

        def acc(pairs, ds=ds, values=values):
            return accuracy(ablated_forward(model, ds.clean_tokens, heads(pairs), ablation,
                                            values=values), ds)

        for name, pairs in head_sets.items():
            a = acc(pairs)
            rows.append((task, name, config.k, base, a, base - a, 0.0, _label(heads(pairs))))
        if randoms:
            accs = pd.Series([acc(p) for p in randoms])
            rows.append((task, f"random_{config.k}", config.k, base, accs.mean(),
                         base - accs.mean(), float(accs.std(ddof=0)), f"{len(randoms)} sets"))
    cols = ["task", "ablated_set", "k", "accuracy", "accuracy_ablated", "drop", "drop_std",
            "heads"]
    return ImpairmentResult(pd.DataFrame(rows, columns=cols), head_sets,
                            pd.concat(sweeps, ignore_index=True))


def ablation_accuracy(model, datasets: Mapping, references: Mapping, components,
                      ablation: AblationConfig, name: str = "custom",
                      accuracy: Callable | None = None) -> pd.DataFrame:
    """One ablated component set on every dataset: the `impairment` table's rows."""
    if accuracy is None:
        from data.tasks import accuracy
    model = unwrap(model)
    label = _label(components)
    rows = []
    for task, ds in datasets.items():
        base = accuracy(model(ds.clean_tokens.to(model.cfg.device)), ds)
        logits = ablated_forward(model, ds.clean_tokens, components, ablation,
                                 references[task].clean_tokens)
        a = accuracy(logits, ds)
        rows.append((task, name, len(components), base, a, base - a, 0.0, label))
    return pd.DataFrame(rows, columns=["task", "ablated_set", "k", "accuracy",
                                       "accuracy_ablated", "drop", "drop_std", "heads"])


def first_items(dataset, n: int | None):
    """The first ``n`` items of a ``data.tasks.TaskDataset`` (all of them when n is None)."""
    if n is None or n >= len(dataset):
        return dataset
    return dataset.rows(slice(0, n))


def _pair(ds, metric):
    return pair_from_task(ds, None if metric is None else (lambda logits: metric(logits, ds)))


def _label(components) -> str:
    """``L0H1 mlp0``: the components' labels (Component.label, data.notation)."""
    return " ".join(c.label() for c in components)
