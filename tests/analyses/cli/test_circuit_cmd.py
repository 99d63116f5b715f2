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


def test_circuit_evaluate_on_induction_adds_the_known_circuit(tmp_path, capsys):
    runs = str(tmp_path)
    assert main(["circuit", "discover", "--runs-dir", runs, "--model", "organism", "--task",
                 "induction-keys", "--method", "eap", "--n", "8", "--batch-size", "4"]) == 0
    store = RunStore(runs)
    (disc,) = store.find_runs("edges")
    n_edges = len(disc.read_table("edges"))
    assert main(["circuit", "evaluate", "--runs-dir", runs, "--run", disc.run_id]) == 0
    assert "known induction circuit" in capsys.readouterr().out
    (ev,) = store.find_runs("known_circuit")
    known = ev.read_table("known_circuit")
    assert known.variant.tolist() == ["core", "core+inputs", "nodes"]
    assert known.n_edges.is_monotonic_increasing and (known.n_pairs == 8).all()
    assert known.induction_heads.iloc[0] and known.previous_token_heads.iloc[0]
    assert 1 <= known.core_best_rank.iloc[0] <= known.core_worst_rank.iloc[0] <= n_edges
