"""Circuit faithfulness over edge budgets, and MIB's CPR and CMD (Mueller et al. 2025).

Under an ablation A (:data:`analyses.causal.edges.ablate.ABLATIONS`: ``corrupted``, the
default, or ``mean``), every edge outside the circuit C is ablated with A
(:mod:`analyses.causal.edges.ablate`) and

    faithfulness_A(C) = (m(C) - m(empty_A)) / (m(full) - m(empty_A)),

m the mean metric over the prompt pairs, full the whole graph (= the clean run under either
ablation), empty_A the empty circuit under A. Under corrupted ablation m(empty) is the
corrupted run's metric (the same number up to float rounding; the corrupted run is used, as
before); under mean ablation it is the empty circuit's own forward pass. So the full graph has
faithfulness 1 and the empty circuit 0 under both. The circuit at budget b keeps the top
``int(b * n_edges)`` edges by score (MIB's ``apply_topn``: the count is rounded down).

MIB's integration (``MIB_circuit_track/evaluation.py``, ``evaluate_area_under_curve``): the
budgets are 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1 of the edges, on a
**linear** budget axis (``log_scale=False`` is MIB's default), trapezoidal rule:

    CPR = sum_i (b_{i+1} - b_i) (f_i + f_{i+1}) / 2                     (higher is better)
    CMD = sum_i (b_{i+1} - b_i) (|1 - f_i| + |1 - f_{i+1}|) / 2         (lower is better)

MIB reports CPR for circuits ranked by signed score and CMD for circuits ranked by |score|
(``print_results.py``); :func:`faithfulness_curve` evaluates both rankings. The empty circuit
(budget 0) is evaluated too, as a check (faithfulness 0), but not integrated, as in MIB.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import pandas as pd
import torch

from analyses.causal.batched import reduce_metric
from analyses.causal.edges.ablate import ABLATIONS, circuit_metric
from analyses.causal.edges.graph import EdgeGraph
from analyses.causal.edges.means import add_sources, positional_means
from analyses.causal.edges.ranks import global_count, global_means
from analyses.causal.edges.sources import run_sources
from analyses.causal.patching import PatchPair
from probes.models import unwrap

MIB_BUDGETS: tuple[float, ...] = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
RANKINGS = ("signed", "absolute")


def top_edges(graph: EdgeGraph, scores: torch.Tensor, n: int, ranking: str = "signed"
              ) -> torch.Tensor:
    """(source, target) bool: the ``n`` highest-scoring edges (by |score| if absolute)."""
    keep = torch.zeros(scores.numel(), dtype=torch.bool)
    if n > 0:
        keep[edge_order(graph, scores, ranking)[:n]] = True
    return keep.reshape(scores.shape) & graph.real


def edge_order(graph: EdgeGraph, scores: torch.Tensor, ranking: str = "signed") -> torch.Tensor:
    """Flat (source, target) indices, best edge first (by |score| if absolute); the pairs
    that are no edges come last."""
    if ranking not in RANKINGS:
        raise ValueError(f"ranking must be one of {RANKINGS}, got {ranking!r}")
    key = scores.abs() if ranking == "absolute" else scores.clone()
    key = key.double().masked_fill(~graph.real, float("-inf")).flatten()
    return torch.sort(key, descending=True, stable=True).indices


class Curve(NamedTuple):
    table: pd.DataFrame  # ranking, budget, n_edges, metric, faithfulness, ablation, empty_metric
    # ranking, cpr, cmd, clean_metric, corrupted_metric, empty_metric, ablation, n_edges
    summary: pd.DataFrame


def area(budgets: Sequence[float], values: Sequence[float]) -> float:
    """Trapezoidal area over a linear budget axis (MIB's integration)."""
    return float(sum((b2 - b1) * (v1 + v2) / 2
                     for b1, b2, v1, v2 in zip(budgets, budgets[1:], values, values[1:])))


def cpr_cmd(budgets: Sequence[float], faith: Sequence[float]) -> tuple[float, float]:
    """(CPR, CMD) of one faithfulness curve over ``budgets`` (module docstring)."""
    return area(budgets, faith), area(budgets, [abs(1.0 - f) for f in faith])


class CircuitMetrics(NamedTuple):
    metrics: list[float]  # mean metric of each circuit
    faithfulness: list[float]  # (metric - empty) / (clean - empty), per circuit
    clean_metric: float
    corrupted_metric: float
    n_pairs: int  # over every rank under torchrun
    empty_metric: float  # m(empty circuit) under the ablation: the reference of faithfulness
    ablation: str  # corrupted | mean


def _run(model: Any, graph: EdgeGraph, tokens: torch.Tensor, sources: bool):
    """(output, every source's output or None) of one no-grad forward on ``tokens``."""
    if sources:
        return run_sources(model, graph, tokens)
    with torch.no_grad():
        return unwrap(model)(tokens), None


def _is_empty(graph: EdgeGraph, keep: torch.Tensor) -> bool:
    return not bool((keep.bool() & graph.real).any())


def circuit_metrics(model: Any, graph: EdgeGraph, keeps: Sequence[torch.Tensor],
                    pairs: Sequence[PatchPair], ablation: str = "corrupted") -> CircuitMetrics:
    """Mean metric and faithfulness of each circuit ``keeps[i]`` ((source, target) bool), every
    other edge ablated with ``ablation`` (corrupted | mean; module docstring).

    ``pairs``: chunks of the evaluation prompt pairs (their metrics are averaged, weighted by
    chunk size). One forward pass per chunk and circuit, plus the clean and corrupted runs
    (and, under mean ablation, the empty circuit unless ``keeps`` has one). The mean
    ablation's means are over every chunk's clean prompts. Under torchrun ``pairs`` are this
    rank's, and the metrics and means are over every rank's pairs
    (:mod:`analyses.causal.edges.ranks`, :mod:`analyses.causal.edges.means`).
    """
    if ablation not in ABLATIONS:
        raise ValueError(f"ablation must be one of {ABLATIONS}, got {ablation!r}")
    n_total = sum(p.batch for p in pairs)
    prepared = []
    clean_m = corr_m = 0.0
    total = None
    mean = ablation == "mean"
    for pair in pairs:
        w = pair.batch / n_total
        # the sources of one run only: the corrupted run's are the ablation (corrupted), the
        # clean run's go into the means (mean)
        corr_out, corr = _run(model, graph, pair.corrupted, sources=not mean)
        clean_out, clean = _run(model, graph, pair.clean, sources=mean)
        clean_m += w * float(reduce_metric(pair.score(clean_out)))
        corr_m += w * float(reduce_metric(pair.score(corr_out)))
        if mean:
            total = add_sources(total, clean)  # the chunk's sources are not kept
        prepared.append((pair, corr, w))
    keeps, n_asked = list(keeps), len(keeps)
    empty_at = next((i for i, k in enumerate(keeps) if _is_empty(graph, k)), None)
    if mean:
        means = positional_means(total, n_total, clean.dtype)  # (source, 1, pos, d_model)
        prepared = [(p, means, w) for p, _, w in prepared]
        if empty_at is None:
            keeps.append(torch.zeros_like(graph.real))
            empty_at = len(keeps) - 1
    metrics = [sum(w * circuit_metric(model, graph, keep, p, a) for p, a, w in prepared)
               for keep in keeps]
    # under torchrun: the means over every rank's pairs (one process: as they are)
    clean_m, corr_m, *metrics = global_means([clean_m, corr_m, *metrics], n_total)
    empty_m = metrics[empty_at] if ablation == "mean" else corr_m
    metrics = metrics[:n_asked]  # without the empty circuit added for the reference
    faith = [(m - empty_m) / (clean_m - empty_m) for m in metrics]
    return CircuitMetrics(metrics, faith, clean_m, corr_m, global_count(n_total), empty_m,
                          ablation)


def faithfulness_curve(model: Any, graph: EdgeGraph, scores: torch.Tensor,
                       pairs: Sequence[PatchPair], budgets: Sequence[float] = MIB_BUDGETS,
                       rankings: Sequence[str] = RANKINGS, ablation: str = "corrupted") -> Curve:
    """Faithfulness at each budget (and of the empty circuit), for each ranking; CPR/CMD; every
    edge outside the circuit ablated with ``ablation`` (corrupted | mean).

    ``pairs`` as in :func:`circuit_metrics`: one forward pass per chunk, budget and ranking.
    """
    rows = [{"ranking": ranking, "budget": budget, "n_edges": int(budget * graph.n_edges)}
            for ranking in rankings for budget in (0.0, *budgets)]
    keeps = [top_edges(graph, scores, r["n_edges"], r["ranking"]) for r in rows]
    metrics = circuit_metrics(model, graph, keeps, pairs, ablation)
    for row, m, f in zip(rows, metrics.metrics, metrics.faithfulness):
        row.update(metric=m, faithfulness=f)
    ref = {"clean_metric": metrics.clean_metric, "corrupted_metric": metrics.corrupted_metric,
           "empty_metric": metrics.empty_metric, "ablation": ablation}
    table = pd.DataFrame(rows).assign(ablation=ablation, empty_metric=metrics.empty_metric)
    summary = []
    for ranking in rankings:
        part = table[(table.ranking == ranking) & (table.budget > 0)]
        cpr, cmd = cpr_cmd(part.budget.tolist(), part.faithfulness.tolist())
        summary.append({"ranking": ranking, "cpr": cpr, "cmd": cmd, **ref,
                        "n_edges": graph.n_edges, "n_pairs": metrics.n_pairs})
    return Curve(table, pd.DataFrame(summary))
