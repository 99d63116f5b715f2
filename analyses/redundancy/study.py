"""The whole redundancy study on one model: scores -> drop plans -> curves, speedup, heads.

``run_redundancy(loaded, RedundancyConfig(...))`` returns the four tables that
``attnlab redundancy`` writes (``redundancy``, ``drop_curve``, ``speedup``, ``head_importance``)
and the He et al. comparison for the manifest. Calibration data: the organism's held-out
corpus rows, or the built-in standalone sentences for an encoder and for a real-text causal LM
(SmolLM2, whose LM loss is then measured on the other built-in sentences:
:func:`analyses.redundancy.evaluation.text_split`).

    result = run_redundancy(load_model("minilm"), RedundancyConfig(strategies=("attn",),
                                                                   max_drop=3))
    result = run_redundancy(load_model("smollm2"), default_config("smollm2"))

Under torchrun (``attnlab redundancy --nproc N``) the similarity scores, LM losses, task
accuracies and encoder embeddings shard their prompts over the ranks and add the ranks' sums
and counts (gather the embeddings), so every rank gets the one-process scores, plans and drop
curves (up to float rounding). The speedup is timed on rank 0 alone (the others go on to the
next evaluation and wait there), so its wall times are one process's on a machine where the
other ranks may be busy; its ``speedup`` table is empty on the other ranks. Head importance
is not sharded (every rank computes it whole).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, NamedTuple

import pandas as pd
from tqdm.auto import tqdm

from analyses.redundancy.evaluation import (
    DropEvalConfig,
    MemoEval,
    curve_points,
    drop_curve,
    make_evaluator,
    sort_by_length,
    speed_table,
    text_split,
)
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
from probes.distributed import rank_info
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
    eval_every: int = 1  # evaluate the drop curves after 0, k, 2k, ... (and the last) drops
    time_last_only: bool = False  # time only the last drop count of each plan, not every point
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
        if self.eval_every < 1:
            raise ValueError(f"eval_every must be >= 1, got {self.eval_every}")

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
    setup: dict[str, Any] | None = None  # what ran on which data (manifest, report)


#: SmolLM2-135M (30 layers) on a shared CPU: a study of about 5 CPU-minutes (1 torch thread).
#: One-shot plans for attention, MLP and joint drops with one random plan each, 8 of 30 (60
#: joint) components, curves evaluated after every 2nd drop (each evaluation: 48 held-out
#: sentences and 24 items of each of 3 tasks, ~1900 tokens, ~10 s), the speedup timed after
#: the last drop only. Each further random seed adds ~12 evaluations (~2 CPU-minutes).
SMOLLM2_CONFIG = RedundancyConfig(
    strategies=("attn", "mlp", "joint"), max_drop=8, eval_every=2, time_last_only=True,
    timing_prompts=16,
    eval=DropEvalConfig(n_items=24, n_sentences=48, timing_repeats=5, random_seeds=(0,)))


def default_config(model: str) -> RedundancyConfig:
    """The study ``attnlab redundancy --model <model>`` runs when no size is given."""
    return SMOLLM2_CONFIG if model == "smollm2" else RedundancyConfig()


def calibration_tokens(loaded: LoadedModel, config: RedundancyConfig) -> Tokens:
    """The calibration set: organism corpus rows, or the standalone built-in sentences (an
    encoder, or a causal LM with real-text tasks such as SmolLM2)."""
    if loaded.name != "organism":  # an encoder, or a causal LM with real-text tasks
        return sort_by_length(tokenize(loaded, text_split()[0]))
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
        from analyses.redundancy.evaluation import task_datasets

        sizes = dataclasses.replace(config.eval, n_items=config.head_items)
        tasks = [organism_head_task(loaded, ds) for ds in task_datasets(loaded.name, sizes)]
    table = pd.concat([head_importance(loaded, t) for t in tqdm(tasks, desc="heads")],
                      ignore_index=True)
    return table, rank_correlations(table)


def describe(loaded: LoadedModel, config: RedundancyConfig, calib: Tokens, evaluate,
             timing: Tokens) -> dict[str, Any]:
    """What the study ran on: model, calibration and evaluation data, schedule (manifest)."""
    out: dict[str, Any] = {
        "model": loaded.name, "n_layers": loaded.cfg.n_layers,
        "strategies": list(config.strategies), "max_drop": config.max_drop,
        "iterative": config.iterative, "eval_every": config.eval_every,
        "time_last_only": config.time_last_only, "timing_prompts": int(timing.ids.shape[0]),
        "timing_tokens": int(timing.attention_mask.sum()),
        "timing_repeats": config.eval.timing_repeats,
        "random_seeds": list(config.eval.random_seeds),
        "calibration_prompts": int(calib.ids.shape[0]),
        "calibration_tokens": int(calib.attention_mask.sum())}
    if loaded.name == "smollm2":
        from data.smollm2 import GGUF_FILE

        out["model_note"] = (f"SmolLM2-135M-Instruct in the Q4_1 quantisation ({GGUF_FILE}), "
                             "dequantised to fp32")
    if hasattr(evaluate, "datasets"):  # a causal LM: held-out LM loss and task items
        lm = evaluate.lm_tokens
        out.update(
            calibration_text="built-in standalone sentences" if loaded.name != "organism"
            else "organism corpus split 'calibration'",
            lm_loss_text="built-in paraphrase-group sentences held out of calibration"
            if loaded.name != "organism" else "organism corpus split 'eval'",
            lm_loss_prompts=int(lm.ids.shape[0]), lm_loss_tokens=int(lm.attention_mask.sum()),
            tasks=[ds.name for ds in evaluate.datasets], n_items=config.eval.n_items)
    return out


def _timing_tokens(evaluate, config: RedundancyConfig) -> Tokens:
    return Tokens(*(x[: config.timing_prompts] for x in evaluate.timing_tokens))


def run_redundancy(loaded: LoadedModel, config: RedundancyConfig) -> RedundancyResult:
    """Scores, drop curves (score-based + random baseline), speedup and optional heads."""
    sizes = config.drop_counts(loaded.cfg)
    evaluate = MemoEval(make_evaluator(loaded, config.eval))  # a model without tasks: fail now
    calib = calibration_tokens(loaded, config)
    scores = _scores(loaded, calib, config)
    unit = scores[scores.definition == "unit"]
    curves, speeds, plans = [], [], []
    timing = _timing_tokens(evaluate, config)
    for strategy, n in sizes.items():
        points = curve_points(n, config.eval_every)
        timed = [n] if config.time_last_only else points
        for plan in _plans(loaded, calib, unit, strategy, n, config):
            logger.info("plan %s/%s: %s", strategy, plan.mode, plan.steps)
            plans.append(plan)
            curves.append(drop_curve(loaded, plan, evaluate, points=points))
            if rank_info().is_main:  # timing: rank 0 alone (see the module docstring)
                speeds.append(speed_table(loaded, plan, timing, config.eval.timing_repeats,
                                          config.eval.batch_size, points=timed))
        for seed in config.eval.random_seeds:
            rnd = random_plan(loaded.cfg, strategy, n, seed)
            curves.append(drop_curve(loaded, rnd, evaluate, seed=seed, points=points)
                          .assign(mode="random"))
    heads, corr = _heads(loaded, config) if config.heads else (None, None)
    return RedundancyResult(scores, pd.concat(curves, ignore_index=True),
                            pd.concat(speeds, ignore_index=True) if speeds else
                            pd.DataFrame(), heads, corr,
                            he_comparison(unit), plans,
                            describe(loaded, config, calib, evaluate.evaluate, timing))


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
        setup=result.setup,
        he_comparison=asdict(result.comparison),
        plans=[{"strategy": p.strategy, "mode": p.mode,
                "order": [f"{s.component}{s.layer}" for s in p.steps]} for p in result.plans])
    if figures:
        from analyses.reports.redundancy import report_html

        atomic_write_text(run.path / "redundancy.html", report_html(result))
