"""Every source node's output from one forward pass, as one (source, batch, pos, d_model) tensor.

EAP needs corrupted - clean for every source at once, and circuit evaluation needs the
corrupted outputs; both read them here, from the hook points of :func:`graph.source_hooks`.
"""

from __future__ import annotations

from typing import Any

import torch

from analyses.causal.edges.graph import EdgeGraph, head_outputs, source_hooks
from analyses.causal.patching import PatchPair, pair_from_task
from probes.hooks import record
from probes.models import unwrap


def stack_sources(model: Any, graph: EdgeGraph, acts: dict[str, torch.Tensor]) -> torch.Tensor:
    """(source, batch, pos, d_model): the recorded activations in source order."""
    parts = []
    for name in source_hooks(graph):
        act = acts[name]
        if name.endswith("hook_z"):
            out = head_outputs(model, int(name.split(".")[1]), act)  # (batch, pos, head, d_model)
            parts.append(out.permute(2, 0, 1, 3))
        else:
            parts.append(act[None])
    return torch.cat(parts, 0)


def run_sources(model: Any, graph: EdgeGraph, tokens: torch.Tensor):
    """(output, sources (source, batch, pos, d_model)) of one no-grad forward on ``tokens``.

    The sources' hook points exist without :func:`graph.edge_hooks`, so this is the model's
    plain forward: the split q/k/v inputs (per query head under GQA) would cost ~1.5x here and
    change nothing (issue 18).
    """
    m = unwrap(model)
    with torch.no_grad():
        out, acts = record(m, source_hooks(graph), lambda: m(tokens))
        return out, stack_sources(m, graph, acts)


def task_chunks(dataset, batch_size: int) -> list[PatchPair]:
    """A ``data.tasks.TaskDataset`` as logit-difference pairs of at most ``batch_size`` items
    (memory is bounded by the chunk: EAP keeps (source, batch, pos, d_model) per chunk)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return [pair_from_task(dataset.rows(slice(start, start + batch_size)))
            for start in range(0, len(dataset), batch_size)]
