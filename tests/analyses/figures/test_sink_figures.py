"""Sink figures: the heatmap shows the sinks table's scores and marks exactly the sink heads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analyses.figures import probes as pf
from tests.support.store import SINK_SCORES, sink_rate_table, sinks_table


def test_sinks_heatmap_cells_markers_and_hover():
    df = sinks_table()
    fig = pf.sinks_heatmap(df, epsilon=0.3)
    heat, marks = fig.data
    expected = df[df["stat"] == "sink_score"].set_index(["layer", "head"])["value"]
    for (layer, head), value in expected.items():
        assert heat.z[layer][head] == pytest.approx(value)
    assert (heat.zmin, heat.zmax) == (0.0, 1.0)  # shares of attention: one fixed scale
    assert list(marks.text) == ["L1H0", "L1H1"] == [f"L{la}H{h}" for la, h in SINK_SCORES]
    assert "delimiter_score" in heat.customdata[0][0]
    assert len(pf.sinks_heatmap(df).data) == 1  # no epsilon: no markers
    at_06 = pf.sinks_heatmap(df, epsilon=0.6).data[1]  # strictly above, like sink_rate
    assert list(at_06.text) == ["L1H0"]


def test_sinks_heatmap_other_stat_and_errors():
    df = sinks_table()
    fig = pf.sinks_heatmap(df, stat="delimiter_score")
    assert fig.data[0].z[0][3] == pytest.approx(0.16)
    with pytest.raises(ValueError, match="no rows with stat 'nope'"):
        pf.sinks_heatmap(df, stat="nope")
    with pytest.raises(ValueError, match="lacks columns"):
        pf.sinks_heatmap(pd.DataFrame({"layer": [0]}))


def test_sink_rate_figure_bars_and_model_line():
    df = sink_rate_table()
    fig = pf.sink_rate_figure(df)
    (bars,) = fig.data
    assert list(bars.x) == [0, 1] and np.allclose(bars.y, [0.0, 0.5])
    (line,) = fig.layout.shapes
    assert line.y0 == line.y1 == pytest.approx(0.25)
    assert "> 0.3" in fig.layout.title.text
    with pytest.raises(ValueError, match="per-layer"):
        pf.sink_rate_figure(df[df["layer"] == -1])
    with pytest.raises(ValueError, match="lacks columns"):
        pf.sink_rate_figure(df.drop(columns="epsilon"))
