"""The Circuits page's edge-circuit view under AppTest: graph with a budget slider, the
faithfulness curve, a discover run not yet evaluated, and an empty store."""

from __future__ import annotations

import json

import pytest

from data.store import RunStore
from tests.dashboard.test_dashboard_pages import assert_clean, markdown_text, open_page
from tests.support.edges import EDGES_RUN, EVAL_RUN, EVAL_RUN_MEAN, edge_store, edge_tables
from tests.support.store import build_fixture_store

PAGE = "views/circuits.py"


@pytest.fixture(scope="module")
def tables():
    return edge_tables()


@pytest.fixture(scope="module")
def store_root(tmp_path_factory, tables):
    return edge_store(tmp_path_factory.mktemp("edges") / "runs", tables)


def _titles(at) -> list[str]:
    return [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]


def test_budget_slider_redraws_the_graph_and_reads_the_curve(store_root, tables, monkeypatch):
    at = open_page(store_root, PAGE, monkeypatch)
    assert_clean(at)
    assert at.selectbox(key="circuit_graph_run").value == EDGES_RUN
    n = len(tables["edges"])
    assert any(t.startswith(f"Edge circuit: {int(0.05 * n)} top-scoring edges of {n}")
               for t in _titles(at))
    cpr = tables["circuit_faithfulness"].set_index("ranking").at["signed", "cpr"]
    assert any(f"CPR {cpr:.3f} (signed)" in t for t in _titles(at))
    assert EVAL_RUN in markdown_text(at)
    assert "ablated with the corrupted prompts' activations" in markdown_text(at)
    curve = tables["faithfulness"].set_index(["ranking", "budget"]).faithfulness
    at.select_slider(key="circuit_graph_budget").set_value(0.2).run()
    at.radio(key="circuit_graph_ranking").set_value("absolute").run()
    assert_clean(at)
    assert any(t.startswith(f"Edge circuit: {int(0.2 * n)} top |score| edges of {n}")
               for t in _titles(at))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Faithfulness at this budget (absolute ranking)"] == (
        f"{curve[('absolute', 0.2)]:.3f}")


def test_a_discover_run_without_evaluation_says_how_to_evaluate_it(tmp_path, tables,
                                                                   monkeypatch):
    root = tmp_path / "runs"
    with RunStore(root).start_run("circuit-discover", "tiny", {"task": "toy", "method": "eap"},
                                  run_id=EDGES_RUN) as run:
        run.write_table("edges", tables["edges"])
    at = open_page(root, PAGE, monkeypatch)
    assert_clean(at)
    assert f"attnlab circuit evaluate --run {EDGES_RUN}" in markdown_text(at)
    assert sum(t.startswith("Edge circuit:") for t in _titles(at)) == 1
    assert not any("CPR" in t for t in _titles(at))


def test_the_page_runs_model_never_gets_another_models_edges(tmp_path, tables, monkeypatch):
    """The page shows an organism circuit run; the store's only edges are the tiny model's."""
    root = edge_store(build_fixture_store(tmp_path / "runs", broken=False), tables)
    at = open_page(root, PAGE, monkeypatch)
    assert_clean(at)
    text = markdown_text(at)
    assert "holds an **edges** table for organism" in text
    assert "attnlab circuit discover --model organism --task induction-keys" in text
    assert not any(t.startswith("Edge circuit:") for t in _titles(at))
    assert EDGES_RUN not in text


def test_an_empty_store_shows_the_discover_command(tmp_path, monkeypatch):
    at = open_page(tmp_path / "empty", PAGE, monkeypatch)
    assert_clean(at)
    assert "attnlab circuit discover --model organism" in markdown_text(at)


def test_the_ablation_is_named_and_old_runs_read_as_corrupted(tables):
    from dashboard.views.circuit_graph import ablation_words

    curve = tables["faithfulness"]
    assert ablation_words(curve) == "the corrupted prompts'"
    assert ablation_words(curve.drop(columns="ablation")) == "the corrupted prompts'"
    assert ablation_words(curve.assign(ablation="mean")).startswith("mean (per position")


def test_an_evaluation_can_be_picked_and_the_known_circuit_is_drawn(tmp_path, tables,
                                                                   monkeypatch):
    root = edge_store(tmp_path / "runs", tables, mean=True)
    at = open_page(root, PAGE, monkeypatch)
    assert_clean(at)
    pick = at.selectbox(key="circuit_graph_eval")
    assert pick.value == EVAL_RUN_MEAN and list(pick.options)[1].startswith(EVAL_RUN)
    assert "ablated with mean (per position" in markdown_text(at)
    assert any(t.startswith("Known induction circuit") and "L0H1" in t for t in _titles(at))
    pick.set_value(EVAL_RUN).run()
    assert_clean(at)
    assert "ablated with the corrupted prompts' activations" in markdown_text(at)
    cpr = tables["circuit_faithfulness"].set_index("ranking").at["signed", "cpr"]
    assert any(f"CPR {cpr:.3f} (signed)" in t for t in _titles(at))
