"""The run store: atomic writes, clear errors for corrupt/missing files, safe run ids."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from data.store import (
    CorruptFile,
    RunStore,
    StoreError,
    TableNotFound,
    atomic_write_text,
    validate_run_id,
)
from tests.support import REPO_ROOT

ENTROPY = pd.DataFrame({
    "run_id": ["r"] * 2, "model": ["m"] * 2, "layer": [0, 1], "head": [0, 0],
    "stat": ["mean", "mean"], "value": [1.0, 2.0],
})


def test_round_trip_and_manifest(tmp_path):
    store = RunStore(tmp_path)
    with store.start_run(command="probe", model="minilm", config={"a": 1}) as run:
        run.write_table("entropy", ENTROPY)
    m = store.open_run(run.run_id).manifest
    assert m["status"] == "complete" and m["tables"] == ["entropy"]
    assert m["config"] == {"a": 1} and "torch" in m["versions"]
    pd.testing.assert_frame_equal(store.open_run(run.run_id).read_table("entropy"), ENTROPY)
    assert store.list_runs()["run_id"].tolist() == [run.run_id]


def test_failed_run_is_marked(tmp_path):
    store = RunStore(tmp_path)
    with pytest.raises(RuntimeError), store.start_run(command="x", run_id="r1"):
        raise RuntimeError("boom")
    m = store.open_run("r1").manifest
    assert m["status"] == "failed" and "boom" in m["error"]


def test_schema_is_enforced(tmp_path):
    with RunStore(tmp_path).start_run(command="x") as run:
        with pytest.raises(ValueError, match=r"lacks required columns \['value'\]"):
            run.write_table("entropy", ENTROPY.drop(columns="value"))
        assert not run.has_table("entropy")


KILLER = textwrap.dedent("""
    import os, signal, sys
    import pandas as pd
    from data.store import Run
    run = Run(sys.argv[1])
    real = pd.DataFrame.to_parquet
    def dying(self, path, *a, **k):
        real(self, path, *a, **k)          # the temp file is fully written ...
        with open(path, "r+b") as fh:      # ... then half of it, as if cut off mid-write
            fh.truncate(os.path.getsize(path) // 2)
        os.kill(os.getpid(), signal.SIGKILL)  # ... and the process dies before the rename
    pd.DataFrame.to_parquet = dying
    big = pd.DataFrame({"run_id": "r", "model": "m", "layer": range(50000), "head": 0,
                        "stat": "mean", "value": 3.0})
    run.write_table("entropy", big)
""")


def test_kill_mid_write_keeps_old_table(tmp_path):
    store = RunStore(tmp_path)
    with store.start_run(command="x", run_id="r1") as run:
        run.write_table("entropy", ENTROPY)
    root = str(REPO_ROOT)
    proc = subprocess.run([sys.executable, "-c", KILLER, str(run.path)], cwd=root,
                          env={**os.environ, "PYTHONPATH": root}, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()
    pd.testing.assert_frame_equal(store.open_run("r1").read_table("entropy"), ENTROPY)
    assert run.list_tables() == ["entropy"]  # the orphan temp file is not a table


def test_interrupted_run_is_reported(tmp_path):
    store = RunStore(tmp_path)
    with store.start_run(command="x", run_id="r1") as run:
        pass
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True)
    run.update_manifest(status="running", pid=int(dead.stdout))
    assert store.list_runs().set_index("run_id").loc["r1", "status"] == "interrupted"


def test_corrupt_and_missing_tables_name_the_file(tmp_path):
    store = RunStore(tmp_path)
    with store.start_run(command="x", run_id="r1") as run:
        run.write_table("entropy", ENTROPY)
    path = run.table_path("entropy")
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CorruptFile, match=r"entropy\.parquet is corrupt or truncated"):
        run.read_table("entropy")
    with pytest.raises(TableNotFound, match="no table 'massive'.*tables present: \\['entropy'\\]"):
        run.read_table("massive")


def test_corrupt_manifest(tmp_path):
    store = RunStore(tmp_path)
    (tmp_path / "r2").mkdir()
    atomic_write_text(tmp_path / "r2" / "manifest.json", "{not json")
    with pytest.raises(CorruptFile, match="not valid JSON"):
        _ = store.open_run("r2").manifest
    runs = store.list_runs()
    assert runs.set_index("run_id").loc["r2", "status"] == "corrupt"


@pytest.mark.parametrize("bad", ["../etc", "a/b", "..", "", ".hidden", "x" * 200, "a b"])
def test_run_ids_are_validated(tmp_path, bad):
    with pytest.raises(ValueError, match="invalid run id"):
        validate_run_id(bad)
    with pytest.raises((ValueError, StoreError)):
        RunStore(tmp_path).open_run(bad)


def test_runs_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNLAB_RUNS", str(tmp_path / "elsewhere"))
    assert RunStore().root == (tmp_path / "elsewhere").resolve()
    assert RunStore(tmp_path).root == tmp_path.resolve()


def test_existing_run_id_is_not_overwritten(tmp_path):
    store = RunStore(tmp_path)
    with store.start_run(command="x", run_id="r1") as run:
        run.write_table("entropy", ENTROPY)
    with pytest.raises(FileExistsError), store.start_run(command="y", run_id="r1"):
        pass
    assert json.loads(run.manifest_path.read_text())["command"] == "x"
