"""The CLI's error boundary (issue 16, failure 3): environment errors are one line naming the
file or flag and what to do, exit code 2, a traceback only with --debug; a closed pipe is quiet.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from data.store import RunStore
from saes.io import shipped_path
from tests.analyses.cli.clihelp import (
    assert_one_line_error,
    forbid_model_loads,
    only_failed_runs,
    run_cli,
    use_model,
)
from tests.support import REPO_ROOT

SAE_EVAL = ["sae", "eval", "--model", "organism", "--layer", "1", "--eval-tokens", "200"]


def _file(tmp_path):
    path = tmp_path / "a-file"
    path.write_text("not a folder")
    return path


def _read_only(tmp_path):
    path = tmp_path / "read-only"
    path.mkdir()
    path.chmod(0o555)
    return path


def _truncated_sae(tmp_path):
    folder = tmp_path / "sae"
    shutil.copytree(shipped_path("organism", 1), folder)
    weights = folder / "sae_weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    return folder


def _cfg_without_d_sae(tmp_path):
    folder = tmp_path / "sae"
    shutil.copytree(shipped_path("organism", 1), folder)
    cfg = json.loads((folder / "cfg.json").read_text())
    del cfg["d_sae"]
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return folder


ROOT = os.name == "posix" and os.geteuid() == 0
CASES = {
    "runs-dir is a file (runs)": (lambda t: ["runs", "--runs-dir", str(_file(t))],
                                  ["--runs-dir", "a-file", "not a folder"]),
    "runs-dir is a file (sae eval)": (lambda t: [*SAE_EVAL, "--runs-dir", str(_file(t))],
                                      ["--runs-dir", "a-file", "not a folder"]),
    "read-only runs-dir": (lambda t: [*SAE_EVAL, "--runs-dir", str(_read_only(t) / "runs")],
                           ["--runs-dir", "read-only", "writable"]),
    "no CUDA": (lambda t: [*SAE_EVAL, "--device", "cuda", "--runs-dir", str(t / "runs")],
                ["--device cuda", "CUDA"]),
    "device banana": (lambda t: [*SAE_EVAL, "--device", "banana", "--runs-dir", str(t / "r")],
                      ["--device", "banana"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_environment_errors_are_one_line_before_any_model_loads(case, tmp_path, capsys,
                                                                  monkeypatch):
    if case == "no CUDA" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    if case == "read-only runs-dir" and ROOT:  # root writes anywhere: as on a read-only disk
        real = os.access
        monkeypatch.setattr(os, "access", lambda path, mode, **kw: (
            False if "read-only" in str(path) and mode & os.W_OK else real(path, mode, **kw)))
    forbid_model_loads(monkeypatch)
    argv, needles = CASES[case]
    try:
        rc, _, err = run_cli(argv(tmp_path), capsys)
    finally:
        if (tmp_path / "read-only").is_dir():
            (tmp_path / "read-only").chmod(0o755)
    assert_one_line_error(rc, err, *needles)
    assert only_failed_runs(tmp_path / "runs")


@pytest.mark.parametrize("damage,needles", [
    (_truncated_sae, ["sae_weights.safetensors", "truncated"]),
    (_cfg_without_d_sae, ["cfg.json", "d_sae"]),
])
def test_a_damaged_sae_is_one_line(damage, needles, tmp_path, capsys, monkeypatch, organism):
    from saes.io import load_sae

    folder = damage(tmp_path)
    with pytest.raises(ValueError, match=needles[0]):
        load_sae(folder)
    use_model(monkeypatch, organism)
    runs = tmp_path / "runs"
    rc, _, err = run_cli([*SAE_EVAL, "--sae", str(folder), "--runs-dir", str(runs)], capsys)
    assert_one_line_error(rc, err, str(folder), *needles)
    assert not runs.exists() or RunStore(runs).list_runs().empty


def test_debug_shows_the_traceback_and_verbose_does_not(tmp_path, capsys):
    from analyses.cli.main import main

    assert main(["-v", "runs", "--runs-dir", str(tmp_path), "--show", "no-such-run"]) == 2
    assert "Traceback" not in capsys.readouterr().err
    with pytest.raises(Exception, match="no run 'no-such-run'"):
        main(["--debug", "runs", "--runs-dir", str(tmp_path), "--show", "no-such-run"])


def test_a_closed_pipe_exits_quietly(tmp_path):
    """`attnlab runs | head -1`: the reader goes away; no BrokenPipeError traceback."""
    store = RunStore(tmp_path)
    for i in range(3):
        with store.start_run(command="x", run_id=f"r{i}"):
            pass
    code = ("import sys; from analyses.cli.main import main; "
            "sys.exit(main(['runs', '--runs-dir', sys.argv[1]]))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before anything is written
    err = proc.stderr.read().decode()
    rc = proc.wait(timeout=120)
    assert err == "", err
    assert rc == 141
