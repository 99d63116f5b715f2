"""What dropping costs and saves: task metrics and measured wall-time after each drop.

Evaluators (one per model kind) turn a (possibly pruned) model into a tidy ``metric, value``
table:

- causal LMs (:class:`CausalLMEval`): ``lm_loss`` (next-token cross-entropy on held-out text)
  and ``acc_<task>`` (top-1 accuracy on task items, :func:`data.tasks.load_task`), plus
  ``acc_mean``. The organism (:class:`OrganismEval`) reads a held-out corpus batch and its four
  tasks; a real-text LM such as SmolLM2 (:class:`TextLMEval`) reads the built-in sentences held
  out of calibration (:func:`text_split`) and the tasks it actually does
  (:func:`data.tasks.default_tasks`);
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
retrieval is measured on all built-in sentences; a real-text causal LM's scores use the same
standalone sentences as MiniLM's and its LM loss the paraphrase-group sentences, which
calibration never sees (:func:`text_split`; the two sets share no sentence).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import pandas as pd
import torch

from analyses.redundancy.dropping import DropSet, prune
from analyses.redundancy.plans import DropPlan
from data.metrics import next_token_nll
from probes.distributed import all_gather, shard_tokens, sum_over_ranks
from probes.models import LoadedModel
from probes.tokens import Tokens, batches, forward, pool_embedding, tokenize
from saes.corpus import organism_tokens

ORGANISM_TASKS = ("induction", "ioi", "recall", "reasoning")  # every causal model's task names


@dataclass(frozen=True)
class DropEvalConfig:
    """Sizes of the evaluation and timing sets."""

    n_items: int = 64  # held-out items per organism task
    n_lm_rows: int = 64  # corpus rows for the organism's LM loss (and for its calibration)
    tasks: tuple[str, ...] | None = None  # causal-LM tasks (None: the model's default tasks)
    batch_size: int = 64  # prompts per forward pass
    timing_repeats: int = 7  # timed forward passes per model (median reported)
    random_seeds: tuple[int, ...] = (0, 1, 2)  # seeds of the random-drop baseline
    n_sentences: int | None = None  # encoder eval / text-LM held-out sentences (None: all)
    seed: int = 0  # seed of the task items and corpus batches

    def __post_init__(self) -> None:
        if self.n_sentences is not None and self.n_sentences < 4:
            raise ValueError(f"n_sentences must be >= 4 (or None for all), got {self.n_sentences}")
        for name in ("n_items", "n_lm_rows", "batch_size", "timing_repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        bad = [t for t in self.tasks or () if t not in ORGANISM_TASKS]
        if bad:
            raise ValueError(f"unknown task(s) {bad}: use {ORGANISM_TASKS}")


def _rows(metrics: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame({"metric": list(metrics), "value": [float(v) for v in metrics.values()]})


# ----------------------------------------------------------------------------- causal LMs


@torch.no_grad()
def lm_loss(loaded: LoadedModel, tokens: Tokens, batch_size: int) -> float:
    """Mean next-token cross-entropy over real targets (``data.metrics.next_token_nll``).

    Under torchrun each rank runs its block of the prompts; the sums and counts are added."""
    total, count = 0.0, 0
    for b in batches(shard_tokens(tokens), batch_size):
        nll = next_token_nll(forward(loaded, b), b.ids, b.attention_mask)
        total += float(nll.total)
        count += nll.count
    total, count = sum_over_ranks((total, count))
    return total / count


def task_accuracy(loaded: LoadedModel, dataset) -> float:
    """Top-1 accuracy on a task's items (under torchrun: each rank scores its block of the
    items and the correct counts are added)."""
    from analyses.causal.distributed import shard_task
    from data.tasks import accuracy

    part = shard_task(dataset)
    correct, n = sum_over_ranks((round(accuracy(scored_logits(loaded, part), part)
                                       * len(part)), len(part)))
    return correct / n


@torch.no_grad()
def scored_logits(loaded: LoadedModel, dataset) -> torch.Tensor:
    """(batch, d_vocab) logits at each task item's scored position, the only position unembedded.

    Why: SmolLM2's unembedding (49152 tokens) is about a fifth of its forward pass, and task
    accuracy reads one position per item. The same computation as TransformerLens' forward:
    blocks, then ``ln_final``, ``unembed`` and the logit soft cap, on that position only.
    """
    from transformer_lens.utils import apply_softcap

    model, device = loaded.model, loaded.cfg.device
    resid = model(dataset.clean_tokens.to(device),
                  stop_at_layer=model.cfg.n_layers)  # (batch, pos, d_model)
    rows = torch.arange(len(dataset), device=resid.device)
    at = resid[rows, dataset.last_pos.to(resid.device)][:, None]  # (batch, 1, d_model)
    if model.cfg.normalization_type is not None:
        at = model.ln_final(at)
    return apply_softcap(model.unembed(at)[:, 0], model.cfg.output_logits_soft_cap)


def task_datasets(model: str, config: DropEvalConfig) -> list:
    """The evaluation items of ``model``'s tasks (``config.tasks`` or its default tasks)."""
    from data.tasks import default_tasks, load_task

    tasks = config.tasks if config.tasks is not None else default_tasks(model)
    return [load_task(t, config.n_items, config.seed, model=model) for t in tasks]


class CausalLMEval:
    """LM loss on held-out text + top-1 accuracy on task items, of a (pruned) causal LM."""

    def __init__(self, lm_tokens: Tokens, datasets: Sequence, config: DropEvalConfig) -> None:
        self.config = config
        self.lm_tokens = lm_tokens
        self.datasets = list(datasets)

    @property
    def timing_tokens(self) -> Tokens:
        return self.lm_tokens

    @torch.no_grad()
    def __call__(self, loaded: LoadedModel) -> pd.DataFrame:
        out = {"lm_loss": lm_loss(loaded, self.lm_tokens, self.config.batch_size)}
        for ds in self.datasets:
            out[f"acc_{ds.name}"] = task_accuracy(loaded, ds)
        out["acc_mean"] = sum(out[f"acc_{ds.name}"] for ds in self.datasets) / len(self.datasets)
        return _rows(out)


class OrganismEval(CausalLMEval):
    """The organism: LM loss on its held-out corpus split "eval", accuracy on its tasks."""

    def __init__(self, config: DropEvalConfig) -> None:
        super().__init__(organism_tokens("eval", config.seed, n_rows=config.n_lm_rows),
                         task_datasets("organism", config), config)


def text_split() -> tuple[list[str], list[str]]:
    """(calibration, held_out) built-in sentences for a real-text causal LM, disjoint and fixed.

    Calibration: the standalone sentences (the set MiniLM's scores use). Held out: the
    paraphrase-group sentences, in file order; no held-out sentence is a calibration sentence.
    """
    from data.sentences import paraphrase_groups, standalone_sentences

    calibration = standalone_sentences()
    seen = set(calibration)
    held_out = [s for g in paraphrase_groups() for s in g if s not in seen]
    return calibration, held_out


def sort_by_length(tokens: Tokens) -> Tokens:
    """Rows reordered by length (less padding per batch); metrics are order-invariant."""
    order = tokens.lengths.argsort(descending=True, stable=True)
    return Tokens(tokens.ids[order], tokens.attention_mask[order], tokens.lengths[order],
                  [tokens.str_tokens[i] for i in order.tolist()])


class TextLMEval(CausalLMEval):
    """A real causal LM (SmolLM2): LM loss on the first ``n_sentences`` held-out built-in
    sentences (:func:`text_split`), accuracy on the model's tasks."""

    def __init__(self, loaded: LoadedModel, config: DropEvalConfig) -> None:
        held_out = text_split()[1][: config.n_sentences]
        super().__init__(sort_by_length(tokenize(loaded, held_out)),
                         task_datasets(loaded.name, config), config)


# ----------------------------------------------------------------------------- encoder


def embeddings(loaded: LoadedModel, tokens: Tokens, batch_size: int) -> torch.Tensor:
    """Pooled, normalised sentence embeddings (prompt, d_model) in fp32 (under torchrun each
    rank embeds its block of the sentences and the blocks are gathered in order)."""
    out = [pool_embedding(forward(loaded, b).float(), b.attention_mask.to(loaded.cfg.device))
           for b in batches(shard_tokens(tokens), batch_size)]
    return torch.cat(all_gather(torch.cat(out).cpu()))


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
    """The evaluator of ``loaded``: EncoderEval (encoder), OrganismEval (the organism) or
    TextLMEval (a causal LM with real-text tasks, e.g. SmolLM2); ValueError for others."""
    from data.tasks import MODEL_TASKS

    if loaded.kind == "encoder":
        return EncoderEval(loaded, config)
    if loaded.name == "organism":
        return OrganismEval(config)
    if loaded.name in MODEL_TASKS:
        return TextLMEval(loaded, config)
    raise ValueError(f"the redundancy study evaluates 'organism', 'smollm2' or an encoder such "
                     f"as 'minilm', not {loaded.name!r}: it has no tasks (data.tasks)")


class MemoEval:
    """An evaluator that evaluates each drop set once.

    Why: every plan starts at the full model, and random plans may repeat one another's drop
    sets; on a 135M-parameter model each evaluation costs seconds. Keyed by the pruned model's
    ``drop_set``, so use one MemoEval per base model.
    """

    def __init__(self, evaluate) -> None:
        self.evaluate = evaluate
        self._done: dict[DropSet, pd.DataFrame] = {}

    @property
    def timing_tokens(self) -> Tokens:
        return self.evaluate.timing_tokens

    def __call__(self, loaded: LoadedModel) -> pd.DataFrame:
        key = getattr(loaded.model, "drop_set", None) or DropSet()
        if key not in self._done:
            self._done[key] = self.evaluate(loaded)
        return self._done[key].copy()


# ----------------------------------------------------------------------------- curves, speed


def curve_points(n_steps: int, every: int = 1) -> list[int]:
    """The drop counts a curve is evaluated at: 0, every, 2*every, ..., and always ``n_steps``."""
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    return sorted({*range(0, n_steps + 1, every), n_steps})


def drop_curve(loaded: LoadedModel, plan: DropPlan, evaluate, seed: int = -1,
               points: Sequence[int] | None = None) -> pd.DataFrame:
    """Metrics after ``points`` drops of ``plan`` (default 0..len(plan.steps)): one row per
    (n_dropped, metric)."""
    frames = []
    sets = plan.drop_sets()
    for n in range(len(sets)) if points is None else points:
        drops = sets[n]
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
    full_cpu_ms: float = float("nan")  # median CPU time of this process (all its threads)
    pruned_cpu_ms: float = float("nan")
    speedup_cpu: float = float("nan")  # full_cpu_ms / pruned_cpu_ms: the work saved


def _sync(loaded: LoadedModel) -> None:
    if str(loaded.cfg.device).startswith("cuda"):
        torch.cuda.synchronize()


@dataclass
class _Timer:
    """Wall time and this process's CPU time of each timed run.

    Why both: on a CPU shared with other jobs the wall time of a run swings with their load,
    while the CPU time this process spends is the work itself (with a fixed thread count it
    changes little when others run); on a GPU only the wall time means anything.
    """

    times: list[float] = field(default_factory=list)
    cpu_times: list[float] = field(default_factory=list)

    def run(self, loaded: LoadedModel, tokens: Tokens, batch_size: int) -> None:
        _sync(loaded)
        start, cpu_start = time.perf_counter(), time.process_time()
        for b in batches(tokens, batch_size):
            forward(loaded, b)
        _sync(loaded)
        self.times.append(time.perf_counter() - start)
        self.cpu_times.append(time.process_time() - cpu_start)


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
    f_cpu = 1e3 * statistics.median(t_full.cpu_times)
    p_cpu = 1e3 * statistics.median(t_pruned.cpu_times)
    return SpeedResult(f_ms, p_ms, f_ms / p_ms, f_min, p_min, f_min / p_min, repeats,
                       int(tokens.attention_mask.sum()), f_cpu, p_cpu,
                       f_cpu / p_cpu if p_cpu > 0 else float("nan"))


def weight_macs(cfg, drops: DropSet, unembed: bool = True) -> int:
    """Multiply-adds per token of the weight matrices a forward runs with ``drops`` removed.

    Why: the work a drop saves, free of timing noise (on a CPU shared with other jobs the
    measured speedup of a few percent drowns in it), as the reference beside the measurement.
    Counts Q, K, V, O (K and V with ``n_key_value_heads``), the MLP's in (and gate) and out
    matrices, and the unembedding; not the attention scores (2 * n_heads * d_head * pos per
    token: about 2% of SmolLM2's work on 16-token prompts), norms or the embedding lookup.
    """
    heads = cfg.n_heads * cfg.d_head
    kv = (getattr(cfg, "n_key_value_heads", None) or cfg.n_heads) * cfg.d_head
    attn = cfg.d_model * (2 * heads + 2 * kv)
    has_mlp = not getattr(cfg, "attn_only", False)
    mlp = cfg.d_model * cfg.d_mlp * (3 if getattr(cfg, "gated_mlp", False) else 2) * has_mlp
    kept = sum(attn * (layer not in drops.attn) + mlp * (layer not in drops.mlp)
               for layer in range(cfg.n_layers))
    return kept + (cfg.d_model * cfg.d_vocab if unembed else 0)


def speed_table(loaded: LoadedModel, plan: DropPlan, tokens: Tokens, repeats: int,
                batch_size: int = 64, points: Sequence[int] | None = None) -> pd.DataFrame:
    """Measured speedup after ``points`` drops of ``plan`` (default every number of drops;
    one row per n_dropped), with ``speedup_macs``, the ratio of :func:`weight_macs`."""
    rows = []
    sets = plan.drop_sets()
    unembed = loaded.kind == "decoder"  # an encoder's forward stops at its hidden state
    full_macs = weight_macs(loaded.cfg, DropSet(), unembed)
    for n in range(len(sets)) if points is None else points:
        res = measure_speed(loaded, prune(loaded, sets[n]), tokens, repeats, batch_size)
        rows.append({"strategy": plan.strategy, "mode": plan.mode, "n_dropped": n,
                     **res._asdict(),
                     "speedup_macs": full_macs / weight_macs(loaded.cfg, sets[n], unembed)})
    return pd.DataFrame(rows)
