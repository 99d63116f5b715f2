"""analyses.figures.probes: the figures show exactly the table's numbers, in the right cells."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analyses.figures import probes as pf
from tests.support.store import (
    entropy_table,
    head_norms_table,
    massive_summary_table,
    massive_table,
)


def test_entropy_heatmap_cells_and_collapse_markers():
    df = entropy_table("m")
    fig = pf.entropy_heatmap(df, stat="norm_mean")
    heat, marks = fig.data
    expected = df[df["stat"] == "norm_mean"].set_index(["layer", "head"])["value"]
    for (layer, head), value in expected.items():
        assert heat.z[layer][head] == pytest.approx(value)
    # exactly the collapsed head (layer 1, head 2) is marked
    assert list(zip(marks.y, marks.x)) == [("1", "2")]
    # the hover text carries the bound beside the measured value
    assert "bound_mean" in heat.customdata[0][0]


def test_entropy_heatmap_without_collapse_stat_has_no_markers():
    df = entropy_table("m")
    fig = pf.entropy_heatmap(df[df["stat"] != "collapsed"], stat="mean")
    assert len(fig.data) == 1


def test_entropy_bound_figure_points_and_diagonal():
    df = entropy_table("m")
    fig = pf.entropy_bound_figure(df)
    points = [t for t in fig.data if t.mode == "markers"]
    xs = np.concatenate([np.asarray(t.x) for t in points])
    ys = np.concatenate([np.asarray(t.y) for t in points])
    assert len(xs) == df[["layer", "head"]].drop_duplicates().shape[0]
    assert (ys >= xs).all()  # the fixture respects the theorem, so no point is below y = x
    diag = fig.data[-1]
    assert diag.mode == "lines" and list(diag.x) == list(diag.y)


def test_entropy_bound_figure_needs_bound():
    df = entropy_table("m")
    with pytest.raises(ValueError, match="bound_mean"):
        pf.entropy_bound_figure(df[df["stat"] != "bound_mean"])


def test_missing_columns_and_empty_tables_are_clear_errors():
    with pytest.raises(ValueError, match="lacks columns"):
        pf.entropy_heatmap(pd.DataFrame({"layer": [0]}))
    with pytest.raises(ValueError, match="empty"):
        pf.massive_summary_figure(massive_summary_table().iloc[:0])
    with pytest.raises(ValueError, match="no rows with stat 'nope'"):
        pf.head_norms_heatmap(head_norms_table(), stat="nope")


def test_massive_summary_figure_log_scale_per_stat():
    df = massive_summary_table()
    fig = pf.massive_summary_figure(df)
    assert [t.name for t in fig.data] == ["top1", "top2", "median", "top1_max"]
    top1 = df[df["stat"] == "top1"].sort_values("layer")["value"].to_numpy()
    assert np.allclose(fig.data[0].y, top1)
    assert fig.layout.yaxis.type == "log"


def test_massive_top_table_aggregates_dim_and_token():
    df = massive_table()
    top = pf.massive_top_table(df)
    assert set(top["token"]) == {"[CLS]", "[SEP]"}
    sep = top.set_index("token").loc["[SEP]"]
    sel = df[df["token"] == "[SEP]"]
    assert sep["count"] == len(sel)
    assert sep["max_abs_value"] == pytest.approx(sel["value"].abs().max())
    assert (sep["first_layer"], sep["last_layer"]) == (0, 1)
    assert top["max_abs_value"].is_monotonic_decreasing


def test_massive_dims_figure_one_point_per_layer_dim():
    fig = pf.massive_dims_figure(massive_table())
    assert list(fig.data[0].x) == [0, 1] and list(fig.data[0].y) == ["99", "99"]


def test_head_norms_heatmap_ignores_whole_layer_rows():
    df = head_norms_table()
    fig = pf.head_norms_heatmap(df)
    z = np.asarray(fig.data[0].z)
    assert z.shape == (2, 4)
    want = df[(df["stat"] == "mean") & (df["head"] == 3) & (df["layer"] == 1)]["value"].item()
    assert z[1, 3] == pytest.approx(want)


def test_emergence_figure_pairs_points_with_fits():
    steps = np.array([1, 10, 100, 1000])
    obs = pd.DataFrame({"step": np.tile(steps, 2), "layer": np.repeat([0, 1], 4),
                        "value": np.r_[1, 5, 20, 15, 1, 2, 3, 4.0]})
    grid = np.geomspace(1, 1000, 20)
    fit = pd.DataFrame({"step": np.tile(grid, 2), "layer": np.repeat([0, 1], 20),
                        "value": np.linspace(0, 1, 40)})
    fig = pf.emergence_figure(obs, fit)
    assert [t.mode for t in fig.data] == ["markers", "lines", "markers", "lines"]
    assert len(fig.data[1].x) == 20 and fig.layout.xaxis.type == "log"
    assert len(pf.emergence_figure(obs).data) == 2


def test_pattern_frame_round_trip_and_shape_check():
    pattern = np.tril(np.ones((3, 3))) / np.arange(1, 4)[:, None]
    df = pf.pattern_frame(pattern, ["<bos>", "a", "b"])
    fig = pf.attention_pattern_figure(df)
    assert np.allclose(np.asarray(fig.data[0].z), pattern)
    assert list(fig.data[0].x) == ["0:<bos>", "1:a", "2:b"]
    with pytest.raises(ValueError, match="does not match 2 tokens"):
        pf.pattern_frame(pattern, ["a", "b"])
