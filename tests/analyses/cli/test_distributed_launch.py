"""--nproc and torchrun: a killed rank fails the job cleanly, with rank 0's run marked failed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pandas as pd
import pytest
import torch

from analyses.cli.launch import _without_nproc, start_run
from analyses.cli.main import main
from data.store import RunStore
from probes.distributed import all_gather, launch, process_group
from tests.support import REPO_ROOT


def _worker(root: str):
    torch.set_num_threads(1)
    with process_group() as info:
        store = RunStore(root)
        with start_run(store, command="probe", model="organism", config={}) as run_:
            all_gather(run_.run_id)  # both ranks are inside the run
            if info.rank == 1:
                os.kill(os.getpid(), signal.SIGKILL)  # dies without any cleanup
            for _ in range(600):  # rank 0 keeps working (collectives) until stopped
                all_gather(0)
            run_.write_table("entropy", pd.DataFrame({"layer": [0]}))  # never reached


def test_killed_rank_fails_the_job_and_marks_the_run_failed(tmp_path):
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    with pytest.raises(ChildFailedError):
        launch(_worker, 2, str(tmp_path))
    runs = RunStore(tmp_path).list_runs()
    assert len(runs) == 1  # one run, rank 0's
    manifest = RunStore(tmp_path).open_run(runs.run_id[0]).manifest
    assert manifest["status"] == "failed" and manifest["error"]
    assert manifest["tables"] == []
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == [] and not (tmp_path / runs.run_id[0] / "tables").exists() or \
        list((tmp_path / runs.run_id[0] / "tables").iterdir()) == []


def test_commands_that_do_not_split_refuse_nproc(tmp_path, capsys):
    assert main(["runs", "--runs-dir", str(tmp_path), "--nproc", "2"]) == 2
    assert "--nproc / torchrun is for probe, patch, sae train" in capsys.readouterr().err


def test_ranks_are_not_relaunched():
    assert _without_nproc(["probe", "--nproc", "2", "--n", "4", "--nproc=3"]) == \
        ["probe", "--n", "4"]


def test_patch_with_nproc_2_writes_one_run_equal_to_one_process(tmp_path):
    argv = ["patch", "--model", "organism", "--task", "ioi", "--n", "7", "--component", "z",
            "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "analyses.cli", *argv, "--nproc", "2",
                           "--runs-dir", str(tmp_path / "two")], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("rows in table 'patching'") == 1  # rank 1 prints nothing
    assert "7 prompt pairs of task ioi" in done.stdout  # every rank's pairs, not rank 0's 3
    assert main([*argv, "--runs-dir", str(tmp_path / "one")]) == 0
    tables = []
    for name in ("two", "one"):
        runs = RunStore(tmp_path / name).list_runs()
        assert len(runs) == 1 and runs.status[0] == "complete"
        run_ = RunStore(tmp_path / name).open_run(runs.run_id[0])
        assert run_.manifest["n_pairs"] == 7
        tables.append(run_.read_table("patching"))
    two, one = tables
    assert two.drop(columns=["effect", "normalized_effect", "patched_metric"]).equals(
        one.drop(columns=["effect", "normalized_effect", "patched_metric"]))
    for col in ("effect", "normalized_effect", "patched_metric"):
        assert (two[col] - one[col]).abs().max() < 1e-4, col
