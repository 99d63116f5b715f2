"""The whole redundancy study on one model: scores -> drop plans -> curves, speedup, heads.

``run_redundancy(loaded, RedundancyConfig(...))`` returns the four tables that
``attnlab redundancy`` writes (``redundancy``, ``drop_curve``, ``speedup``, ``head_importance``)
and the He et al. comparison for the manifest. Calibration data: the organism's held-out
corpus rows, or the built-in standalone sentences for an encoder.

    result = run_redundancy(load_model("minilm"), RedundancyConfig(strategies=("attn",),
                                                                   max_drop=3))
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import NamedTuple

import pandas as pd
from tqdm.auto import tqdm

from analyses.redundancy.evaluation import DropEvalConfig, drop_curve, make_evaluator, speed_table
from analyses.redundancy.plans import (
    STRATEGIES,
    DropPlan,
    candidates,
    check_max_drop,
    iterative_plan,
    one_shot_plan,
    random_plan,
)
from analyses.redundancy.scores import HeComparison, ScoreConfig, he_comparison, similarity_scores
from probes.models import LoadedModel
from probes.tokens import Tokens, tokenize
from saes.corpus import organism_tokens

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RedundancyConfig:
    """One redundancy study."""

    strategies: tuple[str, ...] = ("joint",)  # drop strategies to run (attn|mlp|block|joint)
    max_drop: int | None = None  # components to drop per strategy (None: all it can)
    iterative: bool = False  # also run the iterative (re-scored) plan beside the one-shot one
    heads: bool = False  # also compute per-head importance
    timing_prompts: int = 32  # prompts in the timing set
    head_items: int = 32  # organism task items per task for head importance
    head_sentences: int = 16  # encoder paraphrase sentences for head importance (2/head/run)
    eval: DropEvalConfig = DropEvalConfig()  # evaluation set sizes, timing repeats, seeds
    score: ScoreConfig = ScoreConfig()  # calibration batch size

    def __post_init__(self) -> None:
        bad = [s for s in self.strategies if s not in STRATEGIES]
        if bad or not self.strategies:
            raise ValueError(f"unknown strategy {bad or '(none)'}: choose from {STRATEGIES}")
        if self.max_drop is not None and self.max_drop < 0:
            raise ValueError(f"max_drop must be >= 0, got {self.max_drop}")
        if self.timing_prompts < 1 or self.head_items < 2 or self.head_sentences < 4:
            raise ValueError("timing_prompts must be >= 1, head_items >= 2, head_sentences >= 4")


    def drop_counts(self, cfg) -> dict[str, int]:
        """Components to drop per strategy for a model config; ValueError if too many."""
        return {s: check_max_drop(cfg, s, len(candidates(cfg, s)) if self.max_drop is None
                                  else self.max_drop) for s in self.strategies}


class RedundancyResult(NamedTuple):
    """The tables of one study and its He et al. comparison."""

    redundancy: pd.DataFrame  # schema `redundancy` (+ definition, mean_cos, n_tokens)
    drop_curve: pd.DataFrame  # schema `drop_curve`
    speedup: pd.DataFrame  # schema `speedup`
    head_importance: pd.DataFrame | None  # schema `head_importance` (None unless heads)
    head_correlations: pd.DataFrame | None  # Spearman between methods, per task
    comparison: HeComparison  # on the unit-definition scores
    plans: list[DropPlan]  # the score-based plans, in run order


def sort_by_length(tokens: Tokens) -> Tokens:
    """Rows reordered by length (less padding per batch); metrics are order-invariant."""
    order = tokens.lengths.argsort(descending=True, stable=True)
    return Tokens(tokens.ids[order], tokens.attention_mask[order], tokens.lengths[order],
                  [tokens.str_tokens[i] for i in order.tolist()])


def calibration_tokens(loaded: LoadedModel, config: RedundancyConfig) -> Tokens:
    """The calibration set: organism corpus rows, or the standalone built-in sentences."""
    if loaded.kind == "encoder":
        from data.sentences import standalone_sentences

        return sort_by_length(tokenize(loaded, standalone_sentences()))
    if loaded.name != "organism":
        raise ValueError(f"the redundancy study evaluates 'organism' or an encoder such as "
                         f"'minilm', not {loaded.name!r}")
    return organism_tokens("calibration", config.eval.seed, n_rows=config.eval.n_lm_rows)


def _scores(loaded: LoadedModel, calib: Tokens, config: RedundancyConfig) -> pd.DataFrame:
    frames = [similarity_scores(loaded, calib, config=config.score).assign(definition="unit")]
    if loaded.kind == "encoder":  # He et al.'s literal pre-LN sum, for comparison only
        alt = ScoreConfig(config.score.batch_size, definition="residual_sum")
        frames.append(similarity_scores(loaded, calib, config=alt).assign(
            definition="residual_sum"))
    return pd.concat(frames, ignore_index=True)


def _plans(loaded, calib, unit, strategy: str, n: int, config) -> list[DropPlan]:
    plans = [one_shot_plan(unit, strategy, n)]
    if config.iterative:
        plans.append(iterative_plan(loaded, calib, strategy, n, config.score))
    return plans


def _heads(loaded: LoadedModel, config: RedundancyConfig):
    from analyses.causal.head_importance import (
        head_importance,
        organism_head_task,
        paraphrase_head_task,
        rank_correlations,
    )

    if loaded.kind == "encoder":
        import torch

        from data.sentences import paraphrase_groups

        members = [(s, g) for g, grp in enumerate(paraphrase_groups()) for s in grp]
        members = members[: config.head_sentences]
        tokens = tokenize(loaded, [s for s, _ in members])
        tasks = [paraphrase_head_task(loaded, tokens, torch.tensor([g for _, g in members]))]
    else:
        from data.tasks import load_task

        tasks = [organism_head_task(loaded, load_task(t, config.head_items, config.eval.seed))
                 for t in config.eval.tasks]
    table = pd.concat([head_importance(loaded, t) for t in tqdm(tasks, desc="heads")],
                      ignore_index=True)
    return table, rank_correlations(table)


def run_redundancy(loaded: LoadedModel, config: RedundancyConfig) -> RedundancyResult:
    """Scores, drop curves (score-based + random baseline), speedup and optional heads."""
    sizes = config.drop_counts(loaded.cfg)
    calib = calibration_tokens(loaded, config)
    scores = _scores(loaded, calib, config)
    unit = scores[scores.definition == "unit"]
    evaluate = make_evaluator(loaded, config.eval)
    curves, speeds, plans = [], [], []
    timing = evaluate.timing_tokens
    timing = Tokens(*(x[: config.timing_prompts] for x in timing))
    for strategy, n in sizes.items():
        for plan in _plans(loaded, calib, unit, strategy, n, config):
            logger.info("plan %s/%s: %s", strategy, plan.mode, plan.steps)
            plans.append(plan)
            curves.append(drop_curve(loaded, plan, evaluate))
            speeds.append(speed_table(loaded, plan, timing, config.eval.timing_repeats,
                                      config.eval.batch_size))
        for seed in config.eval.random_seeds:
            rnd = random_plan(loaded.cfg, strategy, n, seed)
            curves.append(drop_curve(loaded, rnd, evaluate, seed=seed).assign(mode="random"))
    heads, corr = _heads(loaded, config) if config.heads else (None, None)
    return RedundancyResult(scores, pd.concat(curves, ignore_index=True),
                            pd.concat(speeds, ignore_index=True), heads, corr,
                            he_comparison(unit), plans)


def write_run(run, result: RedundancyResult, figures: bool = True) -> None:
    """Write ``result`` into an open run: its tables, the He et al. comparison and the drop
    plans in the manifest, and ``redundancy.html`` unless ``figures`` is False."""
    from dataclasses import asdict

    from data.store import atomic_write_text

    run.write_table("redundancy", result.redundancy)
    run.write_table("drop_curve", result.drop_curve)
    run.write_table("speedup", result.speedup)
    if result.head_importance is not None:
        run.write_table("head_importance", result.head_importance)
        run.write_table("head_importance_corr", result.head_correlations)
    run.update_manifest(
        he_comparison=asdict(result.comparison),
        plans=[{"strategy": p.strategy, "mode": p.mode,
                "order": [f"{s.component}{s.layer}" for s in p.steps]} for p in result.plans])
    if figures:
        from analyses.reports.redundancy import report_html

        atomic_write_text(run.path / "redundancy.html", report_html(result))
