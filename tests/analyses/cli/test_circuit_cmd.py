"""`attnlab circuit discover` then `evaluate` on the organism: tables, schema, end points."""

from __future__ import annotations

from analyses.cli.main import main
from data.store import RunStore


def test_circuit_discover_then_evaluate_writes_edges_and_faithfulness(tmp_path):
    runs = str(tmp_path)
    assert main(["circuit", "discover", "--runs-dir", runs, "--model", "organism", "--task",
                 "ioi", "--method", "eap", "--n", "4", "--batch-size", "2"]) == 0
    store = RunStore(runs)
    (disc,) = store.find_runs("edges")
    edges = disc.read_table("edges")
    assert len(edges) == 479 and edges["rank"].tolist() == list(range(1, 480))
    assert main(["circuit", "evaluate", "--runs-dir", runs, "--run", disc.run_id,
                 "--n", "4"]) == 0
    (ev,) = store.find_runs("faithfulness")
    curve = ev.read_table("faithfulness")
    full = curve[curve.budget == 1.0].faithfulness
    empty = curve[curve.budget == 0.0].faithfulness
    assert (abs(full - 1) < 1e-4).all() and (abs(empty) < 1e-4).all()
    summary = ev.read_table("circuit_faithfulness")
    assert set(summary.ranking) == {"signed", "absolute"}
    assert ev.manifest["config"]["seed"] == 1  # held-out pairs by default


def test_circuit_evaluate_rejects_a_run_without_edges(tmp_path, capsys):
    runs = str(tmp_path)
    with RunStore(runs).start_run("other", "organism", {}) as run_:
        pass
    assert main(["circuit", "evaluate", "--runs-dir", runs, "--run", run_.run_id]) == 2
    assert "no 'edges' table" in capsys.readouterr().err
