"""A run store holding one edge circuit of a tiny random decoder, for the report, dashboard and
figure tests: a ``circuit discover`` run (EAP, table ``edges``) and the ``circuit evaluate`` run
made from it (``faithfulness``, ``circuit_faithfulness``, ``known_circuit`` with L0H1 taken as
a previous-token and L1H0 as an induction head), written as ``attnlab circuit`` writes them
(same tables, same manifest config links), from real scores of the tiny model; with
``mean=True`` also a second, newer evaluation with mean ablation.

    root = edge_store(tmp_path / "runs")
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import torch
from transformer_lens import HookedTransformer

from data.store import RunStore
from tests.support.tiny import make_pair, tiny_cfg

MODEL, TASK = "tiny", "toy"
EDGES_RUN = "20260102-000000-circuit-discover-tiny"
EVAL_RUN = "20260102-000100-circuit-evaluate-tiny"
EVAL_RUN_MEAN = "20260102-000200-circuit-evaluate-tiny"
EVAL_TABLES = ("faithfulness", "circuit_faithfulness", "known_circuit")


def edge_tables() -> dict[str, pd.DataFrame]:
    """``edges`` and the :data:`EVAL_TABLES` of a 2-layer random decoder, the latter also with
    mean ablation (keys ending in ``_mean``)."""
    from analyses.causal.edges.eap import edge_attribution, scores_table
    from analyses.causal.edges.faithfulness import faithfulness_curve
    from analyses.causal.edges.known import InductionHeads, known_circuit_table

    torch.manual_seed(0)
    model = HookedTransformer(tiny_cfg()).eval()
    pair = make_pair(seed=7)
    res = edge_attribution(model, pair)
    heads = InductionHeads(previous_token=[(0, 1)], induction=[(1, 0)])
    tag = {"task": TASK, "method": "eap"}
    out = {"edges": scores_table(res).assign(task=TASK)}
    for ablation, suffix in (("corrupted", ""), ("mean", "_mean")):
        curve = faithfulness_curve(model, res.graph, res.scores, [pair], ablation=ablation)
        known = known_circuit_table(model, res.graph, heads, [pair], res.scores, ablation)
        out |= {f"faithfulness{suffix}": curve.table.assign(**tag),
                f"circuit_faithfulness{suffix}": curve.summary.assign(**tag),
                f"known_circuit{suffix}": known.assign(task=TASK)}
    return out


def edge_store(root: str | Path, tables: dict[str, pd.DataFrame] | None = None,
               mean: bool = False) -> Path:
    """Write the discover run and its evaluation (and, with ``mean``, the newer mean-ablation
    evaluation) under ``root``; returns ``root``."""
    tables = tables or edge_tables()
    store = RunStore(root)
    config = {"task": TASK, "method": "eap", "steps": 5, "n": 3, "seed": 0, "batch_size": 16}
    with store.start_run("circuit-discover", MODEL, config, run_id=EDGES_RUN) as run:
        run.write_table("edges", tables["edges"])
    evals = [("corrupted", "", EVAL_RUN)] + ([("mean", "_mean", EVAL_RUN_MEAN)] if mean else [])
    for i, (ablation, suffix, run_id) in enumerate(evals):
        if i:  # the store orders runs by their start time, to the second: start a newer one
            time.sleep(1.05)
        config = {"source_run": EDGES_RUN, "task": TASK, "method": "eap", "n": 3, "seed": 0,
                  "ablation": ablation, "batch_size": 16}
        with store.start_run("circuit-evaluate", MODEL, config, run_id=run_id) as run:
            for name in EVAL_TABLES:
                run.write_table(name, tables[name + suffix])
    return Path(root)
