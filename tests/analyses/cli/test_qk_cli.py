"""`attnlab qk` and `attnlab heads` end to end on the organism: runs, schemas, bad requests."""

from __future__ import annotations

import pytest

from analyses.cli.main import main
from data import schemas
from data.store import RunStore


def _only_run(root):
    runs = RunStore(root).list_runs()
    assert len(runs) == 1 and runs["status"].iloc[0] == "complete"
    return RunStore(root).open_run(runs["run_id"].iloc[0])


def test_qk_writes_exact_terms(tmp_path, capsys):
    rc = main(["qk", "--runs-dir", str(tmp_path), "--model", "organism", "--layer", "1",
               "--head", "2", "--task", "induction", "--n", "8", "--sae-layers", "0"])
    out = capsys.readouterr().out
    assert rc == 0, out
    run = _only_run(tmp_path)
    terms, summary = run.read_table("qk_terms"), run.read_table("qk_summary")
    for name, df in (("qk_terms", terms), ("qk_summary", summary)):
        assert name in schemas.SCHEMAS and schemas.missing_columns(name, df) == []
    assert summary["max_abs_error"].item() < 1e-4
    # 8 prompts x 6 repeated tokens; the terms' means add up to the mean score
    assert summary["n_pairs"].item() == 48
    assert terms["mean"].sum() == pytest.approx(summary["mean_score"].item(), rel=1e-4)
    assert (terms["q_kind"] == "sae_feature").any()
    assert run.manifest["config"]["sae_layers"] == [0]
    assert "sum of terms matches it" in out


@pytest.mark.parametrize("argv, message", [
    (["--layer", "1", "--head", "2", "--sae-layers", "1"], "only layers below --layer 1"),
    (["--layer", "9", "--head", "0"], "is not in this model"),
    (["--layer", "1", "--head", "0", "--model", "minilm"], "encoder"),
])
def test_qk_bad_requests(tmp_path, capsys, argv, message):
    base = ["qk", "--runs-dir", str(tmp_path), "--n", "2"]
    base += [] if "--model" in argv else ["--model", "organism"]
    assert main(base + argv) == 2
    assert message in capsys.readouterr().err


def test_heads_writes_the_explorer_tables(tmp_path, capsys):
    rc = main(["heads", "--runs-dir", str(tmp_path), "--model", "organism", "--n", "4",
               "--top-k", "2", "--qk-top", "1"])
    out = capsys.readouterr().out
    assert rc == 0, out
    run = _only_run(tmp_path)
    for name in ("head_scores", "head_top_sequences", "head_top_patterns", "qk_terms",
                 "qk_summary"):
        assert name in schemas.SCHEMAS, name
        assert schemas.missing_columns(name, run.read_table(name)) == [], name
    seqs = run.read_table("head_top_sequences")
    assert len(seqs) == 6 * 4 * 2  # every head of the 6-layer organism, two prompts each
    summary = run.read_table("qk_summary")
    assert summary["layer"].item() == 1  # the top induction head is a layer-1 head
    assert "top induction: L1H" in out
