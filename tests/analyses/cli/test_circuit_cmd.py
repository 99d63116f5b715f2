"""`attnlab circuit discover` then `evaluate` on the organism: tables, schema, end points."""

from __future__ import annotations

from analyses.causal.edges.known import VARIANTS
from analyses.cli.main import main
from data.store import RunStore


def _organism_edge_count(cfg) -> int:
    """Edges of the organism's graph counted from its config, independently of
    analyses.causal.edges.graph: each head's q, k and v read the input and every head and
    MLP below it; each MLP reads the input, every head up to its layer and the MLPs below;
    the logits read everything (1,108 for the 6-layer, 4-head organism)."""
    n_layers, n_heads = cfg.n_layers, cfg.n_heads
    heads = sum(3 * n_heads * (1 + la * (n_heads + 1)) for la in range(n_layers))
    mlps = sum(1 + (la + 1) * n_heads + la for la in range(n_layers))
    return heads + mlps + 1 + n_layers * (n_heads + 1)


def _discover(runs: str, task: str, n: int, batch_size: int):
    """`attnlab circuit discover` (EAP) on the organism; the store and its one edges run."""
    assert main(["circuit", "discover", "--runs-dir", runs, "--model", "organism", "--task",
                 task, "--method", "eap", "--n", str(n), "--batch-size", str(batch_size)]) == 0
    store = RunStore(runs)
    (disc,) = store.find_runs("edges")
    return store, disc


def test_circuit_discover_then_evaluate_writes_edges_and_faithfulness(tmp_path, organism):
    runs = str(tmp_path)
    store, disc = _discover(runs, "ioi", 4, 2)
    edges = disc.read_table("edges")
    n = _organism_edge_count(organism.model.cfg)
    assert len(edges) == n and edges["rank"].tolist() == list(range(1, n + 1))
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
    assert ev.manifest["config"]["ablation"] == "corrupted"  # the default
    assert (summary.ablation == "corrupted").all()
    assert (summary.empty_metric == summary.corrupted_metric).all()


def test_circuit_evaluate_with_mean_ablation_records_it(tmp_path):
    runs = str(tmp_path)
    store, disc = _discover(runs, "ioi", 4, 2)
    assert main(["circuit", "evaluate", "--runs-dir", runs, "--run", disc.run_id, "--n", "4",
                 "--batch-size", "3", "--ablation", "mean"]) == 0
    (ev,) = store.find_runs("faithfulness")
    assert ev.manifest["config"]["ablation"] == "mean"
    curve, summary = ev.read_table("faithfulness"), ev.read_table("circuit_faithfulness")
    assert (curve.ablation == "mean").all() and (summary.ablation == "mean").all()
    empty = curve[curve.budget == 0.0]
    assert (abs(empty.faithfulness) < 1e-4).all() and (empty.metric == empty.empty_metric).all()
    assert (abs(curve[curve.budget == 1.0].faithfulness - 1) < 1e-4).all()
    assert (summary.empty_metric != summary.corrupted_metric).all()


def test_the_cli_offers_the_library_ablations():
    from analyses.causal.edges.ablate import ABLATIONS
    from analyses.cli.commands import circuit_cmd

    assert circuit_cmd.ABLATIONS == ABLATIONS


def test_circuit_evaluate_rejects_a_run_without_edges(tmp_path, capsys):
    runs = str(tmp_path)
    with RunStore(runs).start_run("other", "organism", {}) as run_:
        pass
    assert main(["circuit", "evaluate", "--runs-dir", runs, "--run", run_.run_id]) == 2
    assert "no 'edges' table" in capsys.readouterr().err


def test_circuit_evaluate_on_induction_adds_the_known_circuit(tmp_path, capsys):
    runs = str(tmp_path)
    store, disc = _discover(runs, "induction-keys", 8, 4)
    n_edges = len(disc.read_table("edges"))
    assert main(["circuit", "evaluate", "--runs-dir", runs, "--run", disc.run_id]) == 0
    assert "known induction circuit" in capsys.readouterr().out
    (ev,) = store.find_runs("known_circuit")
    known = ev.read_table("known_circuit")
    assert known.variant.tolist() == list(VARIANTS)
    kept = known.set_index("variant").n_edges
    assert kept[["core", "core+inputs", "nodes", "nodes+mlps"]].is_monotonic_increasing
    assert kept["all-but-core"] == n_edges - kept["core"]
    assert (known.n_pairs == 8).all()
    assert known.induction_heads.iloc[0] and known.previous_token_heads.iloc[0]
    assert 1 <= known.core_best_rank.iloc[0] <= known.core_worst_rank.iloc[0] <= n_edges
