"""Patching sweeps and attribution over many prompt pairs, with the pairs sharded over ranks.

Under torchrun (:mod:`probes.distributed`) each rank takes its contiguous block of a task's
pairs (:func:`shard_task`), runs the ordinary sweep on it with the public functions of
:mod:`analyses.causal.patching` / :mod:`analyses.causal.attribution`, and
:func:`merge_ranks` gathers the results. A task's metric (``logit_diff``) is a mean over
pairs, and so are every patched metric, the clean and corrupted metrics and (being linear in
the per-pair gradients) attribution's estimates; so the whole dataset's value is the
pair-count-weighted mean of the ranks' values, and the effects table is rebuilt from those
means exactly as one process builds it. The result equals the one-process sweep up to float
rounding. Metrics that are not a mean over pairs cannot be sharded this way.

    ds = shard_task(load_task("ioi", 256))                 # this rank's pairs
    pair = pair_from_task(ds)
    res = merge_ranks(patch(model, pair, cfg), pair, cfg)  # the whole dataset's sweep
"""

from __future__ import annotations

from analyses.causal.patching import (
    Baselines,
    PatchingConfig,
    PatchingResult,
    PatchPair,
    effects_table,
)
from probes.distributed import all_gather, rank_info, shard_range


def shard_task(dataset):
    """This rank's contiguous block of a ``data.tasks.TaskDataset`` (the whole one in one
    process). Fewer pairs than processes is a ValueError."""
    info = rank_info()
    if not info.distributed:
        return dataset
    return dataset.rows(shard_range(len(dataset), info).as_slice())


def merge_ranks(result: PatchingResult, pair: PatchPair, config: PatchingConfig,
                ) -> PatchingResult:
    """The sweep over every rank's pairs from this rank's ``result`` on its ``pair``.

    Patched metrics and the clean/corrupted metrics are pair-weighted means over ranks; the
    table is rebuilt with :func:`analyses.causal.patching.effects_table` (attribution tables
    keep their ``attribution_<method>`` name and baseline). One process: ``result`` as is.
    """
    if not rank_info().distributed:
        return result
    parts = all_gather((pair.batch, result.values.detach().double().cpu(),
                        result.clean_metric, result.corrupted_metric))
    n = sum(p[0] for p in parts)
    values = sum(p[0] * p[1] for p in parts) / n
    clean = float(sum(p[0] * p[2] for p in parts) / n)
    corrupted = float(sum(p[0] * p[3] for p in parts) / n)
    values = values.to(result.values.dtype)
    method = str(result.table["method"].iloc[0]) if len(result.table) else config.method
    attribution = method.startswith("attribution")
    base = Baselines(clean, corrupted, {}, {})
    layers = sorted(result.table["layer"].unique().tolist()) if len(result.table) else []
    layers = list(config.layers) if config.layers is not None else layers
    table = effects_table(values, layers, pair, config, base, method=method,
                          baseline_metric=None if not attribution else
                          (corrupted if config.method == "denoising" else clean))
    return PatchingResult(table, values, clean, corrupted, result.engine)
