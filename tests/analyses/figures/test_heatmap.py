"""analyses.figures.heatmap: one grid heatmap for every figure, integer ticks, readable height."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analyses.figures.heatmap import grid_height, layer_head_heatmap
from analyses.figures.labels import head_set_label, row_label


def heads_table(n_layers: int, n_heads: int) -> pd.DataFrame:
    rows = [{"layer": la, "head": h, "value": la - h / 2} for la in range(n_layers)
            for h in range(n_heads)]
    rows.append({"layer": 0, "head": -1, "value": 99.0})  # a whole-layer row: left out
    return pd.DataFrame(rows)


def test_layer_head_heatmap_cells_axes_and_labels():
    fig = layer_head_heatmap(heads_table(3, 4), title="t")
    heat = fig.data[0]
    assert np.asarray(heat.z).shape == (3, 4) and heat.z[2][1] == pytest.approx(1.5)
    # category axes: the ticks are the layers and heads themselves, never -0.5 / 0.5
    assert list(heat.x) == ["0", "1", "2", "3"] and list(heat.y) == ["0", "1", "2"]
    assert fig.layout.xaxis.type == "category" and fig.layout.yaxis.type == "category"
    assert fig.layout.yaxis.autorange == "reversed"  # layer 0 on top
    assert heat.text[1][2] == "L1H2" and "%{text}" in heat.hovertemplate


def test_height_grows_with_layers_and_diverging_scale_is_centred():
    small, big = (layer_head_heatmap(heads_table(n, 4), title="t", diverging=True)
                  for n in (2, 30))
    assert big.layout.height > small.layout.height >= grid_height(0)
    assert big.layout.height >= 30 * 20  # at least 20 px per layer for 30 layers
    heat = big.data[0]
    assert heat.zmid == 0 and heat.zmin == -heat.zmax


def test_missing_columns_are_a_clear_error():
    with pytest.raises(ValueError, match="lacks columns"):
        layer_head_heatmap(pd.DataFrame({"layer": [0]}), title="t", what="x")


def test_labels():
    assert row_label(1, 2) == "L1H2" and row_label(3, -1) == "layer 3"
    assert head_set_label("0.1 L1H2 mlp0") == "L0H1 L1H2 mlp0"
    assert head_set_label("5 sets") == "5 sets"
