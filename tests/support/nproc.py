"""Run an ``attnlab`` command on 2 processes and in this one, and compare the runs they wrote."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd

from analyses.cli.main import main
from data.store import RunStore
from tests.support import REPO_ROOT


def two_and_one(argv: list[str], root) -> tuple:
    """``attnlab ARGV --nproc 2`` (a subprocess under torchrun) then ``attnlab ARGV`` here;
    (stdout of the 2-process run, its run, the one-process run). Each wrote exactly one
    complete run."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "analyses.cli", *argv, "--nproc", "2",
                           "--runs-dir", str(root / "two")], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert main([*argv, "--runs-dir", str(root / "one")]) == 0
    runs = []
    for name in ("two", "one"):
        listed = RunStore(root / name).list_runs()
        assert len(listed) == 1 and listed.status[0] == "complete", listed
        runs.append(RunStore(root / name).open_run(listed.run_id[0]))
    return (done.stdout, *runs)


def assert_tables_equal(two: pd.DataFrame, one: pd.DataFrame, atol: float = 1e-4) -> None:
    """Same rows and columns; non-float columns equal, float columns within ``atol``
    (the ranks' sums are added in another order than one process adds them)."""
    assert list(two.columns) == list(one.columns) and len(two) == len(one)
    floats = [c for c in one.columns if pd.api.types.is_float_dtype(one[c])]
    pd.testing.assert_frame_equal(two.drop(columns=floats).reset_index(drop=True),
                                  one.drop(columns=floats).reset_index(drop=True))
    for c in floats:
        a, b = two[c].to_numpy(), one[c].to_numpy()
        assert ((abs(a - b) <= atol) | (pd.isna(a) & pd.isna(b))).all(), (c, abs(a - b).max())
