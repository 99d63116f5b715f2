"""Manifests are read by type (issue 16, failure 2): one odd but valid JSON manifest shows that
run as 'corrupt', naming the field, and every other run as before; `attnlab runs` still lists.
A run store that is a file, or cannot be written, is one clear StoreError."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from data.store import CorruptFile, RunStore, StoreError

ENTROPY = pd.DataFrame({"model": ["m"], "layer": [0], "head": [0], "stat": ["mean"],
                        "value": [1.0]})
ODD_FIELDS = {
    "tables": None,
    "started_at": 1767225600,
    "pid": 2**70,
    "status": ["complete"],
    "config": "not a dict",
}


@pytest.mark.parametrize("field", list(ODD_FIELDS))
def test_a_manifest_field_of_the_wrong_type_marks_only_that_run_corrupt(
        tmp_path, field, capsys):
    from analyses.cli.main import main

    store = RunStore(tmp_path)
    with store.start_run(command="probe", model="m", run_id="good") as good:
        good.write_table("entropy", ENTROPY)
    with store.start_run(command="probe", model="m", run_id="odd") as odd:
        odd.write_table("entropy", ENTROPY)
    manifest = json.loads(odd.manifest_path.read_text())
    manifest.update({field: ODD_FIELDS[field], "status": "running"} if field == "pid"
                    else {field: ODD_FIELDS[field]})
    odd.manifest_path.write_text(json.dumps(manifest))

    runs = store.list_runs().set_index("run_id")
    assert runs.loc["good", "status"] == "complete" and runs.loc["good", "tables"] == "entropy"
    assert runs.loc["odd", "status"] == "corrupt"
    assert field in runs.loc["odd", "error"]
    assert [r.run_id for r in store.find_runs("entropy")] == ["good"]
    with pytest.raises(CorruptFile, match=field):
        store.open_run("odd").checked_manifest  # noqa: B018 - the property raises

    assert main(["runs", "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "good" in out and "corrupt" in out


def test_a_runs_dir_that_is_a_file_is_a_store_error(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    store = RunStore(path)
    with pytest.raises(StoreError, match="not a folder"):
        store.list_runs()
    with pytest.raises(StoreError, match="not a folder"), store.start_run(command="x"):
        pass


def test_an_unwritable_runs_dir_is_a_store_error(tmp_path, monkeypatch):
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o555)
    if os.geteuid() == 0:  # root writes anywhere: refuse the folder as a read-only disk would
        def read_only(self, *args, **kwargs):
            raise PermissionError(13, "Permission denied", str(self))

        monkeypatch.setattr(Path, "mkdir", read_only)
    try:
        with pytest.raises(StoreError, match="writable"), RunStore(root).start_run(command="x"):
            pass
    finally:
        root.chmod(0o755)


def test_a_command_that_fails_after_its_run_started_leaves_a_failed_run(tmp_path):
    store = RunStore(tmp_path)
    with pytest.raises(ValueError), store.start_run(command="x", run_id="r1"):
        raise ValueError("bad\nsecond line")
    manifest = store.open_run("r1").checked_manifest
    assert manifest["status"] == "failed"
    assert manifest["error"] == "ValueError: bad\nsecond line"
