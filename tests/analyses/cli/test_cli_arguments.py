"""Arguments are checked before the work (issue 16): conflicting flags are an error naming both
(failure 4); sizes are bounded and checked before any model loads, or right after it when they
depend on the model's sizes, never after the work (failure 5)."""

from __future__ import annotations

import pytest

from data.store import RunStore
from tests.analyses.cli.clihelp import (
    assert_one_line_error,
    forbid_model_loads,
    run_cli,
    use_model,
)

ORGANISM = ["--model", "organism", "--device", "cpu"]
CONFLICTS = {
    "path patching is not attribution": (
        ["patch", *ORGANISM, "--component", "path", "--method", "attribution"],
        ["--component path", "--method attribution"]),
    "sentences on a decoder": (
        ["patch", *ORGANISM, "--clean", "a b c", "--corrupted", "a b d"],
        ["--clean", "--model organism"]),
    "heads with impairment": (
        ["ablate", *ORGANISM, "--impairment", "--heads", "L0H1"], ["--heads", "--impairment"]),
    "receivers without path": (
        ["patch", *ORGANISM, "--component", "z", "--receivers", "L2H0"],
        ["--receivers", "--component z"]),
}


def refused_before_any_model(argv, needles, tmp_path, capsys, monkeypatch) -> None:
    """``attnlab ARGV`` is one error line holding ``needles``; no model loaded, no run."""
    forbid_model_loads(monkeypatch)
    rc, _, err = run_cli([*argv, "--runs-dir", str(tmp_path)], capsys)
    assert_one_line_error(rc, err, *needles)
    assert RunStore(tmp_path).list_runs().empty


@pytest.mark.parametrize("case", list(CONFLICTS))
def test_conflicting_flags_are_an_error_naming_both(case, tmp_path, capsys, monkeypatch):
    """Failure 4: each of these ran something else than the manifest recorded."""
    refused_before_any_model(*CONFLICTS[case], tmp_path, capsys, monkeypatch)


SIZES = {
    "huge --n": (["patch", *ORGANISM, "--n", "100000000"], ["--n", "100000000"]),
    "a head twice": (["ablate", *ORGANISM, "--heads", "0.0,0.0"], ["L0H0", "twice"]),
    "a head twice (two notations)": (["ablate", *ORGANISM, "--heads", "L1H2,1.2"],
                                     ["L1H2", "twice"]),
}


@pytest.mark.parametrize("case", list(SIZES))
def test_sizes_are_checked_before_any_model_loads(case, tmp_path, capsys, monkeypatch):
    """Failure 5: `--n 100000000` allocated without a word; a repeated head was accepted."""
    refused_before_any_model(*SIZES[case], tmp_path, capsys, monkeypatch)


@pytest.mark.parametrize("argv,needles", [
    (["ablate", *ORGANISM, "--impairment", "--k", "99"], ["--k 99", "24 heads"]),
    (["ablate", *ORGANISM, "--heads", "L9H0"], ["L9H0", "6 layers"]),
    (["patch", *ORGANISM, "--layers", "0,7"], ["--layers", "6 layers"]),
    (["report", "circuit", *ORGANISM, "--top-k", "25"], ["--top-k 25", "24 heads"]),
])
def test_sizes_that_need_the_model_are_checked_right_after_it_loads(
        argv, needles, tmp_path, capsys, monkeypatch, organism):
    """Failure 5: `--impairment --k 99` failed only after all the patching."""
    use_model(monkeypatch, organism)

    def no_work(*args, **kwargs):  # every command does its work inside its run
        raise AssertionError("a run started before the sizes were checked")

    monkeypatch.setattr(RunStore, "start_run", no_work)
    rc, _, err = run_cli([*argv, "--runs-dir", str(tmp_path)], capsys)
    monkeypatch.undo()
    assert_one_line_error(rc, err, *needles)
    assert RunStore(tmp_path).list_runs().empty
