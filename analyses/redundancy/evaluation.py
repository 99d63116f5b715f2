"""What dropping costs and saves: task metrics and measured wall-time after each drop.

Evaluators (one per model kind) turn a (possibly pruned) model into a tidy ``metric, value``
table:

- organism (decoder): ``lm_loss`` (next-token cross-entropy on a held-out corpus batch) and
  ``acc_<task>`` (top-1 accuracy on held-out items of induction / ioi / recall / reasoning),
  plus ``acc_mean``;
- MiniLM (encoder): ``embedding_cos`` (mean cosine between each built-in sentence's pooled
  embedding and the full model's), ``nn_agreement`` (fraction of sentences whose nearest
  neighbour among the built-in sentences is unchanged) and ``paraphrase_top1`` (fraction of
  paraphrase-group sentences whose nearest neighbour is from their own group).

:func:`drop_curve` evaluates a :class:`~analyses.redundancy.plans.DropPlan` after 0, 1, ...
drops;
:func:`measure_speed` times the full and the pruned forward on the same inputs, interleaved,
several repeats, and reports the medians.

Calibration sets (for the scores) are kept apart from the evaluation sets where the data allow:
organism scores use the held-out corpus split "calibration" and the LM loss the split "eval"
(``data.organism.heldout``); MiniLM scores use the standalone built-in sentences, while
retrieval is measured on all built-in sentences.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import pandas as pd
import torch

from analyses.redundancy.dropping import prune
from analyses.redundancy.plans import DropPlan
from data.metrics import next_token_nll
from probes.models import LoadedModel
from probes.tokens import Tokens, batches, forward, pool_embedding, tokenize
from saes.corpus import organism_tokens

ORGANISM_TASKS = ("induction", "ioi", "recall", "reasoning")


@dataclass(frozen=True)
class DropEvalConfig:
    """Sizes of the evaluation and timing sets."""

    n_items: int = 64  # held-out items per organism task
    n_lm_rows: int = 64  # corpus rows for the organism's LM loss (and for its calibration)
    tasks: tuple[str, ...] = ORGANISM_TASKS  # organism tasks to evaluate
    batch_size: int = 64  # prompts per forward pass
    timing_repeats: int = 7  # timed forward passes per model (median reported)
    random_seeds: tuple[int, ...] = (0, 1, 2)  # seeds of the random-drop baseline
    n_sentences: int | None = None  # encoder eval sentences (None: all built-in ones)
    seed: int = 0  # seed of the task items and corpus batches

    def __post_init__(self) -> None:
        if self.n_sentences is not None and self.n_sentences < 4:
            raise ValueError(f"n_sentences must be >= 4 (or None for all), got {self.n_sentences}")
        for name in ("n_items", "n_lm_rows", "batch_size", "timing_repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        bad = [t for t in self.tasks if t not in ORGANISM_TASKS]
        if bad:
            raise ValueError(f"unknown organism task(s) {bad}: use {ORGANISM_TASKS}")


def _rows(metrics: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame({"metric": list(metrics), "value": [float(v) for v in metrics.values()]})


# ----------------------------------------------------------------------------- organism


@torch.no_grad()
def lm_loss(loaded: LoadedModel, tokens: Tokens, batch_size: int) -> float:
    """Mean next-token cross-entropy over real targets (``data.metrics.next_token_nll``)."""
    total, count = 0.0, 0
    for b in batches(tokens, batch_size):
        nll = next_token_nll(forward(loaded, b), b.ids, b.attention_mask)
        total += float(nll.total)
        count += nll.count
    return total / count


class OrganismEval:
    """LM loss + per-task accuracy of a causal LM on the organism's held-out data."""

    def __init__(self, config: DropEvalConfig) -> None:
        from data.tasks import load_task

        self.config = config
        self.lm_tokens = organism_tokens("eval", config.seed, n_rows=config.n_lm_rows)
        self.datasets = [load_task(t, config.n_items, config.seed) for t in config.tasks]

    @property
    def timing_tokens(self) -> Tokens:
        return self.lm_tokens

    @torch.no_grad()
    def __call__(self, loaded: LoadedModel) -> pd.DataFrame:
        from data.tasks import accuracy

        out = {"lm_loss": lm_loss(loaded, self.lm_tokens, self.config.batch_size)}
        for ds in self.datasets:
            logits = loaded.model(ds.clean_tokens.to(loaded.cfg.device))  # (batch, pos, d_vocab)
            out[f"acc_{ds.name}"] = accuracy(logits, ds)
        out["acc_mean"] = sum(out[f"acc_{ds.name}"] for ds in self.datasets) / len(self.datasets)
        return _rows(out)


# ----------------------------------------------------------------------------- encoder


def embeddings(loaded: LoadedModel, tokens: Tokens, batch_size: int) -> torch.Tensor:
    """Pooled, normalised sentence embeddings (prompt, d_model) in fp32."""
    out = [pool_embedding(forward(loaded, b).float(), b.attention_mask.to(loaded.cfg.device))
           for b in batches(tokens, batch_size)]
    return torch.cat(out).cpu()


def nearest_neighbours(emb: torch.Tensor) -> torch.Tensor:
    """(prompt,) index of each row's most cosine-similar other row (rows are unit vectors)."""
    sim = emb @ emb.T  # (prompt, prompt)
    sim.fill_diagonal_(-torch.inf)
    return sim.argmax(-1)


def default_sentences(n: int | None) -> tuple[list[str], list[list[str]]]:
    """Built-in sentences (whole paraphrase groups first, then standalone), at most ``n``."""
    from data.sentences import paraphrase_groups, standalone_sentences

    groups, out = [], []
    for g in paraphrase_groups():
        if n is not None and len(out) + len(g) > n:
            break
        groups.append(g)
        out += g
    out += standalone_sentences()
    return (out if n is None else out[:n]), groups


class EncoderEval:
    """Embedding fidelity and retrieval of a sentence encoder vs the full model."""

    def __init__(self, full: LoadedModel, config: DropEvalConfig,
                 sentences: list[str] | None = None,
                 groups: list[list[str]] | None = None) -> None:
        self.config = config
        if sentences is None:
            sentences, groups = default_sentences(config.n_sentences)
        groups = groups or []
        self.tokens = tokenize(full, sentences)
        gid = {s: g for g, members in enumerate(groups) for s in members}
        self.group = torch.tensor([gid.get(s, -1) for s in sentences])  # (prompt,) -1: no group
        with torch.no_grad():
            self.full_emb = embeddings(full, self.tokens, config.batch_size)
        self.full_nn = nearest_neighbours(self.full_emb)

    @property
    def timing_tokens(self) -> Tokens:
        return self.tokens

    @torch.no_grad()
    def __call__(self, loaded: LoadedModel) -> pd.DataFrame:
        emb = embeddings(loaded, self.tokens, self.config.batch_size)
        nn = nearest_neighbours(emb)
        in_group = self.group >= 0
        return _rows({
            "embedding_cos": float((emb * self.full_emb).sum(-1).mean()),
            "nn_agreement": float((nn == self.full_nn).float().mean()),
            "paraphrase_top1": float((self.group[nn] == self.group)[in_group].float().mean()),
        })


def make_evaluator(loaded: LoadedModel, config: DropEvalConfig):
    """The evaluator for ``loaded``'s kind: OrganismEval (decoder) or EncoderEval (encoder)."""
    return EncoderEval(loaded, config) if loaded.kind == "encoder" else OrganismEval(config)


# ----------------------------------------------------------------------------- curves, speed


def drop_curve(loaded: LoadedModel, plan: DropPlan, evaluate, seed: int = -1) -> pd.DataFrame:
    """Metrics after 0..len(plan.steps) drops of ``plan``: one row per (n_dropped, metric)."""
    frames = []
    for n, drops in enumerate(plan.drop_sets()):
        metrics = evaluate(prune(loaded, drops))
        last = plan.steps[n - 1] if n else None
        frames.append(metrics.assign(
            strategy=plan.strategy, mode=plan.mode, seed=seed, n_dropped=n,
            last_dropped=f"{last.component}{last.layer}" if last else "",
            dropped=",".join(f"{s.component}{s.layer}" for s in plan.steps[:n])))
    cols = ["strategy", "mode", "seed", "n_dropped", "last_dropped", "dropped", "metric", "value"]
    return pd.concat(frames, ignore_index=True)[cols]


class SpeedResult(NamedTuple):
    """Median wall time (ms) of one forward pass over the timing set, full vs pruned."""

    full_ms: float
    pruned_ms: float
    speedup: float  # full_ms / pruned_ms
    full_min_ms: float  # fastest full forward: robust to other processes on a shared CPU
    pruned_min_ms: float
    speedup_min: float  # full_min_ms / pruned_min_ms
    repeats: int
    n_tokens: int


def _sync(loaded: LoadedModel) -> None:
    if str(loaded.cfg.device).startswith("cuda"):
        torch.cuda.synchronize()


@dataclass
class _Timer:
    times: list[float] = field(default_factory=list)

    def run(self, loaded: LoadedModel, tokens: Tokens, batch_size: int) -> None:
        _sync(loaded)
        start = time.perf_counter()
        for b in batches(tokens, batch_size):
            forward(loaded, b)
        _sync(loaded)
        self.times.append(time.perf_counter() - start)


@torch.inference_mode()
def measure_speed(full: LoadedModel, pruned: LoadedModel, tokens: Tokens, repeats: int,
                  batch_size: int = 64) -> SpeedResult:
    """Time ``full`` and ``pruned`` on the same ``tokens``, interleaved, after one warm-up."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    t_full, t_pruned = _Timer(), _Timer()
    _Timer().run(full, tokens, batch_size)
    _Timer().run(pruned, tokens, batch_size)
    for _ in range(repeats):
        t_full.run(full, tokens, batch_size)
        t_pruned.run(pruned, tokens, batch_size)
    f_ms = 1e3 * statistics.median(t_full.times)
    p_ms = 1e3 * statistics.median(t_pruned.times)
    f_min, p_min = 1e3 * min(t_full.times), 1e3 * min(t_pruned.times)
    return SpeedResult(f_ms, p_ms, f_ms / p_ms, f_min, p_min, f_min / p_min, repeats,
                       int(tokens.attention_mask.sum()))


def speed_table(loaded: LoadedModel, plan: DropPlan, tokens: Tokens, repeats: int,
                batch_size: int = 64) -> pd.DataFrame:
    """Measured speedup after each number of drops of ``plan`` (one row per n_dropped)."""
    rows = []
    for n, drops in enumerate(plan.drop_sets()):
        res = measure_speed(loaded, prune(loaded, drops), tokens, repeats, batch_size)
        rows.append({"strategy": plan.strategy, "mode": plan.mode, "n_dropped": n,
                     **res._asdict()})
    return pd.DataFrame(rows)
