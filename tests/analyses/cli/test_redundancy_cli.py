"""`attnlab redundancy` end to end on the organism, its bad requests, and the figures."""

from __future__ import annotations

import json

import pandas as pd
import plotly.graph_objects as go
import pytest

from analyses.cli.main import main
from analyses.figures.redundancy import (
    drop_curve_figure,
    head_importance_heatmap,
    importance_bars,
    importance_heatmap,
    speedup_figure,
)
from analyses.redundancy.scores import he_comparison
from data import schemas
from data.store import RunStore
from probes.models import unwrap


def test_unknown_strategy_and_model_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["redundancy", "--model", "organism", "--strategy", "heads"])
    assert "invalid choice: 'heads'" in capsys.readouterr().err
    assert main(["redundancy", "--runs-dir", str(tmp_path), "--model", "gpt2"]) == 2
    assert "--model must be 'organism' or 'minilm'" in capsys.readouterr().err


def test_too_many_drops_is_refused(organism, tmp_path, capsys):
    rc = main(["redundancy", "--runs-dir", str(tmp_path), "--model", "organism",
               "--strategy", "attn", "--max-drop", "99"])
    assert rc == 2
    n_layers = unwrap(organism).cfg.n_layers  # one attention sublayer per layer
    assert f"can drop at most {n_layers} components" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_writes_a_complete_run(organism, tmp_path):
    rc = main(["redundancy", "--runs-dir", str(tmp_path), "--model", "organism",
               "--strategy", "joint", "--max-drop", "2", "--iterative", "--heads",
               "--head-items", "4", "--repeats", "1", "--random-seeds", "0", "--n-items", "8"])
    assert rc == 0
    run = RunStore(tmp_path).open_run(RunStore(tmp_path).list_runs().run_id.iloc[0])
    assert run.manifest["status"] == "complete"
    for name in ("redundancy", "drop_curve", "speedup", "head_importance"):
        schemas.validate(name, run.read_table(name))
    curve = run.read_table("drop_curve")
    assert set(curve["mode"]) == {"one_shot", "iterative", "random"}
    assert sorted(curve.n_dropped.unique()) == [0, 1, 2]
    he = run.manifest["he_comparison"]
    n_layers = unwrap(organism).cfg.n_layers
    assert len(he["attn_scores"]) == n_layers and isinstance(he["same_ordering"], bool)
    assert (run.path / "redundancy.html").stat().st_size > 100_000
    json.dumps(run.manifest)


def _scores():
    return pd.DataFrame({"layer": [0, 0, 0, 1, 1, 1], "component": ["attn", "mlp", "block"] * 2,
                         "score": [0.05, 0.2, 0.3, 0.01, 0.3, 0.4]})


def test_he_comparison():
    he = he_comparison(_scores())
    assert he.same_ordering and he.attn_layers_by_score == [1, 0]
    assert he.layers_attn_below_mlp == [0, 1] and he.mean_attn == pytest.approx(0.03)
    flipped = _scores().assign(score=[0.5, 0.2, 0.3, 0.4, 0.3, 0.4])
    assert not he_comparison(flipped).same_ordering


def test_figures_from_tables():
    assert len(importance_bars(_scores()).data) == 3
    assert isinstance(importance_heatmap(_scores()), go.Figure)
    curve = pd.DataFrame({"strategy": "attn", "mode": ["one_shot"] * 2 + ["random"] * 4,
                          "seed": [-1, -1, 0, 0, 1, 1], "n_dropped": [0, 1, 0, 1, 0, 1],
                          "last_dropped": ["", "attn1", "", "attn0", "", "attn1"],
                          "metric": "acc", "value": [1.0, 0.9, 1.0, 0.5, 1.0, 0.7]})
    fig = drop_curve_figure(curve, "acc")
    assert len(fig.data) == 2  # one score-based line, one random mean line
    assert list(fig.data[1].y) == pytest.approx([1.0, 0.6])
    speed = pd.DataFrame({"strategy": "attn", "mode": "one_shot", "n_dropped": [0, 1],
                          "speedup": [1.0, 1.3]})
    assert list(speedup_figure(speed).data[0].y) == [1.0, 1.3]
    heads = pd.DataFrame({"task": "ioi", "layer": [0, 0, 1, 1], "head": [0, 1, 0, 1],
                          "method": "zero", "value": [0.1, 0.2, 0.3, 0.4]})
    assert head_importance_heatmap(heads).data[0].z.shape == (2, 2)
    with pytest.raises(ValueError, match="lacks columns"):
        importance_bars(_scores().drop(columns="score"))
    with pytest.raises(ValueError, match="no metric"):
        drop_curve_figure(curve, "loss")
