"""The interventions panel of the Massive activations page, under AppTest, on a tiny store.

The store's tables go through ``Run.write_table`` (so they follow ``data/schemas.toml``); the
page is reached through the real entry file, as in test_dashboard_pages.
"""

from __future__ import annotations

import json

import pandas as pd
from streamlit.testing.v1 import AppTest

from analyses.cli.commands.dashboard_cmd import app_path
from data.store import RunStore

N_LAYERS, N_HEADS = 2, 3


def ablation_table() -> pd.DataFrame:
    rows = []
    for cond, draws, loss in [("none", 1, 2.0), ("zero", 1, 9.0), ("mean", 1, 2.01),
                              ("random", 3, 2.05)]:
        for d in range(draws):
            for metric, value in [("lm_loss", loss + 0.01 * d), ("perplexity", 7.0),
                                  ("acc_ioi", 0.9 - 0.1 * (cond == "zero")), ("n_patched", 1.0)]:
                rows.append((cond, d, metric, -1, value))
            rows += [(cond, d, "sink_rate", la, 0.5) for la in (-1, *range(N_LAYERS))]
    return pd.DataFrame(rows, columns=["condition", "draw", "metric", "layer", "value"])


def decomposition_table() -> pd.DataFrame:
    stats = {"sink_score": 0.6, "q_norm": 5.0, "k0_norm": 9.0, "cos0": 0.3, "score0": 4.0,
             "k_other_norm": 5.0, "cos_other": -0.1, "score_other": -1.0, "v0_out_norm": 1.0,
             "v_other_out_norm": 4.0, "n_queries": 50.0}
    return pd.DataFrame([(la, h, s, v + 0.01 * h) for la in range(N_LAYERS)
                         for h in range(N_HEADS) for s, v in stats.items()],
                        columns=["layer", "head", "stat", "value"])


def removal_table() -> pd.DataFrame:
    rows = [("layer", la, -1, "lm_loss", 2.0 + 0.1 * la, 2.0, 0.1 * la) for la in range(N_LAYERS)]
    rows.append(("head", 1, 2, "lm_loss", 2.02, 2.0, 0.02))
    return pd.DataFrame(rows, columns=["scope", "layer", "head", "metric", "value", "baseline",
                                       "delta"])


def open_massive_page(root, monkeypatch) -> AppTest:
    monkeypatch.setenv("ATTNLAB_RUNS", str(root))
    at = AppTest.from_file(str(app_path()), default_timeout=180).run()
    at.switch_page("views/massive.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def test_panel_shows_the_ablation_and_the_sink_study(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs")
    with store.start_run(command="massive ablate", model="smollm2") as run:
        run.write_table("massive_ablation", ablation_table())
        run.write_table("massive_sites", pd.DataFrame({"layer": [1], "dim": [7],
                                                       "token": ["<bos>"], "token_id": [1],
                                                       "mean": [123.0],
                                                       "count": [10]}))
    with store.start_run(command="massive sinks", model="organism") as run:
        run.write_table("sink_decomposition", decomposition_table())
        run.write_table("sink_removal", removal_table())
    at = open_massive_page(store.root, monkeypatch)
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert any(t.startswith("Massive activations patched") for t in titles)
    assert "Sink rate per layer on held-out text" in titles
    assert "Why heads attend to position 0: direction vs key length" in titles
    assert any(t.startswith("Removing the attention to position 0") for t in titles)
    summary = next(d.value for d in at.dataframe if "condition" in d.value.columns)
    assert list(summary["condition"]) == ["none", "zero", "mean", "random"]
    assert summary.set_index("condition").at["random", "draws"] == 3
    assert summary.set_index("condition").at["zero", "lm_loss"] == 9.0
    captions = "\n".join(c.value for c in at.caption)
    assert "dim 7 on '<bos>'" in captions and "Q4_1" in captions


def test_panel_says_how_to_make_the_runs(tmp_path, monkeypatch):
    at = open_massive_page(tmp_path / "empty", monkeypatch)
    codes = [c.value for c in at.code]
    assert "attnlab massive ablate --model smollm2" in codes
    assert any(c.startswith("attnlab massive sinks") for c in codes)


def test_panel_offers_only_the_page_runs_model(tmp_path, monkeypatch):
    """A page shows one model: with an organism page run, a SmolLM2 ablation run is not offered;
    the panel names the organism's command instead (and which models have a run)."""
    from tests.support.store import massive_summary_table

    store = RunStore(tmp_path / "runs")
    with store.start_run(command="massive ablate", model="smollm2") as run:
        run.write_table("massive_ablation", ablation_table())
    with store.start_run(command="probe", model="organism") as run:
        run.write_table("massive_summary", massive_summary_table())
    at = open_massive_page(store.root, monkeypatch)
    codes = [c.value for c in at.code]
    assert "attnlab massive ablate --model organism" in codes, codes
    assert not [c for c in at.get("plotly_chart")
                if json.loads(c.proto.spec)["layout"]["title"]["text"].startswith(
                    "Massive activations patched")]
    assert "Runs of smollm2 hold it" in "\n".join(c.value for c in at.caption)
