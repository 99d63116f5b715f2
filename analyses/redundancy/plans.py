"""Drop plans (He et al. 2024): which components to drop, in which order.

He et al. drop the components with the lowest similarity score (:mod:`analyses.redundancy.scores`):
Attention Drop and MLP Drop rank one sublayer kind, Block Drop whole blocks, Joint Layer Drop
ranks attention and MLP sublayers together. One-shot ranks once on the full model; iterative
re-scores the pruned model (:func:`analyses.redundancy.dropping.prune`) after every drop;
random plans are the baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from analyses.redundancy.dropping import DropSet, prune
from analyses.redundancy.scores import ComponentRef, similarity_scores
from probes.models import LoadedModel

STRATEGIES = ("attn", "mlp", "block", "joint")


def check_strategy(strategy: str) -> str:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}")
    return strategy


class DropStep(NamedTuple):
    """One drop of a plan: the ``step``-th component removed and its score (NaN: random)."""

    step: int
    layer: int
    component: str  # attn | mlp | block
    score: float


@dataclass(frozen=True)
class DropPlan:
    """An ordered list of drops for one strategy and mode (one_shot | iterative | random)."""

    strategy: str
    mode: str
    steps: tuple[DropStep, ...]

    def drop_sets(self) -> list[DropSet]:
        """The cumulative DropSet after 0, 1, ..., len(steps) drops."""
        out = [DropSet()]
        for s in self.steps:
            out.append(out[-1].add(s.layer, s.component))
        return out


def candidates(cfg, strategy: str, drops: DropSet | None = None) -> list:
    """The components ``strategy`` may still drop (``ComponentRef``s; dropped ones excluded)."""
    kinds = {"attn": ("attn",), "mlp": ("mlp",), "block": ("block",),
             "joint": ("attn", "mlp")}[check_strategy(strategy)]
    has_mlp = not getattr(cfg, "attn_only", False)
    drops = drops or DropSet()
    return [ComponentRef(layer, k) for layer in range(cfg.n_layers) for k in kinds
            if (k != "mlp" or has_mlp) and not drops.is_dropped(layer, k)]


def check_max_drop(cfg, strategy: str, max_drop: int) -> int:
    """``max_drop`` if ``strategy`` can drop that many components of this model, else ValueError."""
    n = len(candidates(cfg, strategy))
    if not isinstance(max_drop, int) or max_drop < 0:
        raise ValueError(f"max_drop must be a non-negative integer, got {max_drop!r}")
    if max_drop > n:
        raise ValueError(
            f"strategy {strategy!r} can drop at most {n} components of this {cfg.n_layers}-layer "
            f"model, but max_drop={max_drop} was asked: pass --max-drop {n} or less")
    return max_drop


def default_max_drop(cfg) -> int:
    """Components to drop when no number is asked: half the model's layers (at least 1).

    He et al. prune up to half of a model's attention layers (Attention Drop) and report the
    trade-off up to there, so a curve up to half covers the range they study. Dropping every
    component instead ends the curve at a model that computes nothing, whose "speedup" only
    says how long the embedding and unembedding take.
    """
    return max(1, int(cfg.n_layers) // 2)


def one_shot_plan(scores, strategy: str, max_drop: int) -> DropPlan:
    """Rank once: the ``max_drop`` lowest-scoring candidates of the full model's ``scores``."""
    check_strategy(strategy)
    kinds = ["attn", "mlp"] if strategy == "joint" else [strategy]
    pool = scores[scores["component"].isin(kinds)].sort_values(["score", "layer"])
    if max_drop > len(pool):
        raise ValueError(f"strategy {strategy!r} has only {len(pool)} scored components, "
                         f"max_drop={max_drop} asked")
    steps = tuple(DropStep(i + 1, int(r.layer), str(r.component), float(r.score))
                  for i, r in enumerate(pool.head(max_drop).itertuples()))
    return DropPlan(strategy, "one_shot", steps)


def iterative_plan(loaded: LoadedModel, tokens, strategy: str, max_drop: int,
                   score_config=None) -> DropPlan:
    """Drop the lowest-scoring candidate, re-score the pruned model, repeat (He et al.)."""
    check_max_drop(loaded.cfg, check_strategy(strategy), max_drop)
    drops, steps = DropSet(), []
    for step in range(1, max_drop + 1):
        pool = candidates(loaded.cfg, strategy, drops)
        scores = similarity_scores(prune(loaded, drops), tokens, pool, drops, score_config)
        best = scores.sort_values(["score", "layer"]).iloc[0]
        steps.append(DropStep(step, int(best.layer), str(best.component), float(best.score)))
        drops = drops.add(int(best.layer), str(best.component))
    return DropPlan(strategy, "iterative", tuple(steps))


def random_plan(cfg, strategy: str, max_drop: int, seed: int = 0) -> DropPlan:
    """The random-drop baseline: ``max_drop`` candidates in a seeded random order."""
    check_max_drop(cfg, check_strategy(strategy), max_drop)
    pool = candidates(cfg, strategy)
    order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed)).tolist()
    steps = tuple(DropStep(i + 1, pool[j].layer, pool[j].component, float("nan"))
                  for i, j in enumerate(order[:max_drop]))
    return DropPlan(strategy, f"random_{seed}", steps)
