"""Execute every notebook in notebooks/ with nbclient; a cell that errors fails the test.

Each notebook must finish within ``BUDGET_S`` on 2 CPU cores; it writes runs into a
temporary store ($ATTNLAB_RUNS), never into the checkout.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

nbformat = pytest.importorskip("nbformat", reason="`pip install nbformat nbclient ipykernel`")
nbclient = pytest.importorskip("nbclient", reason="`pip install nbformat nbclient ipykernel`")

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
BUDGET_S = 60.0  # per notebook, whole-notebook wall time on 2 CPU cores
pytestmark = pytest.mark.slow


def test_the_five_notebooks_exist():
    assert [p.name for p in NOTEBOOKS] == [
        "01_attention_tour_minilm.ipynb", "02_attention_sae_dfa_organism.ipynb",
        "03_ioi_circuit_patching_organism.ipynb", "04_smollm2.ipynb", "05_heads.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNLAB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=2 * int(BUDGET_S), kernel_name="python3",
        resources={"metadata": {"path": str(path.parent.parent)}},
    )
    t0 = time.perf_counter()
    client.execute()  # raises CellExecutionError naming the failing cell
    elapsed = time.perf_counter() - t0
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, errors
    figures = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
               if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert figures, f"{path.name} shows no plotly figure"
    assert elapsed < BUDGET_S * float(os.environ.get("ATTNLAB_SLOW_FACTOR", "1")), (
        f"{path.name} took {elapsed:.0f} s (budget {BUDGET_S:.0f} s on 2 cores)")
