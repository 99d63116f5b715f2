"""`attnlab redundancy --nproc 2`: calibration scores, LM losses and task accuracies sharded
over 2 gloo ranks give the one-process tables (the speedup is timed on rank 0 alone)."""

from __future__ import annotations

from tests.support.nproc import assert_tables_equal, two_and_one

# --iterative: the re-scored plan reads merged scores at every step; 9 items: ranks get 4 + 5
ARGV = ["redundancy", "--model", "organism", "--max-drop", "2", "--iterative", "--repeats", "1",
        "--random-seeds", "0", "--n-items", "9", "--no-figures", "--device", "cpu"]


def test_redundancy_with_nproc_2_equals_one_process(tmp_path):
    stdout, two, one = two_and_one(ARGV, tmp_path)
    assert stdout.count("dropped ->") == 2  # rank 0's speedup lines only (one-shot, iterative)
    scores = two.read_table("redundancy")
    assert_tables_equal(scores, one.read_table("redundancy"), atol=1e-6)
    assert (scores.n_tokens > 0).all()
    assert_tables_equal(two.read_table("drop_curve"), one.read_table("drop_curve"), atol=1e-5)
    assert two.manifest["plans"] == one.manifest["plans"]
    keys = ["strategy", "mode", "n_dropped", "n_tokens", "speedup_macs"]
    assert two.read_table("speedup")[keys].equals(one.read_table("speedup")[keys])
