"""The `attnlab` CLI: help, models, runs, demo, and one-line errors for bad input."""

from __future__ import annotations

import pytest

from analyses.cli.main import COMMAND_MODULES, main
from data.store import RunStore


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for module in COMMAND_MODULES:
        name = module.rsplit(".", 1)[1].removesuffix("_cmd")
        assert name.replace("_", "-") in out or name in out, name


def test_models_lists_minilm_available(capsys):
    assert main(["models"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("minilm"))
    assert "available" in line and "unavailable" not in line


def test_bad_run_id_is_one_clean_line(tmp_path, capsys):
    assert main(["runs", "--runs-dir", str(tmp_path), "--show", "../etc"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("attnlab runs: error: invalid run id '../etc'")
    assert "Traceback" not in err


def test_runs_on_empty_store_says_how_to_make_one(tmp_path, capsys):
    assert main(["runs", "--runs-dir", str(tmp_path)]) == 0
    assert "attnlab demo" in capsys.readouterr().out


@pytest.mark.slow
def test_demo_writes_a_complete_run(tmp_path, capsys):
    assert main(["demo", "--runs-dir", str(tmp_path), "--quick", "--n-sentences", "6"]) == 0
    runs = RunStore(tmp_path).list_runs()
    assert runs["status"].tolist() == ["complete"]
    run = RunStore(tmp_path).open_run(runs["run_id"][0])
    assert run.manifest["hf_parity_max_abs_diff"] < 1e-4
    assert {"entropy", "massive", "massive_summary", "head_norms"} <= set(run.list_tables())
    massive = run.read_table("massive")
    assert set(massive["dim"]) == {99}  # MiniLM's known massive dimension
    assert "attnlab dashboard --runs-dir" in capsys.readouterr().out
