"""Redundancy figures: distinguishable drop-curve lines, log speedup axis with error bars, and a
sequential head-importance colour bar from 0."""

import numpy as np
import pandas as pd
import pytest

from analyses.figures.redundancy import (
    drop_curve_figure,
    head_importance_heatmap,
    speedup_figure,
)


def _curve() -> pd.DataFrame:
    rows = []
    for mode, seeds in (("one_shot", [-1]), ("iterative", [-1]), ("random", [0, 1])):
        for seed in seeds:
            for n, v in enumerate([1.0, 0.8, 0.5]):
                rows.append({"strategy": "attn", "mode": mode, "seed": seed, "n_dropped": n,
                             "last_dropped": "", "metric": "acc", "value": v - 0.1 * seed})
    return pd.DataFrame(rows)


def test_drop_curve_modes_differ_in_colour_and_dash_and_have_a_legend():
    fig = drop_curve_figure(_curve(), "acc")
    names = [t.name for t in fig.data]
    assert names == ["attn (one_shot)", "attn (iterative)", "attn (random)"]
    assert len({t.line.color for t in fig.data}) == 3
    assert len({t.line.dash for t in fig.data}) == 3
    assert all(t.showlegend for t in fig.data) and fig.layout.showlegend
    # random is the mean over its two seeds (seed 0 and seed 1 differ by 0.1)
    assert list(fig.data[2].y) == pytest.approx([0.95, 0.75, 0.45])


def test_speedup_is_log_axis_with_error_bars_from_median_and_best_of():
    speed = pd.DataFrame({"strategy": ["block"] * 3, "mode": ["one_shot"] * 3,
                          "n_dropped": [0, 1, 4], "speedup": [1.0, 1.05, 199.0],
                          "speedup_min": [0.98, 1.10, 190.0]})
    fig = speedup_figure(speed)
    assert fig.layout.yaxis.type == "log"  # the 199x point does not flatten the others
    err = fig.data[0].error_y
    assert err.visible and err.symmetric is False
    assert list(err.array) == pytest.approx([0.0, 0.05, 0.0])
    assert list(err.arrayminus) == pytest.approx([0.02, 0.0, 9.0])


def _heads(values) -> pd.DataFrame:
    return pd.DataFrame({"task": "ioi", "layer": [0, 0, 1, 1], "head": [0, 1, 0, 1],
                         "method": "zero", "value": values})


def test_head_importance_nonnegative_uses_sequential_scale_from_zero():
    trace = head_importance_heatmap(_heads([0.1, 0.2, 0.3, 0.4])).data[0]
    assert trace.zmin == 0.0 and trace.zmax == pytest.approx(0.4)
    assert trace.zmid is None
    colours = [c for _, c in trace.colorscale]
    assert colours[0] != colours[-1]
    # sequential: lightness falls monotonically from the 0 end (no white midpoint)
    rgb = [np.array([int(c[i:i + 2], 16) for i in (1, 3, 5)]) if c.startswith("#")
           else np.array([float(x) for x in c[c.index("(") + 1:-1].split(",")])
           for c in colours]
    light = [v.sum() for v in rgb]
    assert light == sorted(light, reverse=True)


def test_head_importance_with_negative_values_keeps_diverging_scale():
    trace = head_importance_heatmap(_heads([-0.5, 0.2, 0.3, 0.4])).data[0]
    assert trace.zmid == 0 and trace.zmin == pytest.approx(-0.5) and trace.zmax == 0.5
