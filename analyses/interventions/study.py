"""The two intervention studies, as tidy tables.

:func:`massive_ablation` (Sun et al. 2024, §3): find the massive activations on a reference set
(the model's corpus "train" split, :func:`saes.corpus.corpus_tokens`), then evaluate held-out
text (its "heldout" split) and the model's default tasks under the conditions ``none`` (the
unpatched model), ``zero``, ``mean`` and ``random`` (the control, one row set per draw).
Table ``massive_ablation``: condition, draw, metric, layer, value; ``layer`` is -1 for a
model-wide metric and the layer of a ``sink_rate`` row (-1 there is the whole model, as in
:func:`probes.sinks.sink_rate`). ``n_patched`` is the mean number of rewritten residual entries
per held-out sequence.

:func:`sink_study`: the per-head decomposition of the attention to position 0
(:class:`~analyses.interventions.sinks.SinkDecomposition`, table ``sink_decomposition``) and
the removal of that attention per layer (all heads of it) and/or per head
(:class:`~analyses.interventions.sinks.SinkRemoval`), with the held-out metric before and after
(table ``sink_removal``: scope, layer, head (-1 for a whole layer), metric, value, baseline,
delta).

Under torchrun (``attnlab massive ablate|sinks --nproc N``) every rank finds the sites on the
whole reference set (the same sites everywhere), then takes its block of the held-out text and
of each task's items (:func:`heldout`); the evaluation sums and gathers over ranks
(:mod:`analyses.interventions.evaluate`), so every rank holds the whole data's tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import pandas as pd

from analyses.interventions.evaluate import (
    TextResult,
    base_embeddings,
    evaluate_text,
    task_accuracy,
)
from analyses.interventions.massive import MassivePatch, MassiveSites, find_sites
from analyses.interventions.sinks import SinkRemoval, sink_decomposition
from probes.distributed import rank_info, shard_range, shard_tokens, sum_over_ranks
from probes.massive import MassiveConfig
from probes.models import LoadedModel
from probes.sinks import SinkConfig
from probes.tokens import Tokens
from saes.corpus import corpus_tokens


@dataclass(frozen=True)
class InterventionConfig:
    """Sizes and settings of both studies."""

    reference_tokens: int = 4000  # reference set (corpus "train" split): sites and means
    heldout_tokens: int = 2000  # held-out text (corpus "heldout" split) for every metric
    n_items: int = 32  # items per default task (decoders)
    draws: int = 3  # random-control draws (seeds 0..draws-1)
    batch_size: int = 16
    seed: int = 0  # which corpus rows / task items
    massive: MassiveConfig = field(default_factory=MassiveConfig)
    sinks: SinkConfig = field(default_factory=SinkConfig)
    per_layer: bool = True  # sink removal: every layer, all of its heads at once
    heads: tuple[tuple[int, int], ...] = ()  # sink removal: these (layer, head) one at a time
    top_heads: int = 0  # sink removal: also the k heads with the highest sink score
    layer: int | None = None  # massive ablation: patch here (None: the emergence layer)

    def __post_init__(self) -> None:
        for name in ("reference_tokens", "heldout_tokens", "n_items", "draws", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.top_heads < 0:
            raise ValueError(f"top_heads must be >= 0, got {self.top_heads}")


class HeldOut(NamedTuple):
    """The held-out evaluation data of one model."""

    tokens: Tokens  # this rank's block of rows (all of them in one process)
    datasets: list  # data.tasks.TaskDataset of the default tasks (none for an encoder)
    reference: object  # an encoder's unpatched embeddings (of ``tokens``), else None
    first: int = 0  # global index of ``tokens``' first row
    firsts: tuple[int, ...] = ()  # per dataset: global index of its first item


def heldout(loaded: LoadedModel, config: InterventionConfig) -> HeldOut:
    """Held-out text, task items and (encoder) reference embeddings for ``loaded``: this
    rank's block of each under torchrun (everything in one process)."""
    from analyses.causal.distributed import shard_task
    from data.tasks import MODEL_TASKS, default_tasks, load_task

    tokens = corpus_tokens(loaded, config.heldout_tokens, config.seed, split="heldout")
    info = rank_info()
    first = shard_range(len(tokens.ids), info).start if info.distributed else 0
    tokens = shard_tokens(tokens)
    if loaded.kind == "encoder":
        return HeldOut(tokens, [], base_embeddings(loaded, tokens, config.batch_size), first)
    names = default_tasks(loaded.name) if loaded.name in MODEL_TASKS else []
    full = [load_task(t, config.n_items, config.seed, model=loaded.name) for t in names]
    firsts = tuple(shard_range(len(ds), info).start if info.distributed else 0 for ds in full)
    return HeldOut(tokens, [shard_task(ds) for ds in full], None, first, firsts)


def _rows(res: TextResult, extra: dict[str, float], **keys) -> pd.DataFrame:
    metrics = {**res.metrics, **extra}
    frames = [pd.DataFrame({"metric": list(metrics), "layer": -1,
                            "value": [float(v) for v in metrics.values()]})]
    if res.sink_rate is not None:
        frames.append(pd.DataFrame({"metric": "sink_rate", "layer": res.sink_rate["layer"],
                                    "value": res.sink_rate["value"]}))
    return pd.concat(frames, ignore_index=True).assign(**keys)


class MassiveAblation(NamedTuple):
    sites: MassiveSites
    table: pd.DataFrame  # massive_ablation


def massive_ablation(loaded: LoadedModel, config: InterventionConfig = InterventionConfig(),
                     data: HeldOut | None = None) -> MassiveAblation:
    """Sites from the reference set, then every condition on the held-out data (module doc)."""
    ref = corpus_tokens(loaded, config.reference_tokens, config.seed, split="train")
    sites = find_sites(loaded, ref, config.massive, config.batch_size, config.layer)
    data = data or heldout(loaded, config)
    runs = [("none", 0), ("zero", 0), ("mean", 0)] + [("random", d) for d in range(config.draws)]
    frames = []
    for condition, draw in runs:
        patch = MassivePatch(sites, condition, seed=config.seed, draw=draw)
        hooks = [(sites.hook_name, patch)]
        res = evaluate_text(loaded, data.tokens, hooks, [patch], config.batch_size,
                            sink_config=config.sinks, reference=data.reference,
                            first=data.first)
        extra = {"n_patched": None}
        extra.update(task_accuracy(loaded, data.datasets, hooks, [patch], data.firsts))
        n_patched, n_sequences = sum_over_ranks([patch.n_patched, patch.n_sequences])
        extra["n_patched"] = n_patched / max(n_sequences, 1)
        frames.append(_rows(res, extra, condition=condition, draw=draw))
    cols = ["condition", "draw", "metric", "layer", "value"]
    return MassiveAblation(sites, pd.concat(frames, ignore_index=True)[cols])


class SinkStudy(NamedTuple):
    decomposition: pd.DataFrame  # sink_decomposition
    removal: pd.DataFrame  # sink_removal


def removal_targets(decomposition: pd.DataFrame, config: InterventionConfig,
                    n_layers: int) -> list[tuple[str, int, int]]:
    """(scope, layer, head) of every removal to run; head -1 = all heads of the layer."""
    out = [("layer", layer, -1) for layer in range(n_layers)] if config.per_layer else []
    heads = list(config.heads)
    if config.top_heads:
        score = decomposition[decomposition["stat"] == "sink_score"].nlargest(
            config.top_heads, "value")
        heads += [(int(r.layer), int(r.head)) for r in score.itertuples()]
    out += [("head", la, h) for la, h in dict.fromkeys(heads)]
    return out


def sink_study(loaded: LoadedModel, config: InterventionConfig = InterventionConfig(),
               data: HeldOut | None = None) -> SinkStudy:
    """Decomposition on the held-out text, then each removal's effect on its metric."""
    data = data or heldout(loaded, config)
    decomposition = sink_decomposition(loaded, data.tokens, config.batch_size)
    n_layers, n_heads = loaded.cfg.n_layers, loaded.cfg.n_heads
    metric = "embedding_cos" if loaded.kind == "encoder" else "lm_loss"

    def score(hooks) -> float:
        return evaluate_text(loaded, data.tokens, hooks, (), config.batch_size, sinks=False,
                             reference=data.reference).metrics[metric]

    baseline = score(())
    rows = []
    for scope, layer, head in removal_targets(decomposition, config, n_layers):
        removal = SinkRemoval(layer, n_heads, None if head < 0 else [head])
        value = score([(removal.hook_name, removal)])
        rows.append({"scope": scope, "layer": layer, "head": head, "metric": metric,
                     "value": value, "baseline": baseline, "delta": value - baseline})
    cols = ["scope", "layer", "head", "metric", "value", "baseline", "delta"]
    return SinkStudy(decomposition, pd.DataFrame(rows, columns=cols))
