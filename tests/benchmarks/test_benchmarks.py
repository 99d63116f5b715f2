"""The patching benchmark runs as the README says and reports what it claims to measure."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.support import REPO_ROOT

ROOT = REPO_ROOT


def test_patching_benchmark_runs_as_a_script_and_agrees_with_transformer_lens():
    out = subprocess.run(
        [sys.executable, "benchmarks/patching.py", "--n", "2", "--repeats", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=True,
    ).stdout
    assert "engine: fast" in out
    diff = float(re.search(r"max \|ours - TL\| = (\S+);", out).group(1))
    assert diff <= 1e-4
    ours, tl = map(float, re.search(r"FLOPs: ours (\d+) M, TL (\d+) M", out).groups())
    # the fast engine skips layers before the patch, unchanged positions and the unscored
    # last-block positions: TransformerLens' one-forward-per-head sweep does over 2x the work
    assert tl / ours > 2.0
    for label in ("batched exact sweep", "transformer_lens.patching", "attribution patching"):
        assert re.search(rf"{re.escape(label)}\s+\d+\.\d ms", out), label
