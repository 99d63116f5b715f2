"""The edge-circuit view of the Circuits page: a ``circuit discover`` run's top edges as a graph
(budget slider, signed or |score| ranking) and its ``circuit evaluate`` faithfulness curve.

Not a page of its own: :mod:`dashboard.views.circuits` calls :func:`render`. The discover run
and its newest evaluation are paired by :mod:`analyses.causal.edges.runs` (the evaluation's
``config.source_run``), as the circuit report pairs them.
"""

from __future__ import annotations

import streamlit as st

from analyses.causal.edges.faithfulness import MIB_BUDGETS
from analyses.causal.edges.runs import ablation_of, edge_circuit, evaluations_of
from analyses.causal.task_sets import model_note
from analyses.figures.edges import (
    MAX_DRAWN,
    RANKINGS,
    circuit_graph,
    faithfulness_figure,
    known_circuit_figure,
)
from dashboard import howto, readers
from dashboard.charts import show
from data.store import StoreError

DISCOVER = {"organism": "--task induction-keys --method eap-ig",
            "smollm2": "--task ioi --method eap-ig --n 16 --batch-size 8"}
DEFAULT_BUDGET = 0.05


def _budgets(n_edges: int) -> list[float]:
    """MIB's budgets that keep at least one edge and at most :data:`MAX_DRAWN`."""
    return [b for b in MIB_BUDGETS if 1 <= int(b * n_edges) <= MAX_DRAWN]


ABLATION_WORDS = {"corrupted": "the corrupted prompts'",
                  "mean": "mean (per position, over the clean prompts)"}


def ablation_words(curve) -> str:
    """How an evaluation ablated the edges outside its circuits, in words (a ``faithfulness``
    table without the ``ablation`` column predates mean ablation: corrupted)."""
    name = ablation_of(curve)
    return ABLATION_WORDS.get(name, name)


def _model_of(run_id: str | None) -> str | None:
    if run_id is None:
        return None
    try:
        return readers.manifest(run_id).get("model")
    except StoreError:
        return None


def render(prefer: str | None = None, key: str = "circuit_graph") -> None:
    """Pick an edges run of the model of run ``prefer`` (any model without one; ``prefer``
    itself when it holds edges) and draw its circuit; never another model's edges."""
    model = _model_of(prefer)
    runs = readers.runs_with_table("edges")
    if model is not None:
        runs = runs[runs["model"] == model]
    if runs.empty:
        m = model or "organism"
        st.info("No completed run in the store holds an **edges** table"
                + (f" for {m}" if model else "") + " (every edge of the model's graph with its "
                "EAP / EAP-IG score). Write one, then evaluate it:")
        st.code(f"attnlab circuit discover --model {m} "
                f"{DISCOVER.get(m, '--task ioi --method eap-ig')}\n"
                "attnlab circuit evaluate --run RUN_ID", language="bash")
        return
    ids, models = list(runs["run_id"]), dict(zip(runs["run_id"], runs["model"]))
    run_id = st.selectbox("Edges run", ids, index=ids.index(prefer) if prefer in ids else 0,
                          key=f"{key}_run", format_func=lambda r: f"{r}  ·  {models[r]}")
    try:
        store = readers.store()
        ablations = {r.run_id: str(r.manifest.get("config", {}).get("ablation", "corrupted"))
                     for r in evaluations_of(store, run_id)}  # old runs: corrupted
        ev = None
        if len(ablations) > 1:  # e.g. one with corrupted and one with mean ablation
            ev = st.selectbox("Evaluation", list(ablations), key=f"{key}_eval",
                              format_func=lambda r: f"{r}  ·  {ablations[r]} ablation")
        c = edge_circuit(store, run_id, ev)
    except StoreError as exc:
        howto.show_store_error(exc, "edges")
        return
    n = len(c.edges)
    note = model_note(c.model) if c.model else None
    st.caption(f"{c.model}{f' ({note})' if note else ''}, task {c.task}, method {c.method}: "
               f"{n} edges.")
    budgets = _budgets(n)
    if not budgets:
        st.warning(f"This graph has {n} edges; no MIB budget keeps between 1 and {MAX_DRAWN}.")
        return
    c1, c2 = st.columns([3, 1])
    budget = c1.select_slider(
        "Edge budget (fraction of edges kept)", budgets, key=f"{key}_budget",
        value=DEFAULT_BUDGET if DEFAULT_BUDGET in budgets else budgets[0],
        format_func=lambda b: f"{b:g} ({int(b * n)} edges)")
    ranking = c2.radio("Ranking", RANKINGS, key=f"{key}_ranking", horizontal=True,
                       help="signed: the highest scores (MIB's CPR); absolute: the highest "
                       "|scores| (MIB's CMD)")
    show(circuit_graph(c.edges, int(budget * n), ranking=ranking), key=f"{key}_graph")
    if c.faithfulness is None:
        st.caption(f"Run `{c.edges_run}` has no evaluation yet; "
                   f"`attnlab circuit evaluate --run {c.edges_run}` writes its faithfulness "
                   "curve, CPR and CMD.")
    else:
        row = c.faithfulness[(c.faithfulness.ranking == ranking)
                             & (c.faithfulness.budget == budget)]
        if not row.empty:
            st.metric(f"Faithfulness at this budget ({ranking} ranking)",
                      f"{float(row.faithfulness.iloc[0]):.3f}")
        show(faithfulness_figure(c.faithfulness, c.summary), key=f"{key}_curve")
        st.caption(f"Evaluation run `{c.eval_run}`; edges outside the circuit ablated with "
                   f"{ablation_words(c.faithfulness)} activations.")
    if c.known is not None:
        with st.expander("known induction circuit (heads from attention patterns)",
                         expanded=True):
            show(known_circuit_figure(c.known), key=f"{key}_known")
    with st.expander("top edges"):
        st.dataframe(c.edges.head(50), hide_index=True, width="stretch")
