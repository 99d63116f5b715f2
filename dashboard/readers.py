"""Cached readers of the run store (``st.cache_data``) and of models/SAEs (``st.cache_resource``).

The dashboard only reads: every page gets its tables from here, keyed by the store root and
the file's modification stamp, so a run written while the dashboard is open shows up on the
next rerun and an unchanged table is parsed once. The store root is ``$ATTNLAB_RUNS`` (set by
``attnlab dashboard --runs-dir``), else ``./runs``, exactly as for every other command.

Errors are the store's own (:class:`data.store.StoreError` and its subclasses
``TableNotFound`` / ``CorruptFile``): pages turn them into a message with the command that
fixes them (:mod:`dashboard.howto`). Manifests are read by type (``Run.checked_manifest``):
an odd one is a ``CorruptFile`` for that run, and a 'corrupt' row in :func:`list_runs`.
Artefacts are the run's own files only: a link leading out of the run folder is not offered.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from data.store import RunStore

#: Extensions of run files (besides tables and the manifest) that pages offer as artefacts.
ARTEFACT_SUFFIXES = (".html", ".md", ".json", ".png", ".svg", ".csv")


def store() -> RunStore:
    """The run store the dashboard reads (``$ATTNLAB_RUNS``, else ``./runs``)."""
    return RunStore()


def _stamp(path: Path) -> tuple[int, int]:
    try:
        st_ = path.stat()
    except OSError:
        return (0, 0)
    return (st_.st_mtime_ns, st_.st_size)


def _store_stamp(root: Path) -> tuple:
    """A cheap signature of the store: run folders and their manifests' stamps."""
    if not root.is_dir():
        return ()
    return tuple(sorted((p.name, _stamp(p / "manifest.json")) for p in root.iterdir()
                        if p.is_dir()))


@st.cache_data(show_spinner=False, max_entries=64)
def _list_runs(root: str, stamp: tuple) -> pd.DataFrame:
    del stamp  # part of the cache key only
    return RunStore(root).list_runs()


def list_runs() -> pd.DataFrame:
    """Runs in the store, newest first (see ``RunStore.list_runs``); corrupt ones included."""
    s = store()
    return _list_runs(str(s.root), _store_stamp(s.root)).copy()


def runs_with_table(table: str) -> pd.DataFrame:
    """Completed runs whose manifest lists ``table``, newest first."""
    return runs_with_any_table([table])


def runs_with_any_table(tables) -> pd.DataFrame:
    """Completed runs whose manifest lists at least one of ``tables``, newest first."""
    runs = list_runs()
    if runs.empty:
        return runs
    wanted = set(tables)
    has = runs["tables"].fillna("").map(lambda t: bool(wanted & set(str(t).split(","))))
    return runs[(runs["status"] == "complete") & has].reset_index(drop=True)


@st.cache_data(show_spinner=False, max_entries=256)
def _read_table(root: str, run_id: str, name: str, stamp: tuple) -> pd.DataFrame:
    del stamp
    return RunStore(root).open_run(run_id).read_table(name)


def read_table(run_id: str, name: str) -> pd.DataFrame:
    """Table ``name`` of run ``run_id``; raises TableNotFound / CorruptFile / StoreError."""
    s = store()
    run = s.open_run(run_id)
    return _read_table(str(s.root), run_id, name, _stamp(run.table_path(name))).copy()


def manifest(run_id: str) -> dict[str, Any]:
    """The run's manifest, every field of its type (raises CorruptFile when it is not)."""
    return store().open_run(run_id).checked_manifest


def massive_thresholds(run_id: str) -> tuple[float, float] | None:
    """(|value|, ratio to the median) thresholds of a run's massive-activation scan, or None.

    Read from the manifest's config, where ``attnlab probe`` and ``attnlab demo`` record them
    as ``massive_abs`` / ``massive_ratio``; None when the run did not record both.
    """
    config = manifest(run_id).get("config") or {}
    try:
        return float(config["massive_abs"]), float(config["massive_ratio"])
    except (KeyError, TypeError, ValueError):
        return None


def artefacts(run_id: str) -> list[Path]:
    """Files of a run other than its manifest and tables (reports, figures ...), sorted.

    Only files inside the run folder once links are resolved: a link to /etc/passwd (or to
    another run) is never listed, so never served for download.
    """
    run = store().open_run(run_id)
    inside = run.path.resolve()
    out = []
    for dirpath, _dirs, files in os.walk(run.path):  # does not descend into linked folders
        for f in files:
            p = Path(dirpath) / f
            if p.suffix not in ARTEFACT_SUFFIXES or p == run.manifest_path or f.startswith("."):
                continue
            try:
                real = p.resolve(strict=True)
            except (OSError, RuntimeError):  # a dangling link or a link loop
                continue
            if real.is_relative_to(inside) and real.is_file():
                out.append(p)
    return sorted(out)


@st.cache_resource(show_spinner="Loading the model (once per dashboard process) ...")
def model(name: str):
    """``probes.models.load_model(name)`` once per process; raises ModelNotAvailable."""
    import torch

    from probes.models import load_model

    torch.set_grad_enabled(False)
    return load_model(name, device=os.environ.get("ATTNLAB_DEVICE") or None)


def _sae_row(cfg_path: Path, source: str, model: str | None) -> dict[str, Any] | None:
    import json
    import re

    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(cfg, dict):
        return None
    meta = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
    hook = str(meta.get("hook_name") or cfg.get("hook_name") or "")
    m = re.match(r"^blocks\.(\d+)\.attn\.hook_z$", hook)
    return {"source": source, "model": meta.get("model_name") or model,
            "layer": int(m.group(1)) if m else None, "architecture": cfg.get("architecture"),
            "d_sae": cfg.get("d_sae"), "path": str(cfg_path.parent)}


@st.cache_data(show_spinner=False, max_entries=16)
def _list_saes(root: str, stamp: tuple) -> pd.DataFrame:
    del stamp
    rows = []
    try:
        from saes.io import list_shipped
    except ImportError:  # the SAE package is optional for the other pages
        list_shipped = list
    for model_name, _layer, path in list_shipped():
        rows.append(_sae_row(Path(path) / "cfg.json", "shipped", model_name))
    runs = RunStore(root).list_runs()
    for run_id, model_name in zip(runs["run_id"], runs["model"]):
        for cfg in sorted((Path(root) / run_id).glob("**/cfg.json")):
            if (cfg.parent / "sae_weights.safetensors").is_file():
                rows.append(_sae_row(cfg, f"run {run_id}", model_name))
    cols = ["source", "model", "layer", "architecture", "d_sae", "path"]
    return pd.DataFrame([r for r in rows if r is not None], columns=cols)


def list_saes() -> pd.DataFrame:
    """Attention (hook_z) SAEs available: shipped in data/saes and saved inside runs."""
    s = store()
    return _list_saes(str(s.root), _store_stamp(s.root)).copy()


@st.cache_resource(show_spinner="Loading the SAE ...")
def sae(path: str):
    """``saes.io.load_sae(path)`` once per process, on the dashboard's model device."""
    from saes.io import load_sae

    loaded_device = os.environ.get("ATTNLAB_DEVICE") or None
    if loaded_device is None:
        import torch

        loaded_device = "cuda" if torch.cuda.is_available() else "cpu"
    return load_sae(path, device=loaded_device)


def organism_dynamics_path() -> Path:
    """The organism's shipped per-checkpoint dynamics table (data/organism/)."""
    from data.organism.load import DYNAMICS_FILE, PACKAGE_DIR

    return Path(PACKAGE_DIR) / DYNAMICS_FILE


@st.cache_data(show_spinner=False, max_entries=4)
def _read_parquet(path: str, stamp: tuple) -> pd.DataFrame:
    del stamp
    return pd.read_parquet(path)


def organism_dynamics() -> pd.DataFrame | None:
    """The shipped dynamics table, or None when the organism has not been trained/shipped."""
    path = organism_dynamics_path()
    if not path.is_file():
        return None
    return _read_parquet(str(path), _stamp(path)).copy()


@st.cache_data(show_spinner="Fitting the emergence curve ...", max_entries=16)
def emergence_fit(dynamics: pd.DataFrame, metric: str = "massive_ratio"):
    """``probes.emergence.fit_emergence`` of a dynamics table, cached (a few curve fits)."""
    from probes.emergence import fit_emergence

    return fit_emergence(dynamics, metric=metric)
