"""The circuit report's edge-circuit sections: from a tiny model's stored edge circuit, and
end to end (`attnlab circuit discover` then `attnlab report circuit` on the organism)."""

from __future__ import annotations

import pytest
import torch

from analyses.causal.edges.runs import ablation_of, edge_circuit, latest_edge_circuit
from analyses.reports import page as pages
from analyses.reports.edge_section import graph_size, top_edges_table, with_edge_circuit
from data.store import RunStore
from tests.support.edges import (
    EDGES_RUN,
    EVAL_RUN,
    EVAL_RUN_MEAN,
    MODEL,
    TASK,
    edge_store,
    edge_tables,
)


@pytest.fixture(scope="module")
def tables():
    return edge_tables()


@pytest.fixture(scope="module")
def store(tmp_path_factory, tables):
    return RunStore(edge_store(tmp_path_factory.mktemp("edges") / "runs", tables))


def test_an_evaluate_run_leads_back_to_its_edges(store, tables):
    for run_id in (EDGES_RUN, EVAL_RUN):
        c = edge_circuit(store, run_id)
        assert (c.edges_run, c.eval_run, c.model, c.task) == (EDGES_RUN, EVAL_RUN, MODEL, TASK)
        assert c.edges.equals(tables["edges"])
        assert c.summary.equals(tables["circuit_faithfulness"])
    assert latest_edge_circuit(store, MODEL, "other-task") is None
    assert latest_edge_circuit(store, "organism", TASK) is None


def test_sections_hold_the_top_edges_cpr_cmd_and_both_figures(store, tables):
    page = with_edge_circuit(pages.Page("r", sections=(pages.Section("before"),)), store,
                             MODEL, TASK)
    titles = [s.title for s in page.sections]
    assert titles == ["before", "Edge circuit (eap): top edges",
                      "Edge circuit: faithfulness vs edge budget (MIB)",
                      "Known induction circuit",
                      f"Edge circuit graph (top {graph_size(110)} edges)"]
    known = page.sections[3].blocks[1].df
    assert known.variant.tolist() == tables["known_circuit"].variant.tolist()
    assert known.faithfulness.tolist() == pytest.approx(
        tables["known_circuit"].faithfulness.round(4).tolist())
    top = page.sections[1].blocks[1].df
    want = tables["edges"].nlargest(20, "score")
    assert top.source.tolist() == want.source.tolist()
    assert top.target.tolist() == want.target.tolist()
    assert any(t.startswith("L1H") for t in top.source)  # heads as L1H2
    s = tables["circuit_faithfulness"].set_index("ranking")
    text = page.sections[1].blocks[0].text
    assert f"CPR {s.at['signed', 'cpr']:.3f}" in text and f"CMD {s.at['absolute', 'cmd']:.3f}" \
        in text and EVAL_RUN in text
    assert "ablated with corrupted activations" in text
    assert sum(isinstance(b, pages.Figure) for sec in page.sections for b in sec.blocks) == 3
    md = pages.render_markdown(with_edge_circuit(pages.Page("r"), store, MODEL, TASK,
                                                 with_figures=False))
    assert "## Edge circuit (eap): top edges" in md and f"| {top.source[0]} |" in md
    assert "Edge circuit graph" not in md


def test_an_unevaluated_circuit_says_how_to_evaluate_it(tmp_path, tables):
    s = RunStore(tmp_path / "runs")
    with s.start_run("circuit-discover", MODEL, {"task": TASK, "method": "eap"}) as run:
        run.write_table("edges", tables["edges"])
    page = with_edge_circuit(pages.Page("r"), s, MODEL, TASK)
    assert [sec.title for sec in page.sections] == [
        "Edge circuit (eap): top edges", f"Edge circuit graph (top {graph_size(110)} edges)"]
    assert f"attnlab circuit evaluate --run {run.run_id}" in page.sections[0].blocks[0].text
    assert with_edge_circuit(pages.Page("r"), s, MODEL, "ioi") == pages.Page("r")


def test_each_evaluation_can_be_read_and_the_newest_is_the_default(tmp_path, tables):
    s = RunStore(edge_store(tmp_path / "runs", tables, mean=True))
    c = edge_circuit(s, EDGES_RUN)
    assert c.evaluations == (EVAL_RUN_MEAN, EVAL_RUN) and c.eval_run == EVAL_RUN_MEAN
    assert ablation_of(c.summary) == "mean" and c.known.equals(tables["known_circuit_mean"])
    old = edge_circuit(s, EDGES_RUN, EVAL_RUN)
    assert ablation_of(old.summary) == "corrupted" and old.known.equals(tables["known_circuit"])
    assert edge_circuit(s, EVAL_RUN).eval_run == EVAL_RUN  # an evaluate run: that one
    with pytest.raises(ValueError, match="no completed evaluation"):
        edge_circuit(s, EDGES_RUN, EDGES_RUN)
    text = with_edge_circuit(pages.Page("r"), s, MODEL, TASK).sections[0].blocks[0].text
    assert "ablated with mean activations" in text
    assert ablation_of(tables["faithfulness"].drop(columns="ablation")) == "corrupted"


def test_top_edges_table_is_ranked_by_score(tables):
    shuffled = tables["edges"].sample(frac=1.0, random_state=0)
    top = top_edges_table(shuffled, 5)
    assert top["rank"].tolist() == [1, 2, 3, 4, 5]
    assert top.score.is_monotonic_decreasing


def test_the_circuit_report_includes_the_stores_edge_circuit(tmp_path):
    """`attnlab report circuit` on the organism picks up an edges run of the same task."""
    from analyses.cli.main import main

    runs, common = str(tmp_path / "runs"), ["--device", "cpu", "--threads", "1"]
    n = torch.get_num_threads()
    try:
        assert main(["circuit", "discover", "--model", "organism", "--task", "ioi", "--method",
                     "eap", "--n", "8", "--runs-dir", runs, *common]) == 0
        assert main(["report", "circuit", "--model", "organism", "--task", "ioi", "--n", "8",
                     "--n-random", "1", "--top-k", "2", "--runs-dir", runs, *common]) == 0
    finally:
        torch.set_num_threads(n)
    report = RunStore(runs).find_runs("patching", "organism")[0]
    md = (report.path / "report.md").read_text()
    assert "## Edge circuit (eap): top edges" in md
    assert "Not evaluated yet: `attnlab circuit evaluate --run " in md
    html = (report.path / "report.html").read_text()
    n_edges = len(RunStore(runs).find_runs("edges", "organism")[0].read_table("edges"))
    assert n_edges == 1108  # the 6-layer organism's edge graph
    assert f"Edge circuit graph (top {n_edges // 20} edges)" in html  # 5% of them
