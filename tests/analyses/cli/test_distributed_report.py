"""`attnlab report circuit --nproc 2`: the exact sweeps and attribution sharded over 2 gloo
ranks write one run whose tables equal the one-process report's."""

from __future__ import annotations

from tests.support.nproc import assert_tables_equal, two_and_one

# 5 pairs, exact sweeps on 3 (ranks get 1+2 and 2+3): attribution on all pairs runs too
ARGV = ["report", "circuit", "--model", "organism", "--task", "ioi", "--n", "5",
        "--n-exact", "3", "--n-random", "1", "--device", "cpu"]


def test_report_circuit_with_nproc_2_equals_one_process(tmp_path):
    stdout, two, one = two_and_one(ARGV, tmp_path)
    assert stdout.count("report: ") == 1  # rank 1 prints nothing
    assert sorted(two.manifest["tables"]) == sorted(one.manifest["tables"])
    assert "attribution_all_pairs" in one.manifest["tables"]
    for name in one.manifest["tables"]:
        assert_tables_equal(two.read_table(name), one.read_table(name))
    assert abs(two.manifest["attribution_r"] - one.manifest["attribution_r"]) < 1e-4
    assert (two.path / "report.html").exists() and (two.path / "report.md").exists()
