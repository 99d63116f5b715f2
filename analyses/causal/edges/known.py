"""A known induction circuit as edge sets, found from attention patterns, and its faithfulness.

Issue 18 asks whether the organism's induction circuit (Olsson et al. 2022) comes out of edge
attribution, and whether "that circuit alone" is faithful. Its heads are chosen from attention
patterns only (:mod:`probes.head_scores` on the task's clean prompts), never from patching, so
the circuit is known independently of the methods it checks:

- previous-token heads: mean attention to the previous token > ``prev_threshold`` (0.5: most
  of the head's attention);
- induction heads: mean attention to the token after the earlier copy of the current token
  > ``induction_threshold`` (0.3, the threshold of the organism's tests since issue 4).

The circuit as edge sets, each containing the one before (:data:`VARIANTS`):

- ``core``: the issue's edges, previous-token heads -> induction heads' keys, induction heads
  -> logits;
- ``core+inputs``: plus the embeddings each of those heads reads (input -> their q, k, v);
- ``nodes``: every edge among the nodes {input, those heads, logits} (the node-induced
  subgraph; e.g. a previous-token head's output also read by an induction head's values);
- ``nodes+mlps``: every edge among {input, those heads, every MLP, logits}. The textbook
  circuit comes from attention-only models; in a model with MLPs the previous-token signal may
  reach the induction heads' keys through an MLP, and their answer the logits through later
  MLPs (on the organism EAP-IG ranks mlp0 -> the induction keys and mlp1..5 -> logits among
  its top edges), so this is the circuit with every MLP allowed as a relay.

Three edge sets are the full graph without some edges: without the ``core`` edges
(``all-but-core``) and without every edge out of the induction heads
(``all-but-induction-out``) test necessity (near 0 if the removed edges are needed); without
every edge out of the other heads of the circuit's layers (``all-but-other-heads``: layers up
to the last induction head's, heads neither previous-token nor induction) bounds every
circuit built on these heads: it keeps all the rest of the model, so a set of the circuit's
heads with any downstream route seldom does better. Kept alone, a circuit should score near 1
if it is sufficient.

Faithfulness is MIB's, every edge outside the set ablated with corrupted (default) or mean
activations (:func:`analyses.causal.edges.faithfulness.circuit_metrics`); the ranks are the
positions of the core edges among all edges by an attribution score (1 = top).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import pandas as pd
import torch

from analyses.causal.edges.faithfulness import circuit_metrics, edge_order
from analyses.causal.edges.graph import QKV, EdgeGraph
from data.notation import head_label
from probes.head_scores import HeadScoreConfig, head_scores

VARIANTS = ("core", "core+inputs", "nodes", "nodes+mlps", "all-but-core",
            "all-but-induction-out", "all-but-other-heads")
Head = tuple[int, int]


@dataclass(frozen=True)
class KnownCircuitConfig:
    prev_threshold: float = 0.5  # mean attention to the previous token
    induction_threshold: float = 0.3  # mean attention to the token after the earlier copy


class InductionHeads(NamedTuple):
    previous_token: list[Head]
    induction: list[Head]


def find_induction_heads(model: Any, tokens: torch.Tensor,
                         config: KnownCircuitConfig = KnownCircuitConfig()) -> InductionHeads:
    """Previous-token and induction heads of ``model`` on repeated sequences ``tokens``.

    A head that passes both thresholds is counted as an induction head only.
    """
    # top_k=0: the scores only, not each head's top prompts (a forward pass per prompt)
    table = head_scores(model, {"induction": tokens}, config=HeadScoreConfig(top_k=0)).scores
    wide = table.pivot_table(index=["layer", "head"], columns="stat", values="value")
    ind = [(int(la), int(h)) for (la, h), v in wide.induction.items()
           if v > config.induction_threshold]
    prev = [(int(la), int(h)) for (la, h), v in wide.prev_token.items()
            if v > config.prev_threshold and (la, h) not in ind]
    if not ind or not prev:
        raise ValueError(f"no induction circuit in this model: previous-token heads {prev}, "
                         f"induction heads {ind} (thresholds {config})")
    return InductionHeads(prev, ind)


def circuit_edges(graph: EdgeGraph, heads: InductionHeads, variant: str) -> torch.Tensor:
    """(source, target) bool mask of the circuit ``variant`` (module docstring)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if variant.startswith("all-but-"):
        return _complement(graph, heads, variant)
    keep = torch.zeros_like(graph.real)
    logits = graph.target_index(0, "logits")
    for sl, sh in heads.previous_token:
        for tl, th in heads.induction:
            if sl < tl:
                keep[graph.source_index(sl, sh), graph.target_index(tl, "k", th)] = True
    for la, h in heads.induction:
        keep[graph.source_index(la, h), logits] = True
    members = heads.previous_token + heads.induction
    if variant in ("core+inputs", "nodes"):
        for la, h in members:
            for x in QKV:
                keep[0, graph.target_index(la, x, h)] = True
    if variant in ("nodes", "nodes+mlps"):
        sources = [0] + [graph.source_index(la, h) for la, h in members]
        targets = [graph.target_index(la, x, h) for la, h in members for x in QKV] + [logits]
        if variant == "nodes+mlps" and graph.has_mlp:
            sources += [graph.source_index(la) for la in range(graph.n_layers)]
            targets += [graph.target_index(la, "mlp") for la in range(graph.n_layers)]
        keep[torch.tensor(sources)[:, None], torch.tensor(targets)[None, :]] = True
    return keep & graph.real


def _complement(graph: EdgeGraph, heads: InductionHeads, variant: str) -> torch.Tensor:
    """The full graph without the core edges, or without every edge out of the induction
    heads, or out of the other heads of the circuit's layers."""
    if variant == "all-but-core":
        return graph.real & ~circuit_edges(graph, heads, "core")
    if variant == "all-but-induction-out":
        dropped = heads.induction
    else:
        members = set(heads.previous_token + heads.induction)
        last = max(la for la, _ in heads.induction)
        dropped = [(la, h) for la in range(last + 1) for h in range(graph.n_heads)
                   if (la, h) not in members]
    drop = torch.zeros_like(graph.real)
    drop[[graph.source_index(la, h) for la, h in dropped]] = True
    return graph.real & ~drop


def known_circuit_table(model: Any, graph: EdgeGraph, heads: InductionHeads,
                        pairs: Sequence, scores: torch.Tensor,
                        ablation: str = "corrupted") -> pd.DataFrame:
    """Faithfulness of every variant on ``pairs`` (chunks of prompt pairs), every other edge
    ablated with ``ablation`` (corrupted | mean, :func:`circuit_metrics`), and the best and
    worst rank of its core edges by ``scores`` ((source, target) edge scores); schema
    ``known_circuit``."""
    keeps = [circuit_edges(graph, heads, v) for v in VARIANTS]
    res = circuit_metrics(model, graph, keeps, pairs, ablation)
    rows = []
    for variant, keep, m, f in zip(VARIANTS, keeps, res.metrics, res.faithfulness):
        rows.append({"variant": variant, "n_edges": int(keep.sum()), "metric": m,
                     "faithfulness": f, "clean_metric": res.clean_metric,
                     "corrupted_metric": res.corrupted_metric, "n_pairs": res.n_pairs,
                     "empty_metric": res.empty_metric, "ablation": res.ablation,
                     "previous_token_heads": " ".join(head_label(*h) for h in heads.previous_token),
                     "induction_heads": " ".join(head_label(*h) for h in heads.induction)})
    core = edge_ranks(graph, scores)[keeps[0]]
    return pd.DataFrame(rows).assign(core_best_rank=int(core.min()),
                                     core_worst_rank=int(core.max()))


def edge_ranks(graph: EdgeGraph, scores: torch.Tensor) -> torch.Tensor:
    """(source, target) long: each edge's rank by signed score among all edges (1 = top)."""
    order = edge_order(graph, scores)  # the order of top_edges' signed circuits
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(1, order.numel() + 1)
    return ranks.reshape(scores.shape)
