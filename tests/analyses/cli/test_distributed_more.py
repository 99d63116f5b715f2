"""`attnlab heads / massive / sae eval --nproc 2`: prompts, held-out text and evaluation tokens
sharded over 2 gloo ranks give the one-process tables (rank 0 writes them)."""

from __future__ import annotations

from tests.support.nproc import assert_tables_equal, two_and_one


def test_heads_with_nproc_2_equals_one_process(tmp_path):
    # 9 prompts per task: ranks get 4 + 5; the top-3 prompts of a head may sit on either rank
    argv = ["heads", "--model", "organism", "--n", "9", "--qk-top", "1", "--device", "cpu"]
    stdout, two, one = two_and_one(argv, tmp_path)
    assert stdout.count("top prev_token") == 1  # rank 0 alone prints
    scores = two.read_table("head_scores")
    assert_tables_equal(scores, one.read_table("head_scores"), atol=1e-6)
    n_queries = scores[scores.stat == "n_queries"].value
    assert (n_queries > 0).all() and n_queries.nunique() == 1
    seqs = two.read_table("head_top_sequences")
    assert set(seqs.sequence) & set(range(4)) and set(seqs.sequence) & set(range(4, 9))
    assert_tables_equal(seqs, one.read_table("head_top_sequences"), atol=1e-5)
    assert_tables_equal(two.read_table("head_top_patterns"), one.read_table("head_top_patterns"),
                        atol=1e-6)
    assert_tables_equal(two.read_table("qk_summary"), one.read_table("qk_summary"), atol=1e-5)


def test_sae_eval_with_nproc_2_equals_one_process(tmp_path):
    # the shipped organism SAE on 2000 held-out tokens: each rank evaluates its block of rows
    argv = ["sae", "eval", "--model", "organism", "--layer", "1", "--sae", "shipped",
            "--eval-tokens", "2000", "--device", "cpu"]
    stdout, two, one = two_and_one(argv, tmp_path)
    assert stdout.count("run ") == 1  # rank 0 alone prints
    ev2, ev1 = two.read_table("sae_eval"), one.read_table("sae_eval")
    assert_tables_equal(ev2, ev1, atol=1e-6)
    got = dict(zip(ev2.metric, ev2.value))
    assert got["n_tokens"] >= 2000 and 0 < got["l0"] and got["explained_variance"] > 0
    assert got["ce_sae"] != got["ce_clean"]  # the SAE was spliced in on every rank's rows


def test_massive_still_refuses_nproc(tmp_path, capsys):
    from analyses.cli.main import main

    assert main(["massive", "ablate", "--model", "organism", "--runs-dir", str(tmp_path),
                 "--nproc", "2"]) == 2
    err = capsys.readouterr().err
    assert "runs in one process" in err and "heads" in err and "sae eval" in err
    assert not list(tmp_path.iterdir())  # no run started
