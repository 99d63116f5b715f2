"""Circuit faithfulness over edge budgets, and MIB's CPR and CMD (Mueller et al. 2025).

faithfulness(circuit) = (m(circuit) - m(corrupted)) / (m(clean) - m(corrupted)), m the mean
metric over the prompt pairs, every edge outside the circuit ablated with corrupted
activations (:mod:`analyses.causal.edges.ablate`). The circuit at budget b keeps the top
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
from analyses.causal.edges.ablate import circuit_metric
from analyses.causal.edges.graph import EdgeGraph
from analyses.causal.edges.ranks import global_count, global_means
from analyses.causal.edges.sources import run_sources
from analyses.causal.patching import PatchPair

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
    table: pd.DataFrame  # ranking, budget, n_edges, metric, faithfulness
    summary: pd.DataFrame  # ranking, cpr, cmd, clean_metric, corrupted_metric, n_edges


def area(budgets: Sequence[float], values: Sequence[float]) -> float:
    """Trapezoidal area over a linear budget axis (MIB's integration)."""
    return float(sum((b2 - b1) * (v1 + v2) / 2
                     for b1, b2, v1, v2 in zip(budgets, budgets[1:], values, values[1:])))


def cpr_cmd(budgets: Sequence[float], faith: Sequence[float]) -> tuple[float, float]:
    """(CPR, CMD) of one faithfulness curve over ``budgets`` (module docstring)."""
    return area(budgets, faith), area(budgets, [abs(1.0 - f) for f in faith])


class CircuitMetrics(NamedTuple):
    metrics: list[float]  # mean metric of each circuit
    faithfulness: list[float]  # (metric - corrupted) / (clean - corrupted), per circuit
    clean_metric: float
    corrupted_metric: float
    n_pairs: int  # over every rank under torchrun


def circuit_metrics(model: Any, graph: EdgeGraph, keeps: Sequence[torch.Tensor],
                    pairs: Sequence[PatchPair]) -> CircuitMetrics:
    """Mean metric and faithfulness of each circuit ``keeps[i]`` ((source, target) bool).

    ``pairs``: chunks of the evaluation prompt pairs (their metrics are averaged, weighted by
    chunk size). One forward pass per chunk and circuit, plus the clean and corrupted runs.
    Under torchrun ``pairs`` are this rank's, and the metrics are the means over every
    rank's pairs (:mod:`analyses.causal.edges.ranks`).
    """
    n_total = sum(p.batch for p in pairs)
    prepared = []
    clean_m = corr_m = 0.0
    for pair in pairs:
        w = pair.batch / n_total
        corr_out, corr = run_sources(model, graph, pair.corrupted)
        clean_out, _ = run_sources(model, graph, pair.clean)
        clean_m += w * float(reduce_metric(pair.score(clean_out)))
        corr_m += w * float(reduce_metric(pair.score(corr_out)))
        prepared.append((pair, corr, w))
    metrics = [sum(w * circuit_metric(model, graph, keep, p, c) for p, c, w in prepared)
               for keep in keeps]
    # under torchrun: the means over every rank's pairs (one process: as they are)
    clean_m, corr_m, *metrics = global_means([clean_m, corr_m, *metrics], n_total)
    faith = [(m - corr_m) / (clean_m - corr_m) for m in metrics]
    return CircuitMetrics(metrics, faith, clean_m, corr_m, global_count(n_total))


def faithfulness_curve(model: Any, graph: EdgeGraph, scores: torch.Tensor,
                       pairs: Sequence[PatchPair], budgets: Sequence[float] = MIB_BUDGETS,
                       rankings: Sequence[str] = RANKINGS) -> Curve:
    """Faithfulness at each budget (and of the empty circuit), for each ranking; CPR/CMD.

    ``pairs`` as in :func:`circuit_metrics`: one forward pass per chunk, budget and ranking.
    """
    rows = [{"ranking": ranking, "budget": budget, "n_edges": int(budget * graph.n_edges)}
            for ranking in rankings for budget in (0.0, *budgets)]
    keeps = [top_edges(graph, scores, r["n_edges"], r["ranking"]) for r in rows]
    metrics = circuit_metrics(model, graph, keeps, pairs)
    for row, m, f in zip(rows, metrics.metrics, metrics.faithfulness):
        row.update(metric=m, faithfulness=f)
    clean_m, corr_m, n_total = metrics.clean_metric, metrics.corrupted_metric, metrics.n_pairs
    table = pd.DataFrame(rows)
    summary = []
    for ranking in rankings:
        part = table[(table.ranking == ranking) & (table.budget > 0)]
        cpr, cmd = cpr_cmd(part.budget.tolist(), part.faithfulness.tolist())
        summary.append({"ranking": ranking, "cpr": cpr, "cmd": cmd, "clean_metric": clean_m,
                        "corrupted_metric": corr_m, "n_edges": graph.n_edges,
                        "n_pairs": n_total})
    return Curve(table, pd.DataFrame(summary))
