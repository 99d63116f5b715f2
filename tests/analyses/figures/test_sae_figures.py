"""analyses.figures.saes: figures carry exactly one feature's rows of the SAE tables."""

from __future__ import annotations

import numpy as np
import pytest

from analyses.figures import saes as sf
from tests.support.store import sae_tables


@pytest.fixture(scope="module")
def tables():
    return sae_tables()


def test_feature_ranking_orders_by_max_activation(tables):
    rank = sf.feature_ranking(tables["sae_feature_examples"])
    assert list(rank["feature"]) == [42, 7]
    assert list(rank["max_activation"]) == [5.0, 2.0]
    assert list(rank["n_examples"]) == [3, 3]


def test_histogram_bars_match_bins(tables):
    hist = tables["sae_feature_hist"]
    fig = sf.feature_histogram_figure(hist, 42)
    part = hist[hist["feature"] == 42]
    assert list(fig.data[0].y) == list(part["count"])
    assert np.allclose(fig.data[0].x, (part["bin_left"] + part["bin_right"]) / 2)


def test_heads_figure_has_both_shares(tables):
    fig = sf.feature_heads_figure(tables["sae_feature_heads"], 42)
    share, weight = fig.data
    assert list(share.x) == ["L1H0", "L1H1", "L1H2", "L1H3"]
    assert share.y[0] == pytest.approx(0.7) and sum(share.y) == pytest.approx(1.0)
    assert weight.name == "decoder-weight share"


def test_logit_effects_signs(tables):
    fig = sf.logit_effects_figure(tables["sae_logit_effects"], 7)
    values = np.asarray(fig.data[0].x)
    colors = list(fig.data[0].marker.color)
    assert (values[np.asarray(colors) == "#2ca02c"] > 0).all()
    assert (values[np.asarray(colors) == "#d62728"] < 0).all()
    assert list(values) == sorted(values)


def test_unknown_feature_and_stat_are_clear_errors(tables):
    with pytest.raises(ValueError, match="feature 999 has no rows"):
        sf.feature_histogram_figure(tables["sae_feature_hist"], 999)
    with pytest.raises(ValueError, match="no rows with stat 'bogus'"):
        sf.head_summary_heatmap(tables["sae_head_summary"], "bogus")


def test_head_summary_heatmap_grid(tables):
    fig = sf.head_summary_heatmap(tables["sae_head_summary"], "n_features")
    assert np.asarray(fig.data[0].z).tolist() == [[2.0, 1.0, 1.0, 1.0]]
