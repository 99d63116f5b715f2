"""QK and head-explorer figures: the cells are the table's values, the cut keeps the largest."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from analyses.figures.heads import head_score_heatmap, head_scores_wide, top_pattern_figure
from analyses.figures.qk import qk_grid, qk_heatmap


def _terms() -> pd.DataFrame:
    rows = [("embed", "L0H1", 2.0), ("embed", "mlp0", -0.5), ("mlp0", "L0H1", 1.0),
            ("mlp0", "mlp0", 0.1), ("b_Q", "b_K", 0.01)]
    return pd.DataFrame([{"layer": 1, "head": 2, "pairs": "induction", "q_component": q,
                          "k_component": k, "mean": m} for q, k, m in rows])


def test_qk_heatmap_cells_and_cut():
    fig = qk_heatmap(_terms())
    heat = fig.data[0]
    cells = {(y, x): heat.z[i][j] for i, y in enumerate(heat.y) for j, x in enumerate(heat.x)}
    assert cells[("embed", "L0H1")] == 2.0 and cells[("mlp0", "mlp0")] == pytest.approx(0.1)
    assert cells[("b_Q", "L0H1")] == 0.0  # absent term
    assert heat.zmid == 0 and "L1H2" in fig.layout.title.text
    grid = qk_grid(_terms(), top=2)  # largest |term| mass per side: embed, mlp0 / L0H1, mlp0
    assert list(grid.index) == ["embed", "mlp0"] and list(grid.columns) == ["L0H1", "mlp0"]
    assert "top 2 of 3" in qk_heatmap(_terms(), top=2).layout.title.text


def test_qk_heatmap_refuses_two_heads():
    two = pd.concat([_terms(), _terms().assign(head=3)])
    with pytest.raises(ValueError, match="one head"):
        qk_heatmap(two)


def test_head_figures():
    scores = pd.DataFrame([(la, h, s, la + h / 10 + (s == "entropy")) for la in range(2)
                           for h in range(3) for s in ("induction", "entropy", "n_queries")],
                          columns=["layer", "head", "stat", "value"])
    wide = head_scores_wide(scores)
    assert list(wide.columns) == ["label", "layer", "head", "entropy", "induction"]
    assert wide.set_index("label").loc["L1H2", "induction"] == pytest.approx(1.2)
    fig = head_score_heatmap(scores, "induction")
    assert fig.data[0].z[1][2] == pytest.approx(1.2)
    with pytest.raises(ValueError, match="no 'sink_rate' rows"):
        head_score_heatmap(scores, "sink_rate")
    seq = pd.Series({"layer": 1, "head": 0, "rank": 0, "dataset": "induction", "sequence": 3,
                     "position": 2, "norm": 1.5, "tokens": json.dumps(["<bos>", "a", "b"])})
    pats = pd.DataFrame({"layer": 1, "head": 0, "rank": 0, "query_pos": [0, 1, 1, 2, 2, 2],
                         "key_pos": [0, 0, 1, 0, 1, 2],
                         "weight": [1.0, 0.25, 0.75, 0.1, 0.2, 0.7]})
    heat = top_pattern_figure(pats, seq).data[0]
    assert heat.z[1][1] == 0.75 and heat.z[0][2] == 0.0 and list(heat.x) == ["0:<bos>", "1:a",
                                                                              "2:b"]
