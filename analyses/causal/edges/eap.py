"""Edge attribution patching: EAP (Syed et al. 2023) and EAP-IG, inputs variant (Hanna et al.
2024), scoring every edge of :mod:`analyses.causal.edges.graph` at once.

For an edge u -> v (u's output o_u, v's input x_v, metric m on the clean run):

    score(u -> v) = (o_u(clean) - o_u(corrupted)) . dm/dx_v      summed over batch and pos,
                                                                  mean over prompt pairs

the first-order estimate of m(clean) - m(clean with that edge carrying u's corrupted output).
Positive: the edge supports the metric (corrupting it lowers the logit difference). This is
EAP-IG's code with its loss = -m: it scores (o_u(corrupted) - o_u(clean)) . d(loss)/dx_v.
EAP takes dm/dx_v on the clean run: one corrupted forward (no grad), one clean forward and one
backward per chunk of pairs. EAP-IG (inputs variant) averages dm/dx_v over ``steps`` runs
whose input embeddings are corrupted + (k / steps) (clean - corrupted), k = 0 .. steps - 1
(EAP-IG's ``get_scores_eap_ig``: the corrupted end point is included, the clean one is not).

Memory per chunk: (source, batch, pos, d_model) differences plus one set of input gradients;
chunks of pairs (:func:`analyses.causal.edges.sources.task_chunks`) bound it.
Why not a library: TransformerLens has the hook points only; EAP-IG's package assumes CUDA
and its own graph; this is the same arithmetic on attnlab's hooks (:mod:`probes.hooks`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import pandas as pd
import torch

from analyses.causal.batched import reduce_metric
from analyses.causal.edges.faithfulness import edge_order
from analyses.causal.edges.graph import (
    INPUT_HOOK,
    EdgeGraph,
    build_graph,
    edge_hooks,
    source_hooks,
    target_hooks,
    target_slice,
)
from analyses.causal.edges.sources import run_sources, stack_sources
from analyses.causal.patching import PatchPair
from probes.hooks import record
from probes.models import unwrap

METHODS = ("eap", "eap-ig")


@dataclass(frozen=True)
class EAPConfig:
    method: str = "eap"  # eap | eap-ig
    steps: int = 5  # EAP-IG interpolation steps (EAP-IG's default is 30; MIB uses 5)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")


class EdgeScores(NamedTuple):
    graph: EdgeGraph
    scores: torch.Tensor  # (source, target) float64; 0 where the pair is not an edge
    method: str
    clean_metric: float  # mean metric of the clean runs
    corrupted_metric: float


def _grads(model, tokens, metric, interp: torch.Tensor | None, graph: EdgeGraph):
    """(metric value, output, source acts, {target hook: d metric / d input}) of one run.

    ``interp`` (batch, pos, d_model) replaces the input embeddings (EAP-IG); otherwise the
    embeddings are only made differentiable.
    """
    def entry(act: torch.Tensor) -> torch.Tensor:
        base = act if interp is None else interp
        return base.detach().requires_grad_(True)

    names = target_hooks(graph)
    with torch.enable_grad():
        out, acts = record(model, source_hooks(graph) + names, lambda: model(tokens),
                           hooks={INPUT_HOOK: entry})
        value = reduce_metric(metric(out))
        grads = torch.autograd.grad(value, [acts[n] for n in names], allow_unused=True)
    return float(value.detach()), out.detach(), acts, dict(zip(names, grads))


def _layer_grads(graph: EdgeGraph, grads: dict, layer: int) -> torch.Tensor:
    """The gradients of one layer's target hooks (the last layer's include the logits') as one
    (cols, batch * pos * d_model) matrix in target order; zeros where the metric ignores one."""
    names = [n for n in target_hooks(graph) if n.startswith(f"blocks.{layer}.hook_")]
    ref = next(g for g in grads.values() if g is not None)
    parts = []
    for name in names:
        sl, g = target_slice(graph, name), grads[name]
        if g is None:  # the metric does not depend on this input
            g = ref.new_zeros(sl.stop - sl.start, *ref.shape[:2], ref.shape[-1])
        parts.append(g.permute(2, 0, 1, 3) if g.ndim == 4 else g[None])
    flat = torch.cat(parts, 0)
    return flat.reshape(len(flat), -1)


def _accumulate(scores: torch.Tensor, graph: EdgeGraph, diff: torch.Tensor, grads: dict,
                weight: float) -> None:
    """scores[:n_up, cols] += weight * diff[:n_up] . grad, for every target hook's columns.

    ``diff`` is (source, batch * pos * d_model) clean - corrupted; the gradients (batch, pos,
    head, d_model) or (batch, pos, d_model) of one layer's q/k/v/MLP (and, last, logits)
    inputs become one (cols, batch * pos * d_model) matrix and one product with the rows that
    feed the layer's last target (the extra rows of its earlier columns are not edges and are
    zeroed by the caller's mask): one matmul per layer instead of one per hook point, which
    reads ``diff`` a quarter as often (issue 18).
    """
    for layer in range(graph.n_layers):
        flat = _layer_grads(graph, grads, layer)
        start = graph.target_index(layer, "q", 0)
        cols = slice(start, start + len(flat))
        n_up = max(t.n_up for t in graph.targets[cols])
        with torch.no_grad():
            scores[:n_up, cols] += weight * (diff[:n_up] @ flat.T).double()


def edge_attribution(model: Any, pairs: PatchPair | Sequence[PatchPair],
                     config: EAPConfig = EAPConfig()) -> EdgeScores:
    """EAP or EAP-IG scores of every edge, averaged over all prompt pairs of ``pairs``.

    ``pairs``: one :class:`PatchPair` or chunks of one dataset (``sources.task_chunks``);
    each chunk is one corrupted forward, and one (EAP) or ``steps`` (EAP-IG) forward+backward
    passes, plus one clean forward for EAP-IG.
    """
    m = unwrap(model)
    graph = build_graph(m)
    chunks = [pairs] if isinstance(pairs, PatchPair) else list(pairs)
    n_total = sum(p.batch for p in chunks)
    scores = torch.zeros(len(graph.sources), len(graph.targets), dtype=torch.float64)
    clean_sum = corrupted_sum = 0.0
    for pair in chunks:
        w = pair.batch / n_total
        corr_out, corr = run_sources(m, graph, pair.corrupted)
        corrupted_sum += w * float(reduce_metric(pair.score(corr_out)))
        with edge_hooks(m):
            if config.method == "eap":
                value, _, acts, grads = _grads(m, pair.clean, pair.score, None, graph)
                with torch.no_grad():
                    clean = stack_sources(m, graph, {k: a.detach() for k, a in acts.items()})
                _accumulate(scores, graph, (clean - corr).reshape(len(clean), -1), grads, w)
                clean_sum += w * value
                continue
            clean_out, clean = run_sources(m, graph, pair.clean)
            clean_sum += w * float(reduce_metric(pair.score(clean_out)))
            diff = (clean - corr).reshape(len(clean), -1)
            for k in range(config.steps):
                x = corr[0] + (k / config.steps) * (clean[0] - corr[0])
                _, _, _, grads = _grads(m, pair.clean, pair.score, x, graph)
                _accumulate(scores, graph, diff, grads, w / config.steps)
    scores = scores.masked_fill(~graph.real, 0.0)
    return EdgeScores(graph, scores, config.method, clean_sum, corrupted_sum)


def scores_table(result: EdgeScores) -> pd.DataFrame:
    """The ``edges`` table: one row per edge, highest score first (schema ``edges``).

    The rows and ``rank`` follow :func:`analyses.causal.edges.faithfulness.edge_order` (signed),
    the order that circuits and known-circuit ranks use, so exact ties are broken the same way
    everywhere: by (source, target) index.
    """
    g = result.graph
    order = edge_order(g, result.scores)[:g.n_edges]  # the pairs that are no edges come last
    src, tgt = order // len(g.targets), order % len(g.targets)
    return pd.DataFrame({
        "source": [g.sources[i].name for i in src.tolist()],
        "target": [g.targets[i].name for i in tgt.tolist()],
        "score": result.scores[src, tgt].numpy(),
        "rank": range(1, len(order) + 1),
        "method": result.method,
        "source_layer": [g.sources[i].layer for i in src.tolist()],
        "target_layer": [g.targets[i].layer for i in tgt.tolist()],
    })
