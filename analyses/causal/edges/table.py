"""An ``edges`` table back into a (source, target) score matrix of the model's graph."""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch

from analyses.causal.edges.graph import EdgeGraph, build_graph


def scores_matrix(model: Any, edges: pd.DataFrame) -> tuple[EdgeGraph, torch.Tensor]:
    """(graph, scores (source, target)) of ``model`` from an ``edges`` table of that model."""
    graph = build_graph(model)
    src = {n.name: i for i, n in enumerate(graph.sources)}
    tgt = {t.name: i for i, t in enumerate(graph.targets)}
    unknown = set(edges.source) - set(src) | set(edges.target) - set(tgt)
    if unknown or len(edges) != graph.n_edges:
        raise ValueError(f"this edges table ({len(edges)} edges) is not this model's graph "
                         f"({graph.n_edges} edges); unknown nodes: {sorted(unknown)[:5]}")
    scores = torch.zeros(graph.real.shape, dtype=torch.float64)
    scores[torch.tensor(edges.source.map(src).to_numpy()),
           torch.tensor(edges.target.map(tgt).to_numpy())] = torch.tensor(
        edges.score.to_numpy(), dtype=torch.float64)
    return graph, scores
