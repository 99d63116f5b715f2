"""The patching and edges benchmarks run as the README says and report what they measure."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.support import REPO_ROOT

ROOT = REPO_ROOT


def test_patching_benchmark_runs_as_a_script_and_agrees_with_transformer_lens():
    out = subprocess.run(
        [sys.executable, "benchmarks/patching.py", "--n", "2", "--repeats", "1",
         "--attribution-all"],
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
    assert re.search(r"attribution, all heads/sublayers .* = \d+\.\d\dx one forward\+backward",
                     out)
    peaks = dict(re.findall(r"(ours|attr_all|tl) (\d+\.\d) MiB", out))
    assert set(peaks) == {"ours", "attr_all", "tl"} and float(peaks["ours"]) > 0


def test_edges_benchmark_runs_as_a_script_on_the_organism():
    out = subprocess.run(
        [sys.executable, "benchmarks/edges.py", "--model", "organism", "--n", "2",
         "--repeats", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=True,
    ).stdout
    assert re.search(r"model organism \(cpu, 1 thread\(s\)\), task ioi, 2 pairs x \d+ tokens, "
                     r"1108 edges", out)  # the 6-layer organism's edge graph
    ref = float(re.search(r"fwd\+bwd\s+(\d+\.\d) ms", out).group(1))
    for label in ("EAP", "EAP-IG 5"):
        ms, ratio = map(float, re.search(rf"{re.escape(label)}\s+(\d+\.\d) ms\s+\((\d+\.\d\d)x "
                                         r"fwd\+bwd\)", out).groups())
        # the ratio is of the unrounded times; the printed ms are rounded to 0.1 ms
        slack = (ms / ref) * (0.05 / ref + 0.05 / ms) + 0.005
        assert ratio == pytest.approx(ms / ref, abs=slack), label
    assert float(re.search(r"peak memory (\d+) MiB", out).group(1)) > 0
