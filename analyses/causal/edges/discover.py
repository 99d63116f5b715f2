"""One entry point for every edge-scoring method: EAP, EAP-IG and two exact baselines.

``exact-edges``: score(u -> v) = m(clean) - m(only that edge ablated), one patched forward
pass per edge (the quantity EAP linearises; feasible on the organism's 479 edges, not on
SmolLM2's ~123k). ``exact-nodes``: a node-level baseline; every edge out of node u gets
m(clean) - m(all of u's outgoing edges ablated), i.e. u's exact noising effect, so it ranks
edges by their source node only (ties broken by graph order).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from analyses.causal.batched import reduce_metric
from analyses.causal.edges.ablate import circuit_metric
from analyses.causal.edges.eap import EAPConfig, EdgeScores, edge_attribution
from analyses.causal.edges.graph import build_graph
from analyses.causal.edges.ranks import global_means, global_scores
from analyses.causal.edges.sources import run_sources
from analyses.causal.patching import PatchPair

MAX_EXACT_EDGES = 20_000


def _exact(model: Any, pairs: Sequence[PatchPair], per_node: bool) -> EdgeScores:
    graph = build_graph(model)
    if not per_node and graph.n_edges > MAX_EXACT_EDGES:
        raise ValueError(f"exact-edges runs one pass per edge; this graph has {graph.n_edges} "
                         f"(limit {MAX_EXACT_EDGES}): use --method eap or eap-ig")
    n_total = sum(p.batch for p in pairs)
    scores = torch.zeros(graph.real.shape, dtype=torch.float64)
    clean_m = corr_m = 0.0
    for pair in pairs:
        w = pair.batch / n_total
        corr_out, corr = run_sources(model, graph, pair.corrupted)
        clean_out, _ = run_sources(model, graph, pair.clean)
        base = float(reduce_metric(pair.score(clean_out)))
        clean_m += w * base
        corr_m += w * float(reduce_metric(pair.score(corr_out)))
        items = range(len(graph.sources)) if per_node else zip(*graph.edge_table_index())
        for item in items:
            keep = graph.real.clone()
            if per_node:
                keep[item] = False
            else:
                keep[item[0], item[1]] = False
            scores[item] += w * (base - circuit_metric(model, graph, keep, pair, corr))
    scores = scores.masked_fill(~graph.real, 0.0)
    name = "exact-nodes" if per_node else "exact-edges"
    return EdgeScores(graph, scores, name, clean_m, corr_m)


def discover(model: Any, pairs: Sequence[PatchPair], method: str, steps: int = 5
             ) -> EdgeScores:
    """Edge scores by ``method``: eap | eap-ig | exact-nodes | exact-edges.

    Under torchrun ``pairs`` are this rank's (``shard_task``); the scores and metrics returned
    are the means over every rank's pairs (:mod:`analyses.causal.edges.ranks`).
    """
    pairs = list(pairs)
    if method in ("eap", "eap-ig"):
        res = edge_attribution(model, pairs, EAPConfig(method, steps))
    elif method in ("exact-nodes", "exact-edges"):
        res = _exact(model, pairs, per_node=method == "exact-nodes")
    else:
        raise ValueError(f"unknown method {method!r}: eap, eap-ig, exact-nodes or exact-edges")
    n_local = sum(p.batch for p in pairs)
    clean, corrupted = global_means([res.clean_metric, res.corrupted_metric], n_local)
    return res._replace(scores=global_scores(res.scores, n_local), clean_metric=clean,
                        corrupted_metric=corrupted)
