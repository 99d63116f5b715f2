"""The dashboard against odd runs (issue 16): a manifest with a field of the wrong type is one
'corrupt' run, not an error on every page (failure 2); a run's artefacts never lead out of its
folder (failure 6)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from analyses.cli.commands.dashboard_cmd import app_path
from data.store import RunStore
from tests.support.store import CIRCUIT_RUN, PROBE_RUN, build_fixture_store

ODD = {"odd-tables": {"tables": None}, "odd-started": {"started_at": 1767225600},
       "odd-pid": {"status": "running", "pid": 2**70}}
PAGES = ["views/runs.py", "views/attention.py", "views/massive.py", "views/sae_features.py",
         "views/redundancy.py", "views/circuits.py"]


@pytest.fixture(scope="module")
def odd_root(tmp_path_factory) -> Path:
    root = build_fixture_store(tmp_path_factory.mktemp("odd") / "runs", broken=False)
    store = RunStore(root)
    for run_id, fields in ODD.items():
        with store.start_run(command="probe", model="minilm", run_id=run_id):
            pass
        path = store.open_run(run_id).manifest_path
        path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))
    return root


@pytest.mark.parametrize("page", PAGES)
def test_odd_manifests_leave_every_page_working(odd_root, monkeypatch, page):
    monkeypatch.setenv("ATTNLAB_RUNS", str(odd_root))
    at = AppTest.from_file(str(app_path()), default_timeout=180).run()
    if page != "views/runs.py":
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    if page == "views/runs.py":
        status = at.dataframe[0].value.set_index("run_id")["status"]
        assert set(status[list(ODD)]) == {"corrupt"}
        assert status[PROBE_RUN] == status[CIRCUIT_RUN] == "complete"
        at.selectbox(key="runs_pick").select("odd-tables").run()
        assert not at.exception and not at.error
        assert "tables" in "\n".join(w.value for w in at.warning)


def test_artefacts_never_leave_the_run_folder(tmp_path, monkeypatch):
    from dashboard import readers

    root = build_fixture_store(tmp_path / "runs", broken=False)
    folder = root / CIRCUIT_RUN
    secret = tmp_path / "secret.md"
    secret.write_text("outside the run")
    (folder / "passwd.md").symlink_to(secret)
    (folder / "loop.html").symlink_to(folder / "report.html")  # inside the run: listed
    (folder / "figures").symlink_to(tmp_path, target_is_directory=True)
    monkeypatch.setenv("ATTNLAB_RUNS", str(root))
    files = readers.artefacts(CIRCUIT_RUN)
    assert sorted(p.name for p in files) == ["loop.html", "report.html", "report.md"]
    for path in files:
        assert path.resolve().is_relative_to(folder.resolve())
