"""Edge scores and circuit metrics over prompt pairs sharded across ranks (``--nproc``).

Under torchrun each rank scores / evaluates its contiguous block of the task's pairs
(:func:`analyses.causal.distributed.shard_task`). Every quantity of
:mod:`analyses.causal.edges` is a mean over pairs (EAP and EAP-IG scores are linear in the
per-pair gradients; exact effects, clean, corrupted and circuit metrics are mean logit
differences), so the whole dataset's value is the pair-count-weighted mean of the ranks'
values. These helpers all-reduce sums and counts so that every rank holds the global means
(equal to one process's up to float rounding); in one process they return their input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from probes.distributed import all_gather, rank_info, sum_over_ranks


def global_means(local: Sequence[float], n_local: int) -> list[float]:
    """The means over every rank's pairs of ``local`` (this rank's means over ``n_local``
    pairs)."""
    if not rank_info().distributed:
        return [float(v) for v in local]
    sums = sum_over_ranks([n_local * float(v) for v in local] + [n_local])
    return [s / sums[-1] for s in sums[:-1]]


def global_count(n_local: int) -> int:
    """The pairs of every rank together (``n_local`` in one process)."""
    return int(sum_over_ranks([n_local])[0])


def global_scores(scores: torch.Tensor, n_local: int) -> torch.Tensor:
    """(source, target) float64 edge scores averaged over every rank's pairs (this rank's
    ``scores`` are its mean over ``n_local`` pairs)."""
    if not rank_info().distributed:
        return scores
    parts = all_gather((n_local, scores.detach().double().cpu()))
    total = sum(n for n, _ in parts)
    return (sum(n * s for n, s in parts) / total).to(scores.device)
