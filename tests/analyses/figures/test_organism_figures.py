"""Figures of the organism's training curves and fresh-seed evaluation."""

from __future__ import annotations

import pandas as pd
import pytest

from analyses.figures.organism import (
    fresh_eval_figure,
    recipe_curves_figure,
    training_curves_figure,
)


def test_training_curves_show_accuracy_and_hop_rows_only():
    dyn = pd.DataFrame({"step": [0, 0, 0, 10, 10, 10], "layer": -1, "head": -1,
                        "metric": ["loss", "accuracy_ioi", "hop_place"] * 2,
                        "value": [5.0, 0.1, 0.2, 1.0, 0.9, 0.8]})
    fig = training_curves_figure(dyn)
    assert sorted(t.name for t in fig.data) == ["accuracy_ioi", "hop_place"]
    assert list(fig.data[0].x) == [0, 10]
    with pytest.raises(ValueError, match="accuracy"):
        training_curves_figure(dyn[dyn.metric == "loss"])


def test_fresh_eval_figure_puts_the_model_beside_its_best_shortcut():
    rows = []
    for seed, (m, a, b) in enumerate([(0.9, 0.3, 0.4), (0.8, 0.35, 0.3)]):
        rows += [("reasoning", seed, "model", m), ("reasoning", seed, "first_city", a),
                 ("reasoning", seed, "last_city", b), ("reasoning", seed, "hop_place", 1.0)]
    fig = fresh_eval_figure(pd.DataFrame(rows, columns=["family", "seed", "measure",
                                                        "accuracy"]))
    bars = {t.name: t for t in fig.data}
    assert bars["model"].y[0] == pytest.approx(0.85)
    assert list(bars["model"].error_y.array) == pytest.approx([0.05])  # max 0.9
    assert list(bars["best shortcut"].text) == ["last_city"]  # mean 0.35 beats 0.325
    assert list(bars["reasoning hop probe"].x) == ["hop_place"]


def test_recipe_curves_have_one_line_per_recipe_and_panel_per_metric():
    curves = pd.DataFrame({"step": [1, 2, 1, 2] * 2, "recipe": ["a", "a", "b", "b"] * 2,
                           "metric": ["reasoning"] * 4 + ["hop_place"] * 4,
                           "value": [0.1, 0.2, 0.3, 0.4] * 2})
    fig = recipe_curves_figure(curves)
    assert {t.name for t in fig.data} == {"a", "b"} and len(fig.data) == 4
    assert {a.text for a in fig.layout.annotations} == {"reasoning", "hop_place"}
