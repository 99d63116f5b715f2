"""A run store holding one edge circuit of a tiny random decoder, for the report, dashboard and
figure tests: a ``circuit discover`` run (EAP, table ``edges``) and the ``circuit evaluate`` run
made from it (``faithfulness``, ``circuit_faithfulness``), written as ``attnlab circuit`` writes
them (same tables, same manifest config links), from real scores of the tiny model.

    root = edge_store(tmp_path / "runs")
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from transformer_lens import HookedTransformer

from data.store import RunStore
from tests.support.tiny import make_pair, tiny_cfg

MODEL, TASK = "tiny", "toy"
EDGES_RUN = "20260102-000000-circuit-discover-tiny"
EVAL_RUN = "20260102-000100-circuit-evaluate-tiny"


def edge_tables() -> dict[str, pd.DataFrame]:
    """``edges``, ``faithfulness`` and ``circuit_faithfulness`` of a 2-layer random decoder."""
    from analyses.causal.edges.eap import edge_attribution, scores_table
    from analyses.causal.edges.faithfulness import faithfulness_curve

    torch.manual_seed(0)
    model = HookedTransformer(tiny_cfg()).eval()
    pair = make_pair(seed=7)
    res = edge_attribution(model, pair)
    curve = faithfulness_curve(model, res.graph, res.scores, [pair])
    tag = {"task": TASK, "method": "eap"}
    return {"edges": scores_table(res).assign(task=TASK),
            "faithfulness": curve.table.assign(**tag),
            "circuit_faithfulness": curve.summary.assign(**tag)}


def edge_store(root: str | Path, tables: dict[str, pd.DataFrame] | None = None) -> Path:
    """Write the discover run and its evaluation under ``root``; returns ``root``."""
    tables = tables or edge_tables()
    store = RunStore(root)
    config = {"task": TASK, "method": "eap", "steps": 5, "n": 3, "seed": 0, "batch_size": 16}
    with store.start_run("circuit-discover", MODEL, config, run_id=EDGES_RUN) as run:
        run.write_table("edges", tables["edges"])
    config = {"source_run": EDGES_RUN, "task": TASK, "method": "eap", "n": 3, "seed": 0,
              "ablation": "corrupted", "batch_size": 16}
    with store.start_run("circuit-evaluate", MODEL, config, run_id=EVAL_RUN) as run:
        run.write_table("faithfulness", tables["faithfulness"])
        run.write_table("circuit_faithfulness", tables["circuit_faithfulness"])
    return Path(root)
