"""Positional means of every source's output over the evaluation set, for mean ablation.

Mean ablation ("mean-positional", EAP-IG's ``evaluate_graph``) gives an ablated edge u -> v
u's output at the same position averaged over the evaluation set's **clean** prompts (all
prompts of a task dataset have the same length). The mean is over every evaluation pair:
every chunk of :func:`analyses.causal.edges.sources.task_chunks` and, under torchrun, every
rank (sums and counts all-reduced, as :mod:`analyses.causal.edges.ranks` does for metrics),
so the circuit's metric does not depend on how the pairs were chunked or sharded. EAP-IG's
``compute_mean_activations`` does this on its own graph (CUDA tensors); TransformerLens has no
such mean, so attnlab sums the outputs of :func:`analyses.causal.edges.sources.run_sources`.
"""

from __future__ import annotations

import torch

from probes.distributed import all_gather, rank_info


def add_sources(total: torch.Tensor | None, sources: torch.Tensor) -> torch.Tensor:
    """``total`` + the batch sum of ``sources`` (source, batch, pos, d_model), float64,
    (source, 1, pos, d_model); ``total`` None starts the sum."""
    part = sources.detach().double().sum(1, keepdim=True)
    if total is None:
        return part
    if total.shape != part.shape:
        raise ValueError(f"mean ablation needs prompts of one length: a chunk of "
                         f"{sources.shape[2]} positions follows {total.shape[2]}; evaluate a "
                         f"task whose prompts all have the same length, or use corrupted "
                         f"ablation")
    return total + part


def positional_means(total: torch.Tensor, n_local: int, dtype: torch.dtype) -> torch.Tensor:
    """(source, 1, pos, d_model) in ``dtype``: the mean over every rank's prompts, given this
    rank's ``total`` (:func:`add_sources`) over its ``n_local`` prompts."""
    n = n_local
    if rank_info().distributed:
        parts = all_gather((n_local, total.cpu()))
        n = sum(k for k, _ in parts)
        total = sum(t for _, t in parts).to(total.device)
    if n < 1:
        raise ValueError("mean ablation needs at least one prompt")
    return (total / n).to(dtype)
