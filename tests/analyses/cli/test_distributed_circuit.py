"""`attnlab circuit discover|evaluate --nproc 2`: the task's pairs split over 2 gloo ranks give
the one-process edge scores and faithfulness curve (rank 0 writes the run)."""

from __future__ import annotations

import shutil

from analyses.cli.launch import relaunch
from analyses.cli.main import main
from data.store import RunStore
from tests.support import REPO_ROOT
from tests.support.nproc import assert_tables_equal, two_and_one

# 7 pairs: ranks get 3 + 4, chunked 2 at a time (other chunk boundaries than one process's)
SMALL = ["--model", "organism", "--task", "induction-keys", "--n", "7", "--batch-size", "2",
         "--device", "cpu"]


def test_circuit_discover_with_nproc_2_equals_one_process(tmp_path):
    stdout, two, one = two_and_one(["circuit", "discover", *SMALL, "--method", "eap"], tmp_path)
    assert stdout.count("run ") == 1  # rank 0 alone prints
    e2, e1 = two.read_table("edges"), one.read_table("edges")
    assert_tables_equal(e2, e1, atol=1e-6)
    assert e1.score.abs().max() > 1e-3  # not a table of zeros
    for key in ("clean_metric", "corrupted_metric"):
        assert abs(two.manifest[key] - one.manifest[key]) < 1e-6, key
    assert two.manifest["clean_metric"] != two.manifest["corrupted_metric"]


def _evaluate_run(root, exclude: str):
    runs = RunStore(root).list_runs()
    runs = runs[(runs.run_id != exclude)].reset_index(drop=True)
    assert len(runs) == 1 and runs.status[0] == "complete", runs
    return RunStore(root).open_run(runs.run_id[0])


def test_circuit_evaluate_with_nproc_2_equals_one_process(tmp_path, monkeypatch, capfd):
    # one discover run, copied to both stores; then evaluate on 2 processes and on 1. Mean
    # ablation: it all-reduces what corrupted ablation does (clean, corrupted and circuit
    # metrics) and the positional means too (per-rank means, 3 and 4 pairs, would differ)
    ablation = "mean"
    assert main(["circuit", "discover", *SMALL, "--method", "eap",
                 "--runs-dir", str(tmp_path / "two")]) == 0
    source = RunStore(tmp_path / "two").list_runs().run_id[0]
    shutil.copytree(tmp_path / "two", tmp_path / "one")
    argv = ["circuit", "evaluate", "--run", source, "--n", "7", "--batch-size", "2",
            "--device", "cpu", "--ablation", ablation]
    # torchrun from this process (what `--nproc 2` does); the ranks write to our fd 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.chdir(REPO_ROOT)
    capfd.readouterr()
    assert relaunch([*argv, "--runs-dir", str(tmp_path / "two")], 2) == 0
    assert capfd.readouterr().out.count("run ") == 1  # rank 0 alone prints
    assert main([*argv, "--runs-dir", str(tmp_path / "one")]) == 0
    two, one = _evaluate_run(tmp_path / "two", source), _evaluate_run(tmp_path / "one", source)
    f2, f1 = two.read_table("faithfulness"), one.read_table("faithfulness")
    assert_tables_equal(f2, f1, atol=1e-6)
    s2, s1 = two.read_table("circuit_faithfulness"), one.read_table("circuit_faithfulness")
    assert_tables_equal(s2, s1, atol=1e-6)
    assert (s2.n_pairs == 7).all()  # every rank's pairs counted
    assert (f1[f1.budget == 1.0].faithfulness - 1).abs().max() < 1e-6  # full circuit = clean
    assert (f2.ablation == ablation).all()
