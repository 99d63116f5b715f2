"""Which stored runs belong to one edge circuit: a ``circuit discover`` run (table ``edges``)
and the ``circuit evaluate`` runs made from it (``faithfulness``, ``circuit_faithfulness`` and,
on induction tasks, ``known_circuit``; their manifest's ``config.source_run`` names the
discover run). A discover run may have several evaluations (e.g. corrupted and mean ablation).

The circuit report and the dashboard's circuit-graph view read an edge circuit through here,
so both pair the same evaluation with the same edges.
"""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd

from data.store import Run, RunStore


class EdgeCircuit(NamedTuple):
    """One discover run's tables and, when it was evaluated, one evaluation's (the newest
    unless another was asked for)."""

    edges_run: str
    model: str | None
    task: str | None
    method: str | None
    edges: pd.DataFrame  # schema ``edges``
    eval_run: str | None = None
    faithfulness: pd.DataFrame | None = None  # schema ``faithfulness``
    summary: pd.DataFrame | None = None  # schema ``circuit_faithfulness``
    known: pd.DataFrame | None = None  # schema ``known_circuit`` (induction tasks)
    evaluations: tuple[str, ...] = ()  # every evaluation run of the discover run, newest first


def ablation_of(table: pd.DataFrame | None) -> str:
    """The ablation an evaluation table records (``corrupted`` | ``mean``); tables written
    before mean ablation existed have no ``ablation`` column and were corrupted."""
    if table is None or "ablation" not in table.columns or table.empty:
        return "corrupted"
    return str(table.ablation.iloc[0])


def _config(run: Run) -> dict:
    config = run.manifest.get("config")
    return config if isinstance(config, dict) else {}


def evaluations_of(store: RunStore, edges_run: str) -> list[Run]:
    """Completed ``circuit evaluate`` runs of ``edges_run``, newest first."""
    return [r for r in store.find_runs("circuit_faithfulness")
            if _config(r).get("source_run") == edges_run and r.has_table("faithfulness")]


def edge_circuit(store: RunStore, edges_run: str, eval_run: str | None = None) -> EdgeCircuit:
    """The edge circuit of a discover run, or of an evaluate run (its source run is read),
    with evaluation ``eval_run`` (default: the evaluate run given, else the newest)."""
    run = store.open_run(edges_run)
    if not run.has_table("edges"):
        eval_run = eval_run or edges_run
        source = _config(run).get("source_run")
        if not isinstance(source, str):
            raise ValueError(f"run {edges_run} has no 'edges' table and names no source run: "
                             "give a `circuit discover` or `circuit evaluate` run")
        run = store.open_run(source)
    config = _config(run)
    evals = evaluations_of(store, run.run_id)
    ids = tuple(r.run_id for r in evals)
    if eval_run is not None and eval_run not in ids:
        raise ValueError(f"run {eval_run} is no completed evaluation of {run.run_id}; its "
                         f"evaluations: {', '.join(ids) or 'none'}")
    ev = evals[ids.index(eval_run)] if eval_run is not None else (evals[0] if evals else None)
    return EdgeCircuit(
        run.run_id, run.manifest.get("model"), config.get("task"), config.get("method"),
        run.read_table("edges"), ev.run_id if ev else None,
        ev.read_table("faithfulness") if ev else None,
        ev.read_table("circuit_faithfulness") if ev else None,
        ev.read_table("known_circuit") if ev and ev.has_table("known_circuit") else None,
        ids)


def latest_edge_circuit(store: RunStore, model: str, task: str) -> EdgeCircuit | None:
    """The newest discover run of ``model`` on ``task`` (an evaluated one first), or None."""
    runs = [r for r in store.find_runs("edges", model) if _config(r).get("task") == task]
    if not runs:
        return None
    evaluated = [r for r in runs if evaluations_of(store, r.run_id)]
    return edge_circuit(store, (evaluated or runs)[0].run_id)
