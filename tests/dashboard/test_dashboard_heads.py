"""The Heads page (head explorer) under AppTest, with an organism run and a SmolLM2 run."""

from __future__ import annotations

import pytest

from data.store import RunStore
from tests.dashboard.test_dashboard_pages import assert_clean, markdown_text, open_page
from tests.support.heads import heads_store

PAGE = "views/heads.py"


@pytest.fixture(scope="module")
def store_root(tmp_path_factory, organism, smollm2):
    return heads_store(tmp_path_factory.mktemp("heads") / "runs", organism, smollm2)


def _charts(at):
    return at.get("plotly_chart")


@pytest.mark.parametrize("model", ["smollm2", "organism"])
def test_heads_page_shows_scores_patterns_and_qk(store_root, monkeypatch, model):
    at = open_page(store_root, PAGE, monkeypatch)
    runs = RunStore(store_root).list_runs().set_index("model")
    at.selectbox(key="heads_run").set_value(runs.loc[model, "run_id"]).run()
    assert_clean(at)
    at.selectbox(key="heads_stat").set_value("induction").run()
    assert_clean(at)
    top = at.selectbox(key="heads_head").options[0]  # heads ordered by induction score
    at.selectbox(key="heads_head").set_value(top).run()
    assert_clean(at)
    text = markdown_text(at) + "\n".join(h.value for h in at.header)
    assert f"{top}: QK decomposition" in text and "QK terms from run" in text
    assert len(_charts(at)) == 3  # score heatmap, one top prompt's pattern, QK heatmap
    n_layers = 30 if model == "smollm2" else 6  # the organism has 6 layers of 4 heads
    assert len(at.dataframe[0].value) == n_layers * (9 if model == "smollm2" else 4)
    # a head without a decomposition says how to get one
    other = [o for o in at.selectbox(key="heads_head").options if o != top][-1]
    at.selectbox(key="heads_head").set_value(other).run()
    assert_clean(at)
    assert "attnlab qk --model " + model in "\n".join(c.value for c in at.code)


def test_heads_page_on_an_empty_store(tmp_path, monkeypatch):
    at = open_page(tmp_path / "empty", PAGE, monkeypatch)
    assert_clean(at)
    assert "No completed run" in markdown_text(at)
    assert "attnlab heads --model organism" in "\n".join(c.value for c in at.code)
