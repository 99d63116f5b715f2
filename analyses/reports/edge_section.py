"""The circuit report's edge-circuit sections: the run store's newest ``circuit discover`` run
of the report's model and task (:mod:`analyses.causal.edges.runs`), its top edges (heads as
``L1H2``), the circuit graph, and, when the run was evaluated, the faithfulness curve with
MIB's CPR and CMD and, on an induction task, the known induction circuit's edge sets.

:func:`with_edge_circuit` appends them to a report :class:`~analyses.reports.page.Page`; a
store without an edges run for that model and task leaves the page as it is.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from analyses.causal.edges.runs import EdgeCircuit, ablation_of, latest_edge_circuit
from analyses.causal.task_sets import model_note
from analyses.figures.edges import circuit_graph, faithfulness_figure, known_circuit_figure
from analyses.reports import page as pages
from data.store import RunStore

KNOWN_TEXT = ("The induction circuit with its heads found from attention patterns "
              "(analyses.causal.edges.known): each edge set kept alone (faithfulness near 1: "
              "sufficient); the full graph without the core edges or without every edge out of "
              "the induction heads (near 0: necessary); and the full graph without the other "
              "heads of the circuit's layers (a practical ceiling for circuits on the found "
              "heads). Ranks: the core edges' among all edges by this run's scores.")
TOP_EDGES = 20  # rows of the top-edges table
GRAPH_BUDGET, GRAPH_MAX = 0.05, 80  # the graph: top 5% of edges, at most 80 (legibility)


def top_edges_table(edges: pd.DataFrame, n: int = TOP_EDGES) -> pd.DataFrame:
    """The ``n`` highest-scoring edges: rank, source, target (heads as ``L1H2``), score."""
    top = edges.sort_values("score", ascending=False, kind="stable").head(n)
    return top[["rank", "source", "target", "score"]].round({"score": 4}).reset_index(drop=True)


def graph_size(n_edges: int) -> int:
    """How many top edges the report's graph draws."""
    return max(1, min(int(GRAPH_BUDGET * n_edges), GRAPH_MAX))


def _summary_text(c: EdgeCircuit) -> str:
    note = model_note(c.model) if c.model else ""
    words = [f"{c.method} scores of the {len(c.edges)} edges of {c.model}"
             + (f" ({note})" if note else "") + f" on task {c.task}, run `{c.edges_run}`."]
    if c.summary is not None:
        s = c.summary.set_index("ranking")
        n_pairs = int(s["n_pairs"].iloc[0]) if "n_pairs" in s.columns else None
        words.append(
            f"Evaluated in run `{c.eval_run}`" + (f" on {n_pairs} pairs" if n_pairs else "")
            + f", every edge outside the circuit ablated with {ablation_of(c.summary)} "
            "activations: "
            f"CPR {s.at['signed', 'cpr']:.3f} (signed ranking, higher is better), "
            f"CMD {s.at['absolute', 'cmd']:.3f} (|score| ranking, lower is better).")
    else:
        words.append(f"Not evaluated yet: `attnlab circuit evaluate --run {c.edges_run}`.")
    words.append("Score > 0: corrupting the edge lowers the logit difference (the edge "
                 "supports the task).")
    return " ".join(words)


def edge_sections(c: EdgeCircuit, with_figures: bool = True) -> list[pages.Section]:
    """The report's sections for one edge circuit."""
    blocks: list = [pages.Text(_summary_text(c)), pages.Table(top_edges_table(c.edges))]
    out = [pages.Section(f"Edge circuit ({c.method}): top edges", tuple(blocks))]
    if c.summary is not None:
        cols = [k for k in ("ranking", "cpr", "cmd", "clean_metric", "corrupted_metric",
                            "n_edges", "n_pairs") if k in c.summary.columns]
        blocks = [pages.Table(c.summary[cols].round(4))]
        if with_figures:
            blocks.append(pages.Figure(faithfulness_figure(c.faithfulness, c.summary)))
        out.append(pages.Section("Edge circuit: faithfulness vs edge budget (MIB)",
                                 tuple(blocks)))
    if c.known is not None:
        cols = [k for k in ("variant", "n_edges", "faithfulness", "previous_token_heads",
                            "induction_heads", "core_best_rank", "core_worst_rank")
                if k in c.known.columns]
        blocks = [pages.Text(KNOWN_TEXT), pages.Table(c.known[cols].round(4))]
        if with_figures:
            blocks.append(pages.Figure(known_circuit_figure(c.known)))
        out.append(pages.Section("Known induction circuit", tuple(blocks)))
    if with_figures:
        k = graph_size(len(c.edges))
        out.append(pages.Section(f"Edge circuit graph (top {k} edges)",
                                 (pages.Figure(circuit_graph(c.edges, k)),)))
    return out


def with_edge_circuit(page: pages.Page, store: RunStore, model: str, task: str,
                      with_figures: bool = True) -> pages.Page:
    """``page`` with the edge-circuit sections of ``model``/``task`` appended, if any."""
    c = latest_edge_circuit(store, model, task)
    if c is None:
        return page
    return dataclasses.replace(page, sections=page.sections + tuple(edge_sections(c,
                                                                                 with_figures)))
