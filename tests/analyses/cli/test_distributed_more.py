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


MASSIVE_SMALL = ["--model", "organism", "--heldout-tokens", "300", "--n", "5",
                 "--batch-size", "4", "--device", "cpu"]


def test_massive_ablate_with_nproc_2_equals_one_process(tmp_path):
    # held-out rows and task items split 2 ways; the random control's draws are seeded per
    # global sequence index, so the ranks draw what one process draws
    argv = ["massive", "ablate", *MASSIVE_SMALL, "--massive-abs", "20", "--massive-ratio", "20",
            "--reference-tokens", "300", "--draws", "2"]
    stdout, two, one = two_and_one(argv, tmp_path)
    assert stdout.count("run ") == 1  # rank 0 alone prints
    assert_tables_equal(two.read_table("massive_sites"), one.read_table("massive_sites"),
                        atol=1e-5)
    t2, t1 = two.read_table("massive_ablation"), one.read_table("massive_ablation")
    assert_tables_equal(t2, t1, atol=1e-4)
    loss = t2[t2.metric == "lm_loss"].set_index(["condition", "draw"])["value"]
    assert loss[("random", 0)] != loss[("random", 1)]  # the draws differ and still match
    assert loss[("zero", 0)] != loss[("none", 0)]


def test_massive_sinks_with_nproc_2_equals_one_process(tmp_path):
    argv = ["massive", "sinks", *MASSIVE_SMALL, "--heads", "L3H0"]
    stdout, two, one = two_and_one(argv, tmp_path)
    assert stdout.count("run ") == 1
    dec = two.read_table("sink_decomposition")
    assert_tables_equal(dec, one.read_table("sink_decomposition"), atol=1e-5)
    assert_tables_equal(two.read_table("sink_removal"), one.read_table("sink_removal"),
                        atol=1e-5)
    assert (dec[dec.stat == "n_queries"].value > 0).all()
